//! The recipe of the bundled teacher: the synthetic [`world`](crate) in, a model directory
//! out, in three resumable stages under one run directory.
//!
//! 1. **VAE** ([`train_teacher_vae`]): the Wan VAE at a small width, trained as an autoencoder
//!    ([`pretrain_vae`]) on short clips of the training split (`world.vae_frames` frames: one
//!    first frame and one 4-frame chunk, the two cases of the causal encoder; the convolutions and
//!    the feature cache make the trained VAE work at any `1 + 4k` frames).
//! 2. **Text encoder** ([`teacher_text_encoder`]): a small umT5 encoder over the world's
//!    word-level tokenizer, **randomly initialised and frozen**. This is the documented choice for
//!    the text side: Wan keeps its umT5 frozen and learns to read it through the DiT's text
//!    embedding and cross-attention; the world's vocabulary has under a hundred words, and a random
//!    encoder already gives every word, and every word in its context, a distinct embedding. It is
//!    written once to the run directory and reloaded, so resumed and later stages see the same one.
//! 3. **DiT** ([`train_teacher_dit`]): latents are the trained VAE's posterior means, normalised by
//!    per-channel statistics measured once on real clips ([`measure_latent_stats`], kept in
//!    `latent_stats.json` and written into the exported VAE config as `latents_mean` /
//!    `latents_std`, exactly where Wan keeps its own); the DiT learns the Wan flow-matching
//!    objective ([`pretrain_dit`]) with text dropout to the negative prompt for CFG.
//!
//! [`export_teacher`] then writes the model directory (`manifest.json`, `tokenizer.json`,
//! `transformer/`, `vae/`, `text_encoder/`) that `generate` and every later stage load like
//! converted Wan2.1 weights. Only the training split's attribute combinations are ever shown to
//! any of the three models: the held-out combinations measure generalisation.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use tmd_model::convert::save_model_dir;
use tmd_model::dit::{WanConfig, WanModel};
use tmd_model::model_dir::{write_atomically, Manifest, SamplingDefaults};
use tmd_model::t5::{TextEncoder, UMT5Config, UMT5Encoder};
use tmd_model::vae::{WanVae, WanVaeConfig};
use tmd_model::weights::{load_module, save_burnpack, KeyMap, WeightSource};

use super::dit::{pretrain_dit, DitBatch, DitPretrainConfig};
use super::vae::{pretrain_vae, VaePretrainConfig};
use crate::{captions, to_tensor, write_world_tokenizer, ClipSpec, Split, WorldDataset};
use tmd_distill::train::checkpoint::{latest_valid, Checkpoint};
use tmd_distill::train::data_parallel::{rank_zero_first, seeded_init};
use tmd_distill::train::rng::uniform;
use tmd_distill::train::run::PretrainReport;
use tmd_distill::train::TrainError;

/// Sub-directory of the run directory holding the VAE checkpoints.
pub const VAE_RUN: &str = "vae";
/// Sub-directory of the run directory holding the DiT checkpoints.
pub const DIT_RUN: &str = "dit";
/// Sub-directory of the run directory holding the frozen text encoder.
pub const TEXT_ENCODER_DIR: &str = "text_encoder";
/// Random streams of the VAE's crop positions (see [`tmd_distill::train::rng`]).
const CROP_Y_STREAM: u64 = 0x5641_4559;
const CROP_X_STREAM: u64 = 0x5641_4558;
/// Sub-directory of the run directory holding the latent cache of the DiT stage.
pub const LATENT_CACHE_DIR: &str = "latents";
/// Random stream of the DiT stage's picks from the latent cache.
const CACHE_PICK_STREAM: u64 = 0x4C41_5443;
/// File of the run directory holding the latent statistics.
pub const LATENT_STATS: &str = "latent_stats.json";
/// The world tokenizer inside the run directory.
pub const TOKENIZER: &str = "tokenizer.json";

