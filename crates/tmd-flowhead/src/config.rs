//! The student's configuration: how many teacher blocks form the head, and how `y_s` is fused.

use burn::config::Config;
use serde::{Deserialize, Serialize};

use crate::error::FlowHeadError;

/// How the flow head takes in its noisy input `y_s` next to the backbone features `m`
/// (TMD.md, "Student architecture").
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Fusion {
    /// `h = (1 - g) m + g z`, `z` = a new AdaLN block on `patch(y_s)` conditioned on `emb(s)`,
    /// `g = sigmoid(a)` a learned scalar starting near 0 (the paper's default).
    #[default]
    Gated,
    /// `h = Linear([m ; patch(y_s)])`, initialised to the identity on `m` and `N(0, 0.01)` on the
    /// patch half (the paper's alternative: similar scores, less stable).
    Concat,
}

/// Configuration of a [`TmdStudent`](crate::TmdStudent) built from a teacher of `L` blocks.
#[derive(Config, Debug, PartialEq)]
pub struct FlowHeadConfig {
    /// `H`: number of the teacher's last blocks that form the flow head (paper: 5 for 1.3B).
    #[config(default = 5)]
    pub head_blocks: usize,
    /// How `y_s` enters the head.
    #[config(default = "Fusion::Gated")]
    pub fusion: Fusion,
    /// Initial gate logit `a` of [`Fusion::Gated`]: `g = sigmoid(a)` (inferred: the paper only
    /// says the gate starts near 0; sigmoid(-8) = 3.4e-4).
    #[config(default = -8.0)]
    pub gate_logit_init: f64,
    /// Hidden width of the gated fusion block's Linear-GELU-Linear, as a multiple of the model
    /// width (inferred; the paper does not give it).
    #[config(default = 1.0)]
    pub fusion_mlp_ratio: f64,
    /// Standard deviation of the patch half of [`Fusion::Concat`]'s initial weight.
    #[config(default = 0.01)]
    pub concat_init_std: f64,
}

impl FlowHeadConfig {
    /// The paper's head of `h` blocks with the default (gated) fusion: "N2H5" and "N4H5" use
    /// `FlowHeadConfig::paper(5)`; `N` is a sampling setting, not part of the model.
    pub fn paper(h: usize) -> Self {
        Self::new().with_head_blocks(h)
    }

    /// Checks the head against a teacher of `teacher_blocks` blocks (`1 <= H <= L`).
    ///
    /// # Errors
    /// [`FlowHeadError::Config`] naming the field.
    pub fn validate(&self, teacher_blocks: usize) -> crate::Result<()> {
        if self.head_blocks == 0 || self.head_blocks > teacher_blocks {
            return Err(FlowHeadError::Config {
                field: "head_blocks",
                value: self.head_blocks.to_string(),
                reason: format!("must be between 1 and the teacher's {teacher_blocks} blocks"),
            });
        }
        if !(self.fusion_mlp_ratio > 0.0 && self.fusion_mlp_ratio.is_finite()) {
            return Err(FlowHeadError::Config {
                field: "fusion_mlp_ratio",
                value: self.fusion_mlp_ratio.to_string(),
                reason: "must be a positive number".into(),
            });
        }
        if !self.gate_logit_init.is_finite() {
            return Err(FlowHeadError::Config {
                field: "gate_logit_init",
                value: self.gate_logit_init.to_string(),
                reason: "must be finite".into(),
            });
        }
        Ok(())
    }
}
