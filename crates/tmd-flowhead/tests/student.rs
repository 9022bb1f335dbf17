//! The student against its teacher at tiny size: a fresh student computes the teacher, one inner
//! step with s = t is the teacher's Euler step up to the `(1 - t)` share of the noise, gradients
//! reach backbone, head and the new parts, bad input is named.

use burn::backend::{Autodiff, NdArray};
use burn::prelude::*;
use burn::tensor::Distribution;
use tmd_flowhead::{rollout, FlowHeadConfig, FlowHeadError, Fusion, TmdStudent};
use tmd_model::dit::{WanConfig, WanModel};

type B = NdArray;
type A = Autodiff<NdArray>;

const L: usize = 4;

fn teacher<Bk: Backend>(device: &Bk::Device) -> WanModel<Bk> {
    Bk::seed(device, 7);
    let mut config = WanConfig::tiny();
    config.num_layers = L;
    // burn initialises parameters lazily, and each clone of an untouched parameter draws its
    // own values: materialise them once so that every clone is the same teacher.
    let model = config.init::<Bk>(device);
    let record = model.clone().into_record();
    model.load_record(record)
}

struct Inputs<Bk: Backend> {
    x_t: Tensor<Bk, 5>,
    context: Tensor<Bk, 3>,
    y1: Tensor<Bk, 5>,
}

fn inputs<Bk: Backend>(device: &Bk::Device) -> Inputs<Bk> {
    let n = Distribution::Normal(0.0, 1.0);
    Inputs {
        x_t: Tensor::random([2, 4, 2, 4, 6], n, device),
        context: Tensor::random([2, 16, 32], n, device),
        y1: Tensor::random([2, 4, 2, 4, 6], n, device),
    }
}

fn max_abs<Bk: Backend>(a: Tensor<Bk, 5>, b: Tensor<Bk, 5>) -> f32 {
    (a - b).abs().max().into_scalar().elem()
}

fn times<Bk: Backend>(v: [f32; 2], device: &Bk::Device) -> Tensor<Bk, 1> {
    Tensor::from_floats(v, device)
}

#[test]
fn fresh_student_computes_the_teacher() {
    let device = Default::default();
    let teacher = teacher::<B>(&device);
    let x = inputs::<B>(&device);
    let t = [0.9f32, 0.35];
    let v = teacher
        .forward(
            x.x_t.clone(),
            times::<B>([t[0] * 1000.0, t[1] * 1000.0], &device),
            x.context.clone(),
        )
        .unwrap();
    let scale: f32 = v.clone().abs().max().into_scalar();

    for (fusion, closed, tol) in [
        // Gate exactly shut / concat with a zero patch half: the head is the teacher's last blocks.
        (Fusion::Gated, true, 1e-5),
        (Fusion::Concat, true, 1e-5),
        // The defaults: gate sigmoid(-8) = 3.4e-4; concat's patch half N(0, 0.01) moves the
        // output by ~15% at this width (it grows with sqrt(dim): the paper's "less stable").
        (Fusion::Gated, false, 5e-3),
        (Fusion::Concat, false, 0.5),
    ] {
        let mut config = FlowHeadConfig::paper(2).with_fusion(fusion);
        if closed {
            config = config.with_gate_logit_init(-40.0).with_concat_init_std(0.0);
        }
        let student = TmdStudent::from_teacher(teacher.clone(), &config).unwrap();
        assert_eq!((student.backbone_blocks(), student.head_blocks), (2, 2));
        let bb = student
            .backbone(x.x_t.clone(), times::<B>(t, &device), x.context.clone())
            .unwrap();
        // s = t; r is arbitrary: the step embedding starts at zero.
        let head = student
            .head(
                &bb,
                x.y1.clone(),
                times::<B>(t, &device),
                times::<B>([0.1, 0.0], &device),
            )
            .unwrap();
        let err = max_abs(head, v.clone()) / scale;
        assert!(
            err < tol,
            "{fusion:?} closed={closed}: relative error {err}"
        );
        if !closed {
            assert!(
                err > 0.0,
                "{fusion:?}: the fusion should let y_s in a little"
            );
        }
    }
}

