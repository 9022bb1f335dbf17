//! Probe of a freshly initialised world VAE (the recipe's), for the bisection of its training
//! defect (benches/NOTES.md): how much the reconstruction depends on the input clip, against how
//! much it moves when every weight is nudged by one Adam step (`lr * sign`).
//!
//! `cargo run --release -p tmd-world --example vae_probe -- [config] [lr] [checkpoint vae.bpk]`
//! (defaults: configs/world-teacher.toml, 3e-4, the initial weights; single 32x32 frames).

use burn::backend::NdArray;
use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use tmd_world::pretrain::decode_unclamped;
use tmd_world::pretrain::teacher::TeacherRecipe;
use tmd_world::{to_tensor, ClipSpec, Split, WorldDataset};

type B = NdArray;

/// Adds `lr * sign(noise)` to every weight (an Adam-sized step in a random direction).
struct Nudge {
    lr: f64,
    seed: u64,
}

impl ModuleMapper<B> for Nudge {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, t, mapper) = param.consume();
        self.seed += 1;
        B::seed(&t.device(), self.seed);
        let noise = Tensor::<B, D>::random(
            t.shape(),
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &t.device(),
        );
        Param::from_mapped_value(id, t + noise.sign() * self.lr, mapper)
    }
}

fn rms(x: Tensor<B, 5>) -> f64 {
    x.powi_scalar(2).mean().sqrt().into_scalar() as f64
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = args
        .first()
        .cloned()
        .unwrap_or("configs/world-teacher.toml".into());
    let lr: f64 = args.get(1).map(|s| s.parse().unwrap()).unwrap_or(3e-4);
    let recipe: TeacherRecipe =
        tmd_distill::train::load_stage_config(Some(std::path::Path::new(&config)), &[]).unwrap();
    let device = Default::default();
    B::seed(&device, recipe.vae.seed);
    let mut vae = recipe.vae_config(None).init::<B>(&device);
    if recipe.vae.init_for_training {
        vae = tmd_world::pretrain::vae::init_for_training(vae);
    }
    if let Some(path) = args.get(2) {
        let source = tmd_model::weights::WeightSource::open_files(&[path.into()]).unwrap();
        vae = tmd_model::weights::load_module(
            vae,
            &source,
            &tmd_model::weights::KeyMap::identity(),
            &[],
            "vae",
        )
        .unwrap();
    }
    let data = WorldDataset::new(Some(Split::Train), 0, ClipSpec::new(1, 32, 32).unwrap());
    let clips = to_tensor::<B>(&data.batch(0, 4), &device).unwrap();
    // Input dependence along the encoder: across-clip rms / rms after each stage.
    {
        let e = &vae.encoder;
        let mut cache = tmd_model::vae::FeatCache::new();
        cache.start_chunk();
        let ratio = |x: &Tensor<B, 5>| {
            let m = x.clone().mean_dim(0);
            rms(x.clone() - m) / rms(x.clone()).max(1e-12)
        };
        let mut x = e.conv_in.forward_cached(clips.clone(), &mut cache);
        print!("encoder input dependence: conv_in {:.3}", ratio(&x));
        for (i, layer) in e.down_blocks.iter().enumerate() {
            x = layer.forward_cached(x, &mut cache);
            print!(", layer {i} {:.3}", ratio(&x));
        }
        x = e.mid_block.forward_cached(x, &mut cache);
        print!(", mid {:.3}", ratio(&x));
        let x = burn::tensor::activation::silu(e.norm_out.forward(x));
        print!(", norm_out {:.3}", ratio(&x));
        let x = e.conv_out.forward_cached(x, &mut cache);
        println!(", conv_out {:.3}", ratio(&x));
    }
    let z = vae.encode(clips.clone()).unwrap();
    let out = decode_unclamped(&vae, z.clone()).unwrap();
    // Dependence on the input: output of clip i minus the mean output over the 4 clips.
    let out_mean = out.clone().mean_dim(0);
    let z_mean = z.clone().mean_dim(0);
    println!(
        "z: rms {:.4}, across-clip rms {:.4} | output: rms {:.4}, across-clip rms {:.4} | clips rms {:.4}",
        rms(z.clone()),
        rms(z - z_mean),
        rms(out.clone()),
        rms(out.clone() - out_mean),
        rms(clips.clone())
    );
    let nudged = vae.clone().map(&mut Nudge { lr, seed: 1 });
    let out2 = decode_unclamped(&nudged, nudged.encode(clips).unwrap()).unwrap();
    println!(
        "one sign step of {lr:e} on every weight moves the output by rms {:.4}",
        rms(out2 - out)
    );
}
