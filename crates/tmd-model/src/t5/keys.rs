//! Checkpoint key maps of the umT5 encoder and the loaders that use them.
//!
//! Module paths are the official Wan2.1 names (`models_t5_umt5-xxl-enc-bf16.pth`), except
//! `blocks.{i}.pos_embedding.embedding` -> `blocks.{i}.pos_embedding` and `ffn.gate.0` -> `ffn.gate`.

use std::path::Path;

use burn::prelude::*;

use super::config::UMT5Config;
use super::model::UMT5Encoder;
use crate::error::{ModelError, Result};
use crate::weights::{load_module, KeyMap, WeightSource};

/// Key map from transformers `UMT5EncoderModel` / `UMT5ForConditionalGeneration` names
/// (`encoder.block.{i}.layer.0.SelfAttention.q.weight`, ...) to module paths.
///
/// `shared.weight` and `encoder.embed_tokens.weight` both map to `token_embedding.weight`: when a
/// checkpoint holds both (a tied duplicate), [`UMT5Encoder::from_hf_dir`] ignores the second.
pub fn hf_key_map() -> KeyMap {
    KeyMap::new(&[
        (r"^shared\.", "token_embedding."),
        (r"^encoder\.embed_tokens\.", "token_embedding."),
        (r"^encoder\.final_layer_norm\.", "norm."),
        (
            r"^encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.relative_attention_bias\.",
            "blocks.$1.pos_embedding.",
        ),
        (
            r"^encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.",
            "blocks.$1.attn.",
        ),
        (
            r"^encoder\.block\.(\d+)\.layer\.0\.layer_norm\.",
            "blocks.$1.norm1.",
        ),
        (
            r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wi_0\.",
            "blocks.$1.ffn.gate.",
        ),
        (
            r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wi_1\.",
            "blocks.$1.ffn.fc1.",
        ),
        (
            r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wo\.",
            "blocks.$1.ffn.fc2.",
        ),
        (
            r"^encoder\.block\.(\d+)\.layer\.1\.layer_norm\.",
            "blocks.$1.norm2.",
        ),
    ])
}

/// Key map from the official Wan2.1 umT5 checkpoint (`models_t5_umt5-xxl-enc-bf16.pth`:
/// `token_embedding.weight`, `blocks.{i}.attn.q.weight`, `blocks.{i}.ffn.gate.0.weight`,
/// `blocks.{i}.pos_embedding.embedding.weight`, `norm.weight`) to module paths.
pub fn original_key_map() -> KeyMap {
    KeyMap::new(&[
        (
            r"^blocks\.(\d+)\.pos_embedding\.embedding\.",
            "blocks.$1.pos_embedding.",
        ),
        (r"^blocks\.(\d+)\.ffn\.gate\.0\.", "blocks.$1.ffn.gate."),
    ])
}

/// Checkpoint keys skipped when loading a transformers folder: the decoder and LM head of a full
/// `UMT5ForConditionalGeneration` checkpoint (only the encoder is used).
const HF_IGNORE: [&str; 2] = [r"^decoder\.", r"^lm_head\."];

/// The checkpoint keys of a transformers folder that loading skips: the decoder and LM head, and
/// `encoder.embed_tokens.weight` when it duplicates `shared.weight`.
pub fn hf_ignored_keys(source: &WeightSource) -> Vec<&'static str> {
    let mut ignore: Vec<&str> = HF_IGNORE.to_vec();
    if source.shape("shared.weight").is_some() {
        ignore.push(r"^encoder\.embed_tokens\.weight$");
    }
    ignore
}

impl<B: Backend> UMT5Encoder<B> {
    /// Loads a transformers `save_pretrained` folder of `UMT5EncoderModel` (or the full
    /// `UMT5ForConditionalGeneration`, whose decoder is skipped): `config.json` plus
    /// `*.safetensors` (sharded or not), in the diffusers layout `text_encoder/`.
    ///
    /// The embedding may be stored as `shared.weight`, `encoder.embed_tokens.weight` or both; a
    /// duplicate is ignored. Weights are converted to the backend's float type.
    pub fn from_hf_dir(dir: impl AsRef<Path>, device: &B::Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = UMT5Config::from_hf_config(dir.join("config.json"))?;
        let source = WeightSource::open_dir(dir)?;
        Self::from_hf_source(&config, &source, device)
    }

    /// Loads transformers-named weights from an open source with a known config.
    pub fn from_hf_source(
        config: &UMT5Config,
        source: &WeightSource,
        device: &B::Device,
    ) -> Result<Self> {
        let ignore = hf_ignored_keys(source);
        load_module(
            config.init(device),
            source,
            &hf_key_map(),
            &ignore,
            "umT5 encoder",
        )
    }

