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
    /// How the weight files store floats (f32; bf16 halves a Wan-sized directory, as the
    /// official release ships umT5).
    pub storage: burn::tensor::DType,
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
            storage: burn::tensor::DType::F32,
        }
    }

    /// Wan2.1 T2V 1.3B's shapes (DiT 1.3B, the Wan2.1 VAE, umT5-XXL with its 256,384-row
    /// embedding) and sampling defaults (480x832, 81 frames), stored as bf16: a stand-in for the
    /// official weights when measuring speed and memory (`cargo xtask make-random-model`).
    pub fn wan2_1_t2v_1_3b(seed: u64) -> Self {
        Self {
            dit: WanConfig::t2v_1_3b(),
            vae: WanVaeConfig::wan2_1(),
            t5: UMT5Config::umt5_xxl(),
            defaults: SamplingDefaults::default(),
            seed,
            storage: burn::tensor::DType::BF16,
        }
    }

    /// A preset by name: `"tiny"` or `"wan2.1-t2v-1.3b"`.
    pub fn preset(name: &str, seed: u64) -> Result<Self> {
        match name {
            "tiny" => Ok(Self::tiny(seed)),
            "wan2.1-t2v-1.3b" => Ok(Self::wan2_1_t2v_1_3b(seed)),
            _ => Err(ModelError::UnknownPreset {
                name: name.to_string(),
                known: "tiny, wan2.1-t2v-1.3b".into(),
            }),
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
    // As many embedding rows as the tokenizer has ids; a preset with more (umT5-XXL's 256,384,
    // beside a small test tokenizer) keeps its own, so the weights have the real size.
    if t5_config.vocab_size <= tok.get_vocab_size(true) {
        t5_config.vocab_size = tok.get_vocab_size(true);
    }
    B::seed(device, spec.seed);
    let dit = crate::dtype::cast_float_params(spec.dit.init::<B>(device), spec.storage);
    let vae = crate::dtype::cast_float_params(spec.vae.init::<B>(device), spec.storage);
    let t5 = crate::dtype::cast_float_params(t5_config.init::<B>(device), spec.storage);
    let mut manifest = save_model_dir(
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
    )?;
    if spec.storage != burn::tensor::DType::F32 {
        manifest.dtype = crate::convert::dtype_name(spec.storage).into();
        manifest.write(out)?;
    }
    Ok(manifest)
}
