//! `cargo xtask export` on the bundled tiny models, read back through the project's own loaders:
//!
//! - the teacher of `assets/tiny-random` as a diffusers folder loads (`from_diffusers_dir`) into
//!   the same DiT;
//! - a DMD2-v student (the tiny teacher moved by noise) as a diffusers folder loads into the
//!   student; as a LoRA against its teacher, full rank gives back every kept weight (relative
//!   error ~1e-6) and rank 3 leaves exactly the energy of the tail singular values;
//! - the TMD student of `assets/world` as safetensors loads back (`load_exported_student`) into the
//!   same student, and is refused as a diffusers folder with a message naming the way out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use burn::backend::NdArray;
use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::Distribution;
use tempfile::TempDir;
use tmd_flowhead::{
    load_exported_student, load_student, save_student, Student, StudentDefaults, StudentManifest,
    StudentMethod,
};
use tmd_model::dit::WanModel;
use tmd_model::model_dir::ModelDir;
use tmd_model::weights::WeightSource;
use values::params;

type B = NdArray<f32>;

const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

/// Parameter values by module path, without burn-store: every float parameter in visiting order.
mod values {
    use super::*;
    use burn::module::ModuleVisitor;

    pub fn params<M: Module<B>>(m: &M) -> BTreeMap<String, Vec<f32>> {
        struct V {
            path: Vec<String>,
            out: BTreeMap<String, Vec<f32>>,
        }
        impl ModuleVisitor<B> for V {
            fn enter_module(&mut self, name: &str, _: &str) {
                self.path.push(name.to_string());
            }
            fn exit_module(&mut self, _: &str, _: &str) {
                self.path.pop();
            }
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
                let v = p.val().into_data().to_vec::<f32>().unwrap();
                self.out.insert(self.path.join("."), v);
            }
        }
        let mut v = V {
            path: vec![],
            out: BTreeMap::new(),
        };
        m.visit(&mut v);
        v.out
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fresh scratch directory, removed when the returned guard drops (at the end of the test).
fn tmp(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("tmd-xtask-export-{name}-"))
        .tempdir()
        .unwrap()
}

/// Runs `xtask export ARGS`; returns (success, stdout + stderr).
fn export(args: &[&str]) -> (bool, String) {
    let out = Command::new(XTASK)
        .current_dir(root())
        .arg("export")
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn export_ok(args: &[&str]) -> String {
    let (ok, text) = export(args);
    assert!(ok, "xtask export {args:?} failed:\n{text}");
    text
}

fn assert_same<M: Module<B>>(what: &str, a: &M, b: &M) {
    let (pa, pb) = (params(a), params(b));
    assert_eq!(pa.len(), pb.len(), "{what}: parameter count");
    for (k, v) in &pa {
        assert_eq!(v, &pb[k], "{what}: {k} differs");
    }
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

#[test]
fn the_teacher_exported_as_diffusers_loads_back_equal() {
    let device = Default::default();
    let model = root().join("assets/tiny-random");
    let dir = tmp("teacher");
    let out = dir.path().join("transformer");
    let o = out.to_str().unwrap();
    export_ok(&[
        "--model",
        "assets/tiny-random",
        "--format",
        "diffusers",
        "--out",
        o,
    ]);
    let back = WanModel::<B>::from_diffusers_dir(&out, &device).unwrap();
    let teacher = ModelDir::open(&model)
        .unwrap()
        .load_transformer::<B>(&device)
        .unwrap();
    assert_same("teacher", &teacher, &back);
    // A directory without a student has nothing for --format safetensors or lora.
    let (ok, text) = export(&[
        "--model",
        "assets/tiny-random",
        "--format",
        "lora",
        "--out",
        o,
    ]);
    assert!(!ok && text.contains("holds no student"), "{text}");
}

/// The tiny teacher with every parameter moved by seeded noise: a DMD2-v student of it.
fn noisy(dit: WanModel<B>) -> WanModel<B> {
    struct Noise;
    impl ModuleMapper<B> for Noise {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, t, _) = p.consume();
            let n = Tensor::random(t.shape(), Distribution::Normal(0.0, 0.05), &t.device());
            Param::initialized(id, t + n)
        }
    }
    B::seed(&Default::default(), 3);
    dit.map(&mut Noise)
}

