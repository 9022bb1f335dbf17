//! Model directories with random weights: a tiny one for tests and first runs, and Wan-shaped
//! ones for measuring conversion, speed and memory without the real checkpoints.

use std::path::Path;

use burn::prelude::*;

use crate::convert::save_model_dir;
use crate::dit::WanConfig;
use crate::error::{ModelError, Result};
use crate::model_dir::{Manifest, SamplingDefaults};
use crate::t5::UMT5Config;
use crate::vae::WanVaeConfig;

/// The configs and defaults of a random model directory.
#[derive(Clone, Debug)]
pub struct RandomModelSpec {
    /// DiT config (its `text_dim` must equal the encoder's `d_model`, `in/out_channels` the VAE's `z_dim`).
    pub dit: WanConfig,
    /// VAE config.
    pub vae: WanVaeConfig,
    /// umT5 config (`vocab_size` is set from the tokenizer).
    pub t5: UMT5Config,
    /// Sampling defaults written into the manifest.
    pub defaults: SamplingDefaults,
    /// Seed of the backend RNG used for initialisation.
    pub seed: u64,
}

impl RandomModelSpec {
    /// Tiny sizes (every component's `tiny()` preset, made consistent): 64x64 pixels, 9 frames,
    /// 8 steps, CFG 5 — a generate run takes a second on a CPU.
    pub fn tiny(seed: u64) -> Self {
        let vae = WanVaeConfig::tiny();
        let t5 = UMT5Config::tiny();
        let dit = WanConfig::tiny()
            .with_text_dim(t5.d_model)
            .with_in_channels(vae.z_dim)
            .with_out_channels(vae.z_dim);
        Self {
            dit,
            vae,
            t5,
            defaults: SamplingDefaults {
                steps: 8,
                frames: 9,
                height: 64,
                width: 64,
                negative_prompt: "blurry, static, low quality".into(),
                ..SamplingDefaults::default()
            },
            seed,
        }
    }
}

/// Initialises every component at random (seeded) and writes a converted model directory.
pub fn make_random_model_dir<B: Backend>(
    out: &Path,
    spec: &RandomModelSpec,
    tokenizer: &Path,
    device: &B::Device,
) -> Result<Manifest> {
    let tok = tokenizers::Tokenizer::from_file(tokenizer).map_err(|e| ModelError::Tokenizer {
        path: tokenizer.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut t5_config = spec.t5.clone();
    t5_config.vocab_size = tok.get_vocab_size(true);
    B::seed(device, spec.seed);
    let dit = spec.dit.init::<B>(device);
    let vae = spec.vae.init::<B>(device);
    let t5 = t5_config.init::<B>(device);
    save_model_dir(
        out,
        &spec.dit,
        &dit,
        &spec.vae,
        &vae,
        &t5_config,
        &t5,
        tokenizer,
        &format!(
            "random weights (seed {}), written by `cargo xtask make-tiny-model`",
            spec.seed
        ),
        spec.defaults.clone(),
    )
}
