//! The evaluator's judge: a small video classifier with one head per world attribute, trained on
//! real clips of the world.
//!
//! Early fusion (Karpathy et al. 2014, "Large-scale Video Classification with CNNs"): `n` frames
//! spread evenly over the clip are stacked along the channels (`3 n` channels) and read by a stack
//! of 2D convolutions; global average pooling gives the feature vector (as wide as the last
//! convolution) that the Frechet distance is computed on, and one linear head per attribute gives
//! its logits. Stacking frames as channels lets the first convolution see where the object is in
//! every frame, which is all that motion means in this world.

use std::path::Path;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use tmd_model::conv::conv2d_module;

use crate::{AttributeKind, Attributes, Clip};
use tmd_distill::train::run::{check_shape, settings_hash, train_loop, PretrainReport};
use tmd_distill::train::TrainError;
use tmd_distill::train::{CheckpointConfig, OptimizerConfig};

/// Name of the classifier inside a checkpoint directory.
pub const MODEL_NAME: &str = "classifier";

/// Number of attributes, one head each, in [`AttributeKind::ALL`] order.
pub const HEADS: usize = 5;

/// Configuration of [`WorldClassifier`].
#[derive(Config, Debug, PartialEq)]
pub struct WorldClassifierConfig {
    /// Frames of the clips it reads (`1 + 4k`; 17 for the bundled world).
    #[config(default = 17)]
    pub frames: usize,
    /// Frames it looks at, spread evenly from the first to the last.
    #[config(default = 9)]
    pub sampled_frames: usize,
    /// Output channels of the convolutions; the first keeps the resolution, each later one halves
    /// it. The last is the feature width.
    #[config(default = "vec![48, 64, 96, 128]")]
    pub widths: Vec<usize>,
    /// Average pooling of the stacked frames before the first convolution (1 = none).
    #[config(default = 1)]
    pub pool: usize,
}

impl WorldClassifierConfig {
    /// Indices of the frames the classifier reads.
    pub fn frame_indices(&self) -> Vec<usize> {
        let n = self.sampled_frames.max(1);
        if n == 1 || self.frames <= 1 {
            return vec![0];
        }
        (0..n)
            .map(|i| ((i * (self.frames - 1)) as f64 / (n - 1) as f64).round() as usize)
            .collect()
    }

    /// Width of the feature vector.
    pub fn feature_dim(&self) -> usize {
        self.widths.last().copied().unwrap_or(0)
    }

    /// Initialises the classifier.
    ///
    /// # Panics
    /// If `widths` is empty.
    pub fn init<B: Backend>(&self, device: &B::Device) -> WorldClassifier<B> {
        assert!(
            !self.widths.is_empty(),
            "WorldClassifierConfig.widths is empty"
        );
        let mut convs = Vec::with_capacity(self.widths.len());
        let mut channels = 3 * self.frame_indices().len();
        for (i, &w) in self.widths.iter().enumerate() {
            let stride = if i == 0 { 1 } else { 2 };
            convs.push(
                Conv2dConfig::new([channels, w], [3, 3])
                    .with_stride([stride, stride])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(device),
            );
            channels = w;
        }
        let heads = AttributeKind::ALL
            .iter()
            .map(|k| LinearConfig::new(channels, k.count()).init(device))
            .collect();
        WorldClassifier {
            pool: AvgPool2dConfig::new([self.pool.max(1); 2])
                .with_strides([self.pool.max(1); 2])
                .init(),
            convs,
            heads,
            activation: Relu::new(),
            frames: self.frames,
            frame_indices: self.frame_indices(),
        }
    }
}

