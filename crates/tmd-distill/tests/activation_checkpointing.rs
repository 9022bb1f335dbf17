//! Activation checkpointing (`train.checkpoint_activations`) at tiny size: the gradients of
//! stage 1, of both stage-2 updates (critics, student: TMD and DMD2-v) and of the KD warm-up equal
//! those of the plain graph (<= 1e-5 relative per parameter tensor), and a checkpointed run resumes
//! bit-identically. (DiT pretraining's: tmd-world's `tests/dit_checkpointing.rs`.)

use burn::backend::{Autodiff, NdArray};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use tmd_distill::adapt_head::{
    adapt_head, tm_meanflow_grads_checkpointed, tm_meanflow_loss, AdaptHeadBatch, AdaptHeadConfig,
};
use tmd_distill::distill::discriminator::DiscriminatorConfig;
use tmd_distill::distill::kd::{kd_grads_checkpointed, kd_loss, KdBatch};
use tmd_distill::distill::stage2::{distill, stage2_loss, Stage2Config, Stage2Models};
use tmd_distill::train::{CheckpointConfig, OptimizerConfig};
use tmd_flowhead::{FlowHeadConfig, TmdStudent};
use tmd_model::dit::{WanConfig, WanModel};
use tmd_sampler::noise::gaussian;
use tmd_sampler::TmdGrids;

type A = Autodiff<NdArray>;
type Dev = burn::backend::ndarray::NdArrayDevice;

/// The tests seed the backend's process-wide generator: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A 3-block tiny DiT (materialised, so copies share nothing lazy).
fn dit(device: &Dev, seed: u64) -> WanModel<A> {
    A::seed(device, seed);
    let mut config = WanConfig::tiny();
    config.num_layers = 3;
    let model: WanModel<A> = config.init(device);
    let record = model.clone().into_record();
    model.load_record(record)
}

/// Largest relative difference between two gradient sets over `module`'s parameters
/// (`max |a - b| / max |a|` per tensor), and how many tensors had a gradient.
struct Compare<'a> {
    a: &'a GradientsParams,
    b: &'a GradientsParams,
    worst: f32,
    count: usize,
    mismatch: Vec<String>,
}

impl ModuleVisitor<A> for Compare<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
        let ga = self.a.get::<NdArray, D>(param.id);
        let gb = self.b.get::<NdArray, D>(param.id);
        match (ga, gb) {
            (None, None) => {}
            (Some(a), Some(b)) => {
                self.count += 1;
                let scale: f32 = a.clone().abs().max().into_scalar();
                let diff: f32 = (a - b).abs().max().into_scalar();
                let rel = if scale > 0.0 { diff / scale } else { diff };
                assert!(rel.is_finite(), "non-finite gradient difference");
                self.worst = self.worst.max(rel);
            }
            (a, _) => self.mismatch.push(format!(
                "{}: gradient only {}",
                param.id,
                if a.is_some() { "without" } else { "with" }
            )),
        }
    }
}

fn assert_same_grads<M: Module<A>>(module: &M, plain: &GradientsParams, ckpt: &GradientsParams) {
    let mut cmp = Compare {
        a: plain,
        b: ckpt,
        worst: 0.0,
        count: 0,
        mismatch: Vec::new(),
    };
    module.visit(&mut cmp);
    eprintln!(
        "{} gradients, largest relative difference {:e}",
        cmp.count, cmp.worst
    );
    assert!(cmp.mismatch.is_empty(), "{:?}", cmp.mismatch);
    assert!(
        cmp.count > 10,
        "only {} parameters had gradients",
        cmp.count
    );
    assert!(
        cmp.worst <= 1e-5,
        "gradients differ by {} (relative)",
        cmp.worst
    );
}

fn stage1_batch(device: &Dev, seed: u64) -> AdaptHeadBatch<A> {
    AdaptHeadBatch {
        latents: gaussian::<A, 5>([4, 4, 2, 4, 4], seed, device),
        context: gaussian::<A, 3>([4, 16, 32], seed + 1, device),
    }
}

fn stage1_config() -> AdaptHeadConfig {
    AdaptHeadConfig {
        batch: 4,
        steps: 3,
        checkpoint: CheckpointConfig {
            every: 2,
            ..AdaptHeadConfig::default().checkpoint
        },
        progress: false,
        optimizer: OptimizerConfig {
            lr: 1e-3,
            ..AdaptHeadConfig::default().optimizer
        },
        // Both target branches (r < s with the finite difference, r = s) and both dropout cases.
        r_equals_s: 0.4,
        cond_dropout: 0.4,
        ..AdaptHeadConfig::default()
    }
}

