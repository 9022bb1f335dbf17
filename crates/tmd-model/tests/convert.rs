//! `convert-weights` on the tiny reference fixtures, in both source layouts, and the bad inputs it
//! must reject with an error that names the file, key, shape or dtype.
//!
//! Fixtures: the diffusers/transformers folders of `tests/fixtures/{dit,vae,t5}` (made by
//! `scripts/reference/{dit,vae,t5}_fixtures.py`) and their official-layout rewrite in
//! `tests/fixtures/official` (`scripts/reference/official_layout_fixtures.py`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use burn::module::Module;
use burn::prelude::*;
use burn::tensor::DType;
use burn_store::ModuleSnapshot;
use tempfile::TempDir;
use tmd_model::convert::{convert, ConvertOptions};
use tmd_model::dit::{WanConfig, WanModel};
use tmd_model::export::export_diffusers_transformer;
use tmd_model::model_dir::ModelDir;
use tmd_model::t5::{UMT5Config, UMT5Encoder};
use tmd_model::vae::{WanVae, WanVaeConfig};
use tmd_model::weights::WeightSource;
use tmd_model::ModelError;

type TB = NdArray<f32>;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// A fresh, empty scratch directory, removed when the returned guard drops (at the end of the
/// test).
fn tmp(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("tmd-convert-{name}-"))
        .tempdir()
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// A diffusers-layout folder assembled from the three component fixtures, in a scratch directory
/// removed when the returned guard drops.
fn diffusers_src(name: &str) -> TempDir {
    let f = fixtures();
    let src = tmp(name);
    let dir = src.path();
    copy_dir(&f.join("dit/transformer"), &dir.join("transformer"));
    copy_dir(&f.join("vae/vae"), &dir.join("vae"));
    copy_dir(&f.join("t5/text_encoder"), &dir.join("text_encoder"));
    copy_dir(&f.join("t5/tokenizer"), &dir.join("tokenizer"));
    src
}

/// Every parameter of `a` equals the one at the same path in `b`.
fn assert_same_params<M: Module<TB> + ModuleSnapshot<TB>>(what: &str, a: &M, b: &M) {
    let to_map = |m: &M| -> BTreeMap<String, Vec<f32>> {
        m.collect(None, None, false)
            .into_iter()
            .map(|s| {
                (
                    s.full_path(),
                    s.to_data().unwrap().convert::<f32>().to_vec().unwrap(),
                )
            })
            .collect()
    };
    let (ma, mb) = (to_map(a), to_map(b));
    assert_eq!(ma.len(), mb.len(), "{what}: parameter count");
    for (k, va) in &ma {
        let vb = mb.get(k).unwrap_or_else(|| panic!("{what}: {k} missing"));
        assert_eq!(va, vb, "{what}: parameter {k} differs");
    }
    println!("{what}: {} tensors identical", ma.len());
}

/// Runs the converted DiT on the fixture inputs and compares with diffusers' output.
fn dit_parity(dir: &ModelDir) {
    let device = Default::default();
    let dit = dir.load_transformer::<TB>(&device).unwrap();
    let io = WeightSource::open_files(&[fixtures().join("dit/io.safetensors")]).unwrap();
    let t = |k: &str| io.read(k).unwrap();
    let out = dit
        .forward(
            Tensor::from_data(t("x"), &device),
            Tensor::from_data(t("timestep"), &device),
            Tensor::from_data(t("context"), &device),
        )
        .unwrap();
    let reference = Tensor::<TB, 5>::from_data(t("out"), &device);
    let scale: f32 = reference.clone().abs().max().into_scalar();
    let diff: f32 = (out - reference).abs().max().into_scalar();
    println!("converted DiT vs diffusers: rel err {:.3e}", diff / scale);
    assert!(diff / scale <= 1e-4);
}

