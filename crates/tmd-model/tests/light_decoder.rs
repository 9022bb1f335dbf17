//! The light decoder in a model directory: `decoder-light/` round trip, and a missing or
//! mismatched folder refused with an error naming it and the latent channels the VAE expects.

use std::path::{Path, PathBuf};

use burn::backend::NdArray;
use burn::prelude::*;
use burn::tensor::Distribution;
use tempfile::TempDir;
use tmd_model::light_decoder::{LightDecoderConfig, LIGHT_DECODER_DIR};
use tmd_model::model_dir::{save_light_decoder, write_config, ModelDir};

type B = NdArray;

/// A copy of the bundled tiny random model (VAE: 4 latent channels, 4x8x8) under a temp dir.
fn tiny_copy(root: &Path) -> PathBuf {
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
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/tiny-random");
    let dst = root.join("model");
    copy(&src, &dst);
    dst
}

/// A fresh scratch directory, removed when the returned guard drops (at the end of the test).
fn temp(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("tmd-light-{name}-"))
        .tempdir()
        .unwrap()
}

#[test]
fn decoder_light_round_trip() {
    let root = temp("roundtrip");
    let dir = tiny_copy(root.path());
    let device = Default::default();
    let config = LightDecoderConfig::tiny();
    let decoder = config.init::<B>(&device);
    save_light_decoder(&dir, &decoder, &config).unwrap();
    let model = ModelDir::open(&dir).unwrap();
    assert!(model.has_light_decoder());
    assert_eq!(model.light_decoder_config().unwrap(), config);
    let loaded = model.load_light_decoder::<B>(&device).unwrap();
    let z = Tensor::<B, 5>::random([1, 4, 3, 2, 3], Distribution::Normal(0.0, 1.0), &device);
    let (a, b) = (decoder.forward(z.clone()), loaded.forward(z));
    assert_eq!(a.dims(), [1, 3, 9, 16, 24]);
    let diff: f32 = (a - b).abs().max().into_scalar();
    assert_eq!(diff, 0.0);
}

#[test]
fn decoder_light_weights_are_checked_against_their_sha256() {
    let root = temp("sha");
    let dir = tiny_copy(root.path());
    let device = Default::default();
    let config = LightDecoderConfig::tiny();
    save_light_decoder(&dir, &config.init::<B>(&device), &config).unwrap();
    let folder = dir.join(LIGHT_DECODER_DIR);
    let sums = tmd_model::integrity::read_sums(&folder.join("config.json")).unwrap();
    assert_eq!(sums.keys().collect::<Vec<_>>(), ["model.bpk"]);

    // One byte changed in the last tensor's data: keys and shapes still fit.
    let weights = folder.join("model.bpk");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&weights, &bytes).unwrap();
    let model = ModelDir::open(&dir).unwrap();
    let err = model
        .load_light_decoder::<B>(&device)
        .unwrap_err()
        .to_string();
    println!("{err}");
    assert!(
        err.contains("model.bpk") && err.contains("SHA-256"),
        "{err}"
    );

    // A decoder written before the map existed (a config without it) still loads.
    write_config(&config, &folder.join("config.json")).unwrap();
    model.load_light_decoder::<B>(&device).unwrap();
}

#[test]
fn missing_or_mismatched_decoder_light_is_named() {
    let root = temp("mismatch");
    let dir = tiny_copy(root.path());
    let device = Default::default();
    let model = ModelDir::open(&dir).unwrap();
    assert!(!model.has_light_decoder());
    let missing = model
        .load_light_decoder::<B>(&device)
        .unwrap_err()
        .to_string();
    println!("{missing}");
    assert!(missing.contains(LIGHT_DECODER_DIR), "{missing}");
    assert!(missing.contains("4 latent channels"), "{missing}");

    // A decoder for Wan's 16 latent channels in a directory whose VAE has 4.
    let wrong = LightDecoderConfig::world();
    save_light_decoder(&dir, &wrong.init::<B>(&device), &wrong).unwrap();
    let err = model
        .load_light_decoder::<B>(&device)
        .unwrap_err()
        .to_string();
    println!("{err}");
    assert!(err.contains(LIGHT_DECODER_DIR), "{err}");
    assert!(err.contains("takes 16 latent channels"), "{err}");
    assert!(err.contains("4 latent channels"), "{err}");

    // A config that fits the VAE but weights that do not fit the config.
    let fits = LightDecoderConfig::tiny().with_channels(vec![6, 6, 4]);
    write_config(&fits, &dir.join(LIGHT_DECODER_DIR).join("config.json")).unwrap();
    let err = model
        .load_light_decoder::<B>(&device)
        .unwrap_err()
        .to_string();
    println!("{err}");
    assert!(err.contains("light decoder"), "{err}");
    assert!(err.contains("conv_in"), "{err}");

    // A folder without config.json.
    std::fs::remove_file(dir.join(LIGHT_DECODER_DIR).join("config.json")).unwrap();
    let err = model
        .load_light_decoder::<B>(&device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("config.json is missing"), "{err}");
    assert!(err.contains("4 latent channels"), "{err}");
}
