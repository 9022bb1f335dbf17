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

/// Every float parameter of `module` moved by seeded noise, so that zero-initialised parts (the
/// step embedding's last layer, the fusion modulation) hold values a round trip must keep.
fn perturbed<M: burn::module::Module<B>>(module: M, seed: u64) -> M {
    struct Noise;
    impl burn::module::ModuleMapper<B> for Noise {
        fn map_float<const D: usize>(
            &mut self,
            param: burn::module::Param<Tensor<B, D>>,
        ) -> burn::module::Param<Tensor<B, D>> {
            let (id, t, _) = param.consume();
            let noise = Tensor::random(t.shape(), Distribution::Normal(0.0, 0.1), &t.device());
            burn::module::Param::initialized(id, t + noise)
        }
    }
    B::seed(&Default::default(), seed);
    module.map(&mut Noise)
}

/// Every parameter of `a` equals the one at the same path in `b`, bit for bit.
fn assert_same_params<M: burn::module::Module<B>>(a: &M, b: &M) -> usize {
    use burn_store::ModuleSnapshot;
    let values = |m: &M| -> std::collections::BTreeMap<String, Vec<f32>> {
        m.collect(None, None, false)
            .into_iter()
            .map(|s| (s.full_path(), s.to_data().unwrap().to_vec().unwrap()))
            .collect()
    };
    let (va, vb) = (values(a), values(b));
    assert_eq!(va.keys().collect::<Vec<_>>(), vb.keys().collect::<Vec<_>>());
    for (k, v) in &va {
        assert_eq!(v, &vb[k], "{k} differs");
    }
    va.len()
}

#[test]
fn exported_students_load_back_equal() {
    use tmd_flowhead::{
        export_student, load_exported_student, Student, StudentDefaults, StudentManifest,
        StudentMethod,
    };
    let device = Default::default();
    let mut config = WanConfig::tiny();
    config.num_layers = L;
    let tmp = tempfile::Builder::new()
        .prefix("tmd-student-export-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    for (i, fusion) in [Fusion::Gated, Fusion::Concat].into_iter().enumerate() {
        let head = FlowHeadConfig::paper(2).with_fusion(fusion);
        let student = perturbed(
            TmdStudent::from_teacher(teacher::<B>(&device), &head).unwrap(),
            11,
        );
        let manifest = StudentManifest {
            method: StudentMethod::Tmd { head: head.clone() },
            defaults: StudentDefaults {
                outer_steps: 3,
                ..StudentDefaults::default()
            },
            source: "test".into(),
        };
        let out = dir.join(format!("tmd-{i}"));
        let student = Student::Tmd(student);
        export_student(&student, &config, &manifest, burn::tensor::DType::F32, &out).unwrap();
        let (back, back_manifest, back_config) = load_exported_student::<B>(&out, &device).unwrap();
        assert_eq!(back_manifest, manifest);
        assert_eq!(back_config.num_layers, L);
        let (Student::Tmd(a), Student::Tmd(b)) = (&student, &back) else {
            panic!("a TMD student came back as another method");
        };
        let n = assert_same_params(a, b);
        // The DiT's keys are diffusers' names; the flow head's sit under `flow_head.`.
        let source =
            tmd_model::weights::WeightSource::open_files(&[out.join("model.safetensors")]).unwrap();
        assert_eq!(source.len(), n);
        assert!(source.shape("blocks.3.attn1.to_q.weight").is_some());
        assert!(source
            .shape("flow_head.step_embedding.linear_2.weight")
            .is_some());
        // Same parameters, same flow map.
        let x = inputs::<B>(&device);
        let (s, r) = (
            times::<B>([0.8, 0.5], &device),
            times::<B>([0.3, 0.1], &device),
        );
        let f = |m: &TmdStudent<B>| {
            let bb = m
                .backbone(x.x_t.clone(), s.clone(), x.context.clone())
                .unwrap();
            m.flow_map(&bb, x.y1.clone(), s.clone(), r.clone(), x.y1.clone())
                .unwrap()
        };
        assert_eq!(max_abs(f(a), f(b)), 0.0);
    }
    // A DMD2-v student is its DiT alone, under diffusers' names.
    let dit = perturbed(teacher::<B>(&device), 12);
    let manifest = StudentManifest {
        method: StudentMethod::Dmd2V,
        defaults: StudentDefaults::default(),
        source: "test".into(),
    };
    let out = dir.join("dmd2v");
    let student = Student::Dmd2V(dit);
    export_student(&student, &config, &manifest, burn::tensor::DType::F32, &out).unwrap();
    let (back, _, _) = load_exported_student::<B>(&out, &device).unwrap();
    let (Student::Dmd2V(a), Student::Dmd2V(b)) = (&student, &back) else {
        panic!("a DMD2-v student came back as another method");
    };
    assert_same_params(a, b);
}