fn student(device: &Dev) -> TmdStudent<A> {
    TmdStudent::from_teacher(dit(device, 5), &FlowHeadConfig::paper(1)).unwrap()
}

#[test]
fn stage1_gradients_equal_the_plain_graph() {
    let _serial = serial();
    let device = Dev::default();
    let student = student(&device);
    let negative = gaussian::<A, 3>([1, 16, 32], 9, &device);
    let config = stage1_config();
    for step in [1, 2] {
        let batch = stage1_batch(&device, 40 + step);
        let parts = tm_meanflow_loss(&student, &batch, &negative, &config, step).unwrap();
        let value: f32 = parts.loss.clone().into_scalar();
        let plain = GradientsParams::from_grads(parts.loss.backward(), &student);
        let (ckpt_value, ckpt) =
            tm_meanflow_grads_checkpointed(&student, &batch, &negative, &config, step).unwrap();
        assert!(
            (f64::from(value) - ckpt_value).abs() <= 1e-6 * f64::from(value.abs()),
            "loss {value} vs {ckpt_value}"
        );
        assert_same_grads(&student, &plain, &ckpt);
    }
}

fn stage2_models(teacher: &WanModel<A>, tmd: bool, device: &Dev) -> Stage2Models<A> {
    let disc = DiscriminatorConfig::new(48, vec![2, 1]).with_hidden(8);
    if tmd {
        Stage2Models::for_tmd(teacher, &FlowHeadConfig::paper(1), &disc, device).unwrap()
    } else {
        Stage2Models::for_dmd(teacher, &disc, device)
    }
}

fn stage2_batch(device: &Dev, step: u64) -> AdaptHeadBatch<A> {
    AdaptHeadBatch {
        latents: gaussian::<A, 5>([2, 4, 2, 4, 4], 1000 + step, device),
        context: gaussian::<A, 3>([2, 16, 32], 2000 + step, device),
    }
}

fn stage2_config(checkpoint_activations: bool) -> Stage2Config {
    Stage2Config {
        batch: 2,
        steps: 6,
        optimizer: OptimizerConfig {
            lr: 1e-3,
            ..Stage2Config::default().optimizer
        },
        checkpoint: CheckpointConfig {
            every: 3,
            ..Stage2Config::default().checkpoint
        },
        progress: false,
        checkpoint_activations,
        ..Stage2Config::default()
    }
}

#[test]
fn stage2_gradients_of_both_updates_equal_the_plain_graph() {
    let _serial = serial();
    let device = Dev::default();
    let teacher = dit(&device, 9).no_grad();
    let negative = gaussian::<A, 3>([1, 16, 32], 7, &device);
    let grids = TmdGrids::new(2, 2, 10.0, 10.0).unwrap();
    for tmd in [true, false] {
        let models = stage2_models(&teacher, tmd, &device);
        // Step 4: critics (fake score + discriminator); step 5: the student (VSD + GAN).
        for step in [4, 5] {
            let batch = stage2_batch(&device, step);
            let run = |on: bool| {
                stage2_loss(
                    &models,
                    &teacher,
                    &batch,
                    &negative,
                    &stage2_config(on),
                    &grids,
                    step,
                )
                .unwrap()
            };
            let (v_plain, plain) = run(false);
            let (v_ckpt, ckpt) = run(true);
            assert!(
                (v_plain - v_ckpt).abs() <= 1e-6 * v_plain.abs(),
                "tmd {tmd} step {step}: loss {v_plain} vs {v_ckpt}"
            );
            assert_same_grads(&models, &plain, &ckpt);
        }
    }
}

/// Mixed precision (`precision = "Bf16Matmul"`: bf16-rounded products, f32 weights): both
/// stage-2 updates of a TMD student give gradients equal under checkpointing, losses within
/// bf16's error of the f32 ones, and the trained copies keep f32 weights.
#[test]
fn stage2_mixed_precision_losses_and_checkpointed_gradients() {
    use tmd_model::dit::Precision;
    let _serial = serial();
    let device = Dev::default();
    let negative = gaussian::<A, 3>([1, 16, 32], 7, &device);
    let grids = TmdGrids::new(2, 2, 10.0, 10.0).unwrap();
    let build = |precision: Precision| {
        let teacher = dit(&device, 9).with_precision(precision).no_grad();
        A::seed(&device, 5);
        let models = stage2_models(&teacher, true, &device);
        (teacher, models)
    };
    let (teacher32, models32) = build(Precision::F32);
    let (teacher16, models16) = build(Precision::Bf16Matmul);
    let fake_weight = models16.fake.blocks[0].ffn.fc1.weight.val().dtype();
    assert_eq!(fake_weight, burn::tensor::DType::F32);
    for step in [4, 5] {
        let batch = stage2_batch(&device, step);
        let run = |models: &Stage2Models<A>, teacher: &WanModel<A>, on: bool| {
            stage2_loss(
                models,
                teacher,
                &batch,
                &negative,
                &stage2_config(on),
                &grids,
                step,
            )
            .unwrap()
        };
        let (v32, _) = run(&models32, &teacher32, false);
        let (v16, plain) = run(&models16, &teacher16, false);
        let (v16_ckpt, ckpt) = run(&models16, &teacher16, true);
        // The student's loss (step 5) is a small difference of two critics' predictions, so
        // bf16's ~0.4% per product shows up several times larger in it.
        let rel = ((v16 - v32) / v32).abs();
        let bound = if step == 4 { 5e-2 } else { 0.2 };
        assert!(
            rel > 0.0 && rel < bound,
            "step {step}: bf16 loss {v16} vs f32 {v32}"
        );
        assert!(
            (v16 - v16_ckpt).abs() <= 1e-6 * v16.abs(),
            "step {step}: loss {v16} vs {v16_ckpt}"
        );
        assert_same_grads(&models16, &plain, &ckpt);
    }
}