/// The clips: size and the seed of the training stream.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default)]
pub struct WorldSettings {
    /// Frames of a generated clip (`1 + 4k`; 17 gives 5 latent frames).
    pub frames: usize,
    /// Height in pixels (a multiple of 16).
    pub height: usize,
    /// Width in pixels (a multiple of 16).
    pub width: usize,
    /// Frames of the clips the VAE is trained on (`1 + 4k`; 5 = one first frame + one chunk).
    pub vae_frames: usize,
    /// Side of the square window the VAE trains on, cut at a random position of each training
    /// clip (a multiple of 16, at most the frame; 0 = the whole frame). The VAE is convolutional,
    /// so it works on whole frames afterwards; crops see objects at their real scale at a fraction
    /// of the cost (on this project's 2-core CPU, 32 instead of 64 cuts a step about 4x).
    pub vae_crop: usize,
    /// Seed of the training clip streams (the VAE's uses `seed`, the DiT's `seed + 1`).
    pub seed: u64,
}

impl Default for WorldSettings {
    fn default() -> Self {
        Self {
            frames: 17,
            height: 64,
            width: 64,
            vae_frames: 5,
            vae_crop: 0,
            seed: 0,
        }
    }
}

/// Size of the Wan VAE (the fields of [`WanVaeConfig`] that the recipe changes).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default)]
pub struct VaeSize {
    /// Channels of the first stage (Wan2.1: 96).
    pub base_dim: usize,
    /// Latent channels (Wan2.1: 16).
    pub z_dim: usize,
    /// Residual blocks per stage (Wan2.1: 2).
    pub num_res_blocks: usize,
    /// Channel multiplier of each stage (Wan2.1: [1, 2, 4, 4], 8x spatial compression; three
    /// stages, [1, 2, 4], compress 4x).
    pub dim_mult: Vec<usize>,
    /// Whether each downsampling stage halves time (Wan2.1: [false, true, true]); one entry
    /// fewer than `dim_mult`.
    pub temperal_downsample: Vec<bool>,
    /// Zero biases and identity residual blocks at the start ([`super::vae::init_for_training`]).
    pub init_for_training: bool,
    /// Seed of the initial weights.
    pub seed: u64,
}

impl Default for VaeSize {
    fn default() -> Self {
        let wan = WanVaeConfig::wan2_1();
        Self {
            base_dim: 16,
            z_dim: 16,
            num_res_blocks: 1,
            dim_mult: wan.dim_mult,
            temperal_downsample: wan.temperal_downsample,
            init_for_training: true,
            seed: 0,
        }
    }
}

/// Size of the frozen umT5 encoder.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default)]
pub struct TextSize {
    /// Width (umT5-XXL: 4096).
    pub d_model: usize,
    /// Width of one attention head.
    pub d_kv: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// Feed-forward width.
    pub d_ff: usize,
    /// Layers.
    pub num_layers: usize,
    /// Text positions (Wan2.1: 512; the world's captions have at most 17 words).
    pub text_len: usize,
    /// Seed of the (frozen) random weights.
    pub seed: u64,
}

impl Default for TextSize {
    fn default() -> Self {
        Self {
            d_model: 64,
            d_kv: 16,
            num_heads: 4,
            d_ff: 128,
            num_layers: 2,
            text_len: 24,
            seed: 0,
        }
    }
}

/// Size of the DiT (the fields of [`WanConfig`] that the recipe changes).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default)]
pub struct DitSize {
    /// Token width (1.3B: 1536).
    pub dim: usize,
    /// Feed-forward width (1.3B: 8960).
    pub ffn_dim: usize,
    /// Attention heads (1.3B: 12).
    pub num_heads: usize,
    /// Blocks (1.3B: 30).
    pub num_layers: usize,
    /// Sinusoid channels of the time embedding (Wan: 256).
    pub freq_dim: usize,
    /// Patch size (frames, height, width) of the latent (Wan2.1: [1, 2, 2]).
    pub patch_size: [usize; 3],
    /// Seed of the initial weights.
    pub seed: u64,
}

impl Default for DitSize {
    fn default() -> Self {
        Self {
            dim: 128,
            ffn_dim: 512,
            num_heads: 4,
            num_layers: 4,
            freq_dim: 256,
            patch_size: [1, 2, 2],
            seed: 0,
        }
    }
}

