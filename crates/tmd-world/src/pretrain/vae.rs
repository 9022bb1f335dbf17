//! Reconstruction pretraining of the bundled Wan VAE on the synthetic [`world`](crate).
//!
//! **A deterministic autoencoder, not a VAE objective.** The Wan VAE's quant convolution makes
//! `2 z_dim` channels, a diagonal Gaussian's mean and log-variance, but [`WanVae::encode`] returns
//! only the mean (diffusers `latent_dist.mean`) and discards the log-variance. Rather than add an
//! API to `tmd-model`, the VAE is trained as a deterministic autoencoder on the posterior mean:
//! `z = encode(x)`, `x_hat = decode(z)`, loss `mean((x_hat - x)^2) + latent_l2 * mean(z^2)` (plus
//! the gradient-difference terms of [`VaeLossWeights`], for edges and motion). The
//! small L2 penalty on `z` stands in for the KL term's only job that matters here, keeping the
//! latent scale bounded (without it, the encoder can grow `z` while the decoder shrinks its
//! input weights). The log-variance channels of the quant convolution get no gradient and stay
//! at their initial values; nothing downstream reads them.
//!
//! **Loss on the pre-clamp output.** [`WanVae::decode`] clamps its output to `[-1, 1]`, and a
//! clamp passes no gradient where it is active, so a pixel the decoder overshoots would stop
//! learning. The decoder's own chunk step, [`tmd_model::vae::Decoder3d::forward_chunk`], is
//! public and documented as unclamped, so [`decode_unclamped`] runs the same chunked decode
//! without the final clamp and the loss compares that with the input (a test checks that
//! clamping it gives [`WanVae::decode`] exactly).
//!
//! The loop, [`pretrain_vae`], is [`pretrain_dit`](super::dit::pretrain_dit)'s, through the shared
//! pieces of [`tmd_distill::train::run`]: AdamW, checkpoints with the model under the name [`MODEL_NAME`],
//! exact resume (no random draws; the batch of step `s` is asked of the caller by its step
//! number), a NaN guard on the loss and on the parameters before each checkpoint, `loss.csv`, and
//! an indicatif progress bar.

use std::path::Path;

use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};
use tmd_model::vae::{FeatCache, WanVae};

use tmd_distill::train::data_parallel::shard_batch;
use tmd_distill::train::run::{check_shape, settings_hash, train_loop, PretrainReport};
use tmd_distill::train::TrainError;
use tmd_distill::train::{CheckpointConfig, OptimizerConfig};

/// Name of the VAE inside a checkpoint directory.
pub const MODEL_NAME: &str = "vae";

/// Settings of VAE pretraining (read with [`tmd_distill::train::load_stage_config`]).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default)]
pub struct VaePretrainConfig {
    /// Learning rate and AdamW settings ([`OptimizerConfig`]); `lr`: learning rate, constant. 1e-4:
    /// the usual Adam rate for convolutional autoencoders trained from scratch without an
    /// adversarial term (which would call for a smaller one).
    pub optimizer: OptimizerConfig,
    /// Steps of linear learning-rate warm-up from 0 to `lr` (0: none). 200: without one, the
    /// first Adam steps of a from-scratch run (every weight moving by ~`lr` at once) made the
    /// loss jump and later spike (benches/NOTES.md, 2026-11-26 night).
    pub warmup_steps: u64,
    /// Step after which the rate decays along a half cosine to a tenth of `lr` at `steps` (0:
    /// constant; see [`scheduled_lr`](tmd_distill::train::run::scheduled_lr)). Not in the resume hash:
    /// like `steps` it shapes only the steps still to come, so a run at a constant rate can be
    /// resumed with a decay that starts at or after its newest checkpoint. At a constant 3e-4 the
    /// world VAE's checkpoints scattered around the trend (benches/NOTES.md, 2026-11-27).
    pub decay_start: u64,
    /// Clips per batch; the loop checks that the data source delivers this many.
    pub batch: usize,
    /// Optimizer steps in total (a resumed run continues up to this number).
    pub steps: u64,
    /// Seed of the run, stored in every checkpoint. The objective itself draws nothing (the
    /// encoder's mean is used, no sampled latent), so it is for the caller's data source: derive
    /// the batch of step `s` from `(seed, s)`, e.g. a [`WorldDataset`](crate::WorldDataset)
    /// with this seed.
    pub seed: u64,
    /// Weight of the latent penalty `mean(z^2)` against the per-pixel reconstruction MSE. 1e-4:
    /// large enough to bound the latent scale (the stand-in for the KL term, see the module
    /// docs), small enough not to cost reconstruction quality; like the 1e-6 KL weight of
    /// latent-diffusion autoencoders it is a regulariser, not a prior.
    pub latent_l2: f64,
    /// Weight of the spatial gradient-difference term (see [`VaeLossWeights::edge`]). 1.0.
    pub edge_weight: f64,
    /// Weight of the temporal gradient-difference term (see [`VaeLossWeights::motion`]). 4.0.
    pub motion_weight: f64,
    /// When checkpoints are written and how many are kept ([`CheckpointConfig`]).
    pub checkpoint: CheckpointConfig,
    /// Show an indicatif progress bar on stderr.
    pub progress: bool,
}

