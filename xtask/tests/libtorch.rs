//! LibTorch (burn's tch backend, which `xtask --features tch` trains and checks with) against
//! NdArray on the same model directory and seed: a whole teacher sample (umT5, DiT with CFG, Wan
//! VAE decode) must come out the same.
//!
//! burn-tch 0.21 runs some operations in place when it believes a tensor's memory is unshared,
//! and its `swap_dims` / `permute` views are not tracked as shared: a model that keeps a tensor
//! alive while an in-place op runs on a transposed view of it silently computes something else,
//! in inference only (autodiff holds extra references). That broke the VAE's attention block once
//! (benches/NOTES.md, 2026-11-27). This test guards every inference path of the teacher.
//!
//! Needs LibTorch, so it only builds with the `tch` feature (CI has no LibTorch):
//! `LIBTORCH_USE_PYTORCH=1 cargo test -p xtask --features tch --test libtorch` (see the README's
//! LibTorch section for the environment).
#![cfg(feature = "tch")]

use burn::backend::libtorch::LibTorchDevice;
use burn::backend::{LibTorch, NdArray};
use tmd_sampler::{SampleOptions, Sampler};

#[test]
fn libtorch_samples_what_ndarray_samples() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/tiny-random");
    let options = SampleOptions {
        seed: 3,
        steps: Some(4),
        frames: Some(9),
        ..SampleOptions::default()
    };
    let prompt = "a red circle moves to the left";
    let reference = Sampler::<NdArray>::load(dir, &Default::default())
        .unwrap()
        .generate(prompt, &options)
        .unwrap();
    let torch = Sampler::<LibTorch>::load(dir, &LibTorchDevice::Cpu)
        .unwrap()
        .generate(prompt, &options)
        .unwrap();
    assert_eq!(torch.frames.len(), reference.frames.len());
    let (mut sum, mut max, mut n) = (0u64, 0u8, 0u64);
    for (a, b) in torch.frames.iter().zip(&reference.frames) {
        for (x, y) in a.iter().zip(b) {
            let d = x.abs_diff(*y);
            sum += u64::from(d);
            max = max.max(d);
            n += 1;
        }
    }
    let mean = sum as f64 / n as f64;
    // Rounding to 8 bits may flip a pixel by one level; anything more is a different computation.
    assert!(
        mean < 0.05 && max <= 2,
        "LibTorch and NdArray samples differ: mean {mean:.3} levels, max {max}"
    );
}