/// Sampling defaults written into the exported manifest.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default)]
pub struct SamplingSettings {
    /// Teacher steps (50, Wan's default).
    pub steps: usize,
    /// CFG scale.
    pub guidance: f64,
    /// Sampling time shift.
    pub shift: f64,
    /// Frames per second of written clips.
    pub fps: u32,
    /// Negative prompt (empty: the unconditional branch sees the empty caption, as trained).
    pub negative_prompt: String,
}

impl Default for SamplingSettings {
    fn default() -> Self {
        Self {
            steps: 50,
            guidance: 4.0,
            shift: 2.0,
            fps: 8,
            negative_prompt: String::new(),
        }
    }
}

/// Everything that defines the bundled teacher (read with
/// [`load_stage_config`](tmd_distill::train::load_stage_config) from `configs/world-teacher.toml`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default)]
pub struct TeacherRecipe {
    /// Clip sizes and data seed.
    pub world: WorldSettings,
    /// VAE size.
    pub vae: VaeSize,
    /// VAE training.
    pub vae_train: VaePretrainConfig,
    /// Text encoder size.
    pub text: TextSize,
    /// DiT size.
    pub dit: DitSize,
    /// DiT training.
    pub dit_train: DitPretrainConfig,
    /// Real clips whose latents give the per-channel mean and std.
    pub latent_stats_clips: usize,
    /// Training clips encoded once into the latent cache (`run_dir/latents`, see
    /// [`LatentCache`]) that DiT batches are drawn from; 0 encodes every batch afresh (an endless
    /// stream of clips, at the cost of a VAE encode per step).
    pub latent_cache_clips: usize,
    /// Warm start of the DiT stage: a DiT run directory (`…/dit`, its newest valid checkpoint) or
    /// one `step-…` checkpoint directory whose weights a *fresh* DiT run starts from, with a new
    /// optimizer and its own settings (e.g. a larger batch, which a resume refuses). Ignored once
    /// the run has a checkpoint of its own. Empty: the seeded initialisation.
    pub dit_warm_start: String,
    /// Sampling defaults of the exported model.
    pub sampling: SamplingSettings,
}

impl Default for TeacherRecipe {
    fn default() -> Self {
        Self {
            world: WorldSettings::default(),
            vae: VaeSize::default(),
            vae_train: VaePretrainConfig::default(),
            text: TextSize::default(),
            dit: DitSize::default(),
            dit_train: DitPretrainConfig::default(),
            latent_stats_clips: 256,
            latent_cache_clips: 2048,
            dit_warm_start: String::new(),
            sampling: SamplingSettings::default(),
        }
    }
}

impl TeacherRecipe {
    /// The VAE config, with the given latent statistics (Wan2.1's first `z_dim` values before
    /// they are measured).
    pub fn vae_config(&self, stats: Option<&LatentStats>) -> WanVaeConfig {
        let base = WanVaeConfig::wan2_1();
        let (mean, std) = match stats {
            Some(s) => (s.mean.clone(), s.std.clone()),
            None => (
                base.latents_mean
                    .iter()
                    .cycle()
                    .take(self.vae.z_dim)
                    .copied()
                    .collect(),
                base.latents_std
                    .iter()
                    .cycle()
                    .take(self.vae.z_dim)
                    .copied()
                    .collect(),
            ),
        };
        base.with_base_dim(self.vae.base_dim)
            .with_z_dim(self.vae.z_dim)
            .with_num_res_blocks(self.vae.num_res_blocks)
            .with_dim_mult(self.vae.dim_mult.clone())
            .with_temperal_downsample(self.vae.temperal_downsample.clone())
            .with_latents_mean(mean)
            .with_latents_std(std)
    }

    /// The umT5 config for a tokenizer of `vocab_size` entries.
    pub fn t5_config(&self, vocab_size: usize) -> UMT5Config {
        let t = &self.text;
        let mut c = UMT5Config::new(
            vocab_size,
            t.d_model,
            t.d_kv,
            t.num_heads,
            t.d_ff,
            t.num_layers,
        );
        c.vocab_size = vocab_size;
        c
    }

