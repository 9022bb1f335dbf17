//! Per latent frame: the statistics of a teacher's normalised VAE latents of real clips, and its
//! DiT's velocity error on them. The Wan VAE is causal: latent frame 0 encodes pixel frame 0 alone,
//! each later one 4 frames, while `latents_mean` / `latents_std` are per channel over all frames.
//! A first frame on another scale than the rest, or a DiT error concentrated on it, shows here
//! (benches/NOTES.md, 2026-11-27, "the first frame").
//!
//! Also, for the first clip, how much the DiT's velocity for each latent frame moves when the
//! input of one other frame is replaced by fresh noise (at `t = 0.7`): a DiT that ties the frames
//! of a clip together (one object moving) reads the other frames; one that does not, does not.
//!
//! `cargo run --release -p tmd-world --example latent_frames -- MODEL_DIR [CLIPS]`, from the
//! repository root (the world is configs/world-teacher.toml's).

use burn::backend::NdArray;
use burn::prelude::*;
use tmd_sampler::noise::gaussian;
use tmd_sampler::TeacherPipeline;
use tmd_world::pretrain::teacher::TeacherRecipe;
use tmd_world::{to_tensor, Split, WorldDataset};

type B = NdArray;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(model) = args.first() else {
        eprintln!("usage: latent_frames MODEL_DIR [CLIPS]");
        std::process::exit(2);
    };
    let clips: usize = args
        .get(1)
        .map_or(16, |c| c.parse().expect("CLIPS: a number"));
    let device = Default::default();
    let recipe: TeacherRecipe =
        tmd_distill::train::load_stage_config(Some("configs/world-teacher.toml".as_ref()), &[])
            .unwrap();
    let pipe = TeacherPipeline::<B>::load(model, &device).unwrap();
    let data = WorldDataset::new(
        Some(Split::Train),
        recipe.world.seed + 1,
        recipe.clip_spec().unwrap(),
    );
    let times = [0.3f32, 0.5, 0.7, 0.9];
    let mut latents = Vec::new();
    // errors[t][frame]: summed velocity MSE.
    let mut errors: Vec<Vec<f64>> = vec![Vec::new(); times.len()];
    for i in 0..clips as u64 {
        let clip = data.batch(i, 1);
        let video = to_tensor::<B>(&clip, &device).unwrap();
        let x0 = pipe.vae.encode_normalized(video).unwrap();
        let ctx = pipe.text.encode_cached(&clip[0].caption).unwrap();
        let noise = gaussian::<B, 5>(x0.dims(), 1000 + i, &device);
        for (k, &t) in times.iter().enumerate() {
            let x_t = x0.clone() * (1.0 - t) + noise.clone() * t;
            let tt = Tensor::<B, 1>::from_floats([t * 1000.0], &device);
            let v = pipe.dit.forward(x_t, tt, ctx.clone()).unwrap();
            let sq = (v - (noise.clone() - x0.clone())).powi_scalar(2);
            errors[k].resize(sq.dims()[2], 0.0);
            for (f, sum) in errors[k].iter_mut().enumerate() {
                let e: f32 = sq.clone().narrow(2, f, 1).mean().into_scalar();
                *sum += f64::from(e) / clips as f64;
            }
        }
        if i == 0 {
            cross_frame(&pipe, x0.clone(), noise.clone(), ctx.clone());
        }
        latents.push(x0);
    }
    let all = Tensor::cat(latents, 0); // [clips, C, F, H, W]
    let frames = all.dims()[2];
    println!(
        "{clips} training clips, normalised latents {:?}",
        all.dims()
    );
    println!("frame | mean | std | mean |x| | velocity MSE at t = {times:?}");
    for f in 0..frames {
        let x = all.clone().narrow(2, f, 1);
        let mean: f32 = x.clone().mean().into_scalar();
        let std: f32 = (x.clone() - mean)
            .powi_scalar(2)
            .mean()
            .sqrt()
            .into_scalar();
        let abs: f32 = x.abs().mean().into_scalar();
        let errs: Vec<String> = errors.iter().map(|e| format!("{:.4}", e[f])).collect();
        println!(
            "{f} | {mean:+.3} | {std:.3} | {abs:.3} | {}",
            errs.join(" ")
        );
    }
}

/// Row j: mean |v(x_t with frame j re-noised) - v(x_t)| per output frame k, over mean |v|.
fn cross_frame(
    pipe: &TeacherPipeline<B>,
    x0: Tensor<B, 5>,
    noise: Tensor<B, 5>,
    ctx: Tensor<B, 3>,
) {
    let device = x0.device();
    let t = 0.7f32;
    let x_t = x0.clone() * (1.0 - t) + noise * t;
    let tt = Tensor::<B, 1>::from_floats([t * 1000.0], &device);
    let v = pipe
        .dit
        .forward(x_t.clone(), tt.clone(), ctx.clone())
        .unwrap();
    let scale: f32 = v.clone().abs().mean().into_scalar();
    let frames = x_t.dims()[2];
    println!("cross-frame dependence at t = {t} (row: re-noised input frame; column: output frame; / mean |v| = {scale:.3}):");
    for j in 0..frames {
        let fresh = gaussian::<B, 5>(x0.clone().narrow(2, j, 1).dims(), 77 + j as u64, &device);
        let replaced = x_t.clone().slice_assign(
            [
                0..1,
                0..x0.dims()[1],
                j..j + 1,
                0..x0.dims()[3],
                0..x0.dims()[4],
            ],
            fresh,
        );
        let v2 = pipe.dit.forward(replaced, tt.clone(), ctx.clone()).unwrap();
        let row: Vec<String> = (0..frames)
            .map(|k| {
                let d: f32 = (v2.clone().narrow(2, k, 1) - v.clone().narrow(2, k, 1))
                    .abs()
                    .mean()
                    .into_scalar();
                format!("{:.3}", d / scale)
            })
            .collect();
        println!("  {j}: {}", row.join(" "));
    }
}
