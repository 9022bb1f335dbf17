//! Configuration of the Wan2.1 DiT: sizes, named presets and the diffusers `config.json` reader.

use std::path::Path;

use burn::config::Config;
use burn::prelude::Backend;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::WanModel;
use crate::error::{ModelError, Result};

/// Numerical precision policy of the DiT forward pass.
///
/// The original Wan2.1 code keeps the weights in f32 and runs the model under
/// `torch.autocast(bfloat16)`: linear layers and attention multiply in bf16, while the time
/// embedding, the modulation, all norms, RoPE, the residual stream and the output head stay f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Precision {
    /// Everything in the backend's float type (f32 in tests). Matches the f32 reference.
    #[default]
    F32,
    /// The big matrix products (patch embedding, text embedding, q/k/v/o projections, attention,
    /// FFN) take bf16-rounded inputs and weights and give bf16-rounded outputs, cast back to the
    /// stream's float type; everything else stays in the stream's float type, like the original's
    /// autocast.
    ///
    /// On backends with native bf16 (CUDA) this is a real `cast` to bf16. On backends without
    /// it (NdArray) the bf16 rounding is emulated on the host (round-to-nearest-even), with a
    /// straight-through gradient; the numbers are the same, only slower.
    Bf16Matmul,
}

/// Configuration of [`WanModel`] (diffusers: `WanTransformer3DModel`).
///
/// `dim = num_heads * head_dim`; the head dimension must be even and split into the three
/// RoPE axes `head_dim - 4*(head_dim/6)`, `2*(head_dim/6)`, `2*(head_dim/6)`.
#[derive(Config, Debug)]
pub struct WanConfig {
    /// Hidden size of the token stream (`dim`; diffusers: `num_attention_heads * attention_head_dim`).
    pub dim: usize,
    /// Hidden size of the feed-forward network.
    pub ffn_dim: usize,
    /// Number of sinusoid channels of the time embedding (128 cosines then 128 sines for 256).
    #[config(default = 256)]
    pub freq_dim: usize,
    /// Width of the text encoder output (umT5-XXL: 4096).
    #[config(default = 4096)]
    pub text_dim: usize,
    /// Number of text positions: shorter contexts are zero-padded to this length.
    #[config(default = 512)]
    pub text_len: usize,
    /// Latent channels in.
    #[config(default = 16)]
    pub in_channels: usize,
    /// Latent channels out.
    #[config(default = 16)]
    pub out_channels: usize,
    /// Number of attention heads.
    pub num_heads: usize,
    /// Number of transformer blocks.
    pub num_layers: usize,
    /// Patch size (frames, height, width).
    #[config(default = "[1, 2, 2]")]
    pub patch_size: [usize; 3],
    /// Epsilon of every LayerNorm and RMSNorm.
    #[config(default = 1e-6)]
    pub eps: f64,
    /// RoPE base.
    #[config(default = 10000.0)]
    pub rope_theta: f64,
    /// Largest grid index (in patches, along any axis) the RoPE tables of the reference cover.
    #[config(default = 1024)]
    pub rope_max_seq_len: usize,
    /// Precision policy of the forward pass.
    #[config(default = "Precision::F32")]
    pub precision: Precision,
}

