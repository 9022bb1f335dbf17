//! Does a VAE checkpoint reconstruct the clips it trained on as well as its loss log says? The
//! training loss (`vae_reconstruction_loss` on the batch of a given step of the training stream)
//! beside the same loss on whole clips of the check (`pretrain --stage vae-check`), for the
//! bisection of a gap between the two (benches/NOTES.md, 2026-11-27).
//!
//! `cargo run --release -p tmd-world --example vae_fit -- RUN_DIR STEP [--set k=v ...]`, from
//! the repository root (the recipe is configs/world-teacher.toml with the overrides the run used;
//! the newest checkpoint under RUN_DIR/vae is loaded).

use burn::backend::NdArray;
use burn::prelude::*;
use tmd_distill::train::checkpoint::latest_valid;
use tmd_world::eval::CHECK_SEED;
use tmd_world::pretrain::teacher::TeacherRecipe;
use tmd_world::pretrain::vae::{vae_reconstruction_loss, MODEL_NAME};
use tmd_world::{to_tensor, Split, WorldDataset};

type B = NdArray;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: vae_fit RUN_DIR STEP [--set k=v ...]";
    let (Some(run_dir), Some(step)) = (args.first(), args.get(1)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let run_dir = std::path::PathBuf::from(run_dir);
    let step: u64 = step
        .parse()
        .unwrap_or_else(|_| panic!("STEP must be a step number, got {step:?} ({usage})"));
    let overrides: Vec<String> = args[2..]
        .chunks(2)
        .filter(|c| c[0] == "--set")
        .map(|c| c[1].clone())
        .collect();
    let recipe: TeacherRecipe = tmd_distill::train::load_stage_config(
        Some(std::path::Path::new("configs/world-teacher.toml")),
        &overrides,
    )
    .unwrap();
    let device = Default::default();
    let ckpt = latest_valid(&run_dir.join("vae"))
        .unwrap()
        .checkpoint
        .unwrap();
    println!("checkpoint {}", ckpt.path.display());
    let vae = ckpt
        .load_module::<B, _>(MODEL_NAME, recipe.vae_config(None).init::<B>(&device))
        .unwrap();
    let weights = recipe.vae_train.loss_weights();
    let batch = recipe.vae_train.batch;
    let report = |name: &str, clips: Tensor<B, 5>| {
        let (loss, parts) = vae_reconstruction_loss(&vae, clips.clone(), &weights).unwrap();
        let clamped = vae.decode(vae.encode(clips.clone()).unwrap()).unwrap();
        let mse_clamped: f32 = (clamped - clips.clone())
            .powi_scalar(2)
            .mean()
            .into_scalar();
        println!(
            "{name} {:?}: loss {:.4} (mse {:.4}, edge {:.4}, motion {:.4}, z^2 {:.3}), clamped decode mse {:.4}",
            clips.dims(),
            loss.into_scalar(),
            parts.reconstruction.into_scalar(),
            parts.edge.into_scalar(),
            parts.motion.into_scalar(),
            parts.latent_l2.into_scalar(),
            mse_clamped
        );
    };
    let train = WorldDataset::new(
        Some(Split::Train),
        recipe.world.seed,
        recipe.vae_clip_spec().unwrap(),
    );
    let clips = train.batch((step - 1) * batch as u64, batch);
    report(
        &format!("training batch of step {step}"),
        to_tensor::<B>(&clips, &device).unwrap(),
    );
    let check = WorldDataset::new(Some(Split::Train), CHECK_SEED, recipe.clip_spec().unwrap());
    report(
        "check clips (train split)",
        to_tensor::<B>(&check.batch(0, batch), &device).unwrap(),
    );
}
