//! The fusion layer: how the flow head takes in its noisy input `y_s` next to the backbone
//! features `m` (TMD.md, "Student architecture"). Both variants start out passing `m` through
//! (nearly) unchanged, so a freshly built student computes the teacher.

use burn::module::Param;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{gelu, sigmoid, silu};
use tmd_model::dit::{layer_norm, modulate};

use crate::config::{FlowHeadConfig, Fusion};

/// Epsilon of the gated block's non-affine LayerNorm (Wan's blocks use 1e-6).
const FUSION_NORM_EPS: f64 = 1e-6;

/// Gated fusion `h = (1 - g) m + g z` with `g = sigmoid(a)`, where `z` is `patch(y_s)` after one
/// AdaLN block conditioned on the head's time embedding `emb(s)`: non-affine LayerNorm modulated
/// by `(shift, scale)`, Linear-GELU-Linear, residual scaled by `gate`. The modulation projection is
/// zero-initialised (adaLN-zero, inferred), so the block starts as the identity on `patch(y_s)`.
#[derive(Module, Debug)]
pub struct GatedFusion<B: Backend> {
    /// `SiLU(emb(s)) -> (shift, scale, gate)`, `dim -> 3 dim`, zero-initialised.
    pub modulation: Linear<B>,
    /// First layer of the block's MLP, `dim -> hidden`.
    pub fc1: Linear<B>,
    /// Second layer of the block's MLP, `hidden -> dim`.
    pub fc2: Linear<B>,
    /// Gate logit `a`, `[1]`.
    pub gate_logit: Param<Tensor<B, 1>>,
}

impl<B: Backend> GatedFusion<B> {
    /// The gate `g = sigmoid(a)`, `[1]`.
    pub fn gate(&self) -> Tensor<B, 1> {
        sigmoid(self.gate_logit.val())
    }

    /// # Shapes
    /// - `m`, `z`: `[batch, L, dim]` backbone features and patch-embedded `y_s`
    /// - `e_s`: `[batch, dim]` the head's time embedding
    /// - output: `[batch, L, dim]`
    pub fn forward(&self, m: Tensor<B, 3>, z: Tensor<B, 3>, e_s: Tensor<B, 2>) -> Tensor<B, 3> {
        let [b, dim] = e_s.dims();
        let mods = self
            .modulation
            .forward(silu(e_s))
            .reshape([b, 3, dim])
            .chunk(3, 1);
        let (shift, scale, gate) = (mods[0].clone(), mods[1].clone(), mods[2].clone());
        let h = modulate(layer_norm(z.clone(), FUSION_NORM_EPS), shift, scale);
        let z = z + self.fc2.forward(gelu(self.fc1.forward(h))) * gate;
        let g = self.gate().reshape([1, 1, 1]);
        m * (g.clone().neg() + 1.0) + z * g
    }
}

/// Concat fusion `h = Linear([m ; z])`, `z = patch(y_s)`, initialised to the identity on `m` and
/// `N(0, std)` on `z` with zero bias.
#[derive(Module, Debug)]
pub struct ConcatFusion<B: Backend> {
    /// `2 dim -> dim`.
    pub proj: Linear<B>,
}

impl<B: Backend> ConcatFusion<B> {
    /// # Shapes
    /// - `m`, `z`: `[batch, L, dim]`
    /// - output: `[batch, L, dim]`
    pub fn forward(&self, m: Tensor<B, 3>, z: Tensor<B, 3>) -> Tensor<B, 3> {
        self.proj.forward(Tensor::cat(vec![m, z], 2))
    }
}

/// The fusion layer of a student: exactly one of the two variants is present.
#[derive(Module, Debug)]
pub struct FusionLayer<B: Backend> {
    /// Present for [`Fusion::Gated`].
    pub gated: Option<GatedFusion<B>>,
    /// Present for [`Fusion::Concat`].
    pub concat: Option<ConcatFusion<B>>,
}

impl<B: Backend> FusionLayer<B> {
    /// A freshly initialised fusion layer for a model of width `dim`.
    pub fn new(config: &FlowHeadConfig, dim: usize, device: &B::Device) -> Self {
        match config.fusion {
            Fusion::Gated => {
                let hidden = ((dim as f64 * config.fusion_mlp_ratio).round() as usize).max(1);
                let zero = LinearConfig::new(dim, 3 * dim)
                    .with_initializer(Initializer::Zeros)
                    .init(device);
                Self {
                    gated: Some(GatedFusion {
                        modulation: zero,
                        fc1: LinearConfig::new(dim, hidden).init(device),
                        fc2: LinearConfig::new(hidden, dim).init(device),
                        gate_logit: Param::from_tensor(Tensor::from_floats(
                            [config.gate_logit_init as f32],
                            device,
                        )),
                    }),
                    concat: None,
                }
            }
            Fusion::Concat => {
                let mut eye = vec![0f32; dim * dim];
                for i in 0..dim {
                    eye[i * dim + i] = 1.0;
                }
                let noise: Tensor<B, 2> = Initializer::Normal {
                    mean: 0.0,
                    std: config.concat_init_std,
                }
                .init([dim, dim], device)
                .val();
                let identity = Tensor::<B, 2>::from_data(TensorData::new(eye, [dim, dim]), device);
                // burn's Linear weight is [d_in, d_out]: rows 0..dim read m, rows dim..2dim read z.
                let weight = Tensor::cat(vec![identity, noise], 0);
                let mut proj = LinearConfig::new(2 * dim, dim)
                    .with_initializer(Initializer::Zeros)
                    .init(device);
                proj.weight = Param::from_tensor(weight);
                Self {
                    gated: None,
                    concat: Some(ConcatFusion { proj }),
                }
            }
        }
    }

    /// Fuses backbone features `m` with the patch-embedded head input `z`.
    ///
    /// # Shapes
    /// - `m`, `z`: `[batch, L, dim]`
    /// - `e_s`: `[batch, dim]` the head's time embedding (used by the gated variant)
    /// - output: `[batch, L, dim]`
    pub fn forward(&self, m: Tensor<B, 3>, z: Tensor<B, 3>, e_s: Tensor<B, 2>) -> Tensor<B, 3> {
        match (&self.gated, &self.concat) {
            (Some(gated), _) => gated.forward(m, z, e_s),
            (None, Some(concat)) => concat.forward(m, z),
            (None, None) => m,
        }
    }
}
