//! The feature cache that makes chunked encoding and decoding equal to one causal pass.
//!
//! The Wan VAE encodes a video in chunks of 1, 4, 4, ... frames and decodes one latent frame at a
//! time. Every temporal convolution keeps the last frames of its input from the previous chunks
//! (two for a kernel of 3, `CACHE_T` in the reference) and puts them in front of the next chunk
//! instead of zero padding. The spatio-temporal resamplers keep their own state (see
//! [`CacheSlot`]).
//!
//! The cache is an explicit value owned by one `encode`/`decode` call: each layer that needs
//! history takes the next slot in a fixed traversal order, so slot `i` belongs to the same layer in
//! every chunk. [`FeatCache::start_chunk`] rewinds the cursor before each chunk.

use burn::prelude::*;

/// Frames of history a causal convolution with temporal kernel 3 keeps (`CACHE_T` in the reference).
pub const CACHE_FRAMES: usize = 2;

/// What one cached layer remembers between chunks.
#[derive(Debug, Clone, Default)]
pub enum CacheSlot<B: Backend> {
    /// No chunk seen yet.
    #[default]
    Empty,
    /// A temporal upsampler after the first chunk, which it passed through without its time
    /// convolution (the reference's `"Rep"` marker): the next chunk's time convolution sees zero
    /// history.
    FirstChunkDone,
    /// The trailing input frames of the previous chunks, `[batch, channels, 1 or 2, height, width]`.
    Frames(Tensor<B, 5>),
}

/// Per-layer history of one chunked `encode` or `decode` call.
#[derive(Debug, Clone)]
pub struct FeatCache<B: Backend> {
    slots: Vec<CacheSlot<B>>,
    cursor: usize,
}

impl<B: Backend> Default for FeatCache<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: Backend> FeatCache<B> {
    /// An empty cache (every layer starts as if preceded by zeros).
    pub fn new() -> Self {
        Self {
            slots: Vec::new(),
            cursor: 0,
        }
    }

    /// Rewinds the cursor: the next layer to ask gets slot 0 again. Call before each chunk.
    pub fn start_chunk(&mut self) {
        self.cursor = 0;
    }

    /// Number of slots used so far (one per cached layer: 24 in the Wan2.1 encoder, 32 in its
    /// decoder; the reference allocates 26 and 33 because it also counts the 1x1x1 shortcut
    /// convolutions, which never use theirs).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no layer has used the cache yet.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The slot of the next cached layer; advances the cursor.
    pub(crate) fn next_slot(&mut self) -> &mut CacheSlot<B> {
        if self.cursor == self.slots.len() {
            self.slots.push(CacheSlot::Empty);
        }
        let i = self.cursor;
        self.cursor += 1;
        &mut self.slots[i]
    }
}

/// The history to keep after a chunk `x` for a causal convolution of temporal kernel 3: its last
/// [`CACHE_FRAMES`] frames; if the chunk has a single frame, that frame preceded by the last frame
/// of the previous history (when there is one).
///
/// # Shapes
/// - `x`: `[batch, channels, frames, height, width]`
/// - `previous`: `[batch, channels, 1 or 2, height, width]`
/// - returns `[batch, channels, min(frames + 1, 2) or 1, height, width]`
pub(crate) fn trailing_frames<B: Backend>(
    x: &Tensor<B, 5>,
    previous: Option<&Tensor<B, 5>>,
) -> Tensor<B, 5> {
    let t = x.dims()[2];
    if t >= CACHE_FRAMES {
        // A copy, not a view: on LibTorch a narrowed tensor shares (and keeps alive) the storage
        // of the whole chunk, one full-resolution activation per cached layer (diffusers
        // `.clone()`s here for the same reason). `cat` of one tensor always allocates.
        return Tensor::cat(vec![x.clone().narrow(2, t - CACHE_FRAMES, CACHE_FRAMES)], 2);
    }
    match previous {
        Some(prev) => {
            let pt = prev.dims()[2];
            Tensor::cat(vec![prev.clone().narrow(2, pt - 1, 1), x.clone()], 2)
        }
        None => x.clone(),
    }
}
