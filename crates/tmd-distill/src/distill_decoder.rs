//! `cargo xtask distill-decoder`: trains a [`LightDecoder`] to reproduce a model directory's full
//! VAE decoder, from latents the pipeline already has.
//!
//! **Data.** Any [`LatentCache`]: world clips encoded by the VAE (`cargo xtask encode-world`, or a
//! `pretrain` run's cache) or teacher samples (`cargo xtask teacher-data`); both hold the
//! normalised latents the DiT produces, which is what the light decoder takes. The first
//! `clips` latents are decoded once by the full decoder into a target cache in the run directory
//! (`targets/`, chunked and atomic like every cache, so an interrupted run does not decode them
//! again). Big latents (Wan2.1's 21x60x104) can be cut first: `max_latent_frames` keeps the first
//! latent frames (exact: the decoder is causal, so the first `1 + 4 (k - 1)` frames of a clip
//! depend on its first `k` latent frames only) and `latent_crop` a square window at a fixed,
//! seeded place per clip (approximate at the window's border, where the full decoder would have
//! seen neighbours).
//!
//! **Loss** on the unclamped output against the full decoder's clamped output:
//! `l1 |y - x| + mse (y - x)^2 + ssim (1 - SSIM(y, x)) + edge * spatial gradient-difference +
//! motion * temporal gradient-difference`. L1 is the pixel term of TAEHV-style tiny decoders
//! and keeps flat regions (most of the world) sharp where MSE alone blurs; 1 - SSIM, the
//! structural term, is the same uniform-window SSIM that the quality report measures; the two
//! gradient-difference terms are the VAE pretraining's (`tmd_world::pretrain::vae`: measured there,
//! pixel losses alone learn the background first and the small moving object late). No
//! adversarial term: the target is a deterministic function of the latent, which a regression
//! loss can reach, and a discriminator would cost more than the decoder on this CPU.
//!
//! **Loop.** [`crate::train::run::train_loop`], as every stage: AdamW with warm-up and optional
//! cosine decay, checkpoints under the run directory with the decoder under [`MODEL_NAME`], exact
//! resume (the batch of step `s` is a pure function of `(seed, s)`), NaN guard, `loss.csv`,
//! progress bar. At the end the decoder is written into `out/decoder-light/`
//! ([`save_light_decoder`]) and, given held-out latents, its PSNR and SSIM against the full
//! decoder are measured ([`decoder_quality`]).

use std::path::Path;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::module::avg_pool2d;
use serde::{Deserialize, Serialize};
use tmd_model::light_decoder::{LightDecoder, LightDecoderConfig, LIGHT_DECODER_DIR};
use tmd_model::model_dir::{save_light_decoder, write_atomically, ModelDir};
use tmd_model::vae::WanVae;

use crate::latent_cache::{LatentCache, LatentCacheIndex, LatentSource};
use crate::train::data_parallel::shard_batch;
use crate::train::rng::step_seed;
use crate::train::run::{check_shape, settings_hash, train_loop, PretrainReport};
use crate::train::sections::{CheckpointConfig, OptimizerConfig};
use crate::train::TrainError;

/// Name of the light decoder inside a checkpoint directory.
pub const MODEL_NAME: &str = "light_decoder";
/// Sub-directory of the run directory holding the full decoder's outputs (the targets).
pub const TARGETS_DIR: &str = "targets";
/// File of the run directory (and of `out/decoder-light/`) with the held-out quality.
pub const QUALITY_FILE: &str = "quality.json";

