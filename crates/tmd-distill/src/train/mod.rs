//! Reusable training infrastructure shared by every stage (`pretrain`, `adapt-head`, `distill`):
//!
//! - [`config`]: a stage's settings from defaults, a TOML file and `key=value` overrides;
//! - [`sections`]: the `optimizer` and `checkpoint` sections every stage's settings share;
//! - [`activation_checkpointing`]: segment-wise activation checkpointing (recompute each block's
//!   forward in the backward) behind `train.checkpoint_activations`;
//! - [`checkpoint`]: atomic, checksummed checkpoint directories with exact resume;
//! - [`guard`]: NaN/Inf detection that stops a run with the last good checkpoint kept;
//! - [`data_parallel`]: training on several processes (ranks) through burn-collective;
//! - [`sharded_optimizer`]: the optimizer state sharded over the ranks (ZeRO stage 1);
//! - [`run`]: the loop pieces every stage shares (resume, checkpointing, loss log, progress);
//! - [`rng`]: counter-based randomness, a pure function of `(seed, step, stream)`, so a resumed run
//!   draws exactly what an uninterrupted one would have drawn.
//!
//! # Why the loop is ours and not burn-train's `Learner`
//!
//! Every stage runs [`run::train_loop`]: a step is asked for by its number (batches and random
//! draws are functions of the step, so a resumed run repeats an uninterrupted one bit for bit),
//! stage 2 hands back the gradients of the critics or of the student in turns, checkpoints carry
//! a settings hash and checksums and are written only when every parameter is finite, and
//! data-parallel runs agree on parameter ids by path and may shard the optimizer state. There
//! are no epochs or data loaders: data is a latent cache or a step-indexed generator.
//!
//! Metrics are `loss.csv` (`step,loss`) in the run directory. burn-train 0.21's
//! `FileMetricLogger` (the `train/epoch-N/<Metric>.log` files its dashboard reads) is not used
//! yet: its file logger panics when a file cannot be created or written (a full disk would
//! abort a run instead of returning the error the checkpoint writer returns), and burn-train
//! turns on burn-core's `dataset` feature, which with burn's default features builds
//! burn-dataset's bundled SQLite, plus the burn-flex backend, for every build of this crate.

pub mod activation_checkpointing;
pub mod checkpoint;
pub mod config;
pub mod data_parallel;
pub mod error;
pub mod guard;
pub mod mpk_writer;
pub mod rng;
pub mod run;
pub mod sections;
pub mod sharded_optimizer;

pub use checkpoint::{
    latest_valid, list_checkpoints, Checkpoint, CheckpointWriter, LatestValid, TrainState,
};
pub use config::{load_stage_config, load_stage_config_over};
pub use error::TrainError;
pub use guard::{check_finite, check_module_finite};
pub use run::{resume, save_checkpoint, LossLog, PretrainReport, Resumed};
pub use sections::{CheckpointConfig, OptimizerConfig};
