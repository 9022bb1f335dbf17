//! Scaled dot-product attention whose backward pass keeps O(L) memory.
//!
//! burn 0.21's autodiff runs attention as separate kernels (`softmax(q k^T) v`) and keeps the
//! `L_q x L_k` probability matrix for the backward pass: at Wan2.1 1.3B's 32,760 tokens that is
//! 12 heads x 32,760^2 x 4 bytes = 51 GB per block, so a training step at Wan scale cannot fit.
//!
//! [`scaled_dot_product`] is the one attention entry point of the models. On the autodiff
//! backends listed in [`RECOMPUTING_BACKENDS`] it runs the inner backend's fused attention
//! forward (LibTorch: `scaled_dot_product_attention`, i.e. FlashAttention on a GPU; burn CUDA: its
//! fused kernel) and records a custom backward, [`attention_backward`], that keeps only `q`, `k`,
//! `v` and recomputes the scores in chunks of queries (FlashAttention's backward, written with
//! ordinary tensor ops): the largest temporary is `[batch, heads, chunk, L_k]`, bounded by
//! [`BACKWARD_CHUNK_BYTES`]. On every other backend it is burn's `attention`.
//!
//! For one chunk of queries `i` (P = softmax(S), S = q k^T / sqrt(d), dO the output gradient):
//!
//! ```text
//! dP_i = dO_i v^T            D_i = rowsum(P_i * dP_i)      dS_i = P_i * (dP_i - D_i) / sqrt(d)
//! dq_i = dS_i k              dk  += dS_i^T q_i             dv  += P_i^T dO_i
//! ```
//!
//! Products run in the inputs' dtype (bf16 under the bf16 policy); the softmax, `dS` and the
//! `dk`/`dv` accumulators are f32.

use std::any::TypeId;

use burn::backend::Autodiff;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, TensorPrimitive};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::{CheckpointStrategy, NoCheckpointing};
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_autodiff::NodeId;

use crate::same_type;

/// Upper bound, in bytes, of one f32 `[batch, heads, chunk, L_k]` temporary of the backward pass
/// (about four of them are alive at once).
pub const BACKWARD_CHUNK_BYTES: usize = 256 << 20;

/// The autodiff backends on which [`scaled_dot_product`] records the recomputing backward
/// (the training backends of this project; the list depends on the crate's features).
pub const RECOMPUTING_BACKENDS: &[&str] = &[
    "Autodiff<NdArray>",
    #[cfg(feature = "tch")]
    "Autodiff<LibTorch>",
    #[cfg(feature = "cuda")]
    "Autodiff<Cuda>",
];

/// `softmax(q k^T / sqrt(head_dim)) v`, without mask.
///
/// On the backends of [`RECOMPUTING_BACKENDS`] the backward pass keeps O(L) memory (see the
/// module documentation); elsewhere this is burn's `attention`. Both give the same values.
///
/// # Shapes
/// - `q`: `[batch, heads, L_q, head_dim]`
/// - `k`, `v`: `[batch, heads, L_k, head_dim]`
/// - output: `[batch, heads, L_q, head_dim]`
pub fn scaled_dot_product<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
) -> Tensor<B, 4> {
    macro_rules! dispatch {
        ($inner:ty) => {
            if TypeId::of::<B>() == TypeId::of::<Autodiff<$inner>>()
                && has_recomputing_backward::<B>()
            {
                let out = recomputing_attention::<$inner, NoCheckpointing>(
                    same_type(q).expect("checked type"),
                    same_type(k).expect("checked type"),
                    same_type(v).expect("checked type"),
                );
                return same_type(out).expect("checked type");
            }
        };
    }
    dispatch!(burn::backend::NdArray);
    #[cfg(feature = "tch")]
    dispatch!(burn::backend::LibTorch);
    #[cfg(feature = "cuda")]
    dispatch!(burn::backend::Cuda);
    attention(q, k, v, None, None, AttentionModuleOptions::default())
}

/// Environment variable that turns the recomputing backward off (`plain`: burn's autodiff
/// attention, which keeps the `L_q x L_k` matrices), for memory comparisons in benchmarks.
pub const BACKWARD_ENV: &str = "TMD_ATTENTION_BACKWARD";

/// Whether [`scaled_dot_product`] records the recomputing backward on `B`: `B` is one of
/// [`RECOMPUTING_BACKENDS`] and [`BACKWARD_ENV`] is not `plain`. The dispatch is a type test,
/// since burn has no per-backend hook for a caller generic over `B` (and Rust no specialisation).
pub fn has_recomputing_backward<B: Backend>() -> bool {
    static PLAIN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *PLAIN.get_or_init(|| std::env::var(BACKWARD_ENV).is_ok_and(|v| v == "plain")) {
        return false;
    }
    let known = [
        TypeId::of::<Autodiff<burn::backend::NdArray>>(),
        #[cfg(feature = "tch")]
        TypeId::of::<Autodiff<burn::backend::LibTorch>>(),
        #[cfg(feature = "cuda")]
        TypeId::of::<Autodiff<burn::backend::Cuda>>(),
    ];
    known.contains(&TypeId::of::<B>())
}