    /// The DiT config.
    pub fn dit_config(&self) -> WanConfig {
        let d = &self.dit;
        WanConfig::new(d.dim, d.ffn_dim, d.num_heads, d.num_layers)
            .with_freq_dim(d.freq_dim)
            .with_text_dim(self.text.d_model)
            .with_text_len(self.text.text_len)
            .with_in_channels(self.vae.z_dim)
            .with_out_channels(self.vae.z_dim)
            .with_patch_size(d.patch_size)
    }

    /// Clip size of generated clips.
    pub fn clip_spec(&self) -> Result<ClipSpec, TrainError> {
        ClipSpec::new(self.world.frames, self.world.height, self.world.width).map_err(world_err)
    }

    /// The VAE's training window (`None`: whole frames), checked against the frame size.
    fn vae_crop_side(&self) -> Result<Option<usize>, TrainError> {
        let w = &self.world;
        match w.vae_crop {
            0 => Ok(None),
            side if side % 16 != 0 || side > w.height.min(w.width) => Err(TrainError::Data {
                step: 0,
                message: format!(
                    "world.vae_crop = {side}: must be 0 or a multiple of 16 no larger than the \
                     {}x{} frame",
                    w.height, w.width
                ),
            }),
            side => Ok(Some(side)),
        }
    }

    /// The size of the VAE's training clips before cropping (`world.vae_frames` frames).
    ///
    /// # Errors
    /// [`TrainError::Config`] for a size the world cannot render.
    pub fn vae_clip_spec(&self) -> Result<ClipSpec, TrainError> {
        ClipSpec::new(self.world.vae_frames, self.world.height, self.world.width).map_err(world_err)
    }

    /// The manifest's sampling defaults.
    pub fn sampling_defaults(&self) -> SamplingDefaults {
        SamplingDefaults {
            steps: self.sampling.steps,
            guidance: self.sampling.guidance,
            shift: self.sampling.shift,
            frames: self.world.frames,
            height: self.world.height,
            width: self.world.width,
            fps: self.sampling.fps,
            negative_prompt: self.sampling.negative_prompt.clone(),
        }
    }
}

fn world_err(e: crate::WorldError) -> TrainError {
    TrainError::Data {
        step: 0,
        message: e.to_string(),
    }
}

/// Per-channel mean and standard deviation of the VAE's latents on real clips.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LatentStats {
    /// Mean per latent channel.
    pub mean: Vec<f32>,
    /// Standard deviation per latent channel.
    pub std: Vec<f32>,
    /// Clips measured.
    pub clips: usize,
}

/// Writes the world tokenizer into the run directory (once) and returns its path.
pub fn run_tokenizer(run_dir: &Path) -> Result<PathBuf, TrainError> {
    let path = run_dir.join(TOKENIZER);
    if !path.is_file() {
        std::fs::create_dir_all(run_dir).map_err(|e| TrainError::io(run_dir, e))?;
        write_world_tokenizer(&path).map_err(world_err)?;
    }
    Ok(path)
}

/// Stage 1: trains the VAE under `run_dir/vae`, resuming from its newest valid checkpoint.
pub fn train_teacher_vae<B: AutodiffBackend>(
    recipe: &TeacherRecipe,
    run_dir: &Path,
    device: &B::Device,
) -> Result<(WanVae<B>, PretrainReport), TrainError> {
    let config = recipe.vae_config(None);
    config.validate().map_err(|e| TrainError::Config {
        file: None,
        key: Some("vae".into()),
        message: e.to_string(),
    })?;
    let mut vae = seeded_init(|| {
        B::seed(device, recipe.vae.seed);
        config.init::<B>(device)
    });
    if recipe.vae.init_for_training {
        vae = super::vae::init_for_training(vae);
    }
    let data = WorldDataset::new(
        Some(Split::Train),
        recipe.world.seed,
        recipe.vae_clip_spec()?,
    );
    let batch = recipe.vae_train.batch;
    let crop = recipe.vae_crop_side()?;
    let world_seed = recipe.world.seed;
    pretrain_vae(vae, &recipe.vae_train, &run_dir.join(VAE_RUN), |step| {
        let mut clips = data.batch((step - 1) * batch as u64, batch);
        if let Some(side) = crop {
            clips = clips
                .iter()
                .enumerate()
                .map(|(i, clip)| {
                    let pick = |stream: u64, room: usize| {
                        (uniform(world_seed, step, stream, i as u64) * (room + 1) as f64) as usize
                    };
                    let y0 = pick(CROP_Y_STREAM, clip.spec.height - side);
                    let x0 = pick(CROP_X_STREAM, clip.spec.width - side);
                    clip.crop(y0, x0, side, side)
                })
                .collect::<Result<_, _>>()
                .map_err(world_err)?;
        }
        to_tensor::<B>(&clips, device).map_err(|e| TrainError::Data {
            step,
            message: e.to_string(),
        })
    })
}