/// Settings of `cargo xtask distill-decoder` (read with [`crate::train::load_stage_config`]
/// from `configs/distill-decoder.toml`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default)]
pub struct DistillDecoderRecipe {
    /// Architecture preset of the light decoder ([`LightDecoderConfig::preset`]: `world`,
    /// `wan2.1`, `tiny`).
    pub preset: String,
    /// Widths overriding the preset's (latent resolution first; one more entry per x2).
    pub channels: Option<Vec<usize>>,
    /// Latent-rate mixing blocks overriding the preset's.
    pub latent_blocks: Option<usize>,
    /// Frame-rate mixing blocks overriding the preset's.
    pub frame_blocks: Option<usize>,
    /// Train on the first `clips` latents of the data cache (0: all).
    pub clips: usize,
    /// Keep the first `max_latent_frames` latent frames of each clip (0: all; exact, see the
    /// module docs).
    pub max_latent_frames: usize,
    /// Cut a `latent_crop` x `latent_crop` window of each latent (0: the whole latent).
    pub latent_crop: usize,
    /// Clips decoded together (and stored per target file) when building the targets.
    pub target_chunk: usize,
    /// Learning rate and AdamW settings ([`OptimizerConfig`]); `lr`: learning rate. 1e-3: Adam's
    /// usual rate for a small convolutional net trained from scratch on a regression target (no
    /// adversarial term).
    pub optimizer: OptimizerConfig,
    /// Linear warm-up steps.
    pub warmup_steps: u64,
    /// Step after which the rate decays along a half cosine to a tenth at `steps` (0: constant).
    pub decay_start: u64,
    /// Clips per batch.
    pub batch: usize,
    /// Optimizer steps in total.
    pub steps: u64,
    /// Seed of the initialisation, the batches and the crops.
    pub seed: u64,
    /// Weight of the pixel L1 term.
    pub l1_weight: f64,
    /// Weight of the pixel MSE term.
    pub mse_weight: f64,
    /// Weight of the structural term `1 - SSIM`.
    pub ssim_weight: f64,
    /// Weight of the spatial gradient-difference term.
    pub edge_weight: f64,
    /// Weight of the temporal gradient-difference term.
    pub motion_weight: f64,
    /// When checkpoints are written and how many are kept ([`CheckpointConfig`]).
    pub checkpoint: CheckpointConfig,
    /// Show progress bars on stderr.
    pub progress: bool,
}

impl Default for DistillDecoderRecipe {
    fn default() -> Self {
        Self {
            preset: "world".into(),
            channels: None,
            latent_blocks: None,
            frame_blocks: None,
            clips: 0,
            max_latent_frames: 0,
            latent_crop: 0,
            target_chunk: 8,
            optimizer: OptimizerConfig {
                lr: 1e-3,
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
                weight_decay: 0.0,
                grad_clip_norm: 1.0,
            },
            warmup_steps: 50,
            decay_start: 0,
            batch: 4,
            steps: 2000,
            seed: 0,
            l1_weight: 1.0,
            mse_weight: 1.0,
            ssim_weight: 0.2,
            edge_weight: 1.0,
            motion_weight: 1.0,
            checkpoint: CheckpointConfig {
                every: 200,
                keep_last: 2,
                loss_tail: 100,
            },
            progress: true,
        }
    }
}

impl DistillDecoderRecipe {
    /// The light decoder's configuration: the preset with this recipe's overrides.
    ///
    /// # Errors
    /// An unknown preset or invalid sizes (naming the key).
    pub fn decoder_config(&self) -> Result<LightDecoderConfig, TrainError> {
        let bad = |key: &str, message: String| TrainError::Config {
            file: None,
            key: Some(key.into()),
            message,
        };
        let mut c =
            LightDecoderConfig::preset(&self.preset).map_err(|e| bad("preset", e.to_string()))?;
        if let Some(ch) = &self.channels {
            c.channels = ch.clone();
        }
        if let Some(n) = self.latent_blocks {
            c.latent_blocks = n;
        }
        if let Some(n) = self.frame_blocks {
            c.frame_blocks = n;
        }
        c.validate().map_err(|m| bad("channels", m))?;
        Ok(c)
    }

