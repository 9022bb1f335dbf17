//! Checkpoint key maps of the Wan DiT: diffusers names and official Wan2.1 names -> our module paths.
//!
//! Our paths follow the official names, except `text_embedding`/`time_embedding` layers
//! (`linear_1`/`linear_2`), `time_projection` (no `.1`), `ffn.fc1`/`ffn.fc2` and `head.proj`.

use crate::weights::KeyMap;

/// Prefix of DiT keys in ComfyUI-style single-file checkpoints; stripped by both maps.
const COMFY_PREFIX: &str = "model.diffusion_model.";

/// Checkpoint keys (after mapping) that are skipped when loading: diffusers declares
/// `norm_added_q` as ignorable (an image-conditioning leftover).
pub const IGNORED_KEYS: &[&str] = &[r"norm_added_q"];

/// The names that differ between diffusers' `WanTransformer3DModel` and this crate, as
/// `(diffusers, ours)` pairs; `{n}` stands for a block index; a name ending in `.` is a prefix,
/// any other names one whole parameter. Every other name is the same on both sides. The pairs
/// become [`KeyMap`] rules applied in order, so a specific pair comes before the general one
/// (`attn1.to_q.` before `attn1.`), and no name a pair writes is matched by a later pair (the
/// round trip over every key of the 1.3B model is tested). Both directions are made from this one table:
/// [`diffusers_key_map`] (loading, `convert-weights`) and [`diffusers_export_key_map`] (`export`).
const DIFFUSERS_NAMES: &[(&str, &str)] = &[
    ("condition_embedder.time_embedder.", "time_embedding."),
    ("condition_embedder.text_embedder.", "text_embedding."),
    ("condition_embedder.time_proj.", "time_projection."),
    ("blocks.{n}.scale_shift_table", "blocks.{n}.modulation"),
    ("blocks.{n}.attn1.to_out.0.", "blocks.{n}.self_attn.o."),
    ("blocks.{n}.attn2.to_out.0.", "blocks.{n}.cross_attn.o."),
    ("blocks.{n}.attn1.to_q.", "blocks.{n}.self_attn.q."),
    ("blocks.{n}.attn1.to_k.", "blocks.{n}.self_attn.k."),
    ("blocks.{n}.attn1.to_v.", "blocks.{n}.self_attn.v."),
    ("blocks.{n}.attn2.to_q.", "blocks.{n}.cross_attn.q."),
    ("blocks.{n}.attn2.to_k.", "blocks.{n}.cross_attn.k."),
    ("blocks.{n}.attn2.to_v.", "blocks.{n}.cross_attn.v."),
    // The rest of each attention (`norm_q`, `norm_k`) keeps its name.
    ("blocks.{n}.attn1.", "blocks.{n}.self_attn."),
    ("blocks.{n}.attn2.", "blocks.{n}.cross_attn."),
    ("blocks.{n}.norm2.", "blocks.{n}.norm3."),
    ("blocks.{n}.ffn.net.0.proj.", "blocks.{n}.ffn.fc1."),
    ("blocks.{n}.ffn.net.2.", "blocks.{n}.ffn.fc2."),
    ("scale_shift_table", "head.modulation"),
    ("proj_out.", "head.proj."),
];

/// The regex rule of one side of a [`DIFFUSERS_NAMES`] pair turning it into the other side.
fn name_rule(from: &str, to: &str) -> (String, String) {
    let mut pattern = format!("^{}", regex::escape(from).replace(r"\{n\}", r"(\d+)"));
    if !from.ends_with('.') {
        pattern.push('$');
    }
    (pattern, to.replace("{n}", "${1}"))
}

fn names_map(reverse: bool) -> KeyMap {
    let rules: Vec<(String, String)> = DIFFUSERS_NAMES
        .iter()
        .map(|&(d, o)| {
            if reverse {
                name_rule(o, d)
            } else {
                name_rule(d, o)
            }
        })
        .collect();
    let rules: Vec<(&str, &str)> = rules
        .iter()
        .map(|(p, r)| (p.as_str(), r.as_str()))
        .collect();
    KeyMap::new(&rules)
}