/// The newest valid checkpoint under `root`, which must have reached `steps`: the output of a
/// finished stage (`what` names the model, `stage` the stage to run, in the errors).
fn finished_checkpoint(
    root: &Path,
    steps: u64,
    what: &str,
    stage: &str,
) -> Result<Checkpoint, TrainError> {
    let ckpt = latest_valid(root)?
        .checkpoint
        .ok_or_else(|| TrainError::Data {
            step: 0,
            message: format!(
                "no {what} checkpoint under {}: run the {stage} stage first",
                root.display()
            ),
        })?;
    if ckpt.step < steps {
        return Err(TrainError::Data {
            step: ckpt.step,
            message: format!(
                "the {what} under {} stopped at step {} of {steps}: finish the {stage} stage first",
                root.display(),
                ckpt.step
            ),
        });
    }
    Ok(ckpt)
}

/// Loads the finished VAE (its newest valid checkpoint must have reached
/// `recipe.vae_train.steps`) with the given latent statistics.
pub fn load_trained_vae<B: Backend>(
    recipe: &TeacherRecipe,
    run_dir: &Path,
    stats: Option<&LatentStats>,
    device: &B::Device,
) -> Result<WanVae<B>, TrainError> {
    let ckpt = finished_checkpoint(&run_dir.join(VAE_RUN), recipe.vae_train.steps, "VAE", "vae")?;
    ckpt.load_module::<B, _>(
        super::vae::MODEL_NAME,
        recipe.vae_config(stats).init::<B>(device),
    )
}

/// Clips of [`VaeCheck::samples`] (each with its reconstruction).
const SHEET_CLIPS: usize = 8;

/// What a VAE checkpoint keeps of whole clips ([`check_vae`]).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct VaeCheck {
    /// Step of the checkpoint checked.
    pub step: u64,
    /// Mean squared error of the (clamped) reconstructions, in `[-1, 1]` pixel units.
    pub mse: f64,
    /// The evaluator's accuracy on the reconstructions, against the clips' attributes. The
    /// DiT can only learn what the latent keeps: near the evaluator's own accuracy on real
    /// clips, the VAE is good enough to train the DiT on.
    pub judged: crate::eval::JudgeAccuracy,
    /// The first clips checked and their reconstructions, interleaved (real, reconstructed, ...),
    /// for a contact sheet.
    #[serde(skip)]
    pub samples: Vec<crate::Clip>,
}