#[test]
fn diffusers_layout_converts_to_an_equal_model() {
    let device = Default::default();
    let src_dir = diffusers_src("diffusers-src");
    let src = src_dir.path();
    let out_dir = tmp("diffusers-out");
    let out = out_dir.path();
    let manifest = convert(src, out, &ConvertOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(
        manifest.transformer.weights,
        vec!["transformer/model.bpk".to_string()]
    );
    let dir = ModelDir::open(out).unwrap();
    dit_parity(&dir);

    let f = fixtures();
    let dit_ref = WanModel::<TB>::from_diffusers_dir(f.join("dit/transformer"), &device).unwrap();
    assert_same_params(
        "DiT",
        &dir.load_transformer::<TB>(&device).unwrap(),
        &dit_ref,
    );
    let vae_ref = WanVae::<TB>::from_diffusers_dir(f.join("vae/vae"), &device).unwrap();
    assert_same_params("VAE", &dir.load_vae::<TB>(&device).unwrap(), &vae_ref);
    let t5_ref = UMT5Encoder::<TB>::from_hf_dir(f.join("t5/text_encoder"), &device).unwrap();
    assert_same_params("umT5", &dir.load_umt5::<TB>(&device).unwrap(), &t5_ref);
}

/// The DiT exported as a diffusers folder is diffusers' own checkpoint again: the fixture
/// (written by diffusers' `save_pretrained`) is loaded, exported, and compared with diffusers'
/// file key by key and value by value, and with its config field by field; `convert-weights` of a
/// diffusers folder holding the export gives the same model, which computes diffusers' output.
#[test]
fn a_dit_exported_as_diffusers_is_diffusers_own_checkpoint() {
    let device = Default::default();
    let f = fixtures();
    let reference = f.join("dit/transformer");
    let dit = WanModel::<TB>::from_diffusers_dir(&reference, &device).unwrap();
    let config = WanConfig::from_diffusers_config(&reference.join("config.json")).unwrap();
    let src_dir = diffusers_src("export-src");
    let src = src_dir.path();
    let transformer = src.join("transformer");
    std::fs::remove_dir_all(&transformer).unwrap();
    let n = export_diffusers_transformer(&dit, &config, DType::F32, &transformer).unwrap();

    let ours = WeightSource::open_dir(&transformer).unwrap();
    let theirs = WeightSource::open_dir(&reference).unwrap();
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>()
    );
    assert_eq!(n, theirs.len());
    for key in theirs.keys() {
        assert_eq!(ours.shape(key), theirs.shape(key), "{key}");
        let values = |s: &WeightSource| s.read(key).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(values(&ours), values(&theirs), "{key}");
    }
    let json = |p: PathBuf| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    assert_eq!(
        json(transformer.join("config.json")),
        json(reference.join("config.json"))
    );

    let out_dir = tmp("export-converted");
    let out = out_dir.path();
    convert(src, out, &ConvertOptions::default(), &mut |_| {}).unwrap();
    let dir = ModelDir::open(out).unwrap();
    dit_parity(&dir);
    assert_same_params("DiT", &dir.load_transformer::<TB>(&device).unwrap(), &dit);
}

fn official_opts() -> ConvertOptions {
    let f = fixtures();
    ConvertOptions {
        vae_config: Some(
            WanVaeConfig::from_diffusers_config(f.join("vae/vae/config.json")).unwrap(),
        ),
        t5_config: Some(UMT5Config::from_hf_config(f.join("t5/text_encoder/config.json")).unwrap()),
        ..Default::default()
    }
}

#[test]
fn official_layout_converts_to_the_same_model() {
    let device = Default::default();
    let out_dir = tmp("official-out");
    let out = out_dir.path();
    convert(
        &fixtures().join("official"),
        out,
        &official_opts(),
        &mut |_| {},
    )
    .unwrap();
    let dir = ModelDir::open(out).unwrap();
    dit_parity(&dir);
    let f = fixtures();
    let vae_ref = WanVae::<TB>::from_diffusers_dir(f.join("vae/vae"), &device).unwrap();
    assert_same_params(
        "VAE (from .pth)",
        &dir.load_vae::<TB>(&device).unwrap(),
        &vae_ref,
    );
    // The official umT5 is stored in bf16: compare with the f32 reference rounded to bf16.
    let t5 = dir.load_umt5::<TB>(&device).unwrap();
    let t5_ref = UMT5Encoder::<TB>::from_hf_dir(f.join("t5/text_encoder"), &device).unwrap();
    let rounded = |m: &UMT5Encoder<TB>| -> Vec<f32> {
        m.collect(None, None, false)
            .into_iter()
            .flat_map(|s| {
                s.to_data()
                    .unwrap()
                    .convert::<f32>()
                    .to_vec::<f32>()
                    .unwrap()
            })
            .map(|v| half::bf16::from_f32(v).to_f32())
            .collect()
    };
    assert_eq!(rounded(&t5), rounded(&t5_ref), "umT5 from the bf16 .pth");
}