impl Default for VaePretrainConfig {
    fn default() -> Self {
        Self {
            optimizer: OptimizerConfig {
                lr: 1e-4,
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
                weight_decay: 0.01,
                grad_clip_norm: 1.0,
            },
            warmup_steps: 200,
            decay_start: 0,
            batch: 8,
            steps: 10_000,
            seed: 0,
            latent_l2: 1e-4,
            edge_weight: 1.0,
            motion_weight: 4.0,
            checkpoint: CheckpointConfig {
                every: 500,
                keep_last: 3,
                loss_tail: 100,
            },
            progress: true,
        }
    }
}

impl VaePretrainConfig {
    /// The weights of [`vae_reconstruction_loss`].
    pub fn loss_weights(&self) -> VaeLossWeights {
        VaeLossWeights {
            latent_l2: self.latent_l2,
            edge: self.edge_weight,
            motion: self.motion_weight,
        }
    }

    /// Hash of the settings that change the trajectory (everything except `steps`, `decay_start`,
    /// `checkpoint.*`, `progress`): a run resumes only from a checkpoint with the same hash.
    pub fn resume_hash(&self) -> String {
        settings_hash(&format!(
            "vae;lr={:e};warmup={};batch={};seed={};latent_l2={:e};edge={:e};motion={:e};beta1={:e};beta2={:e};eps={:e};wd={:e};clip={:e}",
            self.optimizer.lr,
            self.warmup_steps,
            self.batch,
            self.seed,
            self.latent_l2,
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

/// The weights of the terms of [`vae_reconstruction_loss`] (the pixel MSE has weight 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VaeLossWeights {
    /// Weight of `mean(z^2)`.
    pub latent_l2: f64,
    /// Weight of the spatial gradient-difference term: the MSE between the horizontal and
    /// vertical differences of neighbouring pixels of the reconstruction and of the clip.
    /// Measured (benches/NOTES.md, 2026-11-27): on pixel MSE alone the first few hundred steps
    /// learn the background and drop the object (a few percent of the pixels) and the stripes;
    /// edges are where both live.
    pub edge: f64,
    /// Weight of the temporal gradient-difference term: the MSE between the frame-to-frame
    /// differences of the reconstruction and of the clip. In the world only the object moves,
    /// so this term is the object's motion, which the evaluator reads and the pixel MSE hardly
    /// sees. (Gradient-difference losses: Mathieu et al., "Deep multi-scale video prediction
    /// beyond mean square error", ICLR 2016.)
    pub motion: f64,
}

/// The terms of [`vae_reconstruction_loss`], unweighted (for logging).
#[derive(Debug, Clone)]
pub struct VaeLossParts<B: Backend> {
    /// `mean((decode_unclamped(z) - clips)^2)`, `[1]`.
    pub reconstruction: Tensor<B, 1>,
    /// `mean(z^2)` of the posterior mean `z`, `[1]`.
    pub latent_l2: Tensor<B, 1>,
    /// Spatial gradient-difference MSE (see [`VaeLossWeights::edge`]), `[1]`.
    pub edge: Tensor<B, 1>,
    /// Temporal gradient-difference MSE (see [`VaeLossWeights::motion`]), `[1]`; zero for
    /// single frames.
    pub motion: Tensor<B, 1>,
}

/// Differences of neighbouring entries of `x` along `dim` (`x[i + 1] - x[i]`); `None` if the
/// dimension has a single entry.
fn differences<B: Backend>(x: &Tensor<B, 5>, dim: usize) -> Option<Tensor<B, 5>> {
    let n = x.dims()[dim];
    (n > 1).then(|| x.clone().narrow(dim, 1, n - 1) - x.clone().narrow(dim, 0, n - 1))
}

/// `mean((d(a) - d(b))^2)` of the differences along `dim`, or zero.
fn difference_mse<B: Backend>(a: &Tensor<B, 5>, b: &Tensor<B, 5>, dim: usize) -> Tensor<B, 1> {
    match (differences(a, dim), differences(b, dim)) {
        (Some(da), Some(db)) => (da - db).powi_scalar(2).mean(),
        _ => Tensor::zeros([1], &a.device()),
    }
}

/// [`WanVae::decode`] without its final clamp to `[-1, 1]`: the post-quant convolution, then the
/// decoder one latent frame at a time with one [`FeatCache`], exactly as `decode` runs it.
///
/// # Shapes
/// - `z`: `[batch, z_dim, t, h, w]` (unnormalised latents)
/// - returns `[batch, 3, 1 + 4 (t - 1), 8 h, 8 w]` (Wan2.1 strides)
///
/// # Errors
/// [`TrainError::Shape`] if `z` does not have `z_dim` channels or has an empty dimension.
pub fn decode_unclamped<B: Backend>(
    vae: &WanVae<B>,
    z: Tensor<B, 5>,
) -> Result<Tensor<B, 5>, TrainError> {
    let [b, c, t, h, w] = z.dims();
    if c != vae.z_dim || b == 0 || t == 0 || h == 0 || w == 0 {
        return Err(TrainError::Shape {
            what: "latents to decode (non-empty, z_dim channels)".into(),
            expected: vec![b.max(1), vae.z_dim, t.max(1), h.max(1), w.max(1)],
            found: z.dims().to_vec(),
        });
    }
    let x = vae.post_quant_conv.forward(z, None);
    let mut cache = FeatCache::new();
    let frames: Vec<Tensor<B, 5>> = (0..t)
        .map(|i| {
            vae.decoder
                .forward_chunk(x.clone().narrow(2, i, 1), &mut cache)
        })
        .collect();
    Ok(Tensor::cat(frames, 2))
}

/// The initialisation for training the VAE from scratch: every bias zero (the VAE's rank-1
/// parameters are exactly its convolution biases) and the second convolution of every residual
/// block zero, so each block starts as the identity.
///
/// Measured (benches/NOTES.md, `cargo run --release -p tmd-world --example vae_probe`): with
/// the default (PyTorch-style) initialisation the biases swamp the signal layer by layer (the
/// share of the encoder's activations that depends on the input falls from 0.82 after `conv_in`
/// to 0.015 at its output), the fresh decoder's output depends on the clip by ~3% of its size,
/// and training collapses it to a constant (the "predict zero" loss floor).
pub fn init_for_training<B: Backend>(vae: WanVae<B>) -> WanVae<B> {
    struct ZeroBiases;
    impl<B: Backend> burn::module::ModuleMapper<B> for ZeroBiases {
        fn map_float<const D: usize>(
            &mut self,
            param: burn::module::Param<Tensor<B, D>>,
        ) -> burn::module::Param<Tensor<B, D>> {
            if D != 1 {
                return param;
            }
            let (id, tensor, mapper) = param.consume();
            burn::module::Param::from_mapped_value(id, tensor.zeros_like(), mapper)
        }
    }
    fn zero<B: Backend>(block: &mut tmd_model::vae::ResidualBlock<B>) {
        let conv = &mut block.conv2;
        conv.weight = burn::module::Param::from_tensor(conv.weight.val().zeros_like());
    }
    let mut vae = vae.map(&mut ZeroBiases);
    for layer in vae.encoder.down_blocks.iter_mut() {
        if let tmd_model::vae::EncoderLayer::Residual(block) = layer {
            zero(block);
        }
    }
    vae.encoder.mid_block.resnets.iter_mut().for_each(zero);
    vae.decoder.mid_block.resnets.iter_mut().for_each(zero);
    for up in vae.decoder.up_blocks.iter_mut() {
        up.resnets.iter_mut().for_each(zero);
    }
    vae
}

/// The autoencoder loss `mean((decode_unclamped(z) - clips)^2) + latent_l2 * mean(z^2)
/// + edge * spatial gradient-difference + motion * temporal gradient-difference` with
/// `z = vae.encode(clips)` (the posterior mean; see the module docs for why MSE, why the mean and
/// why before the clamp, and [`VaeLossWeights`] for the two difference terms).
///
/// MSE rather than an L1 + MSE mix: the world's clips are flat-coloured shapes with no texture
/// for MSE to blur, and MSE is the Gaussian likelihood a VAE decoder assumes.
///
/// # Shapes
/// - `clips`: `[batch, 3, 1 + 4k, H, W]`, values in `[-1, 1]`, `H` and `W` multiples of the
///   spatial stride (8 for Wan2.1)
/// - returns the loss `[1]` and its unweighted parts (each `[1]`)
///
/// # Errors
/// [`TrainError::Model`] for a clip shape the VAE does not accept.
pub fn vae_reconstruction_loss<B: Backend>(
    vae: &WanVae<B>,
    clips: Tensor<B, 5>,
    weights: &VaeLossWeights,
) -> Result<(Tensor<B, 1>, VaeLossParts<B>), TrainError> {
    let z = vae.encode(clips.clone())?;
    let z_l2 = z.clone().powi_scalar(2).mean();
    let reconstructed = decode_unclamped(vae, z)?;
    check_shape("VAE reconstruction", &clips.dims(), &reconstructed.dims())?;
    let edge =
        difference_mse(&reconstructed, &clips, 3) + difference_mse(&reconstructed, &clips, 4);
    let motion = difference_mse(&reconstructed, &clips, 2);
    let reconstruction = (reconstructed - clips).powi_scalar(2).mean();
    let loss = reconstruction.clone()
        + z_l2.clone() * weights.latent_l2
        + edge.clone() * weights.edge
        + motion.clone() * weights.motion;
    Ok((
        loss,
        VaeLossParts {
            reconstruction,
            latent_l2: z_l2,
            edge,
            motion,
        },
    ))
}

/// Pretrains `vae` as an autoencoder ([`vae_reconstruction_loss`]), checkpointing under
/// `run_dir` and resuming from its newest valid checkpoint if there is one.
///
/// `batches(step)` gives the clips of step `step` (1-based), `[config.batch, 3, 1 + 4k, H, W]`
/// in `[-1, 1]`; for exact resume it must depend on `step` only.
///
/// # Errors
/// [`TrainError::NonFinite`] if the loss or, at a checkpoint, a parameter is NaN/Inf: the run
/// stops and the newest checkpoint on disk is the last good one. Also shape, data, I/O,
/// checkpoint and config-mismatch errors.
pub fn pretrain_vae<B, F>(
    vae: WanVae<B>,
    config: &VaePretrainConfig,
    run_dir: &Path,
    mut batches: F,
) -> Result<(WanVae<B>, PretrainReport), TrainError>
where
    B: AutodiffBackend,
    F: FnMut(u64) -> Result<Tensor<B, 5>, TrainError>,
{
    let mut settings = tmd_distill::loop_settings!(config);
    settings.warmup_steps = config.warmup_steps;
    settings.decay_start = config.decay_start;
    train_loop(
        vae,
        &settings,
        run_dir,
        config.resume_hash(),
        MODEL_NAME,
        |vae, step| {
            let clips = batches(step)?;
            let dims = clips.dims();
            check_shape(
                "clips",
                &[config.batch, vae.in_channels, dims[2], dims[3], dims[4]],
                &dims,
            )?;
            let clips = shard_batch(clips)?;
            let (loss, _) = vae_reconstruction_loss(vae, clips, &config.loss_weights())?;
            let value: f64 = loss.clone().into_scalar().elem();
            Ok((value, GradientsParams::from_grads(loss.backward(), vae)))
        },
    )
}