    /// Hash of what changes the trajectory (not `steps`, `decay_start`, checkpointing or
    /// progress): a run resumes only from a checkpoint with the same hash.
    pub fn resume_hash(&self, decoder: &LightDecoderConfig, data: &Path) -> String {
        settings_hash(&format!(
            "light-decoder;{decoder:?};data={};clips={};frames={};crop={};lr={:e};warmup={};batch={};seed={};l1={:e};mse={:e};ssim={:e};edge={:e};motion={:e};b1={:e};b2={:e};eps={:e};wd={:e};clip={:e}",
            data.display(),
            self.clips,
            self.max_latent_frames,
            self.latent_crop,
            self.optimizer.lr,
            self.warmup_steps,
            self.batch,
            self.seed,
            self.l1_weight,
            self.mse_weight,
            self.ssim_weight,
            self.edge_weight,
            self.motion_weight,
            self.optimizer.beta1,
            self.optimizer.beta2,
            self.optimizer.epsilon,
            self.optimizer.weight_decay,
            self.optimizer.grad_clip_norm
        ))
    }
}

/// The terms of [`decoder_loss`], unweighted, as numbers (for logging and tests).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DecoderLossParts {
    /// Mean absolute pixel error.
    pub l1: f64,
    /// Mean squared pixel error.
    pub mse: f64,
    /// `1 - SSIM`.
    pub dssim: f64,
    /// Spatial gradient-difference MSE.
    pub edge: f64,
    /// Temporal gradient-difference MSE.
    pub motion: f64,
}

fn difference_mse<B: Backend>(a: &Tensor<B, 5>, b: &Tensor<B, 5>, dim: usize) -> Tensor<B, 1> {
    let n = a.dims()[dim];
    if n < 2 {
        return Tensor::zeros([1], &a.device());
    }
    let d = |x: &Tensor<B, 5>| x.clone().narrow(dim, 1, n - 1) - x.clone().narrow(dim, 0, n - 1);
    (d(a) - d(b)).powi_scalar(2).mean()
}

/// Mean SSIM of two clips in `[-1, 1]` (data range 2), per channel and frame with a uniform
/// `7x7` window (smaller for frames under 7 pixels), valid positions only: the SSIM of Wang et
/// al. 2004 with the uniform window `skimage.metrics.structural_similarity` uses by default
/// (without its sample-covariance correction).
///
/// # Shapes
/// - `a`, `b`: `[batch, channels, frames, h, w]`; returns `[1]`
pub fn ssim<B: Backend>(a: Tensor<B, 5>, b: Tensor<B, 5>) -> Tensor<B, 1> {
    let [n, c, f, h, w] = a.dims();
    let k = 7.min(h).min(w);
    let flat = |x: Tensor<B, 5>| x.reshape([n * c * f, 1, h, w]);
    let (a, b) = (flat(a), flat(b));
    let pool = |x: Tensor<B, 4>| avg_pool2d(x, [k, k], [1, 1], [0, 0], true, false);
    let (c1, c2) = ((0.01f64 * 2.0).powi(2), (0.03f64 * 2.0).powi(2));
    let (ma, mb) = (pool(a.clone()), pool(b.clone()));
    let saa = pool(a.clone() * a.clone()) - ma.clone() * ma.clone();
    let sbb = pool(b.clone() * b.clone()) - mb.clone() * mb.clone();
    let sab = pool(a * b) - ma.clone() * mb.clone();
    let num = (ma.clone() * mb.clone() * 2.0 + c1) * (sab * 2.0 + c2);
    let den = (ma.clone() * ma + mb.clone() * mb + c1) * (saa + sbb + c2);
    (num / den).mean()
}

/// The distillation loss of `decoded` (the light decoder's unclamped output) against `target`
/// (the full decoder's), see the module docs.
///
/// # Shapes
/// - `decoded`, `target`: `[batch, 3, frames, h, w]`; returns the loss `[1]` and its parts
pub fn decoder_loss<B: Backend>(
    decoded: Tensor<B, 5>,
    target: Tensor<B, 5>,
    r: &DistillDecoderRecipe,
) -> (Tensor<B, 1>, DecoderLossParts) {
    let diff = decoded.clone() - target.clone();
    let l1 = diff.clone().abs().mean();
    let mse = diff.powi_scalar(2).mean();
    let dssim = ssim(decoded.clone(), target.clone()).neg() + 1.0;
    let edge = difference_mse(&decoded, &target, 3) + difference_mse(&decoded, &target, 4);
    let motion = difference_mse(&decoded, &target, 2);
    let scalar = |t: &Tensor<B, 1>| -> f64 { t.clone().into_scalar().elem() };
    let parts = DecoderLossParts {
        l1: scalar(&l1),
        mse: scalar(&mse),
        dssim: scalar(&dssim),
        edge: scalar(&edge),
        motion: scalar(&motion),
    };
    let loss = l1 * r.l1_weight
        + mse * r.mse_weight
        + dssim * r.ssim_weight
        + edge * r.edge_weight
        + motion * r.motion_weight;
    (loss, parts)
}

