//! Data parallelism at tiny size, two ranks (threads) on the CPU: each rank computes its rows of
//! the global batch's draws, and the mean over the ranks of the stage losses and gradients
//! (stage 1 TM-MeanFlow, the stage-2 critic and student turns, the KD warm-up) equals what one
//! process computes for the whole batch. `sync_module` gives every rank rank 0's parameters.
//!
//! One test only: burn-collective's local server is per backend type and process-wide, so two
//! runs joined at once in one test binary would mix their ranks.

use std::time::Duration;

use burn::backend::{Autodiff, NdArray};
use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use tmd_distill::adapt_head::{tm_meanflow_loss, AdaptHeadBatch, AdaptHeadConfig};
use tmd_distill::distill::discriminator::DiscriminatorConfig;
use tmd_distill::distill::kd::{kd_loss, KdBatch};
use tmd_distill::distill::stage2::{stage2_loss, Stage2Config, Stage2Models};
use tmd_distill::train::data_parallel::{current, join, path_param_ids, Rows, BUCKET_VALUES};
use tmd_flowhead::{FlowHeadConfig, TmdStudent};
use tmd_model::dit::{WanConfig, WanModel};
use tmd_sampler::noise::gaussian;
use tmd_sampler::TmdGrids;

type A = Autodiff<NdArray>;
type Dev = burn::backend::ndarray::NdArrayDevice;

fn wan(seed: u64, device: &Dev) -> WanModel<A> {
    A::seed(device, seed);
    let mut config = WanConfig::tiny();
    config.num_layers = 3;
    path_param_ids(config.init(device))
}

/// `module` with every parameter a new autodiff leaf: ranks must not share autodiff tensors
/// (concurrent backward passes over shared leaves lose gradients), so each rank gets a copy.
fn fresh<M: Module<A>>(module: M) -> M {
    struct Fresh;
    impl ModuleMapper<A> for Fresh {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<A, D>>) -> Param<Tensor<A, D>> {
            let (id, tensor, mapper) = param.consume();
            let copy = Tensor::from_inner(tensor.clone().inner());
            let copy = if tensor.is_require_grad() {
                copy.require_grad()
            } else {
                copy
            };
            Param::from_mapped_value(id, copy, mapper)
        }
    }
    module.map(&mut Fresh)
}

/// Everything one rank needs, built once in the main thread and copied into each rank.
struct Setup {
    student: TmdStudent<A>,
    teacher: WanModel<A>,
    models: Stage2Models<A>,
    batch: AdaptHeadBatch<A>,
    kd: KdBatch<A>,
    negative: Tensor<A, 3>,
}

fn setup(device: &Dev) -> Setup {
    let teacher = wan(9, device);
    let student = TmdStudent::from_teacher(wan(5, device), &FlowHeadConfig::paper(1)).unwrap();
    let disc = DiscriminatorConfig::new(48, vec![1, 2]).with_hidden(8);
    let models = Stage2Models::for_tmd(&teacher, &FlowHeadConfig::paper(1), &disc, device).unwrap();
    Setup {
        student: path_param_ids(student),
        models: path_param_ids(models),
        teacher,
        batch: AdaptHeadBatch {
            latents: gaussian::<A, 5>([4, 4, 2, 4, 4], 1, device),
            context: gaussian::<A, 3>([4, 16, 32], 2, device),
        },
        kd: KdBatch {
            noise: gaussian::<A, 5>([4, 4, 2, 4, 4], 3, device),
            target: gaussian::<A, 5>([4, 4, 2, 4, 4], 4, device),
            context: gaussian::<A, 3>([4, 16, 32], 5, device),
        },
        negative: gaussian::<A, 3>([1, 16, 32], 6, device),
    }
}

impl Setup {
    fn fresh(&self) -> Self {
        Self {
            student: fresh(self.student.clone()),
            teacher: fresh(self.teacher.clone()),
            models: fresh(self.models.clone()),
            batch: self.batch.clone(),
            kd: self.kd.clone(),
            negative: self.negative.clone(),
        }
    }
}

fn adapt_config() -> AdaptHeadConfig {
    AdaptHeadConfig {
        batch: 4,
        r_equals_s: 0.25,
        ..AdaptHeadConfig::default()
    }
}

fn stage2_config() -> Stage2Config {
    Stage2Config {
        batch: 4,
        ..Stage2Config::default()
    }
}

/// `(loss before averaging, loss, every gradient)` of each computation, in a fixed order.
type Outcome = Vec<(f64, f64, Vec<f32>)>;

/// Every gradient of `module`'s parameters held in `grads`, flattened in module order.
fn all_grads<M: AutodiffModule<A>>(grads: &GradientsParams, module: &M) -> Vec<f32> {
    struct Collect<'a>(&'a GradientsParams, Vec<f32>);
    impl ModuleVisitor<A> for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
            if let Some(g) = self.0.get::<NdArray, D>(param.id) {
                self.1.extend(g.into_data().to_vec::<f32>().unwrap());
            }
        }
    }
    let mut collect = Collect(grads, Vec::new());
    module.visit(&mut collect);
    collect.1
}