fn expect_err(src: &Path, opts: &ConvertOptions, needles: &[&str]) -> ModelError {
    let out_dir = tmp("bad-out");
    let out = out_dir.path();
    let err = convert(src, out, opts, &mut |_| {}).unwrap_err();
    let msg = err.to_string();
    println!("{msg}\n---");
    for n in needles {
        assert!(msg.contains(n), "error should mention '{n}':\n{msg}");
    }
    assert!(
        !out.join("manifest.json").exists(),
        "a failed conversion must not look complete"
    );
    err
}

/// Rewrites a safetensors file with `edit` applied to its (key -> (dtype, shape, bytes)) map.
fn edit_safetensors(
    path: &Path,
    edit: impl FnOnce(&mut BTreeMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)>),
) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut map: BTreeMap<_, _> = st
        .tensors()
        .into_iter()
        .map(|(k, v)| (k, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect();
    edit(&mut map);
    let views: Vec<_> = map
        .iter()
        .map(|(k, (d, s, b))| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

#[test]
fn bad_inputs_are_named() {
    let opts = ConvertOptions::default();
    let dit_file = |src: &Path| src.join("transformer/diffusion_pytorch_model.safetensors");

    // Not a checkpoint at all.
    let empty_dir = tmp("empty");
    let empty = empty_dir.path();
    expect_err(empty, &opts, &["not a Wan2.1 checkpoint folder"]);

    // A missing key.
    let src_dir = diffusers_src("missing");
    let src = src_dir.path();
    edit_safetensors(&dit_file(src), |m| {
        m.remove("proj_out.bias");
    });
    expect_err(src, &opts, &["missing keys", "head.proj.bias"]);

    // An unknown key.
    let src_dir = diffusers_src("unknown");
    let src = src_dir.path();
    edit_safetensors(&dit_file(src), |m| {
        m.insert(
            "blocks.0.attn1.to_x.weight".into(),
            (safetensors::Dtype::F32, vec![1], vec![0; 4]),
        );
    });
    expect_err(
        src,
        &opts,
        &["unexpected keys", "blocks.0.attn1.to_x.weight"],
    );

    // A shape mismatch (key, expected, found).
    let src_dir = diffusers_src("shape");
    let src = src_dir.path();
    edit_safetensors(&dit_file(src), |m| {
        m.insert(
            "proj_out.bias".into(),
            (safetensors::Dtype::F32, vec![3], vec![0; 12]),
        );
    });
    expect_err(src, &opts, &["proj_out.bias", "expected [20], found [3]"]);

    // An unsupported dtype.
    let src_dir = diffusers_src("dtype");
    let src = src_dir.path();
    edit_safetensors(&dit_file(src), |m| {
        let (_, s, b) = m.remove("proj_out.bias").unwrap();
        m.insert("proj_out.bias".into(), (safetensors::Dtype::I32, s, b));
    });
    expect_err(src, &opts, &["proj_out.bias", "unsupported dtype", "I32"]);

    // A truncated file.
    let src_dir = diffusers_src("truncated");
    let src = src_dir.path();
    let bytes = std::fs::read(dit_file(src)).unwrap();
    std::fs::write(dit_file(src), &bytes[..bytes.len() / 2]).unwrap();
    expect_err(
        src,
        &opts,
        &["diffusion_pytorch_model.safetensors", "corrupt"],
    );

    // A corrupt pickle in the official layout.
    let off_dir = tmp("official-corrupt");
    let off = off_dir.path();
    copy_dir(&fixtures().join("official"), off);
    std::fs::write(off.join("Wan2.1_VAE.pth"), b"not a pickle").unwrap();
    expect_err(off, &official_opts(), &["Wan2.1_VAE.pth"]);

    // A missing file in the official layout.
    let off_dir = tmp("official-missing");
    let off = off_dir.path();
    copy_dir(&fixtures().join("official"), off);
    std::fs::remove_file(off.join("models_t5_umt5-xxl-enc-bf16.pth")).unwrap();
    expect_err(off, &official_opts(), &["models_t5_umt5-xxl-enc-bf16.pth"]);

    // A config that does not describe the weights (wrong ffn_dim): every mismatched key is listed.
    let src_dir = diffusers_src("config");
    let src = src_dir.path();
    let cfg = src.join("transformer/config.json");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("\"ffn_dim\": 64", "\"ffn_dim\": 32");
    std::fs::write(&cfg, text).unwrap();
    expect_err(
        src,
        &opts,
        &[
            "blocks.0.ffn.net.0.proj.weight",
            "expected [32, 48], found [64, 48]",
        ],
    );
}

#[test]
fn an_unfinished_conversion_is_not_loaded() {
    let src_dir = diffusers_src("unfinished");
    let src = src_dir.path();
    let out_dir = tmp("unfinished-out");
    let out = out_dir.path();
    convert(src, out, &ConvertOptions::default(), &mut |_| {}).unwrap();
    std::fs::remove_file(out.join("manifest.json")).unwrap();
    let err = ModelDir::open(out).unwrap_err().to_string();
    assert!(err.contains("unfinished conversion"), "{err}");
}

/// Every file under `dir` with its bytes, for before/after comparisons.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(snapshot(&p));
        } else {
            out.insert(p.clone(), std::fs::read(&p).unwrap());
        }
    }
    out
}

