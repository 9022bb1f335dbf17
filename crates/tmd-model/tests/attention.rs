//! The attention backward with O(L) memory (`tmd_model::attention`) against PyTorch autograd
//! through `scaled_dot_product_attention`, and against burn's own autodiff of plain attention.
//!
//! Fixtures: `python3 scripts/reference/attention_fixtures.py` (see its header):
//! f64 autograd in PyTorch, stored as f32. Tolerance: rel err = max|a - b| / max|b| <= 1e-5.

use std::path::Path;

use burn::backend::{Autodiff, NdArray};
use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::Distribution;
use tmd_model::attention::{attention_backward, has_recomputing_backward, scaled_dot_product};
use tmd_model::weights::WeightSource;

type TB = NdArray<f32>;
type AD = Autodiff<TB>;

const TOL: f32 = 1e-5;

fn fixtures() -> WeightSource {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/attention/grads.safetensors");
    WeightSource::open_files(&[file]).expect("open attention fixtures")
}

fn load<B: Backend>(io: &WeightSource, key: &str) -> Tensor<B, 4> {
    let data = io
        .read(key)
        .unwrap_or_else(|e| panic!("fixture tensor {key}: {e}"));
    Tensor::from_data(data.convert::<f32>(), &Default::default())
}

fn rel_err<B: Backend>(name: &str, ours: Tensor<B, 4>, reference: Tensor<B, 4>) -> f32 {
    assert_eq!(ours.dims(), reference.dims(), "{name}: shape");
    let scale: f32 = reference.clone().abs().max().into_scalar().elem();
    let diff: f32 = (ours - reference).abs().max().into_scalar().elem();
    println!(
        "{name:10}: max abs diff {diff:.3e}, rel err {:.3e}",
        diff / scale
    );
    diff / scale
}

/// Output and q/k/v gradients of `sum(attn(q, k, v) * d_out)` on `AD` through `attend`.
fn autodiff_grads(
    q: Tensor<TB, 4>,
    k: Tensor<TB, 4>,
    v: Tensor<TB, 4>,
    d_out: Tensor<TB, 4>,
    attend: impl Fn(Tensor<AD, 4>, Tensor<AD, 4>, Tensor<AD, 4>) -> Tensor<AD, 4>,
) -> [Tensor<TB, 4>; 4] {
    let q = Tensor::<AD, 4>::from_inner(q).require_grad();
    let k = Tensor::<AD, 4>::from_inner(k).require_grad();
    let v = Tensor::<AD, 4>::from_inner(v).require_grad();
    let out = attend(q.clone(), k.clone(), v.clone());
    let grads = (out.clone() * Tensor::from_inner(d_out)).sum().backward();
    [
        out.inner(),
        q.grad(&grads).expect("dq"),
        k.grad(&grads).expect("dk"),
        v.grad(&grads).expect("dv"),
    ]
}

#[test]
fn the_ndarray_autodiff_backend_records_the_recomputing_backward() {
    assert!(has_recomputing_backward::<AD>());
    assert!(!has_recomputing_backward::<TB>());
    assert!(!has_recomputing_backward::<Autodiff<NdArray<f64>>>());
}

#[test]
fn gradients_match_pytorch_autograd() {
    let io = fixtures();
    for case in ["self", "cross"] {
        let t = |name: &str| load::<TB>(&io, &format!("{case}_{name}"));
        let [out, dq, dk, dv] =
            autodiff_grads(t("q"), t("k"), t("v"), t("dout"), scaled_dot_product);
        for (name, ours, reference) in [
            ("out", out, t("out")),
            ("dq", dq, t("dq")),
            ("dk", dk, t("dk")),
            ("dv", dv, t("dv")),
        ] {
            let err = rel_err(&format!("{case} {name}"), ours, reference);
            assert!(err <= TOL, "{case} {name}: rel err {err:.3e} > {TOL:.0e}");
        }
    }
}

#[test]
fn every_chunk_size_gives_the_pytorch_gradients() {
    let io = fixtures();
    let t = |name: &str| load::<TB>(&io, &format!("self_{name}"));
    // 11 queries: chunks of 1 (one query at a time), 4 (a ragged last chunk) and 11 (one chunk).
    for chunk in [1, 4, 11] {
        let [dq, dk, dv] = attention_backward(t("q"), t("k"), t("v"), t("dout"), Some(chunk));
        for (name, ours, reference) in [
            ("dq", dq, t("dq")),
            ("dk", dk, t("dk")),
            ("dv", dv, t("dv")),
        ] {
            let err = rel_err(&format!("chunk {chunk} {name}"), ours, reference);
            assert!(
                err <= TOL,
                "chunk {chunk} {name}: rel err {err:.3e} > {TOL:.0e}"
            );
        }
    }
}

#[test]
fn gradients_match_burns_plain_attention_on_random_inputs() {
    let device = Default::default();
    let r =
        |shape: [usize; 4]| Tensor::<TB, 4>::random(shape, Distribution::Normal(0.0, 2.0), &device);
    let (q, k, v, d_out) = (
        r([2, 4, 37, 16]),
        r([2, 4, 23, 16]),
        r([2, 4, 23, 16]),
        r([2, 4, 37, 16]),
    );
    let ours = autodiff_grads(
        q.clone(),
        k.clone(),
        v.clone(),
        d_out.clone(),
        scaled_dot_product,
    );
    let plain = autodiff_grads(q, k, v, d_out, |q, k, v| {
        attention(q, k, v, None, None, AttentionModuleOptions::default())
    });
    // Both sides round in f32 (scores of std ~8 here), so the bound is looser than against the
    // f64 reference above.
    for ((name, a), b) in ["out", "dq", "dk", "dv"].into_iter().zip(ours).zip(plain) {
        let err = rel_err(name, a, b);
        assert!(
            err <= 1e-4,
            "{name}: rel err {err:.3e} against burn's plain attention"
        );
    }
}

#[test]
fn only_the_inputs_that_require_grad_get_a_gradient() {
    let device = Default::default();
    let r =
        |shape: [usize; 4]| Tensor::<AD, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let q = r([1, 2, 6, 8]).require_grad();
    let (k, v) = (r([1, 2, 6, 8]), r([1, 2, 6, 8]).require_grad());
    let grads = scaled_dot_product(q.clone(), k.clone(), v.clone())
        .sum()
        .backward();
    assert!(q.grad(&grads).is_some());
    assert!(k.grad(&grads).is_none());
    assert!(v.grad(&grads).is_some());
}
