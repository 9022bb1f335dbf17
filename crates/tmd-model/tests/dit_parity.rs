//! Parity of the Wan2.1 DiT with diffusers `WanTransformer3DModel`.
//!
//! Fixtures: `python3 scripts/reference/dit_fixtures.py` (see its header).
//! The model is loaded through the public loader (`WanModel::from_diffusers_dir`), run on the
//! saved inputs in f32 on NdArray, and compared with the reference outputs:
//! rel err = max|a - b| / max|b| <= 1e-4.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use burn::prelude::*;
use tmd_model::dit::{diffusers_key_map, original_key_map, WanConfig, WanModel};
use tmd_model::weights::{param_slots, WeightSource};

type TB = NdArray<f32>;

const TOL: f32 = 1e-4;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/dit")
}

fn load<const D: usize>(
    io: &WeightSource,
    key: &str,
    device: &burn::tensor::Device<TB>,
) -> Tensor<TB, D> {
    let data = io
        .read(key)
        .unwrap_or_else(|e| panic!("fixture tensor {key}: {e}"));
    Tensor::from_data(data.convert::<f32>(), device)
}

/// (max abs diff, rel err = max abs diff / max |reference|).
fn compare<const D: usize>(
    name: &str,
    ours: Tensor<TB, D>,
    reference: Tensor<TB, D>,
) -> (f32, f32) {
    assert_eq!(ours.dims(), reference.dims(), "{name}: shape");
    let scale: f32 = reference.clone().abs().max().into_scalar();
    let diff: f32 = (ours - reference).abs().max().into_scalar();
    let rel = diff / scale;
    println!("{name:8}: max abs diff {diff:.3e}, max |ref| {scale:.3e}, rel err {rel:.3e}");
    (diff, rel)
}

#[test]
fn dit_matches_diffusers() {
    let device = Default::default();
    let dir = fixture_dir();
    let model = WanModel::<TB>::from_diffusers_dir(dir.join("transformer"), &device)
        .expect("load the fixture DiT");
    let io = WeightSource::open_files(&[dir.join("io.safetensors")]).expect("open io.safetensors");

    let x: Tensor<TB, 5> = load(&io, "x", &device);
    let t: Tensor<TB, 1> = load(&io, "timestep", &device);
    let ctx_full: Tensor<TB, 3> = load(&io, "context", &device);
    // The reference got 16 rows, the last 8 zero; we pass only the 8 real rows and let the model pad.
    let ctx = ctx_full.clone().narrow(1, 0, 8);

    // Intermediate values, to localise a mismatch.
    let inputs = model
        .embed(x.clone(), t.clone(), ctx.clone())
        .expect("embed");
    let mut worst = 0f32;
    for (name, ours, key) in [
        ("tokens", inputs.tokens.clone(), "tokens"),
        ("ctx_emb", inputs.context.clone(), "ctx_emb"),
    ] {
        worst = worst.max(compare(name, ours, load(&io, key, &device)).1);
    }
    worst = worst.max(compare("temb", inputs.e.clone(), load(&io, "temb", &device)).1);
    worst = worst.max(compare("e0", inputs.e0.clone(), load(&io, "e0", &device)).1);

    let (out, feats) = model
        .forward_with_features(x.clone(), t.clone(), ctx, &[0, 1])
        .expect("forward");
    worst = worst.max(compare("block0", feats[0].clone(), load(&io, "block0", &device)).1);
    worst = worst.max(compare("block1", feats[1].clone(), load(&io, "block1", &device)).1);
    let (abs, rel) = compare("out", out, load(&io, "out", &device));
    worst = worst.max(rel);
    assert!(abs < 1e-3, "output max abs diff {abs}");
    assert!(worst <= TOL, "worst rel err {worst} > {TOL}");

    // Passing the zero-padded context explicitly gives the same output.
    let out_full = model
        .forward(x, t, ctx_full)
        .expect("forward, full context");
    let (_, rel_full) = compare("out(pad)", out_full, load(&io, "out", &device));
    assert!(rel_full <= TOL);
}

/// Parses a key list (`name (shape) dtype` per line; non-parameter lines skipped).
fn read_key_list(name: &str) -> Vec<(String, Vec<usize>)> {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/keys")
        .join(name);
    let local = fixture_dir().join(name);
    let path = if local.exists() { local } else { shared };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("non-param"))
        .map(|line| {
            let (key, rest) = line.split_once(' ').expect("key and shape");
            let shape = rest
                .split_once('(')
                .and_then(|(_, r)| r.split_once(')'))
                .map(|(s, _)| s)
                .unwrap_or("");
            let shape = shape
                .split(',')
                .filter_map(|d| d.trim().parse().ok())
                .collect();
            (key.to_string(), shape)
        })
        .collect()
}

#[test]
fn key_maps_cover_the_released_checkpoints() {
    let orig = read_key_list("dit_orig_keys.txt");
    let diff = read_key_list("dit_diff_keys.txt");
    assert_eq!(orig.len(), 825);
    assert_eq!(diff.len(), 825);

    let (omap, dmap) = (original_key_map(), diffusers_key_map());
    let mapped = |list: &[(String, Vec<usize>)], map: &tmd_model::weights::KeyMap| {
        let mut out = BTreeMap::new();
        for (key, shape) in list {
            let prev = out.insert(map.map(key), (key.clone(), shape.clone()));
            assert!(prev.is_none(), "two keys map to {}", map.map(key));
        }
        out
    };
    let from_orig = mapped(&orig, &omap);
    let from_diff = mapped(&diff, &dmap);
    let orig_paths: Vec<_> = from_orig.keys().collect();
    let diff_paths: Vec<_> = from_diff.keys().collect();
    assert_eq!(orig_paths, diff_paths, "the two maps disagree");
    for (path, (okey, oshape)) in &from_orig {
        let (dkey, dshape) = &from_diff[path];
        assert_eq!(oshape, dshape, "{okey} vs {dkey}");
    }

    // Every parameter of the 1.3B model is provided, with the stored (PyTorch) shape.
    let device = Default::default();
    let model = WanConfig::t2v_1_3b().init::<TB>(&device);
    let mut slots = BTreeMap::new();
    for slot in param_slots::<TB, _>(&model) {
        let is_norm = slot.container.ends_with("Norm");
        let torch = match (is_norm, slot.path.rsplit_once('.')) {
            (true, Some((stem, "gamma"))) => format!("{stem}.weight"),
            (true, Some((stem, "beta"))) => format!("{stem}.bias"),
            _ => slot.path.clone(),
        };
        let mut shape = slot.shape.clone();
        if slot.container == "Struct:Linear" && shape.len() == 2 {
            shape.reverse();
        }
        slots.insert(torch, shape);
    }
    let slot_paths: Vec<_> = slots.keys().collect();
    assert_eq!(
        slot_paths, orig_paths,
        "module parameters vs checkpoint keys"
    );
    for (path, shape) in &slots {
        assert_eq!(shape, &from_orig[path].1, "{path}");
    }
}