/// Encodes and decodes `clips` whole clips of `split` (the generated size, `recipe.world.frames`
/// frames) with the newest valid VAE checkpoint under `run_dir/vae` (finished or not) and
/// measures what survives: the reconstruction MSE and the evaluator's accuracy on the
/// reconstructions.
///
/// # Errors
/// [`TrainError::Data`] if there is no VAE checkpoint; loading and model errors.
pub fn check_vae<B: Backend>(
    recipe: &TeacherRecipe,
    run_dir: &Path,
    judge: &crate::eval::Judge<B>,
    split: Split,
    clips: usize,
    seed: u64,
    device: &B::Device,
) -> Result<VaeCheck, TrainError> {
    let root = run_dir.join(VAE_RUN);
    let ckpt = latest_valid(&root)?
        .checkpoint
        .ok_or_else(|| TrainError::Data {
            step: 0,
            message: format!(
                "no VAE checkpoint under {}: run the vae stage first",
                root.display()
            ),
        })?;
    let vae: WanVae<B> = ckpt.load_module::<B, _>(
        super::vae::MODEL_NAME,
        recipe.vae_config(None).init::<B>(device),
    )?;
    let spec = recipe.clip_spec()?;
    let (mut squared, mut values) = (0.0f64, 0usize);
    let mut first: Option<Vec<f32>> = None;
    let judged = crate::eval::judge_accuracy_of(judge, split, clips, seed, spec, |video| {
        let reconstructed = vae.decode(vae.encode(video.clone())?)?;
        if first.is_none() {
            first = reconstructed.to_data().convert::<f32>().to_vec().ok();
        }
        values += video.shape().num_elements();
        squared += (reconstructed.clone() - video)
            .powi_scalar(2)
            .sum()
            .into_scalar()
            .elem::<f64>();
        Ok(reconstructed)
    })?;
    let real = WorldDataset::new(Some(split), seed, spec).batch(0, clips.min(SHEET_CLIPS));
    let per_clip = 3 * spec.frames * spec.height * spec.width;
    let mut samples = Vec::with_capacity(2 * real.len());
    for (i, clip) in real.into_iter().enumerate() {
        let pixels = first
            .as_ref()
            .and_then(|f| f.get(i * per_clip..(i + 1) * per_clip))
            .map(<[f32]>::to_vec);
        let reconstructed = pixels.map(|pixels| crate::Clip {
            pixels,
            ..clip.clone()
        });
        samples.push(clip);
        samples.extend(reconstructed);
    }
    Ok(VaeCheck {
        step: ckpt.step,
        mse: squared / values.max(1) as f64,
        judged,
        samples,
    })
}

/// Per-channel mean and std of `vae.encode` over `clips` real training clips of the generated
/// size (population statistics over batch, frames and positions).
pub fn measure_latent_stats<B: Backend>(
    vae: &WanVae<B>,
    data: &WorldDataset,
    clips: usize,
    batch: usize,
    device: &B::Device,
) -> Result<LatentStats, TrainError> {
    let batch = batch.max(1);
    let mut sum: Option<Tensor<B, 1>> = None;
    let mut sum_sq: Option<Tensor<B, 1>> = None;
    let mut count = 0usize;
    let mut start = 0u64;
    while (start as usize) < clips {
        let n = batch.min(clips - start as usize);
        let video = to_tensor::<B>(&data.batch(start, n), device).map_err(world_err)?;
        let z = vae.encode(video)?;
        let [b, c, f, h, w] = z.dims();
        let flat = z.swap_dims(0, 1).reshape([c, b * f * h * w]);
        let s = flat.clone().sum_dim(1).reshape([c]);
        let s2 = flat.powi_scalar(2).sum_dim(1).reshape([c]);
        sum = Some(sum.map_or(s.clone(), |a| a + s));
        sum_sq = Some(sum_sq.map_or(s2.clone(), |a| a + s2));
        count += b * f * h * w;
        start += n as u64;
    }
    let (Some(sum), Some(sum_sq)) = (sum, sum_sq) else {
        return Err(TrainError::Data {
            step: 0,
            message: "latent statistics need at least one clip".into(),
        });
    };
    let mean = sum / count as f64;
    let var = sum_sq / count as f64 - mean.clone().powi_scalar(2);
    let std = var.clamp_min(1e-12).sqrt();
    let to_vec = |t: Tensor<B, 1>| -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec().unwrap_or_default()
    };
    Ok(LatentStats {
        mean: to_vec(mean),
        std: to_vec(std),
        clips,
    })
}

