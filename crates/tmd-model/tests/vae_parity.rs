//! Parity of the Wan VAE with diffusers `AutoencoderKLWan` on a tiny random model.
//!
//! Fixtures: `tests/fixtures/vae/` at the workspace root, made by
//! `python3 scripts/reference/vae_fixtures.py`. The model is loaded through the
//! public `WanVae::from_diffusers_dir`, exactly like a real `vae/` folder.

use std::path::PathBuf;

use burn::backend::NdArray;
use burn::prelude::*;
use tmd_model::vae::WanVae;
use tmd_model::weights::WeightSource;

type B = NdArray<f32>;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/vae")
}

fn load_io(device: &burn::tensor::Device<B>) -> impl Fn(&str) -> Tensor<B, 5> + '_ {
    let io =
        WeightSource::open_files(&[fixtures().join("io.safetensors")]).expect("io.safetensors");
    move |key: &str| Tensor::<B, 5>::from_data(io.read(key).expect(key), device)
}

/// Returns (max |a - b| / max |b|, max |a - b|).
fn errors(got: &Tensor<B, 5>, want: &Tensor<B, 5>) -> (f32, f32) {
    assert_eq!(got.dims(), want.dims(), "shape");
    let diff: f32 = (got.clone() - want.clone()).abs().max().into_scalar();
    let scale: f32 = want.clone().abs().max().into_scalar();
    (diff / scale, diff)
}

#[test]
fn encode_mean_matches_diffusers() {
    let device = Default::default();
    let vae = WanVae::<B>::from_diffusers_dir(fixtures().join("vae"), &device).expect("load VAE");
    let io = load_io(&device);
    let video = io("video");
    let want = io("latent_mean");
    let got = vae.encode(video).expect("encode");
    let (rel, abs) = errors(&got, &want);
    println!(
        "VAE encode latent_dist.mean {:?}: max rel err {rel:.3e}, max abs diff {abs:.3e}",
        got.dims()
    );
    assert!(rel <= 1e-4, "encode rel err {rel}");
    assert!(abs <= 1e-4, "encode abs diff {abs}");
}

#[test]
fn decode_matches_diffusers() {
    let device = Default::default();
    let vae = WanVae::<B>::from_diffusers_dir(fixtures().join("vae"), &device).expect("load VAE");
    let io = load_io(&device);
    let z = io("z");
    let want = io("decoded");
    let got = vae.decode(z).expect("decode");
    let (rel, abs) = errors(&got, &want);
    println!(
        "VAE decode sample {:?}: max rel err {rel:.3e}, max abs diff {abs:.3e}",
        got.dims()
    );
    assert!(rel <= 1e-4, "decode rel err {rel}");
    assert!(abs <= 1e-4, "decode abs diff {abs}");
}

#[test]
fn normalized_round_trip_matches_the_plain_path() {
    let device = Default::default();
    let vae = WanVae::<B>::from_diffusers_dir(fixtures().join("vae"), &device).expect("load VAE");
    let io = load_io(&device);
    let z = io("z");
    let plain = vae.decode(z.clone()).expect("decode");
    let normalized = vae.normalize_latents(z).expect("normalize");
    let via = vae
        .decode_normalized(normalized)
        .expect("decode_normalized");
    let (rel, _) = errors(&via, &plain);
    assert!(
        rel <= 1e-5,
        "decode_normalized differs from decode by {rel}"
    );
}

/// The clips of a batch are independent: encoding and decoding two clips together gives each
/// clip's own result (batch 1). The parity fixture has batch 1, so this pins the batch axis
/// through the chunked encoder, the feature cache, the resamplers and the mid-block attention.
#[test]
fn clips_of_a_batch_are_encoded_and_decoded_independently() {
    let device = Default::default();
    let vae = WanVae::<B>::from_diffusers_dir(fixtures().join("vae"), &device).expect("load VAE");
    let io = load_io(&device);
    let one = io("video");
    let [_, c, t, h, w] = one.dims();
    let other = Tensor::<B, 5>::random(
        [1, c, t, h, w],
        burn::tensor::Distribution::Uniform(-1.0, 1.0),
        &device,
    );
    let pair = Tensor::cat(vec![one.clone(), other.clone()], 0);
    let z_pair = vae.encode(pair).expect("encode pair");
    let out_pair = vae.decode(z_pair.clone()).expect("decode pair");
    for (i, clip) in [one, other].into_iter().enumerate() {
        let z = vae.encode(clip).expect("encode");
        let (rel, _) = errors(&z_pair.clone().narrow(0, i, 1), &z);
        assert!(rel <= 1e-5, "clip {i}: latent in a batch differs by {rel}");
        let out = vae.decode(z).expect("decode");
        let (rel, _) = errors(&out_pair.clone().narrow(0, i, 1), &out);
        assert!(rel <= 1e-5, "clip {i}: decoded in a batch differs by {rel}");
    }
}