/// The classifier (see the module docs).
#[derive(Module, Debug)]
pub struct WorldClassifier<B: Backend> {
    /// Average pooling of the stacked frames.
    pub pool: AvgPool2d,
    /// The convolution stack.
    pub convs: Vec<Conv2d<B>>,
    /// One linear head per attribute, [`AttributeKind::ALL`] order.
    pub heads: Vec<Linear<B>>,
    /// ReLU after every convolution.
    pub activation: Relu,
    /// Frames of the clips it reads.
    pub frames: usize,
    /// Frames it looks at.
    pub frame_indices: Vec<usize>,
}

/// What [`WorldClassifier::forward`] returns.
#[derive(Debug, Clone)]
pub struct ClassifierOutput<B: Backend> {
    /// Pooled features, `[batch, feature_dim]`.
    pub features: Tensor<B, 2>,
    /// Logits per attribute, [`AttributeKind::ALL`] order, `[batch, classes]` each.
    pub logits: Vec<Tensor<B, 2>>,
}

impl<B: Backend> WorldClassifier<B> {
    /// Features and per-attribute logits of a batch of clips.
    ///
    /// # Shapes
    /// - `clips`: `[batch, 3, frames, height, width]`, values in `[-1, 1]`, height and width even
    ///
    /// # Errors
    /// [`TrainError::Shape`] if the clips do not have 3 channels and `frames` frames.
    pub fn forward(&self, clips: Tensor<B, 5>) -> Result<ClassifierOutput<B>, TrainError> {
        let [b, c, f, h, w] = clips.dims();
        check_shape(
            "classifier input clips",
            &[b, 3, self.frames, h, w],
            &[b, c, f, h, w],
        )?;
        let device = clips.device();
        let index = Tensor::<B, 1, Int>::from_data(
            TensorData::new(
                self.frame_indices
                    .iter()
                    .map(|&i| i as i64)
                    .collect::<Vec<_>>(),
                [self.frame_indices.len()],
            ),
            &device,
        );
        let n = self.frame_indices.len();
        let mut x = self
            .pool
            .forward(clips.select(2, index).reshape([b, 3 * n, h, w]));
        for conv in &self.convs {
            x = self.activation.forward(conv2d_module(conv, x));
        }
        let [_, d, ..] = x.dims();
        let features = x.mean_dim(3).mean_dim(2).reshape([b, d]);
        let logits = self
            .heads
            .iter()
            .map(|head| head.forward(features.clone()))
            .collect();
        Ok(ClassifierOutput { features, logits })
    }

    /// Predicted attribute classes of each clip, [`AttributeKind::ALL`] order.
    pub fn predict(
        &self,
        clips: Tensor<B, 5>,
    ) -> Result<(Vec<[usize; HEADS]>, Tensor<B, 2>), TrainError> {
        let out = self.forward(clips)?;
        let b = out.features.dims()[0];
        let mut classes = vec![[0usize; HEADS]; b];
        for (k, logits) in out.logits.into_iter().enumerate() {
            let arg = logits.argmax(1).into_data().convert::<i64>();
            for (i, v) in arg.iter::<i64>().enumerate() {
                classes[i][k] = v as usize;
            }
        }
        Ok((classes, out.features))
    }
}

/// Sum over the attributes of the cross-entropy of each head against `labels`.
///
/// # Shapes
/// - `labels`: `[batch, HEADS]` class indices
/// - returns `[1]`
pub fn classifier_loss<B: Backend>(
    output: &ClassifierOutput<B>,
    labels: Tensor<B, 2, Int>,
) -> Tensor<B, 1> {
    let [b, _] = labels.dims();
    let ce = CrossEntropyLossConfig::new().init(&labels.device());
    output
        .logits
        .iter()
        .enumerate()
        .map(|(k, logits)| ce.forward(logits.clone(), labels.clone().narrow(1, k, 1).reshape([b])))
        .reduce(|a, b| a + b)
        .expect("five heads")
}

/// Labels of clips as a `[batch, HEADS]` tensor.
pub fn labels<B: Backend>(attributes: &[Attributes], device: &B::Device) -> Tensor<B, 2, Int> {
    let values: Vec<i64> = attributes
        .iter()
        .flat_map(|a| a.classes().map(|c| c as i64))
        .collect();
    Tensor::from_data(TensorData::new(values, [attributes.len(), HEADS]), device)
}

