//! Pretraining of the bundled teacher on the synthetic [`world`](crate).
//!
//! [`dit`]: the Wan flow-matching objective and its training loop for the DiT.
//! The DiT stage trains on a [`tmd_distill::latent_cache`] of clips encoded once by the finished VAE.
//! [`teacher`]: the recipe of the bundled teacher (VAE, frozen text encoder, DiT, export).
//! [`vae`]: the Wan VAE trained as a deterministic autoencoder, and its training loop.

pub mod dit;
pub mod teacher;
pub mod vae;

pub use dit::{
    flow_matching_loss, pretrain_dit, sample_timesteps, DitBatch, DitPretrainConfig, PretrainReport,
};
pub use vae::{
    decode_unclamped, pretrain_vae, vae_reconstruction_loss, VaeLossParts, VaeLossWeights,
    VaePretrainConfig,
};
