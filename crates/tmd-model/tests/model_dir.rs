//! Opening model directories: the bundled model loads, and damaged directories are refused with an
//! error that names the file and the problem.

use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use tempfile::TempDir;
use tmd_model::model_dir::ModelDir;

type TB = NdArray<f32>;

fn bundled() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/tiny-random")
}

/// A copy of the bundled model in a fresh scratch directory, removed when the returned guard
/// drops (at the end of the test).
fn copy_of_bundled(name: &str) -> TempDir {
    let dst = tempfile::Builder::new()
        .prefix(&format!("tmd-modeldir-{name}-"))
        .tempdir()
        .unwrap();
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let p = e.unwrap().path();
            let d = to.join(p.file_name().unwrap());
            if p.is_dir() {
                copy(&p, &d)
            } else {
                std::fs::copy(&p, &d).unwrap();
            }
        }
    }
    copy(&bundled(), dst.path());
    dst
}

fn open_err(dir: &Path) -> String {
    let device = Default::default();
    let result = ModelDir::open(dir).and_then(|d| {
        d.check_consistency()?;
        d.load_transformer::<TB>(&device)?;
        d.load_vae::<TB>(&device)?;
        d.load_text_encoder::<TB>(&device).map(|_| ())
    });
    let msg = result.expect_err("the directory is damaged").to_string();
    println!("{msg}");
    msg
}

#[test]
fn bundled_model_loads() {
    let device = Default::default();
    let dir = ModelDir::open(bundled()).unwrap();
    dir.check_consistency().unwrap();
    dir.load_transformer::<TB>(&device).unwrap();
    dir.load_vae::<TB>(&device).unwrap();
    dir.load_text_encoder::<TB>(&device).unwrap();
}

#[test]
fn damaged_directories_are_named() {
    let tmp = copy_of_bundled("manifest");
    let d = tmp.path();
    std::fs::write(d.join("manifest.json"), "{ not json").unwrap();
    let e = open_err(d);
    assert!(
        e.contains("manifest.json") && e.contains("not a valid manifest"),
        "{e}"
    );

    let tmp = copy_of_bundled("missing-weights");
    let d = tmp.path();
    std::fs::remove_file(d.join("vae/model.bpk")).unwrap();
    let e = open_err(d);
    assert!(e.contains("vae/model.bpk") && e.contains("missing"), "{e}");

    let tmp = copy_of_bundled("bad-config");
    let d = tmp.path();
    let cfg = d.join("transformer/config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text.replacen("\"num_heads\": 2", "\"num_heads\": 0", 1);
    std::fs::write(&cfg, text).unwrap();
    let e = open_err(d);
    assert!(e.contains("transformer/config.json"), "{e}");

    let tmp = copy_of_bundled("corrupt-bpk");
    let d = tmp.path();
    std::fs::write(d.join("transformer/model.bpk"), b"garbage").unwrap();
    let e = open_err(d);
    assert!(e.contains("transformer/model.bpk"), "{e}");

    let tmp = copy_of_bundled("swapped");
    let d = tmp.path();
    std::fs::copy(
        bundled().join("vae/model.bpk"),
        d.join("transformer/model.bpk"),
    )
    .unwrap();
    let e = open_err(d);
    // Caught by the manifest's checksum before the keys are compared.
    assert!(
        e.contains("transformer/model.bpk") && e.contains("SHA-256"),
        "{e}"
    );
}

/// `convert-weights --dtype f16` on a model directory: every weight file, a `student/` subfolder
/// included, is re-stored as f16 (about half the bytes), other files are copied, the manifest says
/// f16, and the loaded weights are the f32 ones rounded to f16 — not the originals, not garbage.
#[test]
fn a_model_directory_recasts_to_f16() {
    use burn::tensor::DType;
    use tmd_model::convert::recast_model_dir;

    let src_dir = copy_of_bundled("recast-src");
    let src = src_dir.path();
    // A subfolder with its own weights, as a distilled student directory has.
    std::fs::create_dir_all(src.join("student")).unwrap();
    std::fs::copy(
        src.join("transformer/model.bpk"),
        src.join("student/model.bpk"),
    )
    .unwrap();
    std::fs::write(src.join("student/config.json"), "{\"method\": \"x\"}").unwrap();
    // Beside the source, not inside it, and not there yet.
    let out_dir = tempfile::Builder::new()
        .prefix("tmd-modeldir-recast-out-")
        .tempdir()
        .unwrap();
    let out = out_dir.path().join("out");

    let manifest = recast_model_dir(src, &out, DType::F16).unwrap();
    assert_eq!(manifest.dtype, "f16");
    let size = |p: PathBuf| std::fs::metadata(p).unwrap().len() as f64;
    for f in [
        "transformer/model.bpk",
        "vae/model.bpk",
        "student/model.bpk",
    ] {
        let ratio = size(out.join(f)) / size(src.join(f));
        assert!((0.45..0.6).contains(&ratio), "{f}: {ratio}");
    }
    assert_eq!(
        std::fs::read(out.join("student/config.json")).unwrap(),
        std::fs::read(src.join("student/config.json")).unwrap()
    );

    let device = Default::default();
    let weights = |dir: &Path| -> Vec<f32> {
        let m = ModelDir::open(dir).unwrap();
        m.check_consistency().unwrap();
        m.load_transformer::<TB>(&device)
            .unwrap()
            .time_projection
            .weight
            .val()
            .into_data()
            .to_vec()
            .unwrap()
    };
    let (a, b) = (weights(src), weights(&out));
    assert_eq!(a.len(), b.len());
    let mut changed = 0;
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(half::f16::from_f32(*x).to_f32(), *y);
        changed += usize::from(x != y);
    }
    assert!(
        changed > a.len() / 2,
        "{changed} of {} values rounded",
        a.len()
    );

    for inside in [src.to_path_buf(), src.join("f16")] {
        let e = recast_model_dir(src, &inside, DType::F16)
            .unwrap_err()
            .to_string();
        assert!(e.contains("source directory"), "{e}");
    }
    let e = recast_model_dir(&src.join("vae"), &out, DType::F16)
        .unwrap_err()
        .to_string();
    assert!(e.contains("manifest.json"), "{e}");
}
