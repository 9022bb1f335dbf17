//! The stage-2 loop at tiny size: the 1:4 schedule updates one side at a time, the run resumes
//! exactly, and the DMD2-v baseline runs through the same loop.

use burn::backend::{Autodiff, NdArray};
use burn::module::Module;
use burn::prelude::*;
use tmd_distill::adapt_head::AdaptHeadBatch;
use tmd_distill::distill::discriminator::DiscriminatorConfig;
use tmd_distill::distill::stage2::{
    distill, stage2_loss, update_of, Stage2Config, Stage2Models, Stage2Update,
};
use tmd_distill::train::{CheckpointConfig, OptimizerConfig};
use tmd_flowhead::FlowHeadConfig;
use tmd_model::dit::{WanConfig, WanModel};
use tmd_sampler::noise::gaussian;
use tmd_sampler::TmdGrids;

type A = Autodiff<NdArray>;
type Dev = burn::backend::ndarray::NdArrayDevice;

/// The tests of this file run one at a time: they seed and draw from the backend's process-wide
/// generator (`teacher`, the models' initialisation), and a test drawing while another seeds
/// made the straight and the resumed run of `stage2_resumes_exactly_and_runs_the_dmd_baseline`
/// start from different models (seen once in CI: 2.448 vs 2.435 after 3 steps).
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

fn models(teacher: &WanModel<A>, tmd: bool, device: &Dev) -> Stage2Models<A> {
    let disc = DiscriminatorConfig::new(48, vec![1, 2]).with_hidden(8);
    if tmd {
        Stage2Models::for_tmd(teacher, &FlowHeadConfig::paper(1), &disc, device).unwrap()
    } else {
        Stage2Models::for_dmd(teacher, &disc, device)
    }
}

fn batch(device: &Dev, step: u64) -> AdaptHeadBatch<A> {
    AdaptHeadBatch {
        latents: gaussian::<A, 5>([2, 4, 2, 4, 4], 1000 + step, device),
        context: gaussian::<A, 3>([2, 16, 32], 2000 + step, device),
    }
}

fn config() -> Stage2Config {
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
        ..Stage2Config::default()
    }
}

fn first_value(t: Tensor<A, 2>) -> f32 {
    t.into_data().to_vec::<f32>().unwrap()[0]
}

#[test]
fn the_schedule_updates_one_side_per_iteration() {
    let _serial = serial();
    assert_eq!(update_of(5, 5), Stage2Update::Student);
    assert_eq!(update_of(4, 5), Stage2Update::Critics);
    let device = Dev::default();
    let teacher = teacher(&device);
    let negative = gaussian::<A, 3>([1, 16, 32], 7, &device);
    let m = models(&teacher, true, &device);
    let grids = TmdGrids::new(2, 2, 10.0, 10.0).unwrap();
    let student_w = |m: &Stage2Models<A>| m.tmd.as_ref().unwrap().dit.blocks[0].ffn.fc1.weight.id;
    let fake_w = |m: &Stage2Models<A>| m.fake.blocks[0].ffn.fc1.weight.id;

    let (value, grads) = stage2_loss(
        &m,
        &teacher,
        &batch(&device, 4),
        &negative,
        &config(),
        &grids,
        4,
    )
    .unwrap();
    assert!(value.is_finite());
    assert!(
        grads.get::<NdArray, 2>(fake_w(&m)).is_some(),
        "critic step trains the fake score"
    );
    assert!(
        grads.get::<NdArray, 2>(student_w(&m)).is_none(),
        "critic step leaves the student"
    );

    let (value, grads) = stage2_loss(
        &m,
        &teacher,
        &batch(&device, 5),
        &negative,
        &config(),
        &grids,
        5,
    )
    .unwrap();
    assert!(value.is_finite());
    assert!(
        grads.get::<NdArray, 2>(student_w(&m)).is_some(),
        "student step trains the student"
    );
    assert!(
        grads.get::<NdArray, 2>(fake_w(&m)).is_none(),
        "student step leaves the critics"
    );
}