/// `[rows, cols]` row-major data of a tensor in a safetensors file.
fn read(source: &WeightSource, key: &str) -> (Vec<usize>, Vec<f32>) {
    let shape = source
        .shape(key)
        .unwrap_or_else(|| panic!("{key} missing"))
        .to_vec();
    (shape, source.read(key).unwrap().to_vec::<f32>().unwrap())
}

fn frob(v: impl Iterator<Item = f64>) -> f64 {
    v.map(|x| x * x).sum::<f64>().sqrt()
}

#[test]
fn a_dmd2v_student_exports_as_diffusers_and_as_a_lora() {
    let device = Default::default();
    let scratch = tmp("dmd2v");
    let dir = scratch.path();
    let model = dir.join("model");
    copy_dir(&root().join("assets/tiny-random"), &model);
    let teacher = ModelDir::open(&model)
        .unwrap()
        .load_transformer::<B>(&device)
        .unwrap();
    let student = noisy(teacher.clone());
    let manifest = StudentManifest {
        method: StudentMethod::Dmd2V,
        defaults: StudentDefaults::default(),
        source: "test".into(),
    };
    save_student(&model, &student, &manifest).unwrap();
    let m = model.to_str().unwrap();

    // Diffusers: the student, not the teacher; --teacher gives the teacher.
    let out = dir.join("student-diffusers");
    export_ok(&[
        "--model",
        m,
        "--format",
        "diffusers",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_same(
        "student",
        &student,
        &WanModel::<B>::from_diffusers_dir(&out, &device).unwrap(),
    );
    let out = dir.join("teacher-diffusers");
    export_ok(&[
        "--model",
        m,
        "--format",
        "diffusers",
        "--teacher",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_same(
        "teacher",
        &teacher,
        &WanModel::<B>::from_diffusers_dir(&out, &device).unwrap(),
    );

    // The deltas of the kept weights in PyTorch layout, by diffusers module name.
    let st = WeightSource::open_dir(dir.join("student-diffusers")).unwrap();
    let te = WeightSource::open_dir(dir.join("teacher-diffusers")).unwrap();
    let delta = |module: &str| -> (Vec<usize>, Vec<f64>) {
        let key = format!("{module}.weight");
        let ((shape, s), (_, t)) = (read(&st, &key), read(&te, &key));
        (
            shape,
            s.iter().zip(&t).map(|(a, b)| (*a - *b) as f64).collect(),
        )
    };
    // B A of a module from a LoRA file, [out, in] row-major.
    let product = |lora: &WeightSource, module: &str| -> Vec<f64> {
        let (bs, b) = read(lora, &format!("transformer.{module}.lora_B.weight"));
        let (as_, a) = read(lora, &format!("transformer.{module}.lora_A.weight"));
        let (o, r, i) = (bs[0], bs[1], as_[1]);
        assert_eq!(as_[0], r);
        let mut p = vec![0f64; o * i];
        for row in 0..o {
            for k in 0..r {
                let bk = b[row * r + k] as f64;
                for c in 0..i {
                    p[row * i + c] += bk * a[k * i + c] as f64;
                }
            }
        }
        p
    };
    let report = |path: &Path| -> serde_json::Value {
        let text = std::fs::read_to_string(path.with_extension("report.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    };

    // Full rank (the tiny DiT is 48 wide): every kept delta comes back.
    let lora = dir.join("full.safetensors");
    let text = export_ok(&[
        "--model",
        m,
        "--format",
        "lora",
        "--rank",
        "64",
        "--modules",
        "all",
        "--out",
        lora.to_str().unwrap(),
    ]);
    assert!(text.contains("blocks.1.ffn.net.2"), "{text}");
    let source = WeightSource::open_files(std::slice::from_ref(&lora)).unwrap();
    let r = report(&lora);
    let layers = r["layers"].as_array().unwrap();
    assert_eq!(source.len(), 2 * layers.len());
    assert_eq!(
        layers.len(),
        2 * 10 + 5 + 1,
        "every Linear module: 10 per block, 5 embedders, proj_out; got {}",
        layers.len()
    );
    for layer in layers {
        let module = layer["name"].as_str().unwrap();
        let (shape, d) = delta(module);
        let p = product(&source, module);
        let err = frob(d.iter().zip(&p).map(|(a, b)| a - b)) / frob(d.iter().copied());
        assert!(err < 1e-5, "{module}: full-rank error {err}");
        assert!(layer["rel_error"].as_f64().unwrap() < 1e-5, "{layer}");
        assert_eq!(
            layer["rank"].as_u64().unwrap() as usize,
            shape[0].min(shape[1])
        );
        // Every module has the file's common rank (zero-padded where narrower).
        assert_eq!(
            source
                .shape(&format!("transformer.{module}.lora_A.weight"))
                .unwrap()[0],
            64
        );
    }
    assert!(r["rel_error"].as_f64().unwrap() < 1e-5);

    // Rank 3 of the attention projections: the error is the tail singular values' energy.
    let lora = dir.join("r3.safetensors");
    export_ok(&[
        "--model",
        m,
        "--format",
        "lora",
        "--rank",
        "3",
        "--modules",
        "attn",
        "--out",
        lora.to_str().unwrap(),
    ]);
    let source = WeightSource::open_files(std::slice::from_ref(&lora)).unwrap();
    let r = report(&lora);
    let layers = r["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2 * 8, "2 blocks x 8 attention projections");
    assert!(source
        .keys()
        .all(|k| k.contains(".attn1.") || k.contains(".attn2.")));
    assert!(source
        .keys()
        .any(|k| k == "transformer.blocks.0.attn1.to_q.lora_A.weight"));
    assert!(source
        .keys()
        .any(|k| k == "transformer.blocks.1.attn2.to_out.0.lora_B.weight"));
    for layer in layers {
        let module = layer["name"].as_str().unwrap();
        let (shape, d) = delta(module);
        let p = product(&source, module);
        let err = frob(d.iter().zip(&p).map(|(a, b)| a - b)) / frob(d.iter().copied());
        let s = nalgebra::DMatrix::from_row_slice(shape[0], shape[1], &d).singular_values();
        let mut s: Vec<f64> = s.iter().copied().collect();
        s.sort_by(|a, b| b.total_cmp(a));
        let tail = frob(s[3..].iter().copied()) / frob(s.iter().copied());
        assert!(
            tail > 0.1,
            "{module}: a random delta keeps energy past rank 3 ({tail})"
        );
        assert!(
            (err - tail).abs() < 1e-5,
            "{module}: error {err} vs tail energy {tail}"
        );
        assert!(
            (layer["rel_error"].as_f64().unwrap() - err).abs() < 1e-5,
            "{layer}"
        );
    }
    let left: Vec<&str> = r["left_out"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert!(left.contains(&"blocks.0.ffn.net.2.weight"), "{left:?}");
    assert!(left.contains(&"blocks.0.attn1.to_q.bias"), "{left:?}");

    let (ok, text) = export(&[
        "--model",
        m,
        "--format",
        "lora",
        "--modules",
        "to_qq",
        "--out",
        lora.to_str().unwrap(),
    ]);
    assert!(
        !ok && text.contains("'to_qq' selects no Linear module"),
        "{text}"
    );
}

#[test]
fn the_bundled_tmd_student_exports_as_safetensors_and_loads_back_equal() {
    let device = Default::default();
    let dir = tmp("tmd");
    let out = dir.path().join("student");
    let o = out.to_str().unwrap();
    export_ok(&[
        "--model",
        "assets/world",
        "--format",
        "safetensors",
        "--out",
        o,
    ]);
    let (back, back_manifest, _) = load_exported_student::<B>(&out, &device).unwrap();
    let (student, manifest) = load_student::<B>(&root().join("assets/world"), &device).unwrap();
    assert_eq!(back_manifest, manifest);
    match (&student, &back) {
        (Student::Tmd(a), Student::Tmd(b)) => assert_same("TMD student", a, b),
        _ => panic!("the bundled student is a TMD student and must come back as one"),
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["format"], "tmd-student");
    assert_eq!(config["method"], "tmd");
    assert_eq!(
        config["transformer"]["_class_name"],
        "WanTransformer3DModel"
    );

    let (ok, text) = export(&[
        "--model",
        "assets/world",
        "--format",
        "diffusers",
        "--out",
        o,
    ]);
    assert!(!ok && text.contains("--format safetensors"), "{text}");
}
