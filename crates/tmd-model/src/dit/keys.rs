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

/// Key map for diffusers `WanTransformer3DModel` checkpoints (`transformer/*.safetensors`).
pub fn diffusers_key_map() -> KeyMap {
    KeyMap::new(&[
        (r"^condition_embedder\.time_embedder\.", "time_embedding."),
        (r"^condition_embedder\.text_embedder\.", "text_embedding."),
        (r"^condition_embedder\.time_proj\.", "time_projection."),
        (
            r"^blocks\.(\d+)\.scale_shift_table$",
            "blocks.$1.modulation",
        ),
        (
            r"^blocks\.(\d+)\.attn1\.to_out\.0\.",
            "blocks.$1.self_attn.o.",
        ),
        (
            r"^blocks\.(\d+)\.attn2\.to_out\.0\.",
            "blocks.$1.cross_attn.o.",
        ),
        (r"^blocks\.(\d+)\.attn1\.(?:to_)?", "blocks.$1.self_attn."),
        (r"^blocks\.(\d+)\.attn2\.(?:to_)?", "blocks.$1.cross_attn."),
        (r"^blocks\.(\d+)\.norm2\.", "blocks.$1.norm3."),
        (r"^blocks\.(\d+)\.ffn\.net\.0\.proj\.", "blocks.$1.ffn.fc1."),
        (r"^blocks\.(\d+)\.ffn\.net\.2\.", "blocks.$1.ffn.fc2."),
        (r"^scale_shift_table$", "head.modulation"),
        (r"^proj_out\.", "head.proj."),
    ])
    .with_prefix_stripped(COMFY_PREFIX)
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
}
