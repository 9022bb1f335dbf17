//! Configuration of the umT5 encoder: sizes, named presets and the transformers `config.json` reader.

use std::path::Path;

use burn::config::Config;
use serde_json::Value;

use crate::error::{ModelError, Result};

/// Configuration of [`UMT5Encoder`](super::UMT5Encoder) (transformers: `UMT5EncoderModel`,
/// Wan2.1: `T5Encoder` with `shared_pos=False`).
///
/// Attention width is `num_heads * d_kv` (equal to `d_model` for umT5-XXL, but not required).
#[derive(Config, Debug)]
pub struct UMT5Config {
    /// Number of rows of the token embedding table (may exceed the tokenizer's vocabulary).
    pub vocab_size: usize,
    /// Width of the residual stream (and of the output).
    pub d_model: usize,
    /// Width of one attention head.
    pub d_kv: usize,
    /// Number of attention heads.
    pub num_heads: usize,
    /// Hidden width of the gated feed-forward network.
    pub d_ff: usize,
    /// Number of encoder layers (each with its own relative position bias table).
    pub num_layers: usize,
    /// Number of relative position buckets (half per direction, the encoder is bidirectional).
    #[config(default = 32)]
    pub relative_attention_num_buckets: usize,
    /// Distance from which all relative positions share the last bucket.
    #[config(default = 128)]
    pub relative_attention_max_distance: usize,
    /// Epsilon of the T5 RMS norms.
    #[config(default = 1e-6)]
    pub layer_norm_epsilon: f64,
}

impl UMT5Config {
    /// umT5-XXL encoder used by Wan2.1 (`models_t5_umt5-xxl-enc-bf16.pth`; transformers
    /// `google/umt5-xxl`, the `text_encoder/config.json` of `Wan-AI/Wan2.1-T2V-1.3B-Diffusers`):
    /// 256,384 embedding rows, d_model 4096, 64 heads x 64, d_ff 10240, 24 layers.
    pub fn umt5_xxl() -> Self {
        Self::new(256_384, 4096, 64, 64, 10_240, 24)
    }

    /// Test configuration (not a real model): the config of the parity fixture in
    /// `tests/fixtures/t5/text_encoder/` (written by `scripts/reference/t5_fixtures.py`):
    /// 384 embedding rows, d_model 32, 4 heads x 8, d_ff 48, 2 layers.
    pub fn tiny() -> Self {
        Self::new(384, 32, 8, 4, 48, 2)
    }

    /// Width of the attention projections, `num_heads * d_kv`.
    pub fn inner_dim(&self) -> usize {
        self.num_heads * self.d_kv
    }

