//! Opening model directories: the bundled model loads, and damaged directories are refused with an
//! error that names the file and the problem.

use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use tmd_model::model_dir::ModelDir;

type TB = NdArray<f32>;

fn bundled() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/tiny-random")
}

fn copy_of_bundled(name: &str) -> PathBuf {
    let dst = std::env::temp_dir().join(format!("tmd-modeldir-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
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
    copy(&bundled(), &dst);
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
    let d = copy_of_bundled("manifest");
    std::fs::write(d.join("manifest.json"), "{ not json").unwrap();
    let e = open_err(&d);
    assert!(
        e.contains("manifest.json") && e.contains("not a valid manifest"),
        "{e}"
    );

    let d = copy_of_bundled("missing-weights");
    std::fs::remove_file(d.join("vae/model.bpk")).unwrap();
    let e = open_err(&d);
    assert!(e.contains("vae/model.bpk") && e.contains("missing"), "{e}");

    let d = copy_of_bundled("bad-config");
    let cfg = d.join("transformer/config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text.replacen("\"num_heads\": 2", "\"num_heads\": 0", 1);
    std::fs::write(&cfg, text).unwrap();
    let e = open_err(&d);
    assert!(e.contains("transformer/config.json"), "{e}");

    let d = copy_of_bundled("corrupt-bpk");
    std::fs::write(d.join("transformer/model.bpk"), b"garbage").unwrap();
    let e = open_err(&d);
    assert!(e.contains("transformer/model.bpk"), "{e}");

    let d = copy_of_bundled("swapped");
    std::fs::copy(
        bundled().join("vae/model.bpk"),
        d.join("transformer/model.bpk"),
    )
    .unwrap();
    let e = open_err(&d);
    assert!(e.contains("DiT") && e.contains("missing keys"), "{e}");
}