/// Names accepted by [`WanConfig::preset`].
pub const PRESETS: &[&str] = &["wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "tiny"];

impl WanConfig {
    /// Wan2.1 T2V 1.3B: `config.json` of `Wan-AI/Wan2.1-T2V-1.3B` (dim 1536, ffn 8960, 12 heads, 30 layers).
    pub fn t2v_1_3b() -> Self {
        Self::new(1536, 8960, 12, 30)
    }

    /// Wan2.1 T2V 14B: `config.json` of `Wan-AI/Wan2.1-T2V-14B` (dim 5120, ffn 13824, 40 heads, 40 layers).
    pub fn t2v_14b() -> Self {
        Self::new(5120, 13824, 40, 40)
    }

    /// A tiny test configuration (not a released model): 2 heads x 24, 2 layers, ffn 64,
    /// text 16 x 32, 4 latent channels. Same shapes as the parity fixture in `tests/fixtures/dit/`
    /// except `out_channels` (5 there).
    pub fn tiny() -> Self {
        Self::new(48, 64, 2, 2)
            .with_text_dim(32)
            .with_text_len(16)
            .with_in_channels(4)
            .with_out_channels(4)
    }

    /// A preset by name: `"wan2.1-t2v-1.3b"`, `"wan2.1-t2v-14b"` or `"tiny"`.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "wan2.1-t2v-1.3b" => Ok(Self::t2v_1_3b()),
            "wan2.1-t2v-14b" => Ok(Self::t2v_14b()),
            "tiny" => Ok(Self::tiny()),
            _ => Err(ModelError::UnknownPreset {
                name: name.to_string(),
                known: PRESETS.join(", "),
            }),
        }
    }

    /// Size of one attention head.
    pub fn head_dim(&self) -> usize {
        self.dim / self.num_heads.max(1)
    }

    /// Channels of the three RoPE axes (frames, height, width) for this head size.
    pub fn rope_axes(&self) -> [usize; 3] {
        super::rope::rope_axis_dims(self.head_dim())
    }

    /// Checks that the sizes are consistent; `origin` names the file or preset in the error.
    #[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` needs Rust 1.87; MSRV is 1.85
    pub fn validate(&self, origin: &Path) -> Result<()> {
        let fail = |reason: String| Err(ModelError::config(origin, reason));
        let positive = [
            ("dim", self.dim),
            ("ffn_dim", self.ffn_dim),
            ("freq_dim", self.freq_dim),
            ("text_dim", self.text_dim),
            ("text_len", self.text_len),
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("num_heads", self.num_heads),
            ("rope_max_seq_len", self.rope_max_seq_len),
        ];
        for (name, value) in positive {
            if value == 0 {
                return fail(format!("{name} must be positive"));
            }
        }
        if self.patch_size.contains(&0) {
            return fail(format!("patch_size {:?} has a zero entry", self.patch_size));
        }
        if self.dim % self.num_heads > 0 {
            return fail(format!(
                "dim {} is not divisible by num_heads {}",
                self.dim, self.num_heads
            ));
        }
        let head_dim = self.head_dim();
        if head_dim < 6 || head_dim % 2 > 0 {
            return fail(format!(
                "head_dim {head_dim} must be even and at least 6 for the 3-axis RoPE"
            ));
        }
        if self.freq_dim % 2 > 0 {
            return fail(format!("freq_dim {} must be even", self.freq_dim));
        }
        if self.eps.is_nan() || self.eps <= 0.0 {
            return fail(format!("eps {} must be positive", self.eps));
        }
        if self.rope_theta.is_nan() || self.rope_theta <= 0.0 {
            return fail(format!("rope_theta {} must be positive", self.rope_theta));
        }
        Ok(())
    }

    /// Builds a randomly initialised model (use the loaders for real weights).
    pub fn init<B: Backend>(&self, device: &B::Device) -> WanModel<B> {
        WanModel::new(self, device)
    }

    /// Reads a diffusers `WanTransformer3DModel` `config.json`.
    ///
    /// Uses `num_attention_heads`, `attention_head_dim`, `in_channels`, `out_channels`,
    /// `text_dim`, `freq_dim`, `ffn_dim`, `num_layers`, `eps`, `patch_size`, `rope_max_seq_len`.
    /// Diffusers has no text length (its pipeline pads prompts to 512): an optional `text_len`
    /// key (our extension) overrides the default 512. Image-conditioning models (`image_dim`,
    /// `added_kv_proj_dim`) and disabled `cross_attn_norm` / `qk_norm` are rejected.
    pub fn from_diffusers_config(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let json: Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::config(path, format!("not valid JSON: {e}")))?;
        Self::from_diffusers_json(&json, path)
    }

    /// Same as [`WanConfig::from_diffusers_config`] on an already parsed JSON value; `origin`
    /// names the source in errors.
    pub fn from_diffusers_json(json: &Value, origin: &Path) -> Result<Self> {
        let obj = json
            .as_object()
            .ok_or_else(|| ModelError::config(origin, "top level is not a JSON object"))?;
        let get_usize = |key: &str, default: Option<usize>| -> Result<usize> {
            match obj.get(key) {
                None | Some(Value::Null) => default.ok_or_else(|| {
                    ModelError::config(origin, format!("missing required field '{key}'"))
                }),
                Some(v) => v.as_u64().map(|x| x as usize).ok_or_else(|| {
                    ModelError::config(
                        origin,
                        format!("field '{key}' must be a non-negative integer, found {v}"),
                    )
                }),
            }
        };
        let get_f64 = |key: &str, default: f64| -> Result<f64> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v.as_f64().ok_or_else(|| {
                    ModelError::config(origin, format!("field '{key}' must be a number, found {v}"))
                }),
            }
        };

        if let Some(name) = obj.get("_class_name").and_then(Value::as_str) {
            if name != "WanTransformer3DModel" {
                return Err(ModelError::config(
                    origin,
                    format!("_class_name is '{name}', expected 'WanTransformer3DModel'"),
                ));
            }
        }
        for key in ["image_dim", "added_kv_proj_dim", "pos_embed_seq_len"] {
            if let Some(v) = obj.get(key) {
                if !v.is_null() {
                    return Err(ModelError::config(
                        origin,
                        format!("'{key}' = {v}: image-conditioned Wan models are not supported"),
                    ));
                }
            }
        }
        if let Some(v) = obj.get("cross_attn_norm") {
            if v.as_bool() != Some(true) {
                return Err(ModelError::config(
                    origin,
                    format!("cross_attn_norm = {v}: only true (Wan2.1 T2V) is supported"),
                ));
            }
        }
        if let Some(v) = obj.get("qk_norm") {
            if v.as_str() != Some("rms_norm_across_heads") {
                return Err(ModelError::config(
                    origin,
                    format!("qk_norm = {v}: only \"rms_norm_across_heads\" is supported"),
                ));
            }
        }

        let num_heads = get_usize("num_attention_heads", None)?;
        let head_dim = get_usize("attention_head_dim", None)?;
        let in_channels = get_usize("in_channels", Some(16))?;
        let out_channels = match obj.get("out_channels") {
            None | Some(Value::Null) => in_channels,
            Some(_) => get_usize("out_channels", None)?,
        };
        let patch_size = match obj.get("patch_size") {
            None | Some(Value::Null) => [1, 2, 2],
            Some(Value::Array(items)) if items.len() == 3 => {
                let mut out = [0usize; 3];
                for (slot, item) in out.iter_mut().zip(items) {
                    *slot = item.as_u64().ok_or_else(|| {
                        ModelError::config(
                            origin,
                            format!("patch_size entries must be integers, found {item}"),
                        )
                    })? as usize;
                }
                out
            }
            Some(v) => {
                return Err(ModelError::config(
                    origin,
                    format!("patch_size must be a list of 3 integers, found {v}"),
                ))
            }
        };

        let config = Self::new(
            num_heads * head_dim,
            get_usize("ffn_dim", None)?,
            num_heads,
            get_usize("num_layers", None)?,
        )
        .with_freq_dim(get_usize("freq_dim", Some(256))?)
        .with_text_dim(get_usize("text_dim", Some(4096))?)
        .with_text_len(get_usize("text_len", Some(512))?)
        .with_in_channels(in_channels)
        .with_out_channels(out_channels)
        .with_patch_size(patch_size)
        .with_eps(get_f64("eps", 1e-6)?)
        .with_rope_max_seq_len(get_usize("rope_max_seq_len", Some(1024))?);
        config.validate(origin)?;
        Ok(config)
    }

    /// Reads the `config.json` of the official Wan2.1 release (`WanModel` fields: `dim`, `ffn_dim`,
    /// `freq_dim`, `in_dim`, `out_dim`, `num_heads`, `num_layers`, `text_len`, `eps`, optional
    /// `patch_size`, `text_dim`). Only `model_type = "t2v"` with global attention is supported.
    pub fn from_original_config(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let json: Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::config(path, format!("not valid JSON: {e}")))?;
        let obj = json
            .as_object()
            .ok_or_else(|| ModelError::config(path, "top level is not a JSON object"))?;
        if let Some(t) = obj.get("model_type").and_then(Value::as_str) {
            if t != "t2v" {
                return Err(ModelError::config(
                    path,
                    format!("model_type is '{t}': only text-to-video ('t2v') Wan2.1 models are supported"),
                ));
            }
        }
        if let Some(w) = obj.get("window_size") {
            if w != &serde_json::json!([-1, -1]) {
                return Err(ModelError::config(
                    path,
                    format!("window_size = {w}: only global attention ([-1, -1]) is supported"),
                ));
            }
        }
        // Same fields under diffusers' names, then the diffusers reader does the checking.
        let head_dim_of = |o: &serde_json::Map<String, Value>| -> Result<Value> {
            let dim = o.get("dim").and_then(Value::as_u64);
            let heads = o.get("num_heads").and_then(Value::as_u64);
            match (dim, heads) {
                (Some(d), Some(h)) if h > 0 && d % h == 0 => Ok(Value::from(d / h)),
                _ => Err(ModelError::config(
                    path,
                    format!("'dim' ({dim:?}) must be a multiple of 'num_heads' ({heads:?})"),
                )),
            }
        };
        let mut d = serde_json::Map::new();
        d.insert("attention_head_dim".into(), head_dim_of(obj)?);
        for (from, to) in [
            ("num_heads", "num_attention_heads"),
            ("ffn_dim", "ffn_dim"),
            ("freq_dim", "freq_dim"),
            ("in_dim", "in_channels"),
            ("out_dim", "out_channels"),
            ("num_layers", "num_layers"),
            ("text_len", "text_len"),
            ("text_dim", "text_dim"),
            ("eps", "eps"),
            ("patch_size", "patch_size"),
        ] {
            if let Some(v) = obj.get(from) {
                d.insert(to.into(), v.clone());
            }
        }
        Self::from_diffusers_json(&Value::Object(d), path)
    }

    /// The diffusers `config.json` content describing this model (plus our `text_len`).
    pub fn to_diffusers_json(&self) -> Value {
        serde_json::json!({
            "_class_name": "WanTransformer3DModel",
            "added_kv_proj_dim": null,
            "attention_head_dim": self.head_dim(),
            "cross_attn_norm": true,
            "eps": self.eps,
            "ffn_dim": self.ffn_dim,
            "freq_dim": self.freq_dim,
            "image_dim": null,
            "in_channels": self.in_channels,
            "num_attention_heads": self.num_heads,
            "num_layers": self.num_layers,
            "out_channels": self.out_channels,
            "patch_size": self.patch_size,
            "pos_embed_seq_len": null,
            "qk_norm": "rms_norm_across_heads",
            "rope_max_seq_len": self.rope_max_seq_len,
            "text_dim": self.text_dim,
            "text_len": self.text_len,
        })
    }
}
