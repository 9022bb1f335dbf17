//! Activation checkpointing (`train.checkpoint_activations`) of DiT pretraining at tiny size: the
//! flow-matching loss and gradients equal those of the plain graph (<= 1e-5 relative per parameter
//! tensor). The method's stages: tmd-distill's `tests/activation_checkpointing.rs`.

use burn::backend::{Autodiff, NdArray};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use tmd_model::dit::{WanConfig, WanModel};
use tmd_sampler::noise::gaussian;
use tmd_world::pretrain::dit::{flow_matching_grads_checkpointed, flow_matching_loss};

type A = Autodiff<NdArray>;
type Dev = burn::backend::ndarray::NdArrayDevice;

/// Largest relative difference between two gradient sets over a module's parameters
/// (`max |a - b| / max |a|` per tensor), how many tensors had a gradient, and those that had one
/// in only one set.
struct Compare<'a> {
    a: &'a GradientsParams,
    b: &'a GradientsParams,
    worst: f32,
    count: usize,
    mismatch: Vec<String>,
}

impl ModuleVisitor<A> for Compare<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
        match (
            self.a.get::<NdArray, D>(param.id),
            self.b.get::<NdArray, D>(param.id),
        ) {
            (None, None) => {}
            (Some(a), Some(b)) => {
                self.count += 1;
                let scale: f32 = a.clone().abs().max().into_scalar();
                let diff: f32 = (a - b).abs().max().into_scalar();
                let rel = if scale > 0.0 { diff / scale } else { diff };
                assert!(rel.is_finite(), "non-finite gradient difference");
                self.worst = self.worst.max(rel);
            }
            _ => self.mismatch.push(param.id.to_string()),
        }
    }
}

#[test]
fn pretraining_gradients_equal_the_plain_graph() {
    let device = Dev::default();
    A::seed(&device, 3);
    let mut config = WanConfig::tiny();
    config.num_layers = 3;
    let model: WanModel<A> = config.init(&device);
    let model = model.clone().load_record(model.into_record());

    let noise = gaussian::<A, 5>([2, 4, 2, 4, 4], 11, &device);
    let target = gaussian::<A, 5>([2, 4, 2, 4, 4], 12, &device);
    let context = gaussian::<A, 3>([2, 16, 32], 13, &device);
    let t = Tensor::<A, 1>::from_floats([0.3, 0.8], &device);

    let loss = flow_matching_loss(
        &model,
        target.clone(),
        context.clone(),
        t.clone(),
        noise.clone(),
    )
    .unwrap();
    let value: f32 = loss.clone().into_scalar();
    let plain = GradientsParams::from_grads(loss.backward(), &model);
    let (ckpt_value, ckpt) =
        flow_matching_grads_checkpointed(&model, target, context, t, noise).unwrap();
    assert!((f64::from(value) - ckpt_value).abs() <= 1e-6 * f64::from(value));

    let mut cmp = Compare {
        a: &plain,
        b: &ckpt,
        worst: 0.0,
        count: 0,
        mismatch: Vec::new(),
    };
    model.visit(&mut cmp);
    assert!(
        cmp.mismatch.is_empty(),
        "gradient in one set only: {:?}",
        cmp.mismatch
    );
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