/// Key map for diffusers `WanTransformer3DModel` checkpoints (`transformer/*.safetensors`).
pub fn diffusers_key_map() -> KeyMap {
    names_map(false).with_prefix_stripped(COMFY_PREFIX)
}

/// The reverse of [`diffusers_key_map`]: the PyTorch name of one of our parameters (norm
/// `weight`/`bias`, as [`crate::weights::pytorch_name`] gives it) -> its diffusers
/// `WanTransformer3DModel` key.
pub fn diffusers_export_key_map() -> KeyMap {
    names_map(true)
}

/// Key map for official Wan2.1 checkpoints (`Wan-AI/Wan2.1-T2V-*` `diffusion_pytorch_model*.safetensors`,
/// optionally with the ComfyUI `model.diffusion_model.` prefix).
pub fn original_key_map() -> KeyMap {
    KeyMap::new(&[
        (r"^(text|time)_embedding\.0\.", "${1}_embedding.linear_1."),
        (r"^(text|time)_embedding\.2\.", "${1}_embedding.linear_2."),
        (r"^time_projection\.1\.", "time_projection."),
        (r"^blocks\.(\d+)\.ffn\.0\.", "blocks.$1.ffn.fc1."),
        (r"^blocks\.(\d+)\.ffn\.2\.", "blocks.$1.ffn.fc2."),
        (r"^head\.head\.", "head.proj."),
    ])
    .with_prefix_stripped(COMFY_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_agree_on_samples() {
        let d = diffusers_key_map();
        let o = original_key_map();
        let pairs = [
            ("blocks.3.attn1.to_q.weight", "blocks.3.self_attn.q.weight"),
            ("blocks.3.attn1.to_out.0.bias", "blocks.3.self_attn.o.bias"),
            (
                "blocks.3.attn2.norm_k.weight",
                "blocks.3.cross_attn.norm_k.weight",
            ),
            ("blocks.3.norm2.bias", "blocks.3.norm3.bias"),
            ("blocks.3.ffn.net.0.proj.weight", "blocks.3.ffn.0.weight"),
            ("blocks.3.ffn.net.2.bias", "blocks.3.ffn.2.bias"),
            ("blocks.3.scale_shift_table", "blocks.3.modulation"),
            ("scale_shift_table", "head.modulation"),
            ("proj_out.weight", "head.head.weight"),
            (
                "condition_embedder.time_proj.bias",
                "time_projection.1.bias",
            ),
            (
                "condition_embedder.text_embedder.linear_2.weight",
                "text_embedding.2.weight",
            ),
            (
                "condition_embedder.time_embedder.linear_1.bias",
                "time_embedding.0.bias",
            ),
            (
                "patch_embedding.weight",
                "model.diffusion_model.patch_embedding.weight",
            ),
        ];
        for (dk, ok) in pairs {
            assert_eq!(d.map(dk), o.map(ok), "{dk} vs {ok}");
        }
    }

    /// Every key diffusers writes for the 1.3B model (the fixture's key list) maps to one of our
    /// names and back to itself.
    #[test]
    fn export_map_inverts_the_diffusers_map_on_every_key() {
        let list = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/dit/dit_diff_keys.txt"
        ))
        .unwrap();
        let (to_ours, to_diffusers) = (diffusers_key_map(), diffusers_export_key_map());
        let mut ours = std::collections::BTreeSet::new();
        for key in list.lines().filter_map(|l| l.split_whitespace().next()) {
            let mapped = to_ours.map(key);
            assert_eq!(to_diffusers.map(&mapped), key, "via {mapped}");
            assert!(ours.insert(mapped.clone()), "two keys map to {mapped}");
        }
        assert_eq!(ours.len(), 825);
        assert!(ours.contains("blocks.29.self_attn.norm_q.weight"));
        assert!(ours.contains("blocks.0.ffn.fc2.bias"));
        assert!(ours.contains("head.modulation"));
    }
}
