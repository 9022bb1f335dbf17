//! Starts a teacher run directory from a model directory's VAE, so the later `pretrain` stages
//! (latent statistics, text encoder, DiT) can run without the VAE run that made it (run
//! directories are local and not kept): writes `RUN/vae/step-STEP/` as a finished VAE checkpoint
//! holding the model directory's VAE weights (no optimizer state: it is only read, never resumed).
//!
//! `cargo run --release -p tmd-world --example seed_vae_run -- MODEL_DIR RUN STEP`, e.g.
//! `assets/world runs/world-teacher 8700` (then `pretrain --stage dit`: configs/world-teacher.toml
//! holds the bundled run's settings). `assets/world` stores its weights as f16, so the seeded VAE
//! is the trained one rounded to f16.

use burn::backend::NdArray;
use tmd_distill::train::{CheckpointWriter, TrainState};
use tmd_model::model_dir::ModelDir;
use tmd_world::pretrain::vae::MODEL_NAME;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, run, step] = args.as_slice() else {
        eprintln!("usage: seed_vae_run MODEL_DIR RUN STEP");
        std::process::exit(2);
    };
    let step: u64 = step.parse().expect("STEP: a number");
    let device = Default::default();
    let vae = ModelDir::open(model)
        .and_then(|dir| dir.load_vae::<NdArray>(&device))
        .unwrap_or_else(|e| panic!("loading the VAE of {model}: {e}"));
    let root = std::path::Path::new(run).join("vae");
    let writer = CheckpointWriter::begin(&root, step).expect("begin");
    writer
        .save_module::<NdArray, _>(MODEL_NAME, &vae)
        .expect("save");
    writer
        .save_state(&TrainState {
            step,
            seed: 0,
            config_hash: format!("seeded from {model}"),
            losses: Vec::new(),
            optimizer_shards: 0,
        })
        .expect("state");
    let ckpt = writer.commit(0).expect("commit");
    println!("wrote {}", ckpt.path.display());
}
