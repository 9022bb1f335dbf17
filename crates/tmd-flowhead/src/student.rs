//! The student: the teacher's DiT split at block `L - H` into main backbone and flow head, plus the
//! two new parts (fusion layer, zero-initialised step embedding), and the conditional flow map.

use burn::nn::Initializer;
use burn::prelude::*;
use burn::tensor::activation::silu;
use tmd_model::dit::{
    sinusoidal_time_embedding, MlpEmbedder, RopeTables, WanModel, NUM_TRAIN_TIMESTEPS,
};

use crate::config::FlowHeadConfig;
use crate::error::{FlowHeadError, Result};
use crate::fusion::FusionLayer;

/// What the main backbone hands to every flow-head pass of one outer step.
#[derive(Debug, Clone)]
pub struct Backbone<B: Backend> {
    /// Token features `m` after block `L - H`, `[batch, tokens, dim]`.
    pub m: Tensor<B, 3>,
    /// Embedded text, `[batch, text_len, dim]`.
    pub context: Tensor<B, 3>,
    /// RoPE tables of the token grid.
    pub rope: RopeTables<B>,
    /// Token grid `(frames, height, width)` in patches.
    pub grid: [usize; 3],
    /// Shape of the latent `x_t` (and of every `y_s`), `[batch, channels, frames, height, width]`.
    pub latent_shape: [usize; 5],
}

impl<B: burn::tensor::backend::AutodiffBackend> Backbone<B> {
    /// The same features without gradient tracking, for passes that must not train (targets,
    /// finite differences).
    pub fn inner(&self) -> Backbone<B::InnerBackend> {
        Backbone {
            m: self.m.clone().inner(),
            context: self.context.clone().inner(),
            rope: RopeTables {
                cos: self.rope.cos.clone().inner(),
                sin: self.rope.sin.clone().inner(),
            },
            grid: self.grid,
            latent_shape: self.latent_shape,
        }
    }
}

/// The TMD student (TMD.md, "Student architecture").
///
/// `dit` holds the teacher's modules, all trained: the backbone uses its embeddings and blocks
/// `0..L-H`, the flow head its blocks `L-H..L`, output head and (shared) patch embedding.
#[derive(Module, Debug)]
pub struct TmdStudent<B: Backend> {
    /// The teacher's DiT (embeddings, `L` blocks, output head), initialised from the teacher.
    pub dit: WanModel<B>,
    /// Embedding of the step length `s - r` (sinusoid, Linear-SiLU-Linear, the last layer
    /// zero-initialised), added to the teacher's `emb(s)` for the head blocks.
    pub step_embedding: MlpEmbedder<B>,
    /// How `y_s` enters the head.
    pub fusion: FusionLayer<B>,
    /// `H`, the number of head blocks.
    pub head_blocks: usize,
}

impl<B: Backend> TmdStudent<B> {
    /// The student of `teacher` with the head of `config` (the teacher is moved in; clone it
    /// first to keep it).
    ///
    /// # Errors
    /// [`FlowHeadError::Config`] if `config` does not fit the teacher.
    pub fn from_teacher(teacher: WanModel<B>, config: &FlowHeadConfig) -> Result<Self> {
        config.validate(teacher.blocks.len())?;
        let device = teacher.head.proj.weight.device();
        let dim = teacher.dim();
        let mut step_embedding = MlpEmbedder::new(teacher.freq_dim, dim, &device);
        step_embedding.linear_2 = burn::nn::LinearConfig::new(dim, dim)
            .with_initializer(Initializer::Zeros)
            .init(&device);
        Ok(Self {
            fusion: FusionLayer::new(config, dim, &device),
            step_embedding,
            head_blocks: config.head_blocks,
            // Fresh parameter ids: the teacher (or another copy of it) may train or be frozen
            // beside the student, and must not share its optimizer state or gradients.
            dit: tmd_model::weights::with_fresh_param_ids(teacher),
        })
    }

    /// `L`, the teacher's number of blocks.
    pub fn teacher_blocks(&self) -> usize {
        self.dit.blocks.len()
    }

    /// `L - H`, the number of backbone blocks.
    pub fn backbone_blocks(&self) -> usize {
        self.teacher_blocks() - self.head_blocks
    }

    /// The main backbone: embeddings and blocks `0..L-H` on `(x_t, t, c)`.
    ///
    /// # Shapes
    /// - `x_t`: `[batch, in_channels, frames, height, width]`
    /// - `t`: `[batch]`, flow time in `[0, 1]` (the DiT is fed `1000 t`)
    /// - `context`: `[batch, l <= text_len, text_dim]`
    ///
    /// # Errors
    /// [`FlowHeadError::Model`] for shapes the DiT does not accept.
    pub fn backbone(
        &self,
        x_t: Tensor<B, 5>,
        t: Tensor<B, 1>,
        context: Tensor<B, 3>,
    ) -> Result<Backbone<B>> {
        let latent_shape = x_t.dims();
        let inputs = self.dit.embed(x_t, t * NUM_TRAIN_TIMESTEPS, context)?;
        let m = self
            .dit
            .forward_blocks(inputs.tokens.clone(), &inputs, 0..self.backbone_blocks());
        Ok(Backbone {
            m,
            context: inputs.context,
            rope: inputs.rope,
            grid: inputs.grid,
            latent_shape,
        })
    }

