//! Parity of the umT5 encoder and the Wan2.1 text pipeline with transformers.
//!
//! Fixtures: `tests/fixtures/t5/`, written by `python3 scripts/reference/t5_fixtures.py`
//! (tiny tokenizer, tiny random `UMT5EncoderModel`, its outputs, Wan-style contexts).
//! Run with `cargo test -p tmd-model --test t5_parity -- --nocapture` to see the errors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use burn::prelude::*;
use safetensors::SafeTensors;
use tmd_model::t5::{clean_prompt, relative_position_bucket, TextEncoder, UMT5Config, UMT5Encoder};
use tmd_model::ModelError;

type B = NdArray<f32>;

const TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/t5")
}

/// A tensor of `io.safetensors`: shape and values (f32 as f32, i64 as f32 exactly for small ints).
struct Array {
    shape: Vec<usize>,
    f32s: Vec<f32>,
    i64s: Vec<i64>,
}

fn load_io() -> HashMap<String, Array> {
    let bytes = std::fs::read(fixtures().join("io.safetensors")).expect("read io.safetensors");
    let st = SafeTensors::deserialize(&bytes).expect("parse io.safetensors");
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let data = view.data();
        let (f32s, i64s) = match view.dtype() {
            safetensors::Dtype::F32 => (
                data.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
                vec![],
            ),
            safetensors::Dtype::I64 => (
                vec![],
                data.chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            other => panic!("{name}: unexpected dtype {other:?}"),
        };
        out.insert(
            name,
            Array {
                shape: view.shape().to_vec(),
                f32s,
                i64s,
            },
        );
    }
    out
}

fn int_tensor(a: &Array, device: &burn::backend::ndarray::NdArrayDevice) -> Tensor<B, 2, Int> {
    Tensor::from_data(TensorData::new(a.i64s.clone(), a.shape.clone()), device)
}

/// Max relative error `max|a-b| / max|b|` and max abs diff; asserts both are small.
fn compare(what: &str, got: &Tensor<B, 3>, expected: &Array) -> (f32, f32) {
    assert_eq!(got.dims().to_vec(), expected.shape, "{what}: shape");
    let got: Vec<f32> = got.to_data().to_vec().unwrap();
    let max_ref = expected.f32s.iter().fold(0f32, |m, v| m.max(v.abs()));
    let max_diff = got
        .iter()
        .zip(&expected.f32s)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    let rel = max_diff / max_ref.max(f32::MIN_POSITIVE);
    println!("{what}: max abs diff {max_diff:.3e}, max |ref| {max_ref:.3e}, rel err {rel:.3e}");
    assert!(
        rel <= TOLERANCE,
        "{what}: rel err {rel:.3e} > {TOLERANCE:e}"
    );
    assert!(
        max_diff <= TOLERANCE * max_ref.max(1.0),
        "{what}: max abs diff {max_diff:.3e}"
    );
    (rel, max_diff)
}

struct Prompt {
    raw: String,
    cleaned: String,
    ids: Vec<i64>,
    mask: Vec<i64>,
}

struct PromptFixture {
    text_len: usize,
    prompts: Vec<Prompt>,
    clean_cases: Vec<(String, String)>,
}

fn load_prompts() -> PromptFixture {
    let text = std::fs::read_to_string(fixtures().join("prompts.json")).expect("read prompts.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("parse prompts.json");
    let ints = |v: &serde_json::Value| -> Vec<i64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect()
    };
    let string = |v: &serde_json::Value| v.as_str().unwrap().to_string();
    PromptFixture {
        text_len: json["text_len"].as_u64().unwrap() as usize,
        prompts: json["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| Prompt {
                raw: string(&p["raw"]),
                cleaned: string(&p["cleaned"]),
                ids: ints(&p["ids"]),
                mask: ints(&p["mask"]),
            })
            .collect(),
        clean_cases: json["clean_cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (string(&c["raw"]), string(&c["cleaned"])))
            .collect(),
    }
}

fn pipeline(text_len: usize) -> TextEncoder<B> {
    let device = Default::default();
    TextEncoder::<B>::from_dirs(
        fixtures().join("text_encoder"),
        fixtures().join("tokenizer/tokenizer.json"),
        &device,
    )
    .expect("load text pipeline")
    .with_text_len(text_len)
    .expect("set text_len")
}

