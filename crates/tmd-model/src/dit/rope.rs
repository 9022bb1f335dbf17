//! The two positional/time encodings of the Wan DiT, each in one place:
//! the sinusoidal time embedding and the 3D rotary position embedding (RoPE).

use burn::prelude::*;
use burn::tensor::DType;

/// Sinusoidal embedding of diffusion timesteps, **cosines first**:
/// `[cos(t w_0) .. cos(t w_{n-1}), sin(t w_0) .. sin(t w_{n-1})]` with `n = dim/2` and
/// `w_j = 10000^(-j/n)` (Wan2.1 `sinusoidal_embedding_1d`; diffusers `Timesteps(flip_sin_to_cos=True,
/// downscale_freq_shift=0)`).
///
/// Computed in f64 when the backend supports it (as the original does), else in the input's float
/// type; the result has the input's dtype. `dim` must be even.
///
/// # Shapes
/// - `timestep`: `[batch]`, values in `[0, 1000]`
/// - output: `[batch, dim]`
pub fn sinusoidal_time_embedding<B: Backend>(timestep: Tensor<B, 1>, dim: usize) -> Tensor<B, 2> {
    let half = dim / 2;
    let device = timestep.device();
    let out_dtype = timestep.dtype();
    let compute = if B::supports_dtype(&device, DType::F64) {
        DType::F64
    } else {
        out_dtype
    };
    let freqs: Vec<f64> = (0..half)
        .map(|j| 10000f64.powf(-(j as f64) / half as f64))
        .collect();
    let freqs = Tensor::<B, 1>::from_data(TensorData::new(freqs, [half]), (&device, compute));
    let args = timestep.cast(compute).unsqueeze_dim::<2>(1) * freqs.unsqueeze_dim::<2>(0);
    Tensor::cat(vec![args.clone().cos(), args.sin()], 1).cast(out_dtype)
}

/// Channels of the three RoPE axes (frames, height, width) for one head of size `head_dim`:
/// `head_dim - 4*(head_dim/6)`, `2*(head_dim/6)`, `2*(head_dim/6)` (44/42/42 for 128).
pub fn rope_axis_dims(head_dim: usize) -> [usize; 3] {
    let hw = 2 * (head_dim / 6);
    [head_dim - 2 * hw, hw, hw]
}

/// cos/sin tables of the 3D RoPE for one token grid, ready to be applied to `[b, heads, L, head_dim]`.
#[derive(Debug, Clone)]
pub struct RopeTables<B: Backend> {
    /// Cosines, `[1, 1, L, head_dim/2, 1]`: one per token and interleaved channel pair.
    pub cos: Tensor<B, 5>,
    /// Sines, `[1, 1, L, head_dim/2, 1]`.
    pub sin: Tensor<B, 5>,
}

/// The 3D RoPE angle of every token of a `(frames, height, width)` grid (in patches), in
/// token order f, h, w (w fastest). Each axis has its own frequency ladder
/// `theta^(-2j/D_axis)`, `j < D_axis/2`, over its `D_axis` channels from [`rope_axis_dims`];
/// the pair index runs over frames first, then height, then width. Computed in f64.
///
/// Returns `(cos, sin)`, each `L * head_dim/2` values, row-major `[L, head_dim/2]`.
pub fn rope_angles_3d(grid: [usize; 3], head_dim: usize, theta: f64) -> (Vec<f64>, Vec<f64>) {
    let axes = rope_axis_dims(head_dim);
    let ladders: Vec<Vec<f64>> = axes
        .iter()
        .map(|&d| {
            (0..d / 2)
                .map(|j| 1.0 / theta.powf((2 * j) as f64 / d as f64))
                .collect()
        })
        .collect();
    let pairs = head_dim / 2;
    let tokens = grid[0] * grid[1] * grid[2];
    let mut cos = Vec::with_capacity(tokens * pairs);
    let mut sin = Vec::with_capacity(tokens * pairs);
    for f in 0..grid[0] {
        for h in 0..grid[1] {
            for w in 0..grid[2] {
                for (pos, ladder) in [f, h, w].into_iter().zip(&ladders) {
                    for &freq in ladder {
                        let angle = pos as f64 * freq;
                        cos.push(angle.cos());
                        sin.push(angle.sin());
                    }
                }
            }
        }
    }
    (cos, sin)
}