    /// The head's time conditioning: `emb(s)` (the teacher's time embedding) and
    /// `e = emb(s) + emb_step(s - r)`, with `e0 = time_projection(SiLU(e))` for the blocks.
    ///
    /// # Shapes
    /// - `s`, `r`: `[batch]` flow times in `[0, 1]`
    /// - output: `emb(s)` `[batch, dim]`, `e` `[batch, dim]`, `e0` `[batch, 6, dim]`
    pub fn head_time_embedding(
        &self,
        s: Tensor<B, 1>,
        r: Tensor<B, 1>,
    ) -> (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 3>) {
        let [b] = s.dims();
        let (e_s, _) = self.dit.time_embed(s.clone() * NUM_TRAIN_TIMESTEPS);
        let step = sinusoidal_time_embedding((s - r) * NUM_TRAIN_TIMESTEPS, self.dit.freq_dim);
        let step = self
            .step_embedding
            .linear_2
            .forward(silu(self.step_embedding.linear_1.forward(step)));
        let e = e_s.clone() + step;
        let e0 = self.dit.time_projection.forward(silu(e.clone()));
        let dim = e.dims()[1];
        (e_s, e, e0.reshape([b, 6, dim]))
    }

    /// The flow head: `y_s` patch-embedded, fused with `m`, blocks `L-H..L` conditioned on
    /// `(s, r)`, output head. Returns the raw head output, an estimate of `y1 - u`.
    ///
    /// # Shapes
    /// - `y_s`: `backbone.latent_shape`
    /// - `s`, `r`: `[batch]`, `0 <= r <= s <= 1`
    /// - output: `backbone.latent_shape`
    ///
    /// # Errors
    /// [`FlowHeadError::Shape`] if `y_s` does not have the latent's shape.
    pub fn head(
        &self,
        backbone: &Backbone<B>,
        y_s: Tensor<B, 5>,
        s: Tensor<B, 1>,
        r: Tensor<B, 1>,
    ) -> Result<Tensor<B, 5>> {
        if y_s.dims() != backbone.latent_shape {
            return Err(FlowHeadError::Shape {
                what: "flow head input y_s",
                expected: format!("{:?} (the backbone's latent)", backbone.latent_shape),
                found: y_s.dims().to_vec(),
            });
        }
        let (e_s, e, e0) = self.head_time_embedding(s, r);
        let z = self.dit.patchify(y_s);
        let h = self.fusion.forward(backbone.m.clone(), z, e_s);
        let l = self.teacher_blocks();
        let tokens = self.dit.blocks[self.backbone_blocks()..l]
            .iter()
            .fold(h, |x, block| {
                block.forward_parts(x, e0.clone(), backbone.context.clone(), &backbone.rope)
            });
        Ok(self.dit.head_and_unpatchify(tokens, e, backbone.grid))
    }

    /// The average velocity `u(y_s, s, r) = y1 - head(y_s, s, r; m, c)` over `[r, s]`.
    ///
    /// # Shapes
    /// - `y_s`, `y1`: `backbone.latent_shape`; `s`, `r`: `[batch]`
    ///
    /// # Errors
    /// As [`TmdStudent::head`].
    pub fn average_velocity(
        &self,
        backbone: &Backbone<B>,
        y_s: Tensor<B, 5>,
        s: Tensor<B, 1>,
        r: Tensor<B, 1>,
        y1: Tensor<B, 5>,
    ) -> Result<Tensor<B, 5>> {
        Ok(y1 - self.head(backbone, y_s, s, r)?)
    }

    /// The conditional flow map `f(y_s, s, r) = y_s - (s - r) u(y_s, s, r)`: one jump of the
    /// head variable from time `s` down to `r`.
    ///
    /// # Shapes
    /// - `y_s`, `y1`: `backbone.latent_shape`; `s`, `r`: `[batch]`
    /// - output: `backbone.latent_shape`
    ///
    /// # Errors
    /// As [`TmdStudent::head`].
    pub fn flow_map(
        &self,
        backbone: &Backbone<B>,
        y_s: Tensor<B, 5>,
        s: Tensor<B, 1>,
        r: Tensor<B, 1>,
        y1: Tensor<B, 5>,
    ) -> Result<Tensor<B, 5>> {
        let [b] = s.dims();
        let step = (s.clone() - r.clone()).reshape([b, 1, 1, 1, 1]);
        let u = self.average_velocity(backbone, y_s.clone(), s, r, y1)?;
        Ok(y_s - u * step)
    }
}
