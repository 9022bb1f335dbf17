//! What a generation request costs in memory, estimated before anything is allocated, so a
//! request that cannot fit (`--frames 4001`, `--height 4096 --width 4096`) is refused at once with
//! the figure instead of aborting minutes later in an allocation of 100+ GB.
//!
//! The estimate counts the largest live tensors, f32:
//! - attention scores when attention is materialised (burn's fallback on the CPU backend): eight
//!   `[batch, heads, L, L]` f32 buffers, `L` the DiT's token count (scores, probabilities and the
//!   fallback's temporaries: the `--frames 4001` request of the bad-input sweep failed allocating
//!   4x one score matrix at once); fused attention (LibTorch, burn CUDA) keeps none;
//! - one DiT block's activations: `batch x L x (3 dim + ffn_dim)`;
//! - the VAE decoder's widest activation over the whole clip (`frames x height x width x` its
//!   output-resolution width, 2 buffers) and the decoded clip (f32 and RGB8).
//!
//! `batch` is 2 with classifier-free guidance. It is an order-of-magnitude figure (the runs it
//! refuses would need far more than any machine has), not an exact peak.

use tmd_model::dit::WanConfig;
use tmd_model::vae::WanVaeConfig;

/// The memory estimate of one request, in bytes, by part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// DiT tokens.
    pub tokens: u64,
    /// Attention score buffers.
    pub attention: u64,
    /// One DiT block's activations.
    pub dit: u64,
    /// VAE decoder activations and the decoded clip.
    pub vae: u64,
}

impl MemoryEstimate {
    /// Sum of the parts (saturating).
    pub fn total(&self) -> u64 {
        self.attention
            .saturating_add(self.dit)
            .saturating_add(self.vae)
    }
}

fn mul(xs: &[u64]) -> u64 {
    xs.iter().fold(1u64, |a, &x| a.saturating_mul(x))
}

/// Estimates a `frames x height x width` request (already validated against the VAE strides);
/// `cfg`: classifier-free guidance (batch 2); `materialised_attention`: the backend computes
/// attention as a full score matrix (burn's CPU fallback).
pub fn estimate(
    dit: &WanConfig,
    vae: &WanVaeConfig,
    frames: usize,
    height: usize,
    width: usize,
    cfg: bool,
    materialised_attention: bool,
) -> MemoryEstimate {
    let s = vae.spatial_stride() as u64;
    let ts = vae.temporal_stride().max(1) as u64;
    let [pt, ph, pw] = dit.patch_size;
    let (f, h, w) = (frames as u64, height as u64, width as u64);
    let t_lat = f.saturating_sub(1) / ts + 1;
    let tokens = mul(&[
        t_lat.div_ceil(pt.max(1) as u64),
        (h / s.max(1)).div_ceil(ph.max(1) as u64),
        (w / s.max(1)).div_ceil(pw.max(1) as u64),
    ]);
    let batch = if cfg { 2 } else { 1 };
    let attention = if materialised_attention {
        mul(&[4, 8, batch, dit.num_heads as u64, tokens, tokens])
    } else {
        0
    };
    let dit_bytes = mul(&[4, batch, tokens, (3 * dit.dim + dit.ffn_dim) as u64]);
    let widest = vae.decoder_base_dim.unwrap_or(vae.base_dim) as u64;
    let vae_bytes = mul(&[4, 2, f, h, w, widest]).saturating_add(mul(&[5, 3, f, h, w]));
    MemoryEstimate {
        tokens,
        attention,
        dit: dit_bytes,
        vae: vae_bytes,
    }
}

/// Memory available to this process in bytes (`MemAvailable` of `/proc/meminfo`), if known.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// Bytes as GiB with one decimal.
pub fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_and_large_requests_cost_what_they_should() {
        let dit = WanConfig::tiny();
        let vae = WanVaeConfig::tiny();
        let small = estimate(&dit, &vae, 5, 32, 32, false, true);
        // 4x the frames (latent frames 2 -> 5) costs more; 2x the side costs ~16x the attention.
        let long = estimate(&dit, &vae, 17, 32, 32, false, true);
        assert!(long.total() > small.total());
        let wide = estimate(&dit, &vae, 5, 64, 64, false, true);
        assert_eq!(wide.tokens, 4 * small.tokens);
        assert_eq!(wide.attention, 16 * small.attention);
        // CFG doubles the batch; fused attention keeps no score matrix.
        assert_eq!(
            estimate(&dit, &vae, 5, 32, 32, true, true).attention,
            2 * small.attention
        );
        assert_eq!(estimate(&dit, &vae, 5, 32, 32, false, false).attention, 0);
        // Absurd sizes saturate instead of overflowing.
        let huge = estimate(&dit, &vae, usize::MAX, usize::MAX, usize::MAX, true, true);
        assert_eq!(huge.total(), u64::MAX);
    }
}
