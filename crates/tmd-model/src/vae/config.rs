//! Configuration of the Wan2.1 VAE: sizes, latent statistics, named presets and the diffusers
//! `config.json` reader.

use std::path::Path;

use burn::config::Config;
use serde_json::Value;

use crate::error::{ModelError, Result};

/// Per-channel mean of Wan2.1 latents (`latents_mean` of `Wan-AI/Wan2.1-T2V-1.3B-Diffusers/vae/config.json`,
/// the `mean` list of the original `wan/modules/vae.py`).
pub const WAN21_LATENTS_MEAN: [f32; 16] = [
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715, 0.5517,
    -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
];

/// Per-channel standard deviation of Wan2.1 latents (`latents_std`, same sources as
/// [`WAN21_LATENTS_MEAN`]).
pub const WAN21_LATENTS_STD: [f32; 16] = [
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579,
    1.6382, 1.1253, 2.8251, 1.9160,
];

/// Configuration of [`WanVae`](super::WanVae) (diffusers: `AutoencoderKLWan`, original: `WanVAE_`).
///
/// The encoder has `dim_mult.len()` stages of `num_res_blocks` residual blocks; every stage but the
/// last halves height and width, and also halves time where `temperal_downsample[i]` is set
/// (so `temperal_downsample.len() == dim_mult.len() - 1`). The decoder mirrors it with
/// `num_res_blocks + 1` residual blocks per stage.
#[derive(Config, Debug)]
pub struct WanVaeConfig {
    /// Base channel count of the encoder (`base_dim`, original `dim`).
    #[config(default = 96)]
    pub base_dim: usize,
    /// Base channel count of the decoder (`decoder_base_dim`); `None` means `base_dim`.
    #[config(default = "None")]
    pub decoder_base_dim: Option<usize>,
    /// Latent channels (`z_dim`); the encoder emits `2 * z_dim` (mean and log-variance).
    #[config(default = 16)]
    pub z_dim: usize,
    /// Channel multiplier of each stage (`dim_mult`).
    #[config(default = "vec![1, 2, 4, 4]")]
    pub dim_mult: Vec<usize>,
    /// Residual blocks per encoder stage (`num_res_blocks`); the decoder has one more.
    #[config(default = 2)]
    pub num_res_blocks: usize,
    /// Resolution scales (1.0, 0.5, ...) of the encoder stages that get an attention block after
    /// each residual block (`attn_scales`; empty in Wan2.1, which only has the middle attention).
    #[config(default = "vec![]")]
    pub attn_scales: Vec<f64>,
    /// Whether each downsampling stage also halves time (`temperal_downsample`, spelled as in the
    /// reference). The decoder uses the reversed list.
    #[config(default = "vec![false, true, true]")]
    pub temperal_downsample: Vec<bool>,
    /// Per-channel latent mean used by [`WanVae::normalize_latents`](super::WanVae::normalize_latents).
    #[config(default = "WAN21_LATENTS_MEAN.to_vec()")]
    pub latents_mean: Vec<f32>,
    /// Per-channel latent standard deviation used by
    /// [`WanVae::normalize_latents`](super::WanVae::normalize_latents).
    #[config(default = "WAN21_LATENTS_STD.to_vec()")]
    pub latents_std: Vec<f32>,
    /// Video channels in (RGB: 3).
    #[config(default = 3)]
    pub in_channels: usize,
    /// Video channels out (RGB: 3).
    #[config(default = 3)]
    pub out_channels: usize,
}

/// Names accepted by [`WanVaeConfig::preset`].
pub const PRESETS: &[&str] = &["wan2.1", "tiny"];

impl WanVaeConfig {
    /// The Wan2.1 VAE: `vae/config.json` of `Wan-AI/Wan2.1-T2V-1.3B-Diffusers` (shared by the 14B
    /// model): base_dim 96, z_dim 16, dim_mult [1,2,4,4], 2 res blocks, temporal downsampling
    /// [false,true,true], stride 4 x 8 x 8.
    pub fn wan2_1() -> Self {
        Self::new()
    }