/// Attention on `Autodiff<I, C>` with the inner backend's (fused) forward and the recomputing
/// backward [`attention_backward`]; usable directly on any autodiff backend.
///
/// # Shapes
/// As [`scaled_dot_product`].
pub fn recomputing_attention<I: Backend, C: CheckpointStrategy>(
    q: Tensor<Autodiff<I, C>, 4>,
    k: Tensor<Autodiff<I, C>, 4>,
    v: Tensor<Autodiff<I, C>, 4>,
) -> Tensor<Autodiff<I, C>, 4> {
    let (q, k, v) = (
        q.into_primitive().tensor(),
        k.into_primitive().tensor(),
        v.into_primitive().tensor(),
    );
    let forward = |q: &_, k: &_, v: &_| {
        I::attention(
            Clone::clone(q),
            Clone::clone(k),
            Clone::clone(v),
            None,
            None,
            AttentionModuleOptions::default(),
        )
    };
    let nodes = [q.node.clone(), k.node.clone(), v.node.clone()];
    let out =
        match <RecomputingAttention as Backward<I, 3>>::prepare::<C>(RecomputingAttention, nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = (
                    prep.checkpoint(&q),
                    prep.checkpoint(&k),
                    prep.checkpoint(&v),
                );
                let out = forward(&q.primitive, &k.primitive, &v.primitive);
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(forward(&q.primitive, &k.primitive, &v.primitive))
            }
        };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// The autodiff node of [`recomputing_attention`]: its state is the checkpointed `q`, `k`, `v`.
#[derive(Debug)]
struct RecomputingAttention;

impl<I: Backend> Backward<I, 3> for RecomputingAttention {
    type State = (NodeId, NodeId, NodeId);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_q, node_k, node_v] = ops.parents;
        let grad = grads.consume::<I>(&ops.node);
        let (q, k, v) = ops.state;
        let tensor =
            |p: I::FloatTensorPrimitive| Tensor::<I, 4>::from_primitive(TensorPrimitive::Float(p));
        let q = tensor(checkpointer.retrieve_node_output(q));
        let k = tensor(checkpointer.retrieve_node_output(k));
        let v = tensor(checkpointer.retrieve_node_output(v));
        let [dq, dk, dv] = attention_backward(q, k, v, tensor(grad), None);
        for (node, g) in [(node_q, dq), (node_k, dk), (node_v, dv)] {
            if let Some(node) = node {
                grads.register::<I>(node.id, g.into_primitive().tensor());
            }
        }
    }
}

/// Gradients `[dq, dk, dv]` of `softmax(q k^T / sqrt(d)) v` for the output gradient `d_out`,
/// recomputing the scores `chunk` queries at a time (`None`: as many as [`BACKWARD_CHUNK_BYTES`]
/// allows). Each gradient has its input's dtype.
///
/// # Shapes
/// - `q`, `d_out`: `[batch, heads, L_q, head_dim]`
/// - `k`, `v`: `[batch, heads, L_k, head_dim]`
/// - output: the shapes of `q`, `k`, `v`
pub fn attention_backward<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    d_out: Tensor<B, 4>,
    chunk: Option<usize>,
) -> [Tensor<B, 4>; 3] {
    let [b, h, lq, d] = q.dims();
    let lk = k.dims()[2];
    let (q_dtype, k_dtype, v_dtype) = (q.dtype(), k.dtype(), v.dtype());
    let compute = q_dtype;
    let d_out = d_out.cast(compute);
    let (k, v) = (k.cast(compute), v.cast(compute));
    let scale = 1.0 / (d as f64).sqrt();
    let chunk = chunk
        .unwrap_or(BACKWARD_CHUNK_BYTES / (4 * b * h * lk).max(1))
        .clamp(1, lq.max(1));
    let device = q.device();
    let mut dk = Tensor::<B, 4>::zeros([b, h, lk, d], (&device, DType::F32));
    let mut dv = Tensor::<B, 4>::zeros([b, h, lk, d], (&device, DType::F32));
    let (k_t, v_t) = (k.clone().swap_dims(2, 3), v.swap_dims(2, 3));
    let mut dq = Vec::with_capacity(lq.div_ceil(chunk));
    for start in (0..lq).step_by(chunk) {
        let end = (start + chunk).min(lq);
        let q_i = q.clone().slice([0..b, 0..h, start..end, 0..d]);
        let do_i = d_out.clone().slice([0..b, 0..h, start..end, 0..d]);
        let p = softmax(q_i.clone().matmul(k_t.clone()).cast(DType::F32) * scale, 3);
        let dp = do_i.clone().matmul(v_t.clone()).cast(DType::F32);
        let row = (p.clone() * dp.clone()).sum_dim(3);
        let ds = (p.clone() * (dp - row) * scale).cast(compute);
        dv = dv
            + p.cast(compute)
                .swap_dims(2, 3)
                .matmul(do_i)
                .cast(DType::F32);
        dk = dk + ds.clone().swap_dims(2, 3).matmul(q_i).cast(DType::F32);
        dq.push(ds.matmul(k.clone()));
    }
    [
        Tensor::cat(dq, 2).cast(q_dtype),
        dk.cast(k_dtype),
        dv.cast(v_dtype),
    ]
}
