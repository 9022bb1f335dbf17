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
