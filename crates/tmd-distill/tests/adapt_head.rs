//! Stage 1 (TM-MeanFlow) at tiny size: the finite-difference derivative, the (s, r) draws, the
//! loss and its gradients, the training loop's resume and NaN stop.

use burn::backend::{Autodiff, NdArray};
use burn::module::Module;
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use tmd_distill::adapt_head::{
    adapt_head, finite_difference_du_ds, sample_s_r, tm_meanflow_loss, AdaptHeadBatch,
    AdaptHeadConfig, Variant, S_RANGE,
};
use tmd_distill::train::run::adamw;
use tmd_distill::train::TrainError;
use tmd_distill::train::{CheckpointConfig, OptimizerConfig};
use tmd_flowhead::{FlowHeadConfig, TmdStudent};
use tmd_model::dit::{WanConfig, WanModel};
use tmd_sampler::noise::gaussian;

type B = NdArray;
type A = Autodiff<NdArray>;

fn student(device: &burn::backend::ndarray::NdArrayDevice) -> TmdStudent<A> {
    A::seed(device, 5);
    let mut config = WanConfig::tiny();
    config.num_layers = 3;
    let model: WanModel<A> = config.init(device);
    let record = model.clone().into_record();
    TmdStudent::from_teacher(model.load_record(record), &FlowHeadConfig::paper(1)).unwrap()
}

fn batch(device: &burn::backend::ndarray::NdArrayDevice, seed: u64) -> AdaptHeadBatch<A> {
    AdaptHeadBatch {
        latents: gaussian::<A, 5>([4, 4, 2, 4, 4], seed, device),
        context: gaussian::<A, 3>([4, 16, 32], seed + 1, device),
    }
}

fn tiny_config() -> AdaptHeadConfig {
    AdaptHeadConfig {
        batch: 4,
        steps: 2,
        checkpoint: CheckpointConfig {
            every: 1,
            ..AdaptHeadConfig::default().checkpoint
        },
        progress: false,
        optimizer: OptimizerConfig {
            lr: 1e-3,
            ..AdaptHeadConfig::default().optimizer
        },
        r_equals_s: 0.25,
        ..AdaptHeadConfig::default()
    }
}

#[test]
fn finite_differences_are_exact_on_linear_u_and_one_sided_at_the_ends() {
    let device = Default::default();
    let y = gaussian::<B, 5>([5, 2, 1, 2, 2], 1, &device);
    let v = gaussian::<B, 5>([5, 2, 1, 2, 2], 2, &device);
    // u(y, s) = 3 y + 2 s: du/ds along (v, 1) = 3 v + 2 for every stencil.
    let calls = std::cell::Cell::new(0);
    let u = |y: Tensor<B, 5>, s: &[f64]| -> Result<Tensor<B, 5>, ()> {
        calls.set(calls.get() + 1);
        let s = Tensor::<B, 1>::from_floats(
            s.iter().map(|&x| x as f32).collect::<Vec<_>>().as_slice(),
            &device,
        )
        .reshape([5, 1, 1, 1, 1]);
        Ok(y * 3.0 + s * 2.0)
    };
    // Central, upper end (backward), lower end (forward), s - d <= r (forward), r = s (skipped).
    let s = [0.5, 0.998, 0.003, 0.5, 0.4];
    let r = [0.0, 0.2, 0.0, 0.498, 0.4];
    let du = finite_difference_du_ds(u, y, v.clone(), &s, &r, 5e-3, S_RANGE).unwrap();
    assert_eq!(calls.get(), 2);
    let exact = v * 3.0 + 2.0;
    let err: f32 = (du.clone().narrow(0, 0, 4) - exact.narrow(0, 0, 4))
        .abs()
        .max()
        .into_scalar();
    assert!(err < 1e-3, "finite difference error {err}");
    let skipped: f32 = du.narrow(0, 4, 1).abs().max().into_scalar();
    assert_eq!(skipped, 0.0);

    // On a curved u the central stencil is second-order: u = y s^2, du/ds = v s^2 + 2 y s.
    let y = gaussian::<B, 5>([1, 2, 1, 2, 2], 3, &device);
    let v = gaussian::<B, 5>([1, 2, 1, 2, 2], 4, &device);
    let curved =
        |y: Tensor<B, 5>, s: &[f64]| -> Result<Tensor<B, 5>, ()> { Ok(y * (s[0] * s[0]) as f32) };
    let du = finite_difference_du_ds(curved, y.clone(), v.clone(), &[0.6], &[0.1], 5e-3, S_RANGE)
        .unwrap();
    let exact = v * 0.36 + y * 1.2;
    let err: f32 = (du - exact).abs().max().into_scalar();
    assert!(err < 1e-3, "central difference error {err}");
}