/// Settings of classifier training.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default)]
pub struct ClassifierTrainConfig {
    /// Learning rate and AdamW settings ([`OptimizerConfig`]); `lr`: learning rate, constant (1e-3:
    /// Adam's usual rate for a small CNN from scratch).
    pub optimizer: OptimizerConfig,
    /// Clips per batch.
    pub batch: usize,
    /// Optimizer steps.
    pub steps: u64,
    /// Seed of the training clip stream.
    pub seed: u64,
    /// When checkpoints are written and how many are kept ([`CheckpointConfig`]).
    pub checkpoint: CheckpointConfig,
    /// Show a progress bar.
    pub progress: bool,
}

impl Default for ClassifierTrainConfig {
    fn default() -> Self {
        Self {
            optimizer: OptimizerConfig {
                lr: 1e-3,
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
                weight_decay: 1e-4,
                grad_clip_norm: 1.0,
            },
            batch: 32,
            steps: 1500,
            seed: 1000,
            checkpoint: CheckpointConfig {
                every: 250,
                keep_last: 2,
                loss_tail: 100,
            },
            progress: true,
        }
    }
}

impl ClassifierTrainConfig {
    /// Hash of the trajectory-changing settings (a run resumes only from a checkpoint with it).
    pub fn resume_hash(&self) -> String {
        settings_hash(&format!(
            "classifier;lr={:e};batch={};seed={};wd={:e};clip={:e}{}",
            self.optimizer.lr,
            self.batch,
            self.seed,
            self.optimizer.weight_decay,
            self.optimizer.grad_clip_norm,
            // The moments were fixed (Adam's standard ones) before they were settings: hashes of
            // runs with the standard values stay those of earlier runs.
            if (
                self.optimizer.beta1,
                self.optimizer.beta2,
                self.optimizer.epsilon
            ) == (0.9, 0.999, 1e-8)
            {
                String::new()
            } else {
                format!(
                    ";b1={:e};b2={:e};eps={:e}",
                    self.optimizer.beta1, self.optimizer.beta2, self.optimizer.epsilon
                )
            }
        ))
    }
}

/// Trains `model` on the clips that `batches(step)` gives (1-based step; must depend on the step
/// only, for exact resume), checkpointing under `run_dir` and resuming from it.
pub fn train_classifier<B, F>(
    model: WorldClassifier<B>,
    config: &ClassifierTrainConfig,
    run_dir: &Path,
    mut batches: F,
) -> Result<(WorldClassifier<B>, PretrainReport), TrainError>
where
    B: AutodiffBackend,
    F: FnMut(u64) -> Result<Vec<Clip>, TrainError>,
{
    let device = model.heads[0].weight.device();
    let settings = tmd_distill::loop_settings!(config);
    train_loop(
        model,
        &settings,
        run_dir,
        config.resume_hash(),
        MODEL_NAME,
        |model, step| {
            let clips = batches(step)?;
            if clips.len() != config.batch {
                return Err(TrainError::Data {
                    step,
                    message: format!("expected {} clips, got {}", config.batch, clips.len()),
                });
            }
            let rows = tmd_distill::train::data_parallel::Rows::of(clips.len())?;
            let clips = rows.pick(&clips);
            let attributes: Vec<Attributes> = clips.iter().map(|c| c.attributes).collect();
            let video = crate::to_tensor::<B>(&clips, &device).map_err(|e| TrainError::Data {
                step,
                message: e.to_string(),
            })?;
            let output = model.forward(video)?;
            let loss = classifier_loss(&output, labels::<B>(&attributes, &device));
            let value: f64 = loss.clone().into_scalar().elem();
            Ok((value, GradientsParams::from_grads(loss.backward(), model)))
        },
    )
}
