//! Training seeds (issue 22): one `train.seed` per training config changes the run's first-step
//! noise and times, its data order and its fresh parameters (the stage-1 flow head, the stage-2
//! critics), in stage 1, stage 2 and the KD warm-up; the same seed gives the same run.

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, NdArray};
use burn::module::Module;
use burn::prelude::*;
use tmd_distill::adapt_head::{self, tm_meanflow_loss, AdaptHeadBatch, AdaptHeadRecipe};
use tmd_distill::distill::discriminator::DiscriminatorConfig;
use tmd_distill::distill::run::{data_picks, init_models, kd_picks, DistillRecipe};
use tmd_distill::distill::stage2::{stage2_loss, Stage2Config, Stage2Models};
use tmd_distill::train::load_stage_config;
use tmd_distill::train::TrainError;
use tmd_model::dit::{WanConfig, WanModel};
use tmd_sampler::noise::gaussian;
use tmd_sampler::TmdGrids;

type A = Autodiff<NdArray>;
type Dev = burn::backend::ndarray::NdArrayDevice;

/// One test at a time: the teacher's and the models' initialisation seed the backend's
/// process-wide generator.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn teacher(device: &Dev) -> WanModel<A> {
    A::seed(device, 9);
    let mut config = WanConfig::tiny();
    config.num_layers = 3;
    let model: WanModel<A> = config.init(device);
    let record = model.clone().into_record();
    model.load_record(record)
}

fn values<const D: usize>(t: Tensor<A, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

fn distill_recipe(file: &str, seed: u64) -> DistillRecipe {
    load_stage_config(
        Some(&configs().join(file)),
        &[format!("train.seed={seed}"), "kd.steps=10".into()],
    )
    .unwrap()
}

fn stage1_recipe(seed: u64) -> AdaptHeadRecipe {
    load_stage_config(
        Some(&configs().join("adapt-head.toml")),
        &[format!("train.seed={seed}")],
    )
    .unwrap()
}

#[test]
fn the_seed_sets_the_data_order_of_every_stage() {
    let len = 1024;
    let stage1 = |seed| adapt_head::data_picks(&stage1_recipe(seed).train, 1, len);
    let stage2 = |seed| data_picks(&distill_recipe("distill.toml", seed).train, 1, len);
    let kd = |seed| {
        kd_picks(
            &distill_recipe("distill-dmd2v.toml", seed).kd_config(),
            1,
            len,
        )
    };
    for (what, order) in [
        ("stage 1", &stage1 as &dyn Fn(u64) -> Vec<usize>),
        ("stage 2", &stage2),
        ("KD warm-up", &kd),
    ] {
        assert_eq!(order(0), order(0), "{what}: the same seed, the same order");
        assert_ne!(order(0), order(1), "{what}: another seed, another order");
        assert!(order(1).iter().all(|&i| i < len));
    }
    // The stages draw from streams of their own: the same seed orders them differently.
    assert_ne!(stage1(0), stage2(0));
    assert_ne!(stage2(0)[..16], kd(0)[..16]);
}

#[test]
fn kd_has_no_seed_of_its_own() {
    assert_eq!(distill_recipe("distill-dmd2v.toml", 7).kd_config().seed, 7);
    let err = load_stage_config::<DistillRecipe>(None, &["kd.seed=1".into()]).unwrap_err();
    assert!(
        matches!(&err, TrainError::Config { key: Some(k), .. } if k == "kd.seed"),
        "{err}"
    );
}

#[test]
fn the_seed_sets_the_fresh_parameters() {
    let _serial = serial();
    let device = Dev::default();
    let teacher = teacher(&device);

    // Stage 1: the flow head's fusion layer.
    let head = |seed| {
        let s = adapt_head::init_student(teacher.clone(), &stage1_recipe(seed), &device).unwrap();
        values(s.fusion.gated.unwrap().fc1.weight.val())
    };
    assert_eq!(head(0), head(0));
    assert_ne!(head(0), head(1));

    // Stage 2: the discriminator (the fake score and the DMD2-v student are teacher copies).
    let disc = DiscriminatorConfig::new(48, vec![1, 2]).with_hidden(8);
    let critic = |seed| {
        let m = init_models(None, &teacher, &disc, seed, &device);
        values(m.disc.heads[1].conv1.weight.val())
    };
    assert_eq!(critic(3), critic(3));
    assert_ne!(critic(3), critic(4));
}

#[test]
fn the_seed_sets_the_first_step_draws() {
    let _serial = serial();
    let device = Dev::default();
    let teacher = teacher(&device);
    let negative = gaussian::<A, 3>([1, 16, 32], 7, &device);
    let batch = AdaptHeadBatch {
        latents: gaussian::<A, 5>([2, 4, 2, 4, 4], 1000, &device),
        context: gaussian::<A, 3>([2, 16, 32], 2000, &device),
    };

    // Stage 1, step 1, on one student: only the draws differ.
    let student = adapt_head::init_student(teacher.clone(), &stage1_recipe(0), &device).unwrap();
    let stage1 = |seed| {
        let mut config = stage1_recipe(seed).train;
        config.batch = 2;
        let loss = tm_meanflow_loss(&student, &batch, &negative, &config, 1).unwrap();
        values(loss.raw)[0]
    };
    assert_eq!(stage1(0), stage1(0));
    assert_ne!(stage1(0), stage1(1));

    // Stage 2, step 1 (a critic step), on one set of models.
    let disc = DiscriminatorConfig::new(48, vec![1, 2]).with_hidden(8);
    let models: Stage2Models<A> = init_models(None, &teacher, &disc, 0, &device);
    let grids = TmdGrids::new(2, 2, 10.0, 10.0).unwrap();
    let stage2 = |seed| {
        let config = Stage2Config {
            batch: 2,
            seed,
            progress: false,
            ..Stage2Config::default()
        };
        stage2_loss(&models, &teacher, &batch, &negative, &config, &grids, 1)
            .unwrap()
            .0
    };
    assert_eq!(stage2(0), stage2(0));
    assert_ne!(stage2(0), stage2(1));
}
