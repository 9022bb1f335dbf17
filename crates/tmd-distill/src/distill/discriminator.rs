//! The GAN discriminator of DMD2-v (TMD.md, "Stage 2"): one Conv3D head per teacher feature map,
//! taken after chosen blocks of the (frozen) teacher on noisy real and noisy student samples, and
//! the softplus (non-saturating) losses with weight 0.03 on the generator side.
//!
//! A feature map is the block's token output `[batch, L, dim]` laid back onto its token grid
//! ("unpatchified"): `[batch, dim, frames, height, width]` in patches. Each head is
//! Conv3d(dim -> hidden, 3, pad 1) - SiLU - Conv3d(hidden -> hidden, 3, stride 2, pad 1) - SiLU -
//! Conv3d(hidden -> 1, 1), averaged over positions (the layer layout is inferred: the paper gives
//! only "Conv3D heads" and their total size, ~68M parameters for 1.3B).

use burn::nn::conv::{Conv3d, Conv3dConfig};
use burn::nn::PaddingConfig3d;
use burn::prelude::*;
use burn::tensor::activation::{silu, softplus};
use tmd_model::conv::conv3d;

/// Where the discriminator looks and how wide its heads are.
#[derive(Config, Debug)]
pub struct DiscriminatorConfig {
    /// Model width of the teacher's features.
    pub dim: usize,
    /// Teacher blocks (0-based) whose outputs are judged (paper: 15, 22, 29 for 1.3B; 19, 29,
    /// 39 for 14B).
    pub feature_blocks: Vec<usize>,
    /// Channels of each head.
    #[config(default = 256)]
    pub hidden: usize,
}

impl DiscriminatorConfig {
    /// The paper's blocks for Wan2.1 1.3B (width 1536).
    pub fn wan_1_3b() -> Self {
        Self::new(1536, vec![15, 22, 29])
    }

    /// The paper's blocks for Wan2.1 14B (width 5120).
    pub fn wan_14b() -> Self {
        Self::new(5120, vec![19, 29, 39])
    }

    /// A freshly initialised discriminator.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Discriminator<B> {
        let conv = |i, o, k: usize, stride: usize| {
            let pad = k / 2;
            Conv3dConfig::new([i, o], [k, k, k])
                .with_stride([stride, stride, stride])
                .with_padding(PaddingConfig3d::Explicit(pad, pad, pad))
                .init(device)
        };
        Discriminator {
            heads: self
                .feature_blocks
                .iter()
                .map(|_| DiscriminatorHead {
                    conv1: conv(self.dim, self.hidden, 3, 1),
                    conv2: conv(self.hidden, self.hidden, 3, 2),
                    out: conv(self.hidden, 1, 1, 1),
                })
                .collect(),
            feature_blocks: self.feature_blocks.clone(),
        }
    }
}

/// One Conv3D head.
#[derive(Module, Debug)]
pub struct DiscriminatorHead<B: Backend> {
    /// `dim -> hidden`, kernel 3.
    pub conv1: Conv3d<B>,
    /// `hidden -> hidden`, kernel 3, stride 2.
    pub conv2: Conv3d<B>,
    /// `hidden -> 1`, kernel 1.
    pub out: Conv3d<B>,
}

fn run<B: Backend>(conv: &Conv3d<B>, x: Tensor<B, 5>) -> Tensor<B, 5> {
    let [k, ..] = conv.kernel_size;
    let pad = k / 2;
    conv3d(
        x,
        conv.weight.val(),
        conv.bias.as_ref().map(|b| b.val()),
        conv.stride,
        [pad, pad, pad],
    )
}

impl<B: Backend> DiscriminatorHead<B> {
    /// # Shapes
    /// - `x`: `[batch, dim, frames, height, width]`
    /// - output: `[batch]` logits
    pub fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 1> {
        let h = silu(run(&self.conv1, x));
        let h = silu(run(&self.conv2, h));
        let logits = run(&self.out, h);
        let [b, ..] = logits.dims();
        logits.reshape([b as i32, -1]).mean_dim(1).reshape([b])
    }
}

/// The discriminator: one head per feature block.
#[derive(Module, Debug)]
pub struct Discriminator<B: Backend> {
    /// One head per entry of `feature_blocks`.
    pub heads: Vec<DiscriminatorHead<B>>,
    /// Teacher blocks judged.
    pub feature_blocks: Vec<usize>,
}

/// Lays token features `[batch, L, dim]` back onto their grid: `[batch, dim, f, h, w]`.
pub fn unpatchify_features<B: Backend>(tokens: Tensor<B, 3>, grid: [usize; 3]) -> Tensor<B, 5> {
    let [b, _, dim] = tokens.dims();
    tokens
        .reshape([b, grid[0], grid[1], grid[2], dim])
        .permute([0, 4, 1, 2, 3])
}

impl<B: Backend> Discriminator<B> {
    /// The logits of each head, summed, per sample.
    ///
    /// # Shapes
    /// - `features`: one `[batch, dim, f, h, w]` map per head, in `feature_blocks` order
    /// - output: `[batch]`
    ///
    /// # Panics
    /// If the number of maps differs from the number of heads.
    pub fn forward(&self, features: Vec<Tensor<B, 5>>) -> Tensor<B, 1> {
        assert_eq!(
            features.len(),
            self.heads.len(),
            "one feature map per discriminator head"
        );
        self.heads
            .iter()
            .zip(features)
            .map(|(head, f)| head.forward(f))
            .reduce(|a, b| a + b)
            .expect("at least one head")
    }
}

/// Discriminator loss `mean(softplus(D(fake))) + mean(softplus(-D(real)))`.
pub fn discriminator_loss<B: Backend>(fake: Tensor<B, 1>, real: Tensor<B, 1>) -> Tensor<B, 1> {
    softplus(fake, 1.0).mean() + softplus(real.neg(), 1.0).mean()
}

/// Generator (non-saturating) GAN loss `mean(softplus(-D(fake)))`; stage 2 weights it by
/// [`GAN_WEIGHT`].
pub fn generator_gan_loss<B: Backend>(fake: Tensor<B, 1>) -> Tensor<B, 1> {
    softplus(fake.neg(), 1.0).mean()
}

/// Weight of the generator's GAN loss next to the VSD loss (paper: 0.03).
pub const GAN_WEIGHT: f64 = 0.03;
