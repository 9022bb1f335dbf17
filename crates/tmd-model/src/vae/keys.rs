//! Checkpoint key maps of the VAE: diffusers `AutoencoderKLWan` names and official
//! `Wan2.1_VAE.pth` names -> module paths of [`WanVae`](super::WanVae).
//!
//! Module paths mirror diffusers, except that the encoder's flat layer list is an enum (its
//! variant name, `Residual`, `Attention` or `Resample`, is part of the path), the decoder's
//! `upsamplers.0` is `upsampler`, and `resample.1` (index in a `Sequential`) is `resample`.

use super::config::WanVaeConfig;
use crate::weights::KeyMap;

/// Rules shared by both maps once keys are in diffusers form.
const DIFFUSERS_RULES: &[(&str, &str)] = &[
    (
        r"^(encoder\.down_blocks\.\d+)\.(norm1|conv1|norm2|conv2|conv_shortcut)\.",
        "${1}.Residual.${2}.",
    ),
    (
        r"^(encoder\.down_blocks\.\d+)\.(norm|to_qkv|proj)\.",
        "${1}.Attention.${2}.",
    ),
    (
        r"^(encoder\.down_blocks\.\d+)\.(resample|time_conv)\.",
        "${1}.Resample.${2}.",
    ),
    (
        r"^(decoder\.up_blocks\.\d+)\.upsamplers\.0\.",
        "${1}.upsampler.",
    ),
    (r"\.resample\.1\.", ".resample."),
];

/// Key map for diffusers `AutoencoderKLWan` checkpoints (`vae/diffusion_pytorch_model.safetensors`).
///
/// Independent of the configuration.
pub fn diffusers_key_map() -> KeyMap {
    KeyMap::new(DIFFUSERS_RULES)
}

/// Key map for the official `Wan2.1_VAE.pth` (original `WanVAE_` names) of the Wan2.1 layout
/// (4 stages, 2 residual blocks per encoder stage): see `keys/vae_map.txt`.
pub fn original_key_map() -> KeyMap {
    original_key_map_for(&WanVaeConfig::wan2_1())
}

