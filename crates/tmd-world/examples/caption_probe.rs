//! How much does a teacher's DiT use each attribute word of a caption, and how much does each
//! attribute change the latent it has to predict?
//!
//! For training clips it prints, per noise level `t`, the flow-matching loss with the clip's own
//! caption and with one attribute word swapped (shape, colour, motion, background, size): a model
//! that reads an attribute loses more with it swapped. It also prints how far apart the normalised
//! latents of the same clip (same seed: same place and path) are when one attribute changes,
//! relative to the latent's energy: the share of the loss an attribute can account for.
//!
//! `cargo run --release -p tmd-world --example caption_probe -- MODEL_DIR [CLIPS]`, from the
//! repository root (the world is configs/world-teacher.toml's).

use burn::backend::NdArray;
use burn::prelude::*;
use tmd_sampler::noise::gaussian;
use tmd_sampler::TeacherPipeline;
use tmd_world::pretrain::teacher::TeacherRecipe;
use tmd_world::render::clip_caption;
use tmd_world::{render, to_tensor, Attribute, Attributes, Split, WorldDataset};

type B = NdArray;

/// The next value of an attribute (wrapping): a different word in the caption.
fn next<T: Attribute>(value: T) -> T {
    T::all()[(value.index() + 1) % T::all().len()]
}

fn swapped(a: &Attributes, which: &str) -> Attributes {
    let mut b = *a;
    match which {
        "shape" => b.shape = next(a.shape),
        "colour" => b.colour = next(a.colour),
        "motion" => b.motion = next(a.motion),
        _ => unreachable!("no attribute {which}"),
    }
    b
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = args
        .first()
        .expect("usage: caption_probe MODEL_DIR [CLIPS]");
    let clips: u64 = args
        .get(1)
        .map_or(16, |c| c.parse().expect("CLIPS: a number"));
    let device = Default::default();
    let recipe: TeacherRecipe =
        tmd_distill::train::load_stage_config(Some("configs/world-teacher.toml".as_ref()), &[])
            .unwrap();
    let spec = recipe.clip_spec().unwrap();
    let pipe = TeacherPipeline::<B>::load(model, &device).unwrap();
    let data = WorldDataset::new(Some(Split::Train), recipe.world.seed + 1, spec);
    let kinds = ["shape", "colour", "motion"];
    let times = [0.3f32, 0.5, 0.7, 0.9];
    // loss[t][0] own caption, [1..] swapped kinds
    let mut loss = vec![vec![0f64; 1 + kinds.len()]; times.len()];
    let mut energy = vec![0f64; kinds.len()];
    for i in 0..clips {
        let attrs = data.attributes(i);
        let seed = data.clip_seed(i);
        let clip = render(&attrs, seed, &spec);
        let x0 = pipe
            .vae
            .encode_normalized(to_tensor::<B>(std::slice::from_ref(&clip), &device).unwrap())
            .unwrap();
        let norm: f32 = x0.clone().powf_scalar(2.0).mean().into_scalar();
        let mut captions = vec![clip_caption(&attrs, seed)];
        for (k, kind) in kinds.iter().enumerate() {
            let other = swapped(&attrs, kind);
            captions.push(clip_caption(&other, seed));
            let x1 = pipe
                .vae
                .encode_normalized(to_tensor::<B>(&[render(&other, seed, &spec)], &device).unwrap())
                .unwrap();
            let d: f32 = (x1 - x0.clone()).powf_scalar(2.0).mean().into_scalar();
            energy[k] += f64::from(d / norm) / clips as f64;
        }
        let noise = gaussian::<B, 5>(x0.dims(), 7000 + i, &device);
        let v = noise.clone() - x0.clone();
        for (ti, &t) in times.iter().enumerate() {
            let xt = x0.clone() * (1.0 - t) + noise.clone() * t;
            let tt = Tensor::<B, 1>::from_floats([t * 1000.0], &device);
            for (c, cap) in captions.iter().enumerate() {
                let ctx = pipe.text.encode_cached(cap).unwrap();
                let pred = pipe.dit.forward(xt.clone(), tt.clone(), ctx).unwrap();
                let l: f32 = (pred - v.clone()).powf_scalar(2.0).mean().into_scalar();
                loss[ti][c] += f64::from(l) / clips as f64;
            }
        }
        if i == 0 {
            println!("e.g. {:?}", captions);
        }
    }
    println!("latent change when one attribute changes (MSE / mean x0^2): shape {:.4}, colour {:.4}, motion {:.4}", energy[0], energy[1], energy[2]);
    println!("| t | own caption | shape swapped | colour swapped | motion swapped |");
    for (ti, t) in times.iter().enumerate() {
        let l = &loss[ti];
        println!(
            "| {t} | {:.4} | {:+.4} | {:+.4} | {:+.4} |",
            l[0],
            l[1] - l[0],
            l[2] - l[0],
            l[3] - l[0]
        );
    }
}