    /// A tiny test configuration (not a released model) with the Wan2.1 layout but narrow:
    /// base_dim 6, z_dim 4, dim_mult [1,2,2,2], 2 res blocks, temporal downsampling
    /// [false,true,true] (so both the spatial-only and the spatio-temporal resamplers and the
    /// feature cache are exercised), the first 4 Wan2.1 latent statistics. Same shapes as the
    /// parity fixture in `tests/fixtures/vae/vae/`.
    pub fn tiny() -> Self {
        Self::new()
            .with_base_dim(6)
            .with_z_dim(4)
            .with_dim_mult(vec![1, 2, 2, 2])
            .with_latents_mean(WAN21_LATENTS_MEAN[..4].to_vec())
            .with_latents_std(WAN21_LATENTS_STD[..4].to_vec())
    }

    /// A preset by name: `"wan2.1"` or `"tiny"`.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "wan2.1" | "wan2_1" | "wan2.1-vae" => Ok(Self::wan2_1()),
            "tiny" => Ok(Self::tiny()),
            _ => Err(ModelError::UnknownPreset {
                name: name.to_string(),
                known: PRESETS.join(", "),
            }),
        }
    }

    /// Reads a diffusers `AutoencoderKLWan` `config.json`.
    ///
    /// Fields that are absent take the diffusers defaults (the Wan2.1 values). Wan2.2-only options
    /// (`is_residual: true`, a `patch_size`) are rejected with [`ModelError::InvalidConfig`].
    pub fn from_diffusers_config(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let json: Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::config(path, format!("not valid JSON: {e}")))?;
        let obj = json
            .as_object()
            .ok_or_else(|| ModelError::config(path, "the top level is not a JSON object"))?;

        let usize_field = |name: &str| -> Result<Option<usize>> {
            match obj.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_u64().map(|x| Some(x as usize)).ok_or_else(|| {
                    ModelError::config(
                        path,
                        format!("'{name}' must be a non-negative integer, got {v}"),
                    )
                }),
            }
        };
        let list_field = |name: &str| -> Result<Option<&Vec<Value>>> {
            match obj.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Array(a)) => Ok(Some(a)),
                Some(v) => Err(ModelError::config(
                    path,
                    format!("'{name}' must be a list, got {v}"),
                )),
            }
        };
        let bad = |name: &str, v: &Value, what: &str| {
            ModelError::config(path, format!("'{name}' must hold {what}, got {v}"))
        };

        let mut cfg = Self::new();
        if let Some(v) = usize_field("base_dim")? {
            cfg.base_dim = v;
        }
        cfg.decoder_base_dim = usize_field("decoder_base_dim")?;
        if let Some(v) = usize_field("z_dim")? {
            cfg.z_dim = v;
        }
        if let Some(v) = usize_field("num_res_blocks")? {
            cfg.num_res_blocks = v;
        }
        if let Some(v) = usize_field("in_channels")? {
            cfg.in_channels = v;
        }
        if let Some(v) = usize_field("out_channels")? {
            cfg.out_channels = v;
        }
        if let Some(a) = list_field("dim_mult")? {
            cfg.dim_mult = a
                .iter()
                .map(|x| {
                    x.as_u64()
                        .map(|u| u as usize)
                        .ok_or_else(|| bad("dim_mult", x, "integers"))
                })
                .collect::<Result<_>>()?;
        }
        if let Some(a) = list_field("attn_scales")? {
            cfg.attn_scales = a
                .iter()
                .map(|x| x.as_f64().ok_or_else(|| bad("attn_scales", x, "numbers")))
                .collect::<Result<_>>()?;
        }
        if let Some(a) = list_field("temperal_downsample")? {
            cfg.temperal_downsample = a
                .iter()
                .map(|x| {
                    x.as_bool()
                        .ok_or_else(|| bad("temperal_downsample", x, "booleans"))
                })
                .collect::<Result<_>>()?;
        }
        if let Some(a) = list_field("latents_mean")? {
            cfg.latents_mean = a
                .iter()
                .map(|x| {
                    x.as_f64()
                        .map(|f| f as f32)
                        .ok_or_else(|| bad("latents_mean", x, "numbers"))
                })
                .collect::<Result<_>>()?;
        }
        if let Some(a) = list_field("latents_std")? {
            cfg.latents_std = a
                .iter()
                .map(|x| {
                    x.as_f64()
                        .map(|f| f as f32)
                        .ok_or_else(|| bad("latents_std", x, "numbers"))
                })
                .collect::<Result<_>>()?;
        }
        if obj
            .get("is_residual")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            return Err(ModelError::config(
                path,
                "'is_residual: true' is the Wan2.2 VAE, which this crate does not implement",
            ));
        }
        if let Some(p) = obj.get("patch_size").filter(|v| !v.is_null()) {
            if p.as_u64() != Some(1) {
                return Err(ModelError::config(
                    path,
                    format!("'patch_size: {p}' (Wan2.2 VAE) is not supported; expected null"),
                ));
            }
        }
        cfg.validate_at(path)?;
        Ok(cfg)
    }

    /// Checks the invariants the model relies on; `Err(InvalidConfig)` names the field at fault.
    pub fn validate(&self) -> Result<()> {
        self.validate_at(Path::new("<WanVaeConfig>"))
    }

    fn validate_at(&self, path: &Path) -> Result<()> {
        let err = |reason: String| Err(ModelError::config(path, reason));
        if self.dim_mult.is_empty() {
            return err("'dim_mult' is empty".into());
        }
        if self.base_dim == 0 || self.z_dim == 0 || self.decoder_base_dim == Some(0) {
            return err("'base_dim', 'decoder_base_dim' and 'z_dim' must be positive".into());
        }
        if self.dim_mult.contains(&0) {
            return err(format!("'dim_mult' {:?} holds a zero", self.dim_mult));
        }
        if self.temperal_downsample.len() != self.dim_mult.len() - 1 {
            return err(format!(
                "'temperal_downsample' has {} entries, expected len(dim_mult) - 1 = {}",
                self.temperal_downsample.len(),
                self.dim_mult.len() - 1
            ));
        }
        if self.latents_mean.len() != self.z_dim || self.latents_std.len() != self.z_dim {
            return err(format!(
                "'latents_mean' ({}) and 'latents_std' ({}) must have z_dim = {} entries",
                self.latents_mean.len(),
                self.latents_std.len(),
                self.z_dim
            ));
        }
        if let Some(s) = self
            .latents_std
            .iter()
            .find(|s| !(s.is_finite() && **s > 0.0))
        {
            return err(format!(
                "'latents_std' holds {s}; every entry must be positive"
            ));
        }
        Ok(())
    }

    /// The decoder base channel count (`decoder_base_dim`, or `base_dim` when unset).
    pub fn decoder_dim(&self) -> usize {
        self.decoder_base_dim.unwrap_or(self.base_dim)
    }

    /// Spatial stride of the latent grid: `2^(len(dim_mult) - 1)` (8 for Wan2.1).
    pub fn spatial_stride(&self) -> usize {
        1 << (self.dim_mult.len().saturating_sub(1))
    }

    /// Temporal stride: `2^(number of temporal downsamplings)` (4 for Wan2.1).
    pub fn temporal_stride(&self) -> usize {
        1 << self.temperal_downsample.iter().filter(|t| **t).count()
    }

    /// Temporal upsampling flag of each decoder stage (the reversed `temperal_downsample`).
    pub fn temperal_upsample(&self) -> Vec<bool> {
        self.temperal_downsample.iter().rev().copied().collect()
    }
}