#[test]
fn kd_gradients_equal_the_plain_graph() {
    let _serial = serial();
    let device = Dev::default();
    let model = dit(&device, 3);
    let batch = KdBatch {
        noise: gaussian::<A, 5>([2, 4, 2, 4, 4], 11, &device),
        target: gaussian::<A, 5>([2, 4, 2, 4, 4], 12, &device),
        context: gaussian::<A, 3>([2, 16, 32], 13, &device),
    };
    let loss = kd_loss(&model, &batch, 0.999).unwrap();
    let plain = GradientsParams::from_grads(loss.backward(), &model);
    let (_, ckpt) = kd_grads_checkpointed(&model, &batch, 0.999).unwrap();
    assert_same_grads(&model, &plain, &ckpt);
}

/// Every parameter of a module, bit for bit.
fn bits<M: Module<A>>(module: &M) -> Vec<u32> {
    struct Collect(Vec<u32>);
    impl ModuleVisitor<A> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
            let v = param.val().into_data().to_vec::<f32>().unwrap();
            self.0.extend(v.into_iter().map(f32::to_bits));
        }
    }
    let mut c = Collect(Vec::new());
    module.visit(&mut c);
    c.0
}

#[test]
fn checkpointed_runs_resume_bit_identically() {
    let _serial = serial();
    let device = Dev::default();
    // Stage 2 (both updates): 6 iterations straight against 3 + 3.
    let teacher = dit(&device, 9).no_grad();
    let negative = gaussian::<A, 3>([1, 16, 32], 7, &device);
    let data = |s| Ok(stage2_batch(&device, s));
    // The fresh parts (fusion layer, discriminator) drawn from the same seed in every run.
    let fresh = || {
        A::seed(&device, 1);
        stage2_models(&teacher, true, &device)
    };
    let straight = tempfile::tempdir().unwrap();
    let (a, _) = distill(
        fresh(),
        &teacher,
        &stage2_config(true),
        straight.path(),
        negative.clone(),
        data,
    )
    .unwrap();
    let split = tempfile::tempdir().unwrap();
    let mut half = stage2_config(true);
    half.steps = 3;
    distill(
        fresh(),
        &teacher,
        &half,
        split.path(),
        negative.clone(),
        data,
    )
    .unwrap();
    let (b, report) = distill(
        fresh(),
        &teacher,
        &stage2_config(true),
        split.path(),
        negative,
        data,
    )
    .unwrap();
    assert_eq!((report.start_step, report.end_step), (3, 6));
    assert_eq!(bits(&a), bits(&b), "stage 2: resumed run differs");
    assert_ne!(bits(&a), bits(&fresh()), "stage 2 trained");

    // Stage 1: 3 steps straight against 2 + 1.
    let negative = gaussian::<A, 3>([1, 16, 32], 9, &device);
    let config = AdaptHeadConfig {
        checkpoint_activations: true,
        ..stage1_config()
    };
    let run = |dir: &std::path::Path, steps: u64| {
        let config = AdaptHeadConfig {
            steps,
            ..config.clone()
        };
        adapt_head(student(&device), &config, dir, negative.clone(), |s| {
            Ok(stage1_batch(&device, 40 + s))
        })
        .unwrap()
        .0
    };
    let straight = tempfile::tempdir().unwrap();
    let a = run(straight.path(), 3);
    let split = tempfile::tempdir().unwrap();
    run(split.path(), 2);
    let b = run(split.path(), 3);
    assert_eq!(bits(&a), bits(&b), "stage 1: resumed run differs");
    assert_ne!(bits(&a), bits(&student(&device)), "stage 1 trained");
}
