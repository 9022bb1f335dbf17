//! Times the light decoder's forward pass on the CPU (NdArray), random weights, and optionally
//! the full VAE decode of a model directory at the same latent size.
//!
//! ```text
//! cargo run --release -p tmd-model --example light_decoder_speed -- \
//!     [--preset world] [--channels 48,32,16] [--latent-blocks 2] [--frame-blocks 1] \
//!     [--latent 16,5,16,16] [--reps 5] [--vae assets/world] [--train 4]
//! ```
//! `--train N` also times one training step's forward and backward pass at batch N (autodiff).
//! `TMD_CONV=native` runs burn's own convolution instead of the per-tap products.

use std::time::Instant;

use burn::backend::NdArray;
use burn::prelude::*;
use burn::tensor::Distribution;
use tmd_model::light_decoder::LightDecoderConfig;
use tmd_model::model_dir::ModelDir;

type B = NdArray;

fn list(v: &str) -> Vec<usize> {
    v.split(',')
        .map(|x| x.trim().parse().expect("a number"))
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .map(|i| args[i + 1].clone())
    };
    let mut config =
        LightDecoderConfig::preset(&get("--preset").unwrap_or("world".into())).expect("preset");
    if let Some(c) = get("--channels") {
        config.channels = list(&c);
    }
    if let Some(n) = get("--latent-blocks") {
        config.latent_blocks = n.parse().expect("a number");
    }
    if let Some(n) = get("--frame-blocks") {
        config.frame_blocks = n.parse().expect("a number");
    }
    let latent = list(&get("--latent").unwrap_or("16,5,16,16".into()));
    let reps: usize = get("--reps").map_or(5, |r| r.parse().expect("a number"));
    let dev = Default::default();
    let decoder = config.init::<B>(&dev);
    let z = Tensor::<B, 5>::random(
        [1, latent[0], latent[1], latent[2], latent[3]],
        Distribution::Normal(0.0, 1.0),
        &dev,
    );
    let params = burn::module::Module::num_params(&decoder);
    let mut times = Vec::new();
    let mut dims = [0; 5];
    for _ in 0..reps + 1 {
        let t0 = Instant::now();
        let y = decoder.forward(z.clone());
        dims = y.dims();
        let _ = y.into_data();
        times.push(t0.elapsed().as_secs_f64());
    }
    times.remove(0);
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "light decoder {:?} (latent {} / frame {} blocks, {params} parameters, conv {}): {:?} -> {:?}, median {:.4} s",
        config.channels,
        config.latent_blocks,
        config.frame_blocks,
        if tmd_model::conv::native_requested() { "native" } else { "per-tap" },
        z.dims(),
        dims,
        times[times.len() / 2]
    );
    if let Some(n) = get("--train") {
        type AB = burn::backend::Autodiff<NdArray>;
        let n: usize = n.parse().expect("a number");
        let decoder = config.init::<AB>(&dev);
        let z = Tensor::<AB, 5>::random(
            [n, latent[0], latent[1], latent[2], latent[3]],
            Distribution::Normal(0.0, 1.0),
            &dev,
        );
        let mut times = Vec::new();
        for _ in 0..3 {
            let t0 = Instant::now();
            let loss = decoder.forward_unclamped(z.clone()).powi_scalar(2).mean();
            let _grads = loss.backward();
            times.push(t0.elapsed().as_secs_f64());
        }
        println!(
            "training step (forward + backward), batch {n}, conv {}: {:?} s",
            if tmd_model::conv::native_requested() {
                "native"
            } else {
                "unfold"
            },
            times
        );
    }
    if let Some(dir) = get("--vae") {
        let vae = ModelDir::open(&dir).unwrap().load_vae::<B>(&dev).unwrap();
        let mut times = Vec::new();
        for _ in 0..reps.min(3) + 1 {
            let t0 = Instant::now();
            let _ = vae.decode_normalized(z.clone()).unwrap().into_data();
            times.push(t0.elapsed().as_secs_f64());
        }
        times.remove(0);
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "full VAE decode of {dir}: median {:.4} s",
            times[times.len() / 2]
        );
    }
}