/// The latent statistics of the run: read from `latent_stats.json`, or measured with the finished
/// VAE and written there (atomically) on first use.
pub fn latent_stats<B: Backend>(
    recipe: &TeacherRecipe,
    run_dir: &Path,
    device: &B::Device,
) -> Result<LatentStats, TrainError> {
    let path = run_dir.join(LATENT_STATS);
    if path.is_file() {
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
        let stats: LatentStats = serde_json::from_str(&text)
            .map_err(|e| TrainError::corrupt(&path, format!("not valid latent statistics: {e}")))?;
        if stats.mean.len() != recipe.vae.z_dim || stats.std.len() != recipe.vae.z_dim {
            return Err(TrainError::corrupt(
                &path,
                format!(
                    "{} channels, the recipe's VAE has {}",
                    stats.mean.len(),
                    recipe.vae.z_dim
                ),
            ));
        }
        return Ok(stats);
    }
    let vae = load_trained_vae::<B>(recipe, run_dir, None, device)?;
    let data = WorldDataset::new(
        Some(Split::Train),
        recipe.world.seed ^ 0x57a7,
        recipe.clip_spec()?,
    );
    let stats = measure_latent_stats(&vae, &data, recipe.latent_stats_clips, 16, device)?;
    let text = serde_json::to_string_pretty(&stats).expect("stats serialise");
    write_atomically(&path, text.as_bytes())?;
    Ok(stats)
}

/// Stage 2: the frozen text encoder, created with the recipe's seed on first use and reloaded
/// from `run_dir/text_encoder/model.bpk` afterwards.
pub fn teacher_text_encoder<B: Backend>(
    recipe: &TeacherRecipe,
    run_dir: &Path,
    device: &B::Device,
) -> Result<(UMT5Config, TextEncoder<B>), TrainError> {
    let tokenizer = run_tokenizer(run_dir)?;
    let vocab = tokenizers::Tokenizer::from_file(&tokenizer)
        .map_err(|e| TrainError::corrupt(&tokenizer, e.to_string()))?
        .get_vocab_size(true);
    let config = recipe.t5_config(vocab);
    let dir = run_dir.join(TEXT_ENCODER_DIR);
    let weights = dir.join("model.bpk");
    let encoder: UMT5Encoder<B> = if weights.is_file() {
        let source = WeightSource::open_files(std::slice::from_ref(&weights))?;
        load_module(
            config.init::<B>(device),
            &source,
            &KeyMap::identity(),
            &[],
            "text encoder",
        )?
    } else {
        let encoder = seeded_init(|| {
            B::seed(device, recipe.text.seed);
            config.init::<B>(device)
        });
        std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
        save_burnpack(&encoder, &weights)?;
        encoder
    };
    let text = TextEncoder::new(&tokenizer, encoder, recipe.text.text_len, device)?;
    Ok((config, text))
}

/// Stage 3: trains the DiT under `run_dir/dit` on normalised latents of the finished VAE and the
/// frozen text encoder's contexts, resuming from its newest valid checkpoint.
pub fn train_teacher_dit<B: AutodiffBackend>(
    recipe: &TeacherRecipe,
    run_dir: &Path,
    device: &B::Device,
) -> Result<(WanModel<B>, PretrainReport), TrainError> {
    let data = WorldDataset::new(
        Some(Split::Train),
        recipe.world.seed + 1,
        recipe.clip_spec()?,
    );
    let batch = recipe.dit_train.batch;
    // Latent statistics, the text encoder's weights and the latent cache are files of the run
    // directory: in a data-parallel run rank 0 writes them and the other ranks then read them.
    let (vae, text, cache) = rank_zero_first::<B::InnerBackend, _>(device, || {
        let stats = latent_stats::<B::InnerBackend>(recipe, run_dir, device)?;
        let vae = load_trained_vae::<B::InnerBackend>(recipe, run_dir, Some(&stats), device)?;
        let (_, text) = teacher_text_encoder::<B::InnerBackend>(recipe, run_dir, device)?;
        let cache = match recipe.latent_cache_clips {
            0 => None,
            clips => {
                let vae_step = finished_checkpoint(
                    &run_dir.join(VAE_RUN),
                    recipe.vae_train.steps,
                    "VAE",
                    "vae",
                )?
                .step;
                Some(crate::latents::encode_world(
                    &run_dir.join(LATENT_CACHE_DIR),
                    &vae,
                    vae_step,
                    &data,
                    clips,
                    16,
                    recipe.dit_train.progress,
                    device,
                )?)
            }
        };
        Ok((vae, text, cache))
    })?;
    let negative = text.encode_cached_batch(&[recipe.sampling.negative_prompt.as_str()], true)?;
    let dit = seeded_init(|| {
        B::seed(device, recipe.dit.seed);
        recipe.dit_config().init::<B>(device)
    });
    let dit = match recipe.dit_warm_start.as_str() {
        "" => dit,
        _ if latest_valid(&run_dir.join(DIT_RUN))?.checkpoint.is_some() => dit,
        from => warm_start_dit(dit, Path::new(from))?,
    };
    let dit_seed = recipe.dit_train.seed;
    pretrain_dit(
        dit,
        &recipe.dit_train,
        &run_dir.join(DIT_RUN),
        Some(Tensor::from_inner(negative)),
        |step| {
            let data_err = |message: String| TrainError::Data { step, message };
            let (latents, prompts) = match &cache {
                Some(cache) => {
                    let picks: Vec<usize> = (0..batch as u64)
                        .map(|i| {
                            let u = uniform(dit_seed, step, CACHE_PICK_STREAM, i);
                            ((u * cache.len() as f64) as usize).min(cache.len() - 1)
                        })
                        .collect();
                    cache.batch::<B::InnerBackend>(&picks, device)
                }
                None => {
                    let clips = data.batch((step - 1) * batch as u64, batch);
                    let video = to_tensor::<B::InnerBackend>(&clips, device)
                        .map_err(|e| data_err(e.to_string()))?;
                    (vae.encode_normalized(video)?, captions(&clips))
                }
            };
            let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
            let context = text.encode_cached_batch(&refs, false)?;
            Ok(DitBatch {
                latents: Tensor::from_inner(latents),
                context: Tensor::from_inner(context),
            })
        },
    )
}

