//! World clips encoded once by a finished VAE into a [`LatentCache`] (the DiT only ever sees VAE
//! latents, and encoding every batch again costs far more than the DiT step itself on a CPU). The
//! cache format is tmd-distill's; this module is the world's producer of it
//! ([`LatentSource::World`]).

use std::path::Path;

use burn::prelude::*;
use tmd_distill::latent_cache::{LatentCache, LatentCacheIndex, LatentSource};
use tmd_distill::train::TrainError;
use tmd_model::vae::WanVae;

use crate::{to_tensor, ClipSpec, WorldDataset};

/// The first `clips` clips of `data` encoded by `vae` (which must be normalising:
/// `latents_mean` and `latents_std` set), built or loaded in `dir` as
/// [`LatentCache::build_or_load`] does.
///
/// # Errors
/// As [`LatentCache::build_or_load`]; VAE errors.
#[allow(clippy::too_many_arguments)]
pub fn encode_world<B: Backend>(
    dir: &Path,
    vae: &WanVae<B>,
    vae_step: u64,
    data: &WorldDataset,
    clips: usize,
    chunk: usize,
    show_progress: bool,
    device: &B::Device,
) -> Result<LatentCache, TrainError> {
    let spec = data.spec();
    let index = LatentCacheIndex {
        clips,
        chunk: chunk.max(1),
        latent_shape: latent_shape(vae, spec),
        source: LatentSource::World {
            dataset_seed: data.seed(),
            clip_size: [spec.frames, spec.height, spec.width],
            vae_step,
        },
        captions: (0..clips as u64).map(|i| data.caption(i)).collect(),
    };
    LatentCache::build_or_load(dir, index, show_progress, "encoding latents", |start, n| {
        let batch = data.batch(start as u64, n);
        let video = to_tensor::<B>(&batch, device).map_err(|e| TrainError::Data {
            step: 0,
            message: e.to_string(),
        })?;
        Ok(vae.encode_normalized(video)?)
    })
}

/// `[z, frames, height, width]` of the latent of one clip of `spec` (Wan2.1's VAE: 8x spatial
/// compression, 4x temporal with a causal first frame).
pub fn latent_shape<B: Backend>(vae: &WanVae<B>, spec: ClipSpec) -> [usize; 4] {
    [
        vae.latents_mean.len(),
        vae.latent_frames(spec.frames),
        spec.height / vae.spatial_stride,
        spec.width / vae.spatial_stride,
    ]
}