/// Bad-input table row 2: `--out` equal to, inside, or containing `--src` is refused and the
/// source is left byte for byte as it was (the old code overwrote the diffusers `config.json`s).
#[test]
fn the_output_may_not_be_the_source_inside_it_or_around_it() {
    let src_dir = diffusers_src("same");
    let src = src_dir.path();
    let before = snapshot(src);
    let parent = src.parent().unwrap().to_path_buf();
    for (out, why) in [
        (src.to_path_buf(), "is the source directory"),
        (src.join("."), "is the source directory"),
        (src.join("converted"), "is inside the source directory"),
        (parent, "contains the source directory"),
    ] {
        let err = convert(src, &out, &ConvertOptions::default(), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains(why), "{}: {err}", out.display());
        assert_eq!(
            snapshot(src),
            before,
            "source changed for {}",
            out.display()
        );
    }
    assert!(!src.join("converted").exists());
}

/// Rewrites the JSON header of a safetensors file, keeping its data section.
fn edit_header(path: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let text = serde_json::to_vec(&header).unwrap();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
}

/// Bad-input table row 4: two keys pointing at the same bytes are refused, both named (the old
/// code loaded one tensor's values into the other).
#[test]
fn overlapping_tensors_are_refused_by_name() {
    let src_dir = diffusers_src("overlap");
    let src = src_dir.path();
    let file = src.join("transformer/diffusion_pytorch_model.safetensors");
    let (mut a, mut b) = (String::new(), String::new());
    edit_header(&file, |h| {
        let offsets = |v: &serde_json::Value| {
            let o = v["data_offsets"].as_array().unwrap();
            (o[0].as_u64().unwrap(), o[1].as_u64().unwrap())
        };
        let max_end = h
            .iter()
            .filter(|(k, _)| *k != "__metadata__")
            .map(|(_, v)| offsets(v).1)
            .max()
            .unwrap();
        let keys: Vec<String> = h.keys().filter(|k| *k != "__metadata__").cloned().collect();
        'found: for x in &keys {
            for y in &keys {
                let (vx, vy) = (&h[x], &h[y]);
                if x != y && vx["shape"] == vy["shape"] && offsets(vx).1 != max_end {
                    a = x.clone();
                    b = y.clone();
                    break 'found;
                }
            }
        }
        assert!(!a.is_empty(), "no two tensors of one shape in the fixture");
        let target = h[&b]["data_offsets"].clone();
        h.get_mut(&a).unwrap()["data_offsets"] = target;
    });
    let err = WeightSource::open_files(&[file]).unwrap_err().to_string();
    println!("{err}");
    assert!(
        err.contains("overlap") && err.contains(&a) && err.contains(&b),
        "{err}"
    );
}