#[test]
fn cleaning_matches_wan() {
    let fx = load_prompts();
    for p in &fx.prompts {
        assert_eq!(clean_prompt(&p.raw), p.cleaned, "prompt {:?}", p.raw);
    }
    for (raw, cleaned) in &fx.clean_cases {
        assert_eq!(&clean_prompt(raw), cleaned, "clean case {raw:?}");
    }
    println!(
        "cleaning: {} prompts + {} cases identical",
        fx.prompts.len(),
        fx.clean_cases.len()
    );
}

#[test]
fn tokenizer_matches_transformers() {
    let fx = load_prompts();
    let text = pipeline(fx.text_len);
    let raw: Vec<&str> = fx.prompts.iter().map(|p| p.raw.as_str()).collect();
    let tokens = text.tokenize(&raw).unwrap();
    let io = load_io();
    assert_eq!(tokens.ids, io["ids"].i64s, "ids vs io.safetensors");
    assert_eq!(tokens.mask, io["mask"].i64s, "mask vs io.safetensors");
    for (i, p) in fx.prompts.iter().enumerate() {
        let row = i * fx.text_len..(i + 1) * fx.text_len;
        assert_eq!(tokens.ids[row.clone()], p.ids[..], "ids of {:?}", p.cleaned);
        assert_eq!(tokens.mask[row], p.mask[..], "mask of {:?}", p.cleaned);
        assert_eq!(tokens.lengths[i] as i64, p.mask.iter().sum::<i64>());
    }
    // The long prompt is truncated and still ends with </s> (id 1).
    let long = fx
        .prompts
        .iter()
        .position(|p| p.mask.iter().all(|&m| m == 1))
        .unwrap();
    assert_eq!(tokens.ids[(long + 1) * fx.text_len - 1], 1);
    println!(
        "tokenizer: {} prompts, ids and masks identical",
        fx.prompts.len()
    );
}

#[test]
fn buckets_match_transformers() {
    let io = load_io();
    let config = UMT5Config::tiny();
    let mut mismatches = 0;
    for (rel, expected) in io["bucket_rel"].i64s.iter().zip(&io["bucket_val"].i64s) {
        let got = relative_position_bucket(
            *rel,
            config.relative_attention_num_buckets,
            config.relative_attention_max_distance,
        ) as i64;
        if got != *expected {
            mismatches += 1;
            eprintln!("rel {rel}: got {got}, transformers {expected}");
        }
    }
    println!(
        "buckets: {} relative positions, {mismatches} mismatches",
        io["bucket_rel"].i64s.len()
    );
    assert_eq!(mismatches, 0);
}

#[test]
fn encoder_matches_transformers() {
    let device = Default::default();
    let io = load_io();
    let encoder = UMT5Encoder::<B>::from_hf_dir(fixtures().join("text_encoder"), &device).unwrap();
    let out = encoder.forward(
        int_tensor(&io["ids"], &device),
        int_tensor(&io["mask"], &device),
    );
    compare("encoder hidden [5,24,32]", &out, &io["hidden"]);
    let out = encoder.forward(
        int_tensor(&io["ids_long"], &device),
        int_tensor(&io["mask_long"], &device),
    );
    compare("encoder hidden long [2,160,32]", &out, &io["hidden_long"]);
}

#[test]
fn pipeline_matches_wan() {
    let fx = load_prompts();
    let io = load_io();
    let text = pipeline(fx.text_len);
    let raw: Vec<&str> = fx.prompts.iter().map(|p| p.raw.as_str()).collect();
    let context = text.encode(&raw).unwrap();
    compare("pipeline context [5,24,32]", &context, &io["context"]);
    // Rows past each prompt's length are exactly zero.
    let values: Vec<f32> = context.to_data().to_vec().unwrap();
    let d = 32;
    for (i, p) in fx.prompts.iter().enumerate() {
        let len = p.mask.iter().sum::<i64>() as usize;
        let start = (i * fx.text_len + len) * d;
        let end = (i + 1) * fx.text_len * d;
        assert!(
            values[start..end].iter().all(|&v| v == 0.0),
            "padding rows of prompt {i}"
        );
    }
    let empty = text.encode_allow_empty(&[""]).unwrap();
    compare(
        "pipeline context of \"\" [1,24,32]",
        &empty,
        &io["context_empty"],
    );
}