impl<B: Backend> RopeTables<B> {
    /// Builds the tables for a token grid `(frames, height, width)` (in patches), on the device:
    /// the angles of [`rope_angles_3d`] as position x frequency products, in f64 where the
    /// backend has it (like the host function), then cos/sin in f32. (Built on the host, the
    /// 2 x 2M values of a 480x832x81 clip took tens of milliseconds of every forward.)
    pub fn new(grid: [usize; 3], head_dim: usize, theta: f64, device: &B::Device) -> Self {
        let compute = if B::supports_dtype(device, DType::F64) {
            DType::F64
        } else {
            DType::F32
        };
        let [f, h, w] = grid;
        let tokens = f * h * w;
        let axes = rope_axis_dims(head_dim);
        // One block of angles per axis: positions along the axis x its frequency ladder,
        // broadcast over the other two axes.
        let blocks: Vec<Tensor<B, 4>> = axes
            .iter()
            .enumerate()
            .map(|(axis, &d)| {
                let ladder: Vec<f64> = (0..d / 2)
                    .map(|j| 1.0 / theta.powf((2 * j) as f64 / d as f64))
                    .collect();
                let n = grid[axis];
                let positions: Vec<f64> = (0..n).map(|p| p as f64).collect();
                let mut shape = [1, 1, 1, 1];
                shape[axis] = n;
                let positions =
                    Tensor::<B, 1>::from_data(TensorData::new(positions, [n]), (device, compute))
                        .reshape(shape);
                let ladder =
                    Tensor::<B, 1>::from_data(TensorData::new(ladder, [d / 2]), (device, compute))
                        .reshape([1, 1, 1, d / 2]);
                (positions * ladder).expand([f, h, w, d / 2])
            })
            .collect();
        let angles = Tensor::cat(blocks, 3).reshape([1, 1, tokens, head_dim / 2, 1]);
        Self {
            cos: angles.clone().cos().cast(DType::F32),
            sin: angles.sin().cast(DType::F32),
        }
    }

    /// Rotates interleaved channel pairs `(x[2k], x[2k+1])` as complex numbers by the token's angle.
    ///
    /// # Shapes
    /// - `x`: `[batch, heads, L, head_dim]`
    /// - output: `[batch, heads, L, head_dim]`
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = match crate::fused::rope(x, &self.cos, &self.sin) {
            Ok(out) => return out,
            Err(x) => x,
        };
        let [b, h, l, d] = x.dims();
        let pairs = x.reshape([b, h, l, d / 2, 2]);
        let re = pairs.clone().narrow(4, 0, 1);
        let im = pairs.narrow(4, 1, 1);
        let out_re = re.clone() * self.cos.clone() - im.clone() * self.sin.clone();
        let out_im = re * self.sin.clone() + im * self.cos.clone();
        Tensor::cat(vec![out_re, out_im], 4).reshape([b, h, l, d])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type TB = NdArray<f32>;

    #[test]
    fn axis_split_matches_wan() {
        assert_eq!(rope_axis_dims(128), [44, 42, 42]);
        assert_eq!(rope_axis_dims(24), [8, 8, 8]);
        assert_eq!(rope_axis_dims(12), [4, 4, 4]);
    }

    #[test]
    fn time_embedding_cos_first() {
        let device = Default::default();
        let t = Tensor::<TB, 1>::from_floats([0.0, 2.0], &device);
        let e = sinusoidal_time_embedding(t, 4).into_data();
        let v: Vec<f32> = e.to_vec().unwrap();
        // t = 0: cos = 1, sin = 0; t = 2: freqs [1, 0.01].
        let expected = [
            1.0,
            1.0,
            0.0,
            0.0,
            2f32.cos(),
            0.02f32.cos(),
            2f32.sin(),
            0.02f32.sin(),
        ];
        for (a, b) in v.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{v:?}");
        }
    }

    #[test]
    fn device_tables_equal_the_host_angles() {
        let device = Default::default();
        let (grid, head_dim) = ([3, 4, 5], 24);
        let tables = RopeTables::<TB>::new(grid, head_dim, 10000.0, &device);
        let (cos, sin) = rope_angles_3d(grid, head_dim, 10000.0);
        assert_eq!(tables.cos.dims(), [1, 1, 60, 12, 1]);
        for (table, host) in [(tables.cos, cos), (tables.sin, sin)] {
            let table: Vec<f32> = table.into_data().to_vec().unwrap();
            assert_eq!(table.len(), host.len());
            for (a, b) in table.iter().zip(&host) {
                assert_eq!(*a, *b as f32);
            }
        }
    }

    #[test]
    fn rope_rotates_pairs() {
        let device = Default::default();
        // head_dim 6: axes [2, 2, 2] -> one pair per axis, freq 1 each. Grid (1, 2, 1): token 1 has h = 1.
        let tables = RopeTables::<TB>::new([1, 2, 1], 6, 10000.0, &device);
        let x = Tensor::<TB, 4>::from_floats([[[[1.0, 0.0, 1.0, 0.0, 1.0, 0.0]; 2]]], &device);
        let y: Vec<f32> = tables.apply(x).into_data().to_vec().unwrap();
        let (c, s) = (1f32.cos(), 1f32.sin());
        let expected = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, c, s, 1.0, 0.0];
        for (a, b) in y.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{y:?}");
        }
    }
}