/// Bad-input table row 5: a flipped byte in a weight file of a converted directory is found on
/// load (SHA-256 recorded in the manifest), naming the file; the old code loaded it silently.
#[test]
fn a_flipped_byte_in_a_converted_weight_file_is_found() {
    let src_dir = diffusers_src("flip-src");
    let src = src_dir.path();
    let out_dir = tmp("flip-out");
    let out = out_dir.path();
    convert(src, out, &ConvertOptions::default(), &mut |_| {}).unwrap();
    let file = out.join("transformer/model.bpk");
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x10;
    std::fs::write(&file, bytes).unwrap();
    let dir = ModelDir::open(out).unwrap();
    dir.load_vae::<TB>(&Default::default()).unwrap();
    let err = dir
        .load_transformer::<TB>(&Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("transformer/model.bpk") && err.contains("SHA-256"),
        "{err}"
    );
}

/// Bad-input table row 6: `num_heads` edited in a converted `transformer/config.json` (which the
/// weight shapes cannot reveal: every head count dividing `dim` fits them) is refused by the
/// config's checksum in the manifest.
#[test]
fn a_config_edited_after_conversion_is_refused() {
    let src_dir = diffusers_src("heads-src");
    let src = src_dir.path();
    let out_dir = tmp("heads-out");
    let out = out_dir.path();
    convert(src, out, &ConvertOptions::default(), &mut |_| {}).unwrap();
    let cfg = out.join("transformer/config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    let heads = json["num_heads"].as_u64().unwrap();
    let dim = json["dim"].as_u64().unwrap();
    let other = (1..=dim)
        .find(|h| *h != heads && dim.is_multiple_of(*h) && (dim / h).is_multiple_of(2))
        .unwrap();
    json["num_heads"] = other.into();
    std::fs::write(&cfg, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let err = ModelDir::open(out).unwrap_err().to_string();
    assert!(
        err.contains("transformer/config.json") && err.contains("SHA-256"),
        "{err}"
    );
}

/// Bad-input table row 12: a full disk while writing converted weights (the temporary file is
/// `/dev/full`, which fails every write with ENOSPC) says so, instead of "corrupt or unreadable
/// weight file"; no manifest is written.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_during_conversion_says_no_space_left() {
    let src_dir = diffusers_src("full-src");
    let src = src_dir.path();
    let out_dir = tmp("full-out");
    let out = out_dir.path();
    std::fs::create_dir_all(out.join("transformer")).unwrap();
    let tmp_name = format!("model.bpk.tmp-{}", std::process::id());
    std::os::unix::fs::symlink("/dev/full", out.join("transformer").join(&tmp_name)).unwrap();
    let err = convert(src, out, &ConvertOptions::default(), &mut |_| {})
        .unwrap_err()
        .to_string();
    println!("{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(!err.contains("corrupt"), "{err}");
    assert!(!out.join("manifest.json").exists());
    assert!(!out.join("transformer/model.bpk").exists());
    assert!(!out.join("transformer").join(&tmp_name).exists());
}

/// Bad-input table row 13: a conversion interrupted after the first config was written (no
/// weights yet) is "an unfinished conversion", not a diffusers folder missing
/// `num_attention_heads`.
#[test]
fn a_half_written_conversion_says_unfinished() {
    let src_dir = diffusers_src("half-src");
    let src = src_dir.path();
    let out_dir = tmp("half-out");
    let out = out_dir.path();
    convert(src, out, &ConvertOptions::default(), &mut |_| {}).unwrap();
    for f in ["manifest.json", "transformer/model.bpk"] {
        std::fs::remove_file(out.join(f)).unwrap();
    }
    for d in ["vae", "text_encoder"] {
        std::fs::remove_dir_all(out.join(d)).unwrap();
    }
    let err = ModelDir::open(out).unwrap_err().to_string();
    assert!(err.contains("unfinished conversion"), "{err}");
}
