//! Property tests of every parser that reads untrusted bytes: the safetensors header and offsets,
//! Burnpack, the `.pth` pickle reader, `tokenizer.json`, and the component configs. Each takes a
//! valid file, damages it at random (flipped bytes, truncation, inserted bytes) or builds one at
//! random, and checks that opening and reading it returns `Ok` or an error, never a panic.
//!
//! Case counts are bounded (CI runs them every time); failure persistence is off: an input that
//! once crashed is kept as an explicit regression case at the end of this file.
//!
//! Run: `cargo test -p tmd-model --test parsers_prop`

use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use proptest::prelude::*;
use tempfile::TempDir;
use tmd_model::dit::WanConfig;
use tmd_model::model_dir::read_config;
use tmd_model::t5::{TextEncoder, UMT5Config};
use tmd_model::vae::WanVaeConfig;
use tmd_model::weights::{safetensors_layout, WeightSource};

type TB = NdArray<f32>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fresh scratch directory, removed when the returned guard drops.
fn scratch(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("tmd-prop-{name}-"))
        .tempdir()
        .unwrap()
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A damage to a byte string: flip bytes, truncate, or insert bytes.
#[derive(Debug, Clone)]
enum Damage {
    Flip(Vec<(usize, u8)>),
    Truncate(usize),
    Insert(usize, Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        prop::collection::vec((any::<usize>(), 1u8..=255), 1..8).prop_map(Damage::Flip),
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, b)| Damage::Insert(at, b)),
    ]
}

/// `bytes` damaged; positions are taken modulo the length (biased to the first 4 KiB, where the
/// headers are, half of the time).
fn apply(bytes: &[u8], d: &Damage) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let n = bytes.len().max(1);
    let pos = |p: usize| {
        if p.is_multiple_of(2) {
            (p / 2) % n.min(4096)
        } else {
            (p / 2) % n
        }
    };
    match d {
        Damage::Flip(flips) => {
            for &(p, x) in flips {
                let i = pos(p);
                if let Some(b) = out.get_mut(i) {
                    *b ^= x;
                }
            }
        }
        Damage::Truncate(p) => {
            let i = pos(*p);
            out.truncate(i);
        }
        Damage::Insert(p, b) => {
            let i = pos(*p);
            out.splice(i..i, b.iter().copied());
        }
    }
    out
}

/// Opens a weight file and reads every tensor; errors are fine, panics are not.
fn open_and_read(path: &Path) {
    if let Ok(source) = WeightSource::open_files(&[path.to_path_buf()]) {
        let keys: Vec<String> = source.keys().map(str::to_string).collect();
        for k in keys {
            let _ = source.read(&k);
        }
    }
}

fn damaged_file_never_panics(dir: &str, name: &str, original: &[u8], d: &Damage) {
    let tmp = scratch(dir);
    let path = tmp.path().join(name);
    std::fs::write(&path, apply(original, d)).unwrap();
    open_and_read(&path);
}

fn small_safetensors() -> Vec<u8> {
    std::fs::read(root().join("tests/fixtures/t5/text_encoder/model.safetensors")).unwrap()
}

fn small_burnpack() -> Vec<u8> {
    std::fs::read(root().join("assets/tiny-random/text_encoder/model.bpk")).unwrap()
}

fn small_pth() -> Vec<u8> {
    std::fs::read(root().join("tests/fixtures/official/models_t5_umt5-xxl-enc-bf16.pth")).unwrap()
}