/// Loads the weights of the checkpoint at `from` (a `step-…` directory, or a run directory whose
/// newest valid checkpoint is taken) into `dit`.
///
/// # Errors
/// No valid checkpoint at `from` (named), a damaged one, or weights of another DiT shape.
pub fn warm_start_dit<B: Backend>(
    dit: WanModel<B>,
    from: &Path,
) -> Result<WanModel<B>, TrainError> {
    let ckpt = if from.join("state.json").is_file() {
        let mut ckpt = Checkpoint {
            step: 0,
            path: from.to_path_buf(),
        };
        ckpt.verify()?;
        ckpt.step = ckpt.state()?.step;
        ckpt
    } else {
        latest_valid(from)?
            .checkpoint
            .ok_or_else(|| TrainError::Data {
                step: 0,
                message: format!(
                    "dit_warm_start: no valid DiT checkpoint under {}",
                    from.display()
                ),
            })?
    };
    eprintln!(
        "DiT warm start from {} (step {})",
        ckpt.path.display(),
        ckpt.step
    );
    ckpt.load_module::<B, _>(super::dit::MODEL_NAME, dit)
}

/// Writes the finished teacher as a model directory at `out` (the DiT's newest valid checkpoint
/// must have reached `recipe.dit_train.steps`).
pub fn export_teacher<B: Backend>(
    recipe: &TeacherRecipe,
    run_dir: &Path,
    out: &Path,
    source: &str,
    device: &B::Device,
) -> Result<Manifest, TrainError> {
    let stats = latent_stats::<B>(recipe, run_dir, device)?;
    let vae_config = recipe.vae_config(Some(&stats));
    let vae = load_trained_vae::<B>(recipe, run_dir, Some(&stats), device)?;
    let (t5_config, text) = teacher_text_encoder::<B>(recipe, run_dir, device)?;
    let ckpt = finished_checkpoint(&run_dir.join(DIT_RUN), recipe.dit_train.steps, "DiT", "dit")?;
    let dit_config = recipe.dit_config();
    let dit = ckpt.load_module::<B, _>(super::dit::MODEL_NAME, dit_config.init::<B>(device))?;
    Ok(save_model_dir(
        out,
        &dit_config,
        &dit,
        &vae_config,
        &vae,
        &t5_config,
        text.encoder(),
        &run_tokenizer(run_dir)?,
        source,
        recipe.sampling_defaults(),
    )?)
}