#[test]
fn empty_prompt_is_a_typed_error() {
    let text = pipeline(24);
    for prompt in ["", "   \n\t ", "&nbsp;&#32;"] {
        match text.encode(&["a cat", prompt]) {
            Err(ModelError::EmptyPrompt) => {}
            other => panic!(
                "{prompt:?}: expected EmptyPrompt, got {:?}",
                other.map(|t| t.dims())
            ),
        }
        assert!(matches!(
            text.encode_cached(prompt),
            Err(ModelError::EmptyPrompt)
        ));
    }
    assert_eq!(
        text.encoder_calls(),
        0,
        "no encoder run for rejected prompts"
    );
}

#[test]
fn cache_hits_skip_the_encoder() {
    let text = pipeline(24);
    let first = text.encode_cached("A cat sitting on a red chair.").unwrap();
    assert_eq!(text.encoder_calls(), 1);
    // Same cleaned text (extra white space, an entity): a hit, no encoder run, same numbers.
    let again = text
        .encode_cached("  A cat sitting&#32;on a   red chair. ")
        .unwrap();
    assert_eq!(
        text.encoder_calls(),
        1,
        "cache hit must not run the encoder"
    );
    assert_eq!(text.cache().len(), 1);
    let a: Vec<f32> = first.to_data().to_vec().unwrap();
    let b: Vec<f32> = again.to_data().to_vec().unwrap();
    assert_eq!(a, b);
    // A cached prompt equals the uncached pipeline output.
    let direct: Vec<f32> = text
        .encode(&["A cat sitting on a red chair."])
        .unwrap()
        .to_data()
        .to_vec()
        .unwrap();
    assert_eq!(text.encoder_calls(), 2);
    let max_diff = a
        .iter()
        .zip(&direct)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(max_diff <= 1e-6, "cached vs direct {max_diff:e}");
    // A batch with one new prompt runs the encoder once, on the new prompt only.
    let batch = text
        .encode_cached_batch(
            &[
                "a robot cooking in a kitchen",
                "A cat sitting on a red chair.",
            ],
            false,
        )
        .unwrap();
    assert_eq!(text.encoder_calls(), 3);
    assert_eq!(batch.dims(), [2, 24, 32]);
    let row1: Vec<f32> = batch.narrow(0, 1, 1).to_data().to_vec().unwrap();
    assert_eq!(row1, a);
    text.encode_cached("a robot cooking in a kitchen").unwrap();
    assert_eq!(text.encoder_calls(), 3);
    assert_eq!(text.cache().len(), 2);
    println!(
        "cache: {} encoder runs for 6 requests",
        text.encoder_calls()
    );
}

/// Rewrites the fixture checkpoint with the embedding under other names.
fn rewrite_checkpoint(dir: &Path, embed_keys: &[&str], drop: &[&str]) {
    let src = fixtures().join("text_encoder");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut views: Vec<(String, safetensors::tensor::TensorView)> = Vec::new();
    for (name, view) in st.tensors() {
        if drop.contains(&name.as_str()) {
            continue;
        }
        if name == "shared.weight" {
            for key in embed_keys {
                views.push((key.to_string(), view.clone()));
            }
        } else {
            views.push((name, view));
        }
    }
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
}

#[test]
fn embedding_may_be_shared_embed_tokens_or_both() {
    let device = Default::default();
    let io = load_io();
    let ids = int_tensor(&io["ids"], &device);
    let mask = int_tensor(&io["mask"], &device);
    let tmp = tempfile::Builder::new()
        .prefix("tmd-t5-parity-")
        .tempdir()
        .unwrap();
    for (name, keys) in [
        ("embed_tokens", vec!["encoder.embed_tokens.weight"]),
        ("both", vec!["shared.weight", "encoder.embed_tokens.weight"]),
    ] {
        let dir = tmp.path().join(name);
        rewrite_checkpoint(&dir, &keys, &[]);
        let encoder = UMT5Encoder::<B>::from_hf_dir(&dir, &device).unwrap();
        compare(
            &format!("encoder hidden, embedding as {name}"),
            &encoder.forward(ids.clone(), mask.clone()),
            &io["hidden"],
        );
    }
    // A missing tensor is a typed error naming it.
    let dir = tmp.path().join("missing");
    rewrite_checkpoint(
        &dir,
        &["shared.weight"],
        &["encoder.final_layer_norm.weight"],
    );
    match UMT5Encoder::<B>::from_hf_dir(&dir, &device) {
        Err(err @ ModelError::WeightMismatch { .. }) => {
            assert!(err.to_string().contains("norm.weight"), "{err}");
        }
        other => panic!("expected WeightMismatch, got {:?}", other.map(|_| ())),
    }
}