/// A safetensors header built from parts that may be anything: odd dtypes, huge or negative
/// numbers, offsets past the data, overflowing shapes.
fn header_json() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        0u64..64,
        Just(u64::MAX),
        Just(u64::MAX / 2),
        Just(1u64 << 62),
        any::<u64>(),
    ];
    let tensor = (
        prop::sample::select(vec!["F32", "F16", "BF16", "F64", "I8", "", "F32 "]),
        prop::collection::vec(number.clone(), 0..5),
        prop::collection::vec(number, 0..4),
    );
    prop::collection::btree_map("[a-c]{1,2}", tensor, 0..5).prop_map(|m| {
        let obj: serde_json::Map<String, serde_json::Value> = m
            .into_iter()
            .map(|(k, (dtype, shape, offsets))| {
                (
                    k,
                    serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": offsets}),
                )
            })
            .collect();
        serde_json::Value::Object(obj).to_string()
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn safetensors_headers_never_panic(header in header_json(), data in 0usize..4096) {
        let _ = safetensors_layout(Path::new("h.safetensors"), header.as_bytes(), data);
    }

    #[test]
    fn safetensors_header_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = safetensors_layout(Path::new("h.safetensors"), &bytes, 64);
    }

    /// A layout that is accepted has tensors inside the data, of the size their shape says,
    /// sharing no bytes.
    #[test]
    fn accepted_safetensors_layouts_are_consistent(header in header_json(), data in 0usize..256) {
        if let Ok(tensors) = safetensors_layout(Path::new("h.safetensors"), header.as_bytes(), data) {
            let mut spans: Vec<(usize, usize)> = Vec::new();
            for t in &tensors {
                prop_assert!(t.start <= t.end && t.end <= data);
                if t.end > t.start {
                    for &(s, e) in &spans {
                        prop_assert!(t.end <= s || e <= t.start, "overlap accepted");
                    }
                    spans.push((t.start, t.end));
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn damaged_safetensors_files_never_panic(d in damage()) {
        damaged_file_never_panics("st", "w.safetensors", &small_safetensors(), &d);
    }

    #[test]
    fn damaged_burnpack_files_never_panic(d in damage()) {
        damaged_file_never_panics("bpk", "w.bpk", &small_burnpack(), &d);
    }

    #[test]
    fn damaged_pth_files_never_panic(d in damage()) {
        damaged_file_never_panics("pth", "w.pth", &small_pth(), &d);
    }
}

fn tokenizer_bytes() -> Vec<u8> {
    std::fs::read(root().join("assets/world/tokenizer.json")).unwrap()
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn damaged_tokenizer_json_never_panics(d in damage(), prompt in "\\PC{0,40}") {
        let tmp = scratch("tok");
        let path = tmp.path().join("tokenizer.json");
        std::fs::write(&path, apply(&tokenizer_bytes(), &d)).unwrap();
        let device = Default::default();
        let encoder = UMT5Config::tiny().init::<TB>(&device);
        if let Ok(te) = TextEncoder::new(&path, encoder, 8, &device) {
            let _ = te.tokenize(&[prompt.as_str()]);
        }
    }
}

/// A component config with each number replaced by an arbitrary JSON value (huge, zero,
/// negative, fractional, NaN-like strings, booleans).
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        (0u64..8).prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
        "[a-z]{0,4}".prop_map(serde_json::Value::from),
    ]
}

fn mutated_config(original: &str, edits: &[(usize, serde_json::Value)]) -> String {
    let mut json: serde_json::Value = serde_json::from_str(original).unwrap();
    if let Some(obj) = json.as_object_mut() {
        let keys: Vec<String> = obj.keys().cloned().collect();
        for (i, v) in edits {
            let k = &keys[i % keys.len()];
            obj.insert(k.clone(), v.clone());
        }
    }
    json.to_string()
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn component_configs_never_panic(
        edits in prop::collection::vec((any::<usize>(), json_value()), 1..4),
        raw in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let tmp = scratch("cfg");
        let dir = tmp.path();
        let tiny = root().join("assets/tiny-random");
        for (component, check) in [
            ("transformer", 0),
            ("vae", 1),
            ("text_encoder", 2),
        ] {
            let text = std::fs::read_to_string(tiny.join(component).join("config.json")).unwrap();
            for bytes in [mutated_config(&text, &edits).into_bytes(), raw.clone()] {
                let path = dir.join(format!("{component}.json"));
                std::fs::write(&path, bytes).unwrap();
                match check {
                    0 => {
                        if let Ok(c) = read_config::<WanConfig>(&path) {
                            let _ = c.validate(&path);
                        }
                    }
                    1 => {
                        if let Ok(c) = read_config::<WanVaeConfig>(&path) {
                            let _ = c.validate();
                        }
                    }
                    _ => {
                        if let Ok(c) = read_config::<UMT5Config>(&path) {
                            let _ = c.validate();
                        }
                    }
                }
            }
        }
    }
}

/// Regression inputs found by these properties, kept as files under
/// `tests/fixtures/regressions/`: each must be an error, not a panic.
#[test]
fn regression_inputs_are_errors() {
    let dir = root().join("tests/fixtures/regressions");
    // A tokenizer.json cut inside "decoder": the tokenizers crate panicked on it.
    let device = Default::default();
    let encoder = UMT5Config::tiny().init::<TB>(&device);
    let path = dir.join("tokenizer-truncated-in-decoder.json");
    assert!(TextEncoder::new(&path, encoder, 8, &device).is_err());
}