/// PSNR and SSIM of a light decoder against the full one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecoderQuality {
    /// Clips measured.
    pub clips: usize,
    /// Mean over clips of the PSNR (dB, data range 2 for `[-1, 1]`, the same as 1 for `[0, 1]`).
    pub psnr_db: f64,
    /// Lowest PSNR of a clip.
    pub psnr_min_db: f64,
    /// Mean over clips of [`ssim`].
    pub ssim: f64,
    /// Where the latents came from.
    pub data: String,
}

/// Decodes latents of `cache` (all, or the first `limit`) with the full `vae` and with `light`,
/// `chunk` clips at a time, and compares them ([`DecoderQuality`]).
///
/// # Errors
/// Latents the decoders do not take (named), VAE errors.
pub fn decoder_quality<B: Backend>(
    vae: &WanVae<B>,
    light: &LightDecoder<B>,
    cache: &LatentCache,
    limit: usize,
    chunk: usize,
    data: &str,
    device: &B::Device,
) -> Result<DecoderQuality, TrainError> {
    let n = if limit == 0 {
        cache.len()
    } else {
        limit.min(cache.len())
    };
    let mut psnr = Vec::with_capacity(n);
    let mut ssims = Vec::with_capacity(n);
    for start in (0..n).step_by(chunk.max(1)) {
        let idx: Vec<usize> = (start..(start + chunk.max(1)).min(n)).collect();
        let (z, _) = cache.batch::<B>(&idx, device);
        light.check_latents(z.dims())?;
        let full = vae.decode_normalized(z.clone())?;
        let fast = light.forward(z);
        for i in 0..idx.len() {
            let (a, b) = (fast.clone().narrow(0, i, 1), full.clone().narrow(0, i, 1));
            let mse: f64 = (a.clone() - b.clone())
                .powi_scalar(2)
                .mean()
                .into_scalar()
                .elem();
            psnr.push(10.0 * (4.0 / mse.max(1e-12)).log10());
            ssims.push(ssim(a, b).into_scalar().elem::<f64>());
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    Ok(DecoderQuality {
        clips: n,
        psnr_db: mean(&psnr),
        psnr_min_db: psnr.iter().cloned().fold(f64::INFINITY, f64::min),
        ssim: mean(&ssims),
        data: data.into(),
    })
}

/// The latents of clips `indices` of `cache`, cut as `r` says (first `max_latent_frames`, a
/// seeded `latent_crop` window per clip).
///
/// # Shapes
/// - returns `[indices.len(), z, t', h', w']`
fn prepared<B: Backend>(
    cache: &LatentCache,
    indices: &[usize],
    r: &DistillDecoderRecipe,
    device: &B::Device,
) -> Tensor<B, 5> {
    let [_, t, h, w] = cache.index().latent_shape;
    let t2 = if r.max_latent_frames == 0 {
        t
    } else {
        r.max_latent_frames.min(t)
    };
    let (ch, cw) = if r.latent_crop == 0 {
        (h, w)
    } else {
        (r.latent_crop.min(h), r.latent_crop.min(w))
    };
    let clips: Vec<Tensor<B, 5>> = indices
        .iter()
        .map(|&i| {
            let (z, _) = cache.batch::<B>(&[i], device);
            let s = step_seed(r.seed, i as u64, 0xc20b);
            let oy = (s % (h - ch + 1) as u64) as usize;
            let ox = ((s >> 32) % (w - cw + 1) as u64) as usize;
            z.narrow(2, 0, t2).narrow(3, oy, ch).narrow(4, ox, cw)
        })
        .collect();
    Tensor::cat(clips, 0)
}

/// What [`run_distill_decoder`] did.
#[derive(Debug, Clone)]
pub struct DistillDecoderReport {
    /// The training run.
    pub train: PretrainReport,
    /// Held-out quality, when held-out latents were given.
    pub quality: Option<DecoderQuality>,
    /// The light decoder's configuration.
    pub config: LightDecoderConfig,
    /// Parameters of the light decoder.
    pub params: usize,
}

/// Copies the model directory `from` into `to` (everything but a `decoder-light/`), unless they
/// are the same directory.
fn copy_model_dir(from: &Path, to: &Path) -> Result<(), TrainError> {
    let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    if canon(from) == canon(to) {
        return Ok(());
    }
    fn walk(from: &Path, to: &Path, top: bool) -> Result<(), TrainError> {
        std::fs::create_dir_all(to).map_err(|e| TrainError::io(to, e))?;
        for entry in std::fs::read_dir(from).map_err(|e| TrainError::io(from, e))? {
            let entry = entry.map_err(|e| TrainError::io(from, e))?;
            let (path, name) = (entry.path(), entry.file_name());
            if top && name == LIGHT_DECODER_DIR {
                continue;
            }
            if path.is_dir() {
                walk(&path, &to.join(&name), false)?;
            } else {
                std::fs::copy(&path, to.join(&name)).map_err(|e| TrainError::io(&path, e))?;
            }
        }
        Ok(())
    }
    walk(from, to, true)
}

/// The whole stage: load the VAE of `model`, decode the training latents of the cache `data`
/// into targets (once, under `run_dir/targets`), train the light decoder (resuming from the
/// newest checkpoint of `run_dir`), write it into `out/decoder-light/` (`out` gets a copy of
/// `model` first unless it is `model`), and, given `eval_data` (held-out latents), measure it
/// against the full decoder into `run_dir/quality.json` and `out/decoder-light/quality.json`.
///
/// # Errors
/// A model directory or cache that does not load or does not fit (latent channels named),
/// training errors.
#[allow(clippy::too_many_arguments)]
pub fn run_distill_decoder<B: AutodiffBackend>(
    r: &DistillDecoderRecipe,
    model: &Path,
    data: &Path,
    eval_data: Option<&Path>,
    run_dir: &Path,
    out: &Path,
    device: &B::Device,
) -> Result<(LightDecoder<B::InnerBackend>, DistillDecoderReport), TrainError> {
    let dir = ModelDir::open(model)?;
    let vae = dir.load_vae::<B::InnerBackend>(device)?;
    let config = r.decoder_config()?;
    let vae_config = dir.vae_config()?;
    let mismatch = |what: String| TrainError::Config {
        file: None,
        key: Some("preset".into()),
        message: what,
    };
    if config.latent_channels != vae.z_dim
        || config.temporal_stride != vae.temporal_stride
        || config.spatial_stride() != vae.spatial_stride
    {
        return Err(mismatch(format!(
            "the light decoder ({} latent channels, {}x temporal, {}x spatial) does not fit the \
             VAE of {} ({} latent channels, {}x temporal, {}x spatial); pick a preset or set \
             channels (one width per x2 step plus one)",
            config.latent_channels,
            config.temporal_stride,
            config.spatial_stride(),
            model.display(),
            vae_config.z_dim,
            vae_config.temporal_stride(),
            vae_config.spatial_stride()
        )));
    }
    let cache = LatentCache::open(data)?;
    let fits = |c: &LatentCache, path: &Path| -> Result<(), TrainError> {
        if matches!(c.index().source, LatentSource::Decoded { .. }) {
            return Err(TrainError::Data {
                step: 0,
                message: format!(
                    "{}: holds decoded pixels (a distill-decoder target cache), not latents",
                    path.display()
                ),
            });
        }
        let z = c.index().latent_shape[0];
        if z != vae.z_dim {
            return Err(TrainError::Data {
                step: 0,
                message: format!(
                    "{}: latents with {z} channels, but the VAE of {} has z_dim {}",
                    path.display(),
                    model.display(),
                    vae.z_dim
                ),
            });
        }
        Ok(())
    };
    fits(&cache, data)?;
    let clips = if r.clips == 0 {
        cache.len()
    } else {
        r.clips.min(cache.len())
    };
    if clips < r.batch || r.batch == 0 {
        return Err(TrainError::Data {
            step: 0,
            message: format!(
                "{}: {clips} clips for batches of {}; give more clips or a smaller batch",
                data.display(),
                r.batch
            ),
        });
    }

    // Targets: the full decoder's output for the (cut) training latents, decoded once.
    let probe = prepared::<B::InnerBackend>(&cache, &[0], r, device);
    let [_, _, t, h, w] = probe.dims();
    let target_shape = [
        vae.in_channels,
        vae.decoded_frames(t),
        h * vae.spatial_stride,
        w * vae.spatial_stride,
    ];
    let index = LatentCacheIndex {
        clips,
        chunk: r.target_chunk.max(1),
        latent_shape: target_shape,
        source: LatentSource::Decoded {
            latents: data.display().to_string(),
            model: model.display().to_string(),
            max_latent_frames: r.max_latent_frames,
            latent_crop: r.latent_crop,
            seed: r.seed,
        },
        captions: cache.index().captions[..clips].to_vec(),
    };
    let targets = LatentCache::build_or_load(
        &run_dir.join(TARGETS_DIR),
        index,
        r.progress,
        "decoding targets (full VAE)",
        |start, n| {
            let idx: Vec<usize> = (start..start + n).collect();
            Ok(vae.decode_normalized(prepared::<B::InnerBackend>(&cache, &idx, r, device))?)
        },
    )?;

    let decoder = crate::train::data_parallel::seeded_init(|| {
        B::seed(device, r.seed);
        config.init::<B>(device)
    });
    let params = decoder.num_params();
    let mut settings = crate::loop_settings!(r);
    settings.warmup_steps = r.warmup_steps;
    settings.decay_start = r.decay_start;
    let batch = r.batch;
    let (decoder, train) = train_loop(
        decoder,
        &settings,
        run_dir,
        r.resume_hash(&config, data),
        MODEL_NAME,
        |decoder, step| {
            let idx: Vec<usize> = (0..batch)
                .map(|j| (step_seed(r.seed, step, 1 + j as u64) % clips as u64) as usize)
                .collect();
            let z = prepared::<B>(&cache, &idx, r, device);
            let (x, _) = targets.batch::<B>(&idx, device);
            let (z, x) = (shard_batch(z)?, shard_batch(x)?);
            let y = decoder.forward_unclamped(z);
            check_shape("light decoder output", &x.dims(), &y.dims())?;
            let (loss, _) = decoder_loss(y, x, r);
            let value: f64 = loss.clone().into_scalar().elem();
            Ok((value, GradientsParams::from_grads(loss.backward(), decoder)))
        },
    )?;
    let decoder = decoder.valid();

    copy_model_dir(model, out)?;
    save_light_decoder(out, &decoder, &config)?;
    let quality = match eval_data {
        Some(path) => {
            let held_out = LatentCache::open(path)?;
            fits(&held_out, path)?;
            let q = decoder_quality(
                &vae,
                &decoder,
                &held_out,
                0,
                r.target_chunk,
                &path.display().to_string(),
                device,
            )?;
            let text = serde_json::to_string_pretty(&q).expect("quality serialises");
            write_atomically(&run_dir.join(QUALITY_FILE), text.as_bytes())?;
            write_atomically(
                &out.join(LIGHT_DECODER_DIR).join(QUALITY_FILE),
                text.as_bytes(),
            )?;
            Some(q)
        }
        None => None,
    };
    Ok((
        decoder,
        DistillDecoderReport {
            train,
            quality,
            config,
            params,
        },
    ))
}
