//! Pretraining of the bundled teacher on the synthetic [`world`](crate::world).
//!
//! [`dit`]: the Wan flow-matching objective and its training loop for the DiT.

pub mod dit;

pub use dit::{
    flow_matching_loss, pretrain_dit, sample_timesteps, DitBatch, DitPretrainConfig, PretrainReport,
};
