//! A fixed set of training clips, encoded once by the finished VAE.
//!
//! The DiT only ever sees VAE latents; encoding every batch again costs far more than the DiT
//! step itself on a CPU (the VAE encoder runs full-resolution 3D convolutions). The cache encodes
//! the first `clips` clips of a [`WorldDataset`] once, in chunks written atomically as they finish
//! (an interrupted build resumes at the first missing chunk), and serves batches from memory.
//!
//! Layout of the cache directory: `index.json` (what was encoded: dataset seed, clip size, latent
//! shape, VAE checkpoint step; a mismatch with the current run is an error, not a silent reuse)
//! and `chunk-NNNNN.f32` (the normalised latents of `chunk` consecutive clips, little-endian f32,
//! layout `[clips, z, frames, height, width]`). Captions are not stored: the dataset renders them
//! again, deterministically, from its seed.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde::{Deserialize, Serialize};
use tmd_model::model_dir::write_atomically;
use tmd_model::vae::WanVae;

use crate::train::run::progress_bar;
use crate::train::TrainError;
use crate::world::{to_tensor, ClipSpec, WorldDataset};

/// File naming what a cache directory holds.
pub const INDEX: &str = "index.json";

/// What a cache directory holds; two caches are interchangeable iff their indexes are equal.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LatentCacheIndex {
    /// Clips encoded (the first `clips` of the dataset).
    pub clips: usize,
    /// Clips per chunk file.
    pub chunk: usize,
    /// Seed of the dataset the clips come from.
    pub dataset_seed: u64,
    /// `[frames, height, width]` of the clips.
    pub clip_size: [usize; 3],
    /// `[z, frames, height, width]` of one clip's latent.
    pub latent_shape: [usize; 4],
    /// Step of the VAE checkpoint that encoded them.
    pub vae_step: u64,
    /// Caption of every clip, in order (so that later stages read the cache without the dataset).
    pub captions: Vec<String>,
}

/// Normalised VAE latents of the first clips of a dataset, with their captions.
#[derive(Debug, Clone)]
pub struct LatentCache {
    index: LatentCacheIndex,
    latents: Vec<f32>,
    captions: Vec<String>,
}

impl LatentCache {
    /// Loads the cache in `dir`, encoding (with `vae`, which must be normalising: `latents_mean`
    /// and `latents_std` set) whatever chunks are missing first.
    ///
    /// # Errors
    /// [`TrainError::CorruptCheckpoint`] naming the file if `index.json` describes another cache
    /// or a chunk has the wrong length; I/O errors naming the path; VAE errors.
    #[allow(clippy::too_many_arguments)]
    pub fn build_or_load<B: Backend>(
        dir: &Path,
        vae: &WanVae<B>,
        vae_step: u64,
        data: &WorldDataset,
        clips: usize,
        chunk: usize,
        show_progress: bool,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let spec = data.spec();
        let chunk = chunk.max(1);
        let probe = latent_shape(vae, spec);
        let index = LatentCacheIndex {
            clips,
            chunk,
            dataset_seed: data.seed(),
            clip_size: [spec.frames, spec.height, spec.width],
            latent_shape: probe,
            vae_step,
            captions: (0..clips.div_ceil(chunk.max(1)))
                .flat_map(|c| {
                    let start = c * chunk.max(1);
                    data.batch(start as u64, chunk.max(1).min(clips - start))
                })
                .map(|clip| clip.caption)
                .collect(),
        };
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let index_path = dir.join(INDEX);
        if index_path.is_file() {
            let text =
                std::fs::read_to_string(&index_path).map_err(|e| TrainError::io(&index_path, e))?;
            let found: LatentCacheIndex = serde_json::from_str(&text).map_err(|e| {
                TrainError::corrupt(&index_path, format!("not a latent cache index: {e}"))
            })?;
            if found != index {
                return Err(TrainError::corrupt(
                    &index_path,
                    format!(
                        "the cache holds {found:?}, this run needs {index:?}; delete {} to \
                         encode again",
                        dir.display()
                    ),
                ));
            }
        } else {
            let text = serde_json::to_string_pretty(&index).expect("index serialises");
            write_atomically(&index_path, text.as_bytes())?;
        }

        let chunks = clips.div_ceil(chunk);
        let missing: Vec<usize> = (0..chunks)
            .filter(|&c| !chunk_path(dir, c).is_file())
            .collect();
        if !missing.is_empty() {
            let bar = progress_bar(
                show_progress,
                chunks as u64,
                (chunks - missing.len()) as u64,
            );
            bar.set_message("encoding latents");
            for &c in &missing {
                let start = c * chunk;
                let n = chunk.min(clips - start);
                let batch = data.batch(start as u64, n);
                let video = to_tensor::<B>(&batch, device).map_err(|e| TrainError::Data {
                    step: 0,
                    message: e.to_string(),
                })?;
                let latents = vae.encode_normalized(video)?;
                let found = latents.dims();
                if found[1..] != probe[..] {
                    return Err(TrainError::Shape {
                        what: "encoded latent of one clip".into(),
                        expected: probe.to_vec(),
                        found: found[1..].to_vec(),
                    });
                }
                let values = latents
                    .into_data()
                    .convert::<f32>()
                    .into_vec::<f32>()
                    .map_err(|e| TrainError::Data {
                        step: 0,
                        message: format!("latents to host: {e:?}"),
                    })?;
                let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                write_atomically(&chunk_path(dir, c), &bytes)?;
                bar.inc(1);
            }
            bar.finish_and_clear();
        }

        Self::read_chunks(dir, index)
    }