    /// Loads the official Wan2.1 checkpoint (`models_t5_umt5-xxl-enc-bf16.pth`, or a safetensors
    /// file with the same names) with the given config (usually [`UMT5Config::umt5_xxl`]).
    pub fn from_original_file(
        config: &UMT5Config,
        path: impl AsRef<Path>,
        device: &B::Device,
    ) -> Result<Self> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(ModelError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "umT5 checkpoint not found"),
            ));
        }
        let source = WeightSource::open_files(&[path.to_path_buf()])?;
        load_module(
            config.init(device),
            &source,
            &original_key_map(),
            &[],
            "umT5 encoder",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_names_map_to_module_paths() {
        let m = hf_key_map();
        let cases = [
            ("shared.weight", "token_embedding.weight"),
            ("encoder.embed_tokens.weight", "token_embedding.weight"),
            (
                "encoder.block.0.layer.0.SelfAttention.q.weight",
                "blocks.0.attn.q.weight",
            ),
            (
                "encoder.block.23.layer.0.SelfAttention.o.weight",
                "blocks.23.attn.o.weight",
            ),
            (
                "encoder.block.5.layer.0.SelfAttention.relative_attention_bias.weight",
                "blocks.5.pos_embedding.weight",
            ),
            (
                "encoder.block.0.layer.0.layer_norm.weight",
                "blocks.0.norm1.weight",
            ),
            (
                "encoder.block.0.layer.1.DenseReluDense.wi_0.weight",
                "blocks.0.ffn.gate.weight",
            ),
            (
                "encoder.block.0.layer.1.DenseReluDense.wi_1.weight",
                "blocks.0.ffn.fc1.weight",
            ),
            (
                "encoder.block.0.layer.1.DenseReluDense.wo.weight",
                "blocks.0.ffn.fc2.weight",
            ),
            (
                "encoder.block.0.layer.1.layer_norm.weight",
                "blocks.0.norm2.weight",
            ),
            ("encoder.final_layer_norm.weight", "norm.weight"),
        ];
        for (from, to) in cases {
            assert_eq!(m.map(from), to, "{from}");
        }
    }

    #[test]
    fn wan_names_map_to_module_paths() {
        let m = original_key_map();
        let cases = [
            ("token_embedding.weight", "token_embedding.weight"),
            ("blocks.0.norm1.weight", "blocks.0.norm1.weight"),
            ("blocks.3.attn.k.weight", "blocks.3.attn.k.weight"),
            ("blocks.0.ffn.gate.0.weight", "blocks.0.ffn.gate.weight"),
            ("blocks.0.ffn.fc1.weight", "blocks.0.ffn.fc1.weight"),
            (
                "blocks.12.pos_embedding.embedding.weight",
                "blocks.12.pos_embedding.weight",
            ),
            ("norm.weight", "norm.weight"),
        ];
        for (from, to) in cases {
            assert_eq!(m.map(from), to, "{from}");
        }
    }

    /// Every key of the reference key lists maps onto a parameter of the XXL module, with the
    /// expected shape (Linear weights transposed).
    #[test]
    fn reference_key_lists_cover_the_xxl_module() {
        use burn::backend::NdArray;
        use std::collections::HashMap;

        let root = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/reference/keys"
        );
        let lists = [
            ("t5_hf_keys_subset.txt", hf_key_map()),
            ("t5_wan_keys_subset.txt", original_key_map()),
        ];
        // The XXL module is never initialised: parameters are lazy, only shapes are read.
        let module = UMT5Config::umt5_xxl().init::<NdArray<f32>>(&Default::default());
        let slots: HashMap<String, crate::weights::ParamSlot> =
            crate::weights::param_slots(&module)
                .into_iter()
                .map(|s| (s.path.clone(), s))
                .collect();
        for (file, map) in lists {
            let Ok(text) = std::fs::read_to_string(format!("{root}/{file}")) else {
                eprintln!("skipping: {root}/{file} not present");
                continue;
            };
            for line in text.lines().filter(|l| !l.starts_with("TOTAL")) {
                let Some((key, shape)) = line.split_once(' ') else {
                    continue;
                };
                let dims: Vec<usize> = shape
                    .trim_matches(|c| c == '(' || c == ')' || c == ',')
                    .split(',')
                    .filter_map(|s| s.trim().parse().ok())
                    .collect();
                let path = map.map(key);
                let path = path.as_str();
                let slot = slots
                    .get(path)
                    .unwrap_or_else(|| panic!("{file}: {key} -> {path} is no parameter"));
                let mut expected = slot.shape.clone();
                if slot.container == "Struct:Linear" {
                    expected.reverse();
                }
                assert_eq!(expected, dims, "{file}: {key} -> {path}");
            }
        }
    }
}
