//! Algorithm 1 at tiny size: the grids of the paper, one outer step of a fresh student against the
//! teacher's Euler step, and seeded determinism.

use burn::backend::NdArray;
use burn::prelude::*;
use tmd_flowhead::{FlowHeadConfig, TmdStudent};
use tmd_model::dit::{WanConfig, WanModel};
use tmd_sampler::noise::gaussian;
use tmd_sampler::tmd::head_noise_seed;
use tmd_sampler::{tmd_sample, TmdGrids};

type B = NdArray;

fn teacher(device: &burn::backend::ndarray::NdArrayDevice) -> WanModel<B> {
    B::seed(device, 3);
    let mut config = WanConfig::tiny();
    config.num_layers = 3;
    // Materialise the lazily initialised parameters so that clones share them.
    let model = config.init::<B>(device);
    let record = model.clone().into_record();
    model.load_record(record)
}

#[test]
fn grids_are_the_papers() {
    let g = TmdGrids::new(2, 4, 10.0, 10.0).unwrap();
    let rounded: Vec<f64> = g
        .outer
        .iter()
        .map(|t| (t * 1000.0).round() / 1000.0)
        .collect();
    assert_eq!(rounded, vec![0.999, 0.908, 0.0]);
    assert_eq!((g.outer_steps(), g.inner_steps()), (2, 4));
    assert!(g.inner.windows(2).all(|w| w[1] < w[0]));
    assert!(TmdGrids::new(0, 2, 10.0, 10.0).is_err());
}

#[test]
fn one_outer_step_of_a_fresh_student_is_the_teacher_euler_step_plus_the_noise_share() {
    let device = Default::default();
    let teacher = teacher(&device);
    let config = FlowHeadConfig::paper(1).with_gate_logit_init(-40.0);
    let student = TmdStudent::from_teacher(teacher.clone(), &config).unwrap();
    let grids = TmdGrids::new(1, 1, 10.0, 10.0).unwrap();
    let shape = [1, 4, 2, 4, 4];
    let noise = gaussian::<B, 5>(shape, 11, &device);
    let context = gaussian::<B, 3>([1, 16, 32], 12, &device);
    let x0 = tmd_sample(
        &student,
        noise.clone(),
        context.clone(),
        &grids,
        11,
        &mut |_, _| {},
    )
    .unwrap();

    let t = grids.outer[0];
    let v = teacher
        .forward(
            noise.clone(),
            Tensor::from_floats([(t * 1000.0) as f32], &device),
            context,
        )
        .unwrap();
    let y1 = gaussian::<B, 5>(shape, head_noise_seed(11, 0), &device);
    // y = f(y1, s = t, 0) = t v + (1 - t) y1; x0 = noise - t y.
    let expected = noise - (v * t + y1 * (1.0 - t)) * t;
    let err: f32 = (x0 - expected).abs().max().into_scalar();
    assert!(err < 1e-4, "one-step sample vs Euler + noise share: {err}");
}

#[test]
fn samples_are_a_function_of_the_seed() {
    let device = Default::default();
    let student = TmdStudent::from_teacher(teacher(&device), &FlowHeadConfig::paper(1)).unwrap();
    let grids = TmdGrids::new(2, 2, 10.0, 10.0).unwrap();
    let context = gaussian::<B, 3>([1, 16, 32], 5, &device);
    let mut steps = Vec::new();
    let run = |seed: u64, steps: &mut Vec<usize>| {
        let noise = gaussian::<B, 5>([1, 4, 2, 4, 4], seed, &device);
        tmd_sample(
            &student,
            noise,
            context.clone(),
            &grids,
            seed,
            &mut |i, _| steps.push(i),
        )
        .unwrap()
    };
    let a = run(1, &mut steps);
    let b = run(1, &mut steps);
    let c = run(2, &mut steps);
    assert_eq!(steps, vec![1, 2, 1, 2, 1, 2]);
    let same: f32 = (a.clone() - b).abs().max().into_scalar();
    let differ: f32 = (a.clone() - c).abs().max().into_scalar();
    assert_eq!(same, 0.0);
    assert!(differ > 1e-3);
    let finite: bool = a.is_finite().all().into_scalar();
    assert!(finite);
}