    /// Reads a transformers `config.json` of a umT5 model (`UMT5EncoderModel` /
    /// `UMT5ForConditionalGeneration`).
    ///
    /// Fails with [`ModelError::InvalidConfig`] when a size is missing, when the model is a plain
    /// T5 (`model_type: "t5"`, whose layers share one position bias table), or when the feed-forward
    /// network is not the gated tanh-GELU of umT5 (`feed_forward_proj: "gated-gelu"`).
    pub fn from_hf_config(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let json: Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::config(path, format!("not valid JSON: {e}")))?;
        Self::from_hf_json(&json).map_err(|reason| ModelError::config(path, reason))
    }

    /// Same as [`from_hf_config`](Self::from_hf_config) on already parsed JSON; the error is the
    /// reason only.
    fn from_hf_json(json: &Value) -> std::result::Result<Self, String> {
        let usize_field = |name: &str| -> std::result::Result<Option<usize>, String> {
            match json.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
                    format!("field '{name}' should be a non-negative integer, got {v}")
                }),
            }
        };
        let required = |name: &str| -> std::result::Result<usize, String> {
            usize_field(name)?.ok_or_else(|| format!("missing field '{name}'"))
        };
        if let Some(model_type) = json.get("model_type").and_then(Value::as_str) {
            if model_type != "umt5" {
                return Err(format!(
                    "model_type is '{model_type}', expected 'umt5' (T5 shares one position bias \
                     table across layers; umT5 has one per layer)"
                ));
            }
        }
        if let Some(proj) = json.get("feed_forward_proj").and_then(Value::as_str) {
            if proj != "gated-gelu" {
                return Err(format!(
                    "feed_forward_proj is '{proj}', only 'gated-gelu' (umT5) is supported"
                ));
            }
        }
        let mut config = Self::new(
            required("vocab_size")?,
            required("d_model")?,
            required("d_kv")?,
            required("num_heads")?,
            required("d_ff")?,
            required("num_layers")?,
        );
        if let Some(n) = usize_field("relative_attention_num_buckets")? {
            config.relative_attention_num_buckets = n;
        }
        if let Some(n) = usize_field("relative_attention_max_distance")? {
            config.relative_attention_max_distance = n;
        }
        if let Some(v) = json.get("layer_norm_epsilon") {
            config.layer_norm_epsilon = v
                .as_f64()
                .ok_or_else(|| format!("field 'layer_norm_epsilon' should be a number, got {v}"))?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks that the sizes describe a buildable model.
    #[allow(clippy::manual_is_multiple_of)] // is_multiple_of needs Rust 1.87; the workspace allows 1.85
    pub fn validate(&self) -> std::result::Result<(), String> {
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("d_kv", self.d_kv),
            ("num_heads", self.num_heads),
            ("d_ff", self.d_ff),
            ("num_layers", self.num_layers),
        ];
        for (name, value) in sizes {
            if value == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        // Bidirectional bucketing: half the buckets per direction, half of those exact.
        if self.relative_attention_num_buckets < 4 || self.relative_attention_num_buckets % 4 != 0 {
            return Err(format!(
                "relative_attention_num_buckets must be a positive multiple of 4, got {}",
                self.relative_attention_num_buckets
            ));
        }
        if self.relative_attention_max_distance <= self.relative_attention_num_buckets / 4 {
            return Err(format!(
                "relative_attention_max_distance ({}) must exceed num_buckets/4 ({})",
                self.relative_attention_max_distance,
                self.relative_attention_num_buckets / 4
            ));
        }
        if self.layer_norm_epsilon.is_nan() || self.layer_norm_epsilon <= 0.0 {
            return Err(format!(
                "layer_norm_epsilon must be positive, got {}",
                self.layer_norm_epsilon
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_transformers_config() {
        let json: Value = serde_json::from_str(
            r#"{"model_type": "umt5", "vocab_size": 256384, "d_model": 4096, "d_kv": 64,
                "num_heads": 64, "d_ff": 10240, "num_layers": 24, "num_decoder_layers": 24,
                "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
                "layer_norm_epsilon": 1e-06, "feed_forward_proj": "gated-gelu"}"#,
        )
        .unwrap();
        let c = UMT5Config::from_hf_json(&json).unwrap();
        let x = UMT5Config::umt5_xxl();
        assert_eq!(
            (
                c.vocab_size,
                c.d_model,
                c.d_kv,
                c.num_heads,
                c.d_ff,
                c.num_layers
            ),
            (
                x.vocab_size,
                x.d_model,
                x.d_kv,
                x.num_heads,
                x.d_ff,
                x.num_layers
            )
        );
        assert_eq!(c.relative_attention_num_buckets, 32);
        assert_eq!(c.relative_attention_max_distance, 128);
        assert_eq!(c.layer_norm_epsilon, 1e-6);
    }

    #[test]
    fn rejects_plain_t5_and_missing_fields() {
        let t5: Value = serde_json::from_str(
            r#"{"model_type": "t5", "vocab_size": 10, "d_model": 8, "d_kv": 2, "num_heads": 4,
                "d_ff": 16, "num_layers": 1}"#,
        )
        .unwrap();
        assert!(UMT5Config::from_hf_json(&t5).unwrap_err().contains("'t5'"));
        let missing: Value = serde_json::from_str(r#"{"vocab_size": 10}"#).unwrap();
        assert!(UMT5Config::from_hf_json(&missing)
            .unwrap_err()
            .contains("d_model"));
        let relu: Value = serde_json::from_str(
            r#"{"vocab_size": 10, "d_model": 8, "d_kv": 2, "num_heads": 4, "d_ff": 16,
                "num_layers": 1, "feed_forward_proj": "relu"}"#,
        )
        .unwrap();
        assert!(UMT5Config::from_hf_json(&relu)
            .unwrap_err()
            .contains("relu"));
    }
}
