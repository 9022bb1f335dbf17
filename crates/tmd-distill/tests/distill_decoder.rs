//! `distill-decoder` at tiny sizes: a few steps on random latents of the tiny random model lower
//! the loss, checkpoint, resume, write `decoder-light/` that the model directory then loads, and
//! measure PSNR/SSIM against the full decoder.

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, NdArray};
use burn::prelude::*;
use burn::tensor::Distribution;
use tmd_distill::distill_decoder::{run_distill_decoder, ssim, DistillDecoderRecipe};
use tmd_distill::latent_cache::{LatentCache, LatentCacheIndex, LatentSource};
use tmd_distill::train::{CheckpointConfig, OptimizerConfig};
use tmd_model::model_dir::ModelDir;

type B = NdArray;
type AB = Autodiff<NdArray>;

fn tiny_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/tiny-random")
}

/// A cache of `clips` random latents `[4, 2, 2, 2]` (tiny VAE: 4 channels; 5 frames of 16x16).
fn random_cache(dir: &Path, clips: usize, seed: u64) -> LatentCache {
    let index = LatentCacheIndex {
        clips,
        chunk: 4,
        latent_shape: [4, 2, 2, 2],
        source: LatentSource::World {
            dataset_seed: seed,
            clip_size: [5, 16, 16],
            vae_step: 0,
        },
        captions: (0..clips).map(|i| format!("clip {i}")).collect(),
    };
    let device = Default::default();
    LatentCache::build_or_load::<B, _>(dir, index, false, "test", |_, n| {
        B::seed(&device, seed);
        Ok(Tensor::random(
            [n, 4, 2, 2, 2],
            Distribution::Normal(0.0, 1.0),
            &device,
        ))
    })
    .unwrap()
}

fn recipe(steps: u64) -> DistillDecoderRecipe {
    DistillDecoderRecipe {
        preset: "tiny".into(),
        batch: 2,
        steps,
        optimizer: OptimizerConfig {
            lr: 1e-2,
            ..DistillDecoderRecipe::default().optimizer
        },
        warmup_steps: 0,
        checkpoint: CheckpointConfig {
            every: 3,
            ..DistillDecoderRecipe::default().checkpoint
        },
        target_chunk: 4,
        progress: false,
        ..Default::default()
    }
}

#[test]
fn distill_decoder_lowers_the_loss_resumes_and_writes_decoder_light() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, held_out) = (tmp.path().join("data"), tmp.path().join("held-out"));
    random_cache(&data, 8, 1);
    random_cache(&held_out, 3, 2);
    let (run_dir, out) = (tmp.path().join("run"), tmp.path().join("out"));
    let device = Default::default();

    let (_, first) = run_distill_decoder::<AB>(
        &recipe(6),
        &tiny_model(),
        &data,
        Some(&held_out),
        &run_dir,
        &out,
        &device,
    )
    .unwrap();
    let losses: Vec<f64> = first.train.losses.iter().map(|(_, l)| *l).collect();
    println!("losses {losses:?}");
    assert_eq!(losses.len(), 6);
    assert!(
        losses[4] + losses[5] < losses[0] + losses[1],
        "the loss does not decrease: {losses:?}"
    );
    let q = first.quality.expect("held-out data given");
    assert_eq!(q.clips, 3);
    assert!(q.psnr_db.is_finite() && q.ssim.is_finite(), "{q:?}");
    assert!(run_dir.join("quality.json").is_file());

    // The output directory is the model with decoder-light/, which loads.
    let model = ModelDir::open(&out).unwrap();
    assert!(model.has_light_decoder());
    model.load_light_decoder::<B>(&device).unwrap();

    // Resume: two more steps continue from the last checkpoint (step 6), targets reused.
    let (_, second) = run_distill_decoder::<AB>(
        &recipe(8),
        &tiny_model(),
        &data,
        None,
        &run_dir,
        &out,
        &device,
    )
    .unwrap();
    assert_eq!(second.train.start_step, 6);
    assert_eq!(second.train.end_step, 8);

    // Another recipe is refused by the checkpoint's settings hash, with the key named.
    let mut other = recipe(10);
    other.l1_weight = 0.5;
    let err =
        run_distill_decoder::<AB>(&other, &tiny_model(), &data, None, &run_dir, &out, &device)
            .unwrap_err()
            .to_string();
    assert!(err.contains("config") || err.contains("hash"), "{err}");
}

#[test]
fn a_preset_that_does_not_fit_the_vae_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    random_cache(&data, 4, 1);
    let mut r = recipe(2);
    r.preset = "world".into(); // 16 latent channels, the tiny VAE has 4
    let err = run_distill_decoder::<AB>(
        &r,
        &tiny_model(),
        &data,
        None,
        &tmp.path().join("run"),
        &tmp.path().join("out"),
        &Default::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("16 latent channels") && err.contains("4 latent channels"),
        "{err}"
    );
}

#[test]
fn ssim_is_one_for_equal_clips_and_lower_for_noise() {
    let device = Default::default();
    let a = Tensor::<B, 5>::random([1, 3, 2, 12, 12], Distribution::Uniform(-1.0, 1.0), &device);
    let same: f32 = ssim(a.clone(), a.clone()).into_scalar();
    assert!((same - 1.0).abs() < 1e-5, "{same}");
    let b = Tensor::<B, 5>::random([1, 3, 2, 12, 12], Distribution::Uniform(-1.0, 1.0), &device);
    let other: f32 = ssim(a, b).into_scalar();
    assert!(other < 0.2, "{other}");
}
