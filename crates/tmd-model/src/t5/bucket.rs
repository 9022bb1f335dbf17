//! The relative position buckets of the T5 family, in one place.
//!
//! For `rel = key_position - query_position` in a bidirectional (encoder) layer with `n` buckets and
//! maximum distance `m` (umT5: 32 and 128):
//! * half the buckets per direction: `+n/2` if `rel > 0`; then `d = |rel|`;
//! * `d < n/4`: bucket `d` (exact);
//! * otherwise `min(n/2 - 1, n/4 + trunc(ln(d / (n/4)) / ln(m / (n/4)) * (n/2 - n/4)))`
//!   (umT5: `min(15, 8 + floor(ln(d/8)/ln(16)*8))`).
//!
//! The logarithmic branch is evaluated in f32, step by step like the reference
//! (transformers `UMT5Attention._relative_position_bucket`, Wan2.1 `T5RelativeEmbedding._relative_position_bucket`),
//! so that the truncation falls on the same side at the exact powers (`d = 16, 32, 64`). The parity
//! test compares every distance up to 1024 with the reference's buckets.

/// Bucket index of one relative position `rel = key - query` for a bidirectional layer.
///
/// # Arguments
/// - `rel`: key position minus query position.
/// - `num_buckets`: total number of buckets (both directions), a multiple of 4.
/// - `max_distance`: distance from which the last bucket of a direction is used.
///
/// # Returns
/// A bucket in `0..num_buckets`.
pub fn relative_position_bucket(rel: i64, num_buckets: usize, max_distance: usize) -> usize {
    let half = num_buckets / 2;
    let offset = if rel > 0 { half } else { 0 };
    let d = rel.unsigned_abs();
    let max_exact = (half / 2) as u64;
    let bucket = if d < max_exact {
        d as usize
    } else {
        // f32 like the reference: log(d_f32 / max_exact) / f32(log(max_distance / max_exact)) * (half - max_exact).
        let ratio = (d as f32 / max_exact as f32).ln();
        let scale = (max_distance as f64 / max_exact as f64).ln() as f32;
        let large =
            max_exact as usize + ((ratio / scale) * (half - max_exact as usize) as f32) as usize;
        large.min(half - 1)
    };
    offset + bucket
}

/// Bucket of every (query, key) pair of a self-attention over `len` positions, row-major
/// `[query, key]`, as `i64` for an index tensor.
///
/// # Shapes
/// - output: `len * len` values, entry `q * len + k` is the bucket of `k - q`.
pub fn bucket_matrix(len: usize, num_buckets: usize, max_distance: usize) -> Vec<i64> {
    // Buckets depend on the difference only: compute each difference once.
    let table: Vec<i64> = (0..2 * len.max(1) - 1)
        .map(|i| {
            let rel = i as i64 - (len as i64 - 1);
            relative_position_bucket(rel, num_buckets, max_distance) as i64
        })
        .collect();
    let mut out = Vec::with_capacity(len * len);
    for q in 0..len {
        for k in 0..len {
            out.push(table[k + len - 1 - q]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-checked values of the umT5 formula (32 buckets, max distance 128).
    #[test]
    fn umt5_buckets() {
        let b = |rel| relative_position_bucket(rel, 32, 128);
        assert_eq!(b(0), 0);
        assert_eq!(b(-1), 1);
        assert_eq!(b(1), 17);
        assert_eq!(b(-7), 7);
        assert_eq!(b(7), 23);
        // d = 8..: 8 + floor(ln(d/8)/ln(16)*8)
        assert_eq!(b(-8), 8);
        assert_eq!(b(-11), 8); // 2*log2(11/8) = 0.92
        assert_eq!(b(-12), 9); // 2*log2(12/8) = 1.17
        assert_eq!(b(-16), 10);
        assert_eq!(b(-32), 12);
        assert_eq!(b(-64), 14);
        assert_eq!(b(-90), 14); // 2*log2(90/8) = 6.98
        assert_eq!(b(-91), 15); // 2*log2(91/8) = 7.01
        assert_eq!(b(-128), 15);
        assert_eq!(b(-10_000), 15);
        assert_eq!(b(10_000), 31);
    }

    #[test]
    fn matrix_layout_is_key_minus_query() {
        let m = bucket_matrix(3, 32, 128);
        // row q=0: k-q = 0,1,2 ; row q=2: -2,-1,0
        assert_eq!(m, vec![0, 17, 18, 1, 0, 17, 2, 1, 0]);
    }
}