#[test]
fn one_inner_step_at_s_equal_t_is_the_teacher_euler_step() {
    let device = Default::default();
    let teacher = teacher::<B>(&device);
    let x = inputs::<B>(&device);
    let t = 0.9f32;
    let config = FlowHeadConfig::paper(2).with_gate_logit_init(-40.0);
    let student = TmdStudent::from_teacher(teacher.clone(), &config).unwrap();
    let bb = student
        .backbone(
            x.x_t.clone(),
            times::<B>([t, t], &device),
            x.context.clone(),
        )
        .unwrap();
    let y = rollout(&student, &bb, x.y1.clone(), &[t as f64, 0.0]).unwrap();
    let v = teacher
        .forward(
            x.x_t.clone(),
            times::<B>([t * 1000.0, t * 1000.0], &device),
            x.context.clone(),
        )
        .unwrap();
    // f(y1, t, 0) = y1 - t (y1 - v) = t v + (1 - t) y1.
    let expected = v.clone() * t + x.y1.clone() * (1.0 - t);
    let err = max_abs(y.clone(), expected);
    assert!(err < 1e-4, "flow map vs t v + (1 - t) y1: {err}");
    // The outer update x - (t - t') y is the Euler step x - (t - t') v but for (1 - t)(y1 - v).
    let dt = t - 0.4;
    let student_step = x.x_t.clone() - y * dt;
    let euler = x.x_t.clone() - v.clone() * dt;
    let predicted_gap = (x.y1.clone() - v) * (dt * (1.0 - t));
    let err = max_abs(euler - student_step, predicted_gap);
    assert!(err < 1e-4, "Euler gap: {err}");
}

#[test]
fn rollout_gradients_reach_backbone_head_and_new_parts() {
    let device = Default::default();
    let student =
        TmdStudent::from_teacher(teacher::<A>(&device), &FlowHeadConfig::paper(2)).unwrap();
    let x = inputs::<A>(&device);
    let bb = student
        .backbone(x.x_t, times::<A>([0.9, 0.5], &device), x.context)
        .unwrap();
    let y = rollout(&student, &bb, x.y1, &[0.999, 0.7, 0.0]).unwrap();
    let grads = y.powi_scalar(2).mean().backward();
    let norm = |g: Option<Tensor<B, 2>>| -> f32 {
        g.expect("gradient exists")
            .powi_scalar(2)
            .sum()
            .into_scalar()
    };
    let blocks = &student.dit.blocks;
    for (name, g) in [
        (
            "backbone block 0",
            norm(blocks[0].ffn.fc1.weight.grad(&grads)),
        ),
        (
            "head block L-1",
            norm(blocks[L - 1].ffn.fc1.weight.grad(&grads)),
        ),
        (
            "step embedding (zero-initialised layer)",
            norm(student.step_embedding.linear_2.weight.grad(&grads)),
        ),
        (
            "fusion modulation (zero-initialised)",
            norm(
                student
                    .fusion
                    .gated
                    .as_ref()
                    .unwrap()
                    .modulation
                    .weight
                    .grad(&grads),
            ),
        ),
    ] {
        assert!(
            g > 0.0 && g.is_finite(),
            "{name}: squared gradient norm {g}"
        );
    }
    let gate = student
        .fusion
        .gated
        .as_ref()
        .unwrap()
        .gate_logit
        .grad(&grads)
        .unwrap();
    let gate: f32 = gate.abs().sum().into_scalar();
    assert!(gate > 0.0, "gate logit gradient {gate}");
}

#[test]
fn bad_configs_grids_and_shapes_are_named() {
    let device = Default::default();
    for h in [0, L + 1] {
        let err =
            TmdStudent::from_teacher(teacher::<B>(&device), &FlowHeadConfig::paper(h)).unwrap_err();
        assert!(
            matches!(
                err,
                FlowHeadError::Config {
                    field: "head_blocks",
                    ..
                }
            ),
            "{err}"
        );
    }
    let student =
        TmdStudent::from_teacher(teacher::<B>(&device), &FlowHeadConfig::paper(L)).unwrap();
    assert_eq!(student.backbone_blocks(), 0);
    let x = inputs::<B>(&device);
    let bb = student
        .backbone(x.x_t, times::<B>([0.5, 0.5], &device), x.context)
        .unwrap();
    for grid in [vec![0.5], vec![0.2, 0.5], vec![1.2, 0.0]] {
        let err = rollout(&student, &bb, x.y1.clone(), &grid).unwrap_err();
        assert!(matches!(err, FlowHeadError::Grid { .. }), "{grid:?}: {err}");
    }
    let wrong: Tensor<B, 5> = Tensor::zeros([2, 4, 2, 4, 4], &device);
    let err = student
        .head(
            &bb,
            wrong,
            times::<B>([0.5, 0.5], &device),
            times::<B>([0.0, 0.0], &device),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("y_s") && err.contains("[2, 4, 2, 4, 4]"),
        "{err}"
    );
}
