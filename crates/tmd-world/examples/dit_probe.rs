//! How well does a teacher's DiT denoise real latents of the world it trained on? For training
//! clips, noises the clip's normalised latent to several times `t`, predicts `x0 = x_t - t v` in
//! one step and reports the velocity MSE per `t`; writes the one-step reconstructions as GIFs
//! (`OUT/clip<i>-t<t>.gif`, beside `OUT/clip<i>-real.gif`). A DiT that fits its data gives small
//! errors at low `t` and recognisable clips up to mid `t` (benches/NOTES.md, 2026-11-27).
//!
//! `cargo run --release -p tmd-world --example dit_probe -- MODEL_DIR OUT [CLIPS]`, from the
//! repository root (the world is configs/world-teacher.toml's).

use burn::backend::NdArray;
use burn::prelude::*;
use tmd_sampler::noise::gaussian;
use tmd_sampler::{TeacherPipeline, Video};
use tmd_world::pretrain::teacher::TeacherRecipe;
use tmd_world::{to_tensor, Split, WorldDataset};

type B = NdArray;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(model), Some(out)) = (args.first(), args.get(1)) else {
        eprintln!("usage: dit_probe MODEL_DIR OUT [CLIPS]");
        std::process::exit(2);
    };
    let clips: usize = args
        .get(2)
        .map_or(2, |c| c.parse().expect("CLIPS: a number"));
    std::fs::create_dir_all(out).unwrap();
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
    for i in 0..clips as u64 {
        let clip = data.batch(i, 1);
        println!("clip {i}: {}", clip[0].caption);
        let video = to_tensor::<B>(&clip, &device).unwrap();
        Video::from_tensor(video.clone(), 8)
            .unwrap()
            .save(format!("{out}/clip{i}-real.gif"))
            .unwrap();
        let x0 = pipe.vae.encode_normalized(video).unwrap();
        let ctx = pipe.text.encode_cached(&clip[0].caption).unwrap();
        let noise = gaussian::<B, 5>(x0.dims(), 1000 + i, &device);
        // Position dependence: a DiT that knows where its tokens are does not commute with
        // reversing the frames or flipping the rows (a model without working positions would).
        let x_mid = x0.clone() * 0.5 + noise.clone() * 0.5;
        let t_mid = Tensor::<B, 1>::from_floats([500.0], &device);
        let v_mid = pipe
            .dit
            .forward(x_mid.clone(), t_mid.clone(), ctx.clone())
            .unwrap();
        for (name, dim) in [("frames", 2isize), ("rows", 3)] {
            let v_flip = pipe
                .dit
                .forward(x_mid.clone().flip([dim]), t_mid.clone(), ctx.clone())
                .unwrap()
                .flip([dim]);
            let diff: f32 = (v_flip - v_mid.clone()).abs().mean().into_scalar();
            let scale: f32 = v_mid.clone().abs().mean().into_scalar();
            println!("  flipping the {name}: mean |v(flip x) flipped back - v(x)| = {diff:.4} (mean |v| {scale:.4})");
        }
        for t in [0.1f32, 0.3, 0.5, 0.7, 0.9] {
            let x_t = x0.clone() * (1.0 - t) + noise.clone() * t;
            let tt = Tensor::<B, 1>::from_floats([t * 1000.0], &device);
            let v = pipe.dit.forward(x_t.clone(), tt, ctx.clone()).unwrap();
            let mse: f32 = (v.clone() - (noise.clone() - x0.clone()))
                .powi_scalar(2)
                .mean()
                .into_scalar();
            let x0_hat = x_t - v * t;
            let err: f32 = (x0_hat.clone() - x0.clone())
                .powi_scalar(2)
                .mean()
                .into_scalar();
            println!("  t {t:.1}: velocity mse {mse:.4}, x0 mse {err:.4}");
            let pixels = pipe.vae.decode_normalized(x0_hat).unwrap();
            Video::from_tensor(pixels, 8)
                .unwrap()
                .save(format!("{out}/clip{i}-t{t:.1}.gif"))
                .unwrap();
        }
    }
}