/// Key map for original `WanVAE_` names of any configuration.
///
/// The original decoder is one flat list `decoder.upsamples.{n}` where diffusers nests
/// `decoder.up_blocks.{stage}.resnets.{j}` / `.upsamplers.0`, so the stage layout
/// (`num_res_blocks`, number of stages) enters the renaming.
pub fn original_key_map_for(config: &WanVaeConfig) -> KeyMap {
    let mut rules: Vec<(String, String)> = vec![
        (r"^conv1\.".into(), "quant_conv.".into()),
        (r"^conv2\.".into(), "post_quant_conv.".into()),
        (
            r"^(encoder|decoder)\.conv1\.".into(),
            "${1}.conv_in.".into(),
        ),
        (
            r"^(encoder|decoder)\.head\.0\.".into(),
            "${1}.norm_out.".into(),
        ),
        (
            r"^(encoder|decoder)\.head\.2\.".into(),
            "${1}.conv_out.".into(),
        ),
        (
            r"^(encoder|decoder)\.middle\.0\.".into(),
            "${1}.mid_block.resnets.0.".into(),
        ),
        (
            r"^(encoder|decoder)\.middle\.1\.".into(),
            "${1}.mid_block.attentions.0.".into(),
        ),
        (
            r"^(encoder|decoder)\.middle\.2\.".into(),
            "${1}.mid_block.resnets.1.".into(),
        ),
        (
            r"^encoder\.downsamples\.".into(),
            "encoder.down_blocks.".into(),
        ),
    ];
    // Decoder: flat index n -> (stage, position); each stage holds num_res_blocks + 1 residual
    // blocks and, except the last, one upsampler.
    let per_stage = config.num_res_blocks + 1;
    let stages = config.dim_mult.len();
    let mut n = 0;
    for stage in 0..stages {
        for j in 0..per_stage {
            rules.push((
                format!(r"^decoder\.upsamples\.{n}\."),
                format!("decoder.up_blocks.{stage}.resnets.{j}."),
            ));
            n += 1;
        }
        if stage + 1 != stages {
            rules.push((
                format!(r"^decoder\.upsamples\.{n}\."),
                format!("decoder.up_blocks.{stage}.upsamplers.0."),
            ));
            n += 1;
        }
    }
    // Residual block internals: `residual` is a Sequential (norm, SiLU, conv, norm, SiLU, dropout, conv).
    rules.extend(
        [
            (r"\.residual\.0\.", ".norm1."),
            (r"\.residual\.2\.", ".conv1."),
            (r"\.residual\.3\.", ".norm2."),
            (r"\.residual\.6\.", ".conv2."),
            (r"\.shortcut\.", ".conv_shortcut."),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string())),
    );
    rules.extend(
        DIFFUSERS_RULES
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string())),
    );
    let refs: Vec<(&str, &str)> = rules
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    KeyMap::new(&refs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::param_slots;
    use burn::backend::NdArray;
    use std::collections::HashMap;
    use std::path::PathBuf;

    type B = NdArray<f32>;

    /// The key lists are facts about the real checkpoints; read them from the fixtures (or the
    /// shared reference folder when present).
    fn key_file(name: &str) -> String {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let candidates = [
            root.join("tests/fixtures/vae").join(name),
            root.join("../shared/reference/keys").join(name),
        ];
        for c in &candidates {
            if let Ok(text) = std::fs::read_to_string(c) {
                return text;
            }
        }
        panic!("key list {name} not found in {candidates:?}");
    }

    /// `(original, diffusers, shape)` triples of `vae_map.txt`.
    fn pairs() -> Vec<(String, String, Vec<usize>)> {
        key_file("vae_map.txt")
            .lines()
            .filter(|l| l.contains("->"))
            .map(|l| {
                let (orig, rest) = l.split_once("->").unwrap();
                let rest = rest.trim();
                let (diff, shape) = rest.split_once(char::is_whitespace).unwrap();
                let shape: Vec<usize> = shape
                    .trim()
                    .trim_matches(|c| c == '(' || c == ')')
                    .split(',')
                    .filter_map(|s| s.trim().parse().ok())
                    .collect();
                (orig.trim().to_string(), diff.to_string(), shape)
            })
            .collect()
    }

    fn keys_of(name: &str) -> Vec<(String, Vec<usize>)> {
        key_file(name)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let (key, rest) = l.split_once(' ').unwrap();
                let inner = rest.split_once('(').unwrap().1.split_once(')').unwrap().0;
                let shape = inner
                    .split(',')
                    .filter_map(|s| s.trim().parse().ok())
                    .collect();
                (key.to_string(), shape)
            })
            .collect()
    }

    #[test]
    fn original_and_diffusers_maps_agree_on_every_key() {
        let pairs = pairs();
        assert_eq!(pairs.len(), 194);
        let orig = original_key_map();
        let diff = diffusers_key_map();
        for (o, d, _) in &pairs {
            assert_eq!(orig.map(o), diff.map(d), "original {o} vs diffusers {d}");
        }
        // Every key of the two full key lists is covered by the map file.
        let orig_keys: Vec<String> = keys_of("vae_orig_keys.txt")
            .into_iter()
            .map(|k| k.0)
            .collect();
        let diff_keys: Vec<String> = keys_of("vae_diff_keys.txt")
            .into_iter()
            .map(|k| k.0)
            .collect();
        assert_eq!(orig_keys.len(), 194);
        assert_eq!(diff_keys.len(), 194);
        for k in &orig_keys {
            assert!(pairs.iter().any(|p| &p.0 == k), "{k} not in vae_map.txt");
        }
        for k in &diff_keys {
            assert!(pairs.iter().any(|p| &p.1 == k), "{k} not in vae_map.txt");
        }
    }

    #[test]
    fn mapped_keys_are_exactly_the_wan21_module_parameters() {
        let device = Default::default();
        // Parameters are lazy: building the full-size module allocates nothing.
        let vae = WanVaeConfig::wan2_1().init::<B>(&device);
        let slots: HashMap<String, Vec<usize>> = param_slots::<B, _>(&vae)
            .into_iter()
            .map(|s| (s.path, s.shape))
            .collect();
        let diff = diffusers_key_map();
        let diff_keys = keys_of("vae_diff_keys.txt");
        assert_eq!(slots.len(), diff_keys.len());
        for (key, shape) in &diff_keys {
            let path = diff.map(key);
            assert_eq!(slots.get(&path), Some(shape), "{key} -> {path}");
        }
        let orig = original_key_map();
        for (key, shape) in keys_of("vae_orig_keys.txt") {
            let path = orig.map(&key);
            assert_eq!(slots.get(&path), Some(&shape), "{key} -> {path}");
        }
    }
}