/// `cargo xtask distill` freezes the teacher (`no_grad`) before building the trained copies from
/// it: the fake score and the student (TMD backbone and head, or the DMD2-v DiT) must still train.
#[test]
fn copies_of_a_frozen_teacher_train() {
    let _serial = serial();
    let device = Dev::default();
    let frozen = teacher(&device).no_grad();
    let negative = gaussian::<A, 3>([1, 16, 32], 7, &device);
    let grids = TmdGrids::new(2, 2, 10.0, 10.0).unwrap();
    for tmd in [true, false] {
        let m = models(&frozen, tmd, &device);
        let student_w = match (&m.tmd, &m.dmd) {
            (Some(s), _) => s.dit.blocks[0].ffn.fc1.weight.id,
            (None, Some(d)) => d.blocks[0].ffn.fc1.weight.id,
            _ => unreachable!(),
        };
        let fake_w = m.fake.blocks[0].ffn.fc1.weight.id;
        for (step, id, what) in [(4, fake_w, "fake score"), (5, student_w, "student")] {
            let (_, grads) = stage2_loss(
                &m,
                &frozen,
                &batch(&device, step),
                &negative,
                &config(),
                &grids,
                step,
            )
            .unwrap();
            assert!(
                grads.get::<NdArray, 2>(id).is_some(),
                "tmd={tmd}: the {what} gets gradients at step {step}"
            );
        }
        assert!(
            !frozen.blocks[0].ffn.fc1.weight.is_require_grad(),
            "the teacher stays frozen"
        );
    }
}

#[test]
fn stage2_resumes_exactly_and_runs_the_dmd_baseline() {
    let _serial = serial();
    let device = Dev::default();
    let teacher = teacher(&device);
    let negative = gaussian::<A, 3>([1, 16, 32], 7, &device);
    let data = |s| Ok(batch(&device, s));

    let straight = tempfile::tempdir().unwrap();
    let (a, report) = distill(
        models(&teacher, true, &device),
        &teacher,
        &config(),
        straight.path(),
        negative.clone(),
        data,
    )
    .unwrap();
    assert_eq!(report.end_step, 6);

    let split = tempfile::tempdir().unwrap();
    let mut half = config();
    half.steps = 3;
    distill(
        models(&teacher, true, &device),
        &teacher,
        &half,
        split.path(),
        negative.clone(),
        data,
    )
    .unwrap();
    let (b, report) = distill(
        models(&teacher, true, &device),
        &teacher,
        &config(),
        split.path(),
        negative.clone(),
        data,
    )
    .unwrap();
    assert_eq!((report.start_step, report.end_step), (3, 6));
    let wa = first_value(a.tmd.unwrap().dit.blocks[0].ffn.fc1.weight.val());
    let wb = first_value(b.tmd.unwrap().dit.blocks[0].ffn.fc1.weight.val());
    assert_eq!(wa, wb, "resumed run differs from the straight one");
    let start = first_value(teacher.blocks[0].ffn.fc1.weight.val());
    assert_ne!(wa, start, "the student trained");

    let dmd = tempfile::tempdir().unwrap();
    let (m, _) = distill(
        models(&teacher, false, &device),
        &teacher,
        &config(),
        dmd.path(),
        negative,
        data,
    )
    .unwrap();
    assert!(m.dmd.is_some() && m.tmd.is_none());
    let _ = m.num_params();
}

/// `train.backward_simulation`: at M = 2 it changes what the student and the critics see (the
/// later outer time's input is the student's own state), trains the same sides as without it,
/// is part of the resume hash, and is a no-op at M = 1 (every input is at the first outer time).
#[test]
fn backward_simulation_changes_the_later_inputs_only() {
    let _serial = serial();
    let device = Dev::default();
    let teacher = teacher(&device);
    let negative = gaussian::<A, 3>([1, 16, 32], 7, &device);
    let on = Stage2Config {
        backward_simulation: true,
        ..config()
    };
    assert_ne!(on.resume_hash(), config().resume_hash());
    let student_w = |m: &Stage2Models<A>| m.tmd.as_ref().unwrap().dit.blocks[0].ffn.fc1.weight.id;
    let m = models(&teacher, true, &device);
    let loss = |config: &Stage2Config, grids: &TmdGrids, step: u64| {
        stage2_loss(
            &m,
            &teacher,
            &batch(&device, step),
            &negative,
            config,
            grids,
            step,
        )
        .unwrap()
    };
    let m2 = TmdGrids::new(2, 2, 10.0, 10.0).unwrap();
    // Steps 4 (critics) and 5 (student); with batch 2 and seed 0 each has a row at the later time.
    for step in [4, 5] {
        let (off_value, _) = loss(&config(), &m2, step);
        let (on_value, grads) = loss(&on, &m2, step);
        assert!(on_value.is_finite());
        assert_ne!(
            on_value, off_value,
            "step {step}: the inputs did not change"
        );
        let student = grads.get::<NdArray, 2>(student_w(&m)).is_some();
        assert_eq!(student, step == 5, "step {step}: the sides trained");
    }
    let m1 = TmdGrids::new(1, 2, 10.0, 10.0).unwrap();
    let one = |c: Stage2Config| Stage2Config {
        outer_steps: 1,
        ..c
    };
    for step in [4, 5] {
        assert_eq!(
            loss(&one(on.clone()), &m1, step).0,
            loss(&one(config()), &m1, step).0
        );
    }
}