#[test]
fn head_times_snap_r_to_the_inner_grid() {
    let config = AdaptHeadConfig {
        batch: 4000,
        ..AdaptHeadConfig::default()
    };
    let grid = [0.999, 0.9, 0.5, 0.1, 0.0];
    let (s, r) = sample_s_r(&config, 3, &grid);
    let equal = s.iter().zip(&r).filter(|(s, r)| s == r).count() as f64 / 4000.0;
    assert!((equal - 0.75).abs() < 0.03, "share of r = s: {equal}");
    for (s, r) in s.iter().zip(&r) {
        assert!((S_RANGE.0..=1.0).contains(s));
        assert!(r == s || (grid.contains(r) && r <= s && grid.iter().all(|g| g > s || g <= r)));
    }
    let tm = AdaptHeadConfig {
        variant: Variant::Tm,
        ..config
    };
    let (s, r) = sample_s_r(&tm, 3, &grid);
    assert_eq!(s, r);
}

#[test]
fn the_loss_trains_the_whole_student_and_falls_on_a_fixed_batch() {
    let device = Default::default();
    let mut student = student(&device);
    let data = batch(&device, 1);
    let negative = gaussian::<A, 3>([1, 16, 32], 9, &device);
    let config = tiny_config();
    let first = tm_meanflow_loss(&student, &data, &negative, &config, 1).unwrap();
    let grads = first.loss.clone().backward();
    let g0: f32 = student.dit.blocks[0]
        .ffn
        .fc1
        .weight
        .grad(&grads)
        .expect("backbone gradient")
        .abs()
        .sum()
        .into_scalar();
    assert!(g0 > 0.0, "the backbone trains");
    let start: f32 = first.loss.into_scalar();
    assert!(
        start.is_finite() && start > 0.0 && start < 1.0,
        "normalised loss {start}"
    );

    let mut optimizer = adamw(0.9, 0.999, 1e-8, 0.0, 1.0).init::<A, TmdStudent<A>>();
    let mut last = start;
    for _ in 0..40 {
        let loss = tm_meanflow_loss(&student, &data, &negative, &config, 1)
            .unwrap()
            .loss;
        last = loss.clone().into_scalar();
        let grads = GradientsParams::from_grads(loss.backward(), &student);
        student = optimizer.step(3e-3, student, grads);
    }
    assert!(last < 0.7 * start, "loss {start} -> {last}");
}

#[test]
fn the_loop_resumes_and_stops_on_nan() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let negative = gaussian::<A, 3>([1, 16, 32], 9, &device);
    let mut config = tiny_config();
    let (_, report) = adapt_head(
        student(&device),
        &config,
        dir.path(),
        negative.clone(),
        |s| Ok(batch(&device, s)),
    )
    .unwrap();
    assert_eq!((report.start_step, report.end_step), (0, 2));
    config.steps = 3;
    let (_, report) = adapt_head(
        student(&device),
        &config,
        dir.path(),
        negative.clone(),
        |s| Ok(batch(&device, s)),
    )
    .unwrap();
    assert_eq!((report.start_step, report.end_step), (2, 3));

    config.steps = 5;
    let err = adapt_head(student(&device), &config, dir.path(), negative, |s| {
        let mut b = batch(&device, s);
        if s == 5 {
            b.latents = b.latents.mul_scalar(f32::NAN);
        }
        Ok(b)
    })
    .unwrap_err();
    assert!(
        matches!(err, TrainError::NonFinite { step: 5, .. }),
        "{err}"
    );
    // The checkpoint of step 4 is the last good one.
    let latest = tmd_distill::train::checkpoint::latest_valid(dir.path())
        .unwrap()
        .checkpoint
        .unwrap();
    assert_eq!(latest.step, 4);
    let _ = student(&device).num_params();
}