/// The losses and gradients of this thread's rows; averaged over the ranks when in a run, the
/// gradients in buckets of `bucket` values.
fn compute(s: &Setup, device: &Dev, bucket: usize) -> Outcome {
    /// `(own loss, mean loss, every mean gradient of module)`.
    fn mean<M: AutodiffModule<A>>(
        module: &M,
        value: f64,
        grads: GradientsParams,
        device: &Dev,
        bucket: usize,
    ) -> (f64, f64, Vec<f32>) {
        match current() {
            Some(p) => {
                let grads = p
                    .mean_grads_in_buckets::<A, M>(module, grads, bucket)
                    .unwrap();
                (
                    value,
                    p.mean_scalar::<A>(value, device).unwrap(),
                    all_grads(&grads, module),
                )
            }
            None => (value, value, all_grads(&grads, module)),
        }
    }
    let mut out = Vec::new();

    let loss = tm_meanflow_loss(&s.student, &s.batch, &s.negative, &adapt_config(), 3)
        .unwrap()
        .loss;
    let value = loss.clone().into_scalar().elem::<f64>();
    let grads = GradientsParams::from_grads(loss.backward(), &s.student);
    out.push(mean(&s.student, value, grads, device, bucket));

    let grids = TmdGrids::new(2, 2, 5.0, 5.0).unwrap();
    // Step 4: the critics' turn (fake score and discriminator); step 5: the student's.
    for step in [4, 5] {
        let (value, grads) = stage2_loss(
            &s.models,
            &s.teacher,
            &s.batch,
            &s.negative,
            &stage2_config(),
            &grids,
            step,
        )
        .unwrap();
        out.push(mean(&s.models, value, grads, device, bucket));
    }

    let loss = kd_loss(&s.teacher, &s.kd, 0.99).unwrap();
    let value = loss.clone().into_scalar().elem::<f64>();
    let grads = GradientsParams::from_grads(loss.backward(), &s.teacher);
    out.push(mean(&s.teacher, value, grads, device, bucket));
    out
}

fn first_weight(m: &WanModel<A>) -> Vec<f32> {
    m.blocks[0]
        .ffn
        .fc1
        .weight
        .val()
        .into_data()
        .to_vec()
        .unwrap()
}

#[test]
fn two_ranks_average_to_the_loss_and_gradients_of_one() {
    let device = Dev::default();
    assert_eq!(
        Rows::of(4).unwrap().indices(),
        0..4,
        "outside a run: all rows"
    );
    let s = setup(&device);
    let one = compute(&s, &device, BUCKET_VALUES);
    let (w0, w1) = (wan(11, &device), wan(12, &device));
    assert_ne!(first_weight(&w0), first_weight(&w1));

    // Each rank averages twice: in the default buckets (one bucket for these tiny models) and in
    // buckets of 7 values (most parameters alone, the small ones grouped).
    let ranks: Vec<(Vec<Outcome>, Vec<f32>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2u32)
            .map(|rank| {
                let (s, own) = (s.fresh(), fresh(if rank == 0 { &w0 } else { &w1 }.clone()));
                scope.spawn(move || {
                    let session = join::<NdArray>(2, rank, &device, Duration::from_secs(120))
                        .unwrap()
                        .expect("a session for world 2");
                    let rows = Rows::of(4).unwrap();
                    assert_eq!(rows.indices(), 2 * rank as u64..2 * rank as u64 + 2);
                    assert!(Rows::of(3).is_err(), "3 rows do not split over 2 ranks");
                    let synced = session.sync_module::<A, _>(own).unwrap();
                    let out = vec![compute(&s, &device, BUCKET_VALUES), compute(&s, &device, 7)];
                    session.finish::<NdArray>().unwrap();
                    (out, first_weight(&synced))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    for (rank, (out, synced)) in ranks.iter().enumerate() {
        assert_eq!(
            synced,
            &first_weight(&w0),
            "rank {rank} holds rank 0's weights"
        );
        for (bucketing, out) in out.iter().enumerate() {
            for (k, ((_, v2, g2), (_, v1, g1))) in out.iter().zip(&one).enumerate() {
                let at = format!("computation {k}, rank {rank}, bucketing {bucketing}");
                assert!(
                    (v2 - v1).abs() <= 1e-5 * v1.abs().max(1.0),
                    "{at}: loss {v2} on 2 ranks, {v1} on 1"
                );
                assert_eq!(g2.len(), g1.len(), "{at}: the same gradients");
                let scale = g1.iter().fold(0f32, |m, x| m.max(x.abs()));
                let err = g2
                    .iter()
                    .zip(g1)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(scale > 0.0, "{at}: no gradient to compare");
                assert!(
                    err <= 1e-4 * scale,
                    "{at}: gradient error {err} (scale {scale})"
                );
            }
        }
    }
    // Each rank computed on its own half: their losses before averaging differ.
    for (k, ((a, ..), (b, ..))) in ranks[0].0[0].iter().zip(&ranks[1].0[0]).enumerate() {
        assert!(
            (a - b).abs() > 1e-6 * a.abs(),
            "computation {k}: both ranks saw {a}"
        );
    }
}