    /// Opens a finished cache without re-encoding anything (later stages: `adapt-head`,
    /// `distill`).
    ///
    /// # Errors
    /// A missing or foreign `index.json`, a missing or damaged chunk (named).
    pub fn open(dir: &Path) -> Result<Self, TrainError> {
        let index_path = dir.join(INDEX);
        let text =
            std::fs::read_to_string(&index_path).map_err(|e| TrainError::io(&index_path, e))?;
        let index: LatentCacheIndex = serde_json::from_str(&text).map_err(|e| {
            TrainError::corrupt(&index_path, format!("not a latent cache index: {e}"))
        })?;
        if index.captions.len() != index.clips {
            return Err(TrainError::corrupt(
                &index_path,
                format!(
                    "{} captions for {} clips",
                    index.captions.len(),
                    index.clips
                ),
            ));
        }
        Self::read_chunks(dir, index)
    }

    fn read_chunks(dir: &Path, index: LatentCacheIndex) -> Result<Self, TrainError> {
        let probe = index.latent_shape;
        let per_clip: usize = probe.iter().product();
        let (clips, chunk) = (index.clips, index.chunk);
        let mut latents = Vec::with_capacity(clips * per_clip);
        for c in 0..clips.div_ceil(chunk) {
            let path = chunk_path(dir, c);
            let n = chunk.min(clips - c * chunk);
            let bytes = std::fs::read(&path).map_err(|e| TrainError::io(&path, e))?;
            if bytes.len() != n * per_clip * 4 {
                return Err(TrainError::corrupt(
                    &path,
                    format!(
                        "{} bytes, {n} latents of shape {probe:?} need {}; delete the file to \
                         encode it again",
                        bytes.len(),
                        n * per_clip * 4
                    ),
                ));
            }
            latents.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
        }
        let captions = index.captions.clone();
        Ok(Self {
            index,
            latents,
            captions,
        })
    }

    /// Number of cached clips.
    pub fn len(&self) -> usize {
        self.captions.len()
    }

    /// Whether the cache holds no clip.
    pub fn is_empty(&self) -> bool {
        self.captions.is_empty()
    }

    /// What the cache holds.
    pub fn index(&self) -> &LatentCacheIndex {
        &self.index
    }

    /// The latents of clips `indices` and their captions.
    ///
    /// # Shapes
    /// - output: `[indices.len(), z, frames, height, width]`
    ///
    /// # Panics
    /// If an index is `>= len()`.
    pub fn batch<B: Backend>(
        &self,
        indices: &[usize],
        device: &B::Device,
    ) -> (Tensor<B, 5>, Vec<String>) {
        let shape = self.index.latent_shape;
        let per_clip: usize = shape.iter().product();
        let mut values = Vec::with_capacity(indices.len() * per_clip);
        let mut captions = Vec::with_capacity(indices.len());
        for &i in indices {
            values.extend_from_slice(&self.latents[i * per_clip..(i + 1) * per_clip]);
            captions.push(self.captions[i].clone());
        }
        let dims = [indices.len(), shape[0], shape[1], shape[2], shape[3]];
        (
            Tensor::from_data(TensorData::new(values, dims), device),
            captions,
        )
    }
}

fn chunk_path(dir: &Path, chunk: usize) -> PathBuf {
    dir.join(format!("chunk-{chunk:05}.f32"))
}

/// `[z, frames, height, width]` of the latent of one clip of `spec` (the Wan VAE: 8x spatial
/// compression, 4x temporal with a causal first frame).
pub fn latent_shape<B: Backend>(vae: &WanVae<B>, spec: ClipSpec) -> [usize; 4] {
    [
        vae.latents_mean.len(),
        vae.latent_frames(spec.frames),
        spec.height / 8,
        spec.width / 8,
    ]
}
