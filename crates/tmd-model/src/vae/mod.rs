//! The Wan2.1 causal 3D VAE (diffusers `AutoencoderKLWan`, original `WanVAE_` in `wan/modules/vae.py`).
//!
//! ```no_run
//! use burn::backend::NdArray;
//! use burn::prelude::*;
//! use tmd_model::vae::WanVae;
//!
//! # fn main() -> tmd_model::Result<()> {
//! let device = Default::default();
//! let vae = WanVae::<NdArray<f32>>::from_diffusers_dir("Wan2.1-T2V-1.3B-Diffusers/vae", &device)?;
//! let video = Tensor::<NdArray<f32>, 5>::zeros([1, 3, 9, 64, 64], &device); // in [-1, 1]
//! let z = vae.encode_normalized(video)?; // [1, 16, 3, 8, 8], what the DiT sees
//! let frames = vae.decode_normalized(z)?; // [1, 3, 9, 64, 64], clamped to [-1, 1]
//! # Ok(()) }
//! ```
//!
//! Layout: stride 4 in time and 8 in height and width, `z_dim = 16`; `1 + 4k` frames give
//! `1 + k` latent frames. Both directions are causal in time and run chunk by chunk exactly like
//! the reference: the encoder sees frames `[0]`, `[1..5]`, `[5..9]`, ..., the decoder one latent
//! frame at a time, each causal convolution carrying its last input frames over in a
//! [`FeatCache`]. The chunking is part of the model's numerics (the temporal resamplers skip
//! their time convolution on the first chunk), not only a memory device.

mod cache;
mod config;
mod decoder;
mod encoder;
mod keys;
mod layers;

use std::path::Path;

use burn::prelude::*;

pub use cache::{CacheSlot, FeatCache, CACHE_FRAMES};
pub use config::{WanVaeConfig, PRESETS, WAN21_LATENTS_MEAN, WAN21_LATENTS_STD};
pub use decoder::{Decoder3d, UpBlock};
pub use encoder::{Encoder3d, EncoderLayer};
pub use keys::{diffusers_key_map, original_key_map, original_key_map_for};
pub use layers::{
    AttentionBlock, AttentionBlockConfig, CausalConv3d, CausalConv3dConfig, ChannelRmsNormConfig,
    ImageRmsNorm, MidBlock, MidBlockConfig, Resample, ResampleConfig, ResampleMode, ResidualBlock,
    ResidualBlockConfig, VideoRmsNorm,
};

use crate::error::{ModelError, Result};
use crate::weights::{load_module, WeightSource};

/// Frames per encoder chunk after the first single frame (hard-wired in the reference).
pub const ENCODE_CHUNK_FRAMES: usize = 4;

/// The Wan VAE: encoder, quant conv, post-quant conv, decoder, and the latent statistics.
#[derive(Module, Debug)]
pub struct WanVae<B: Backend> {
    /// The encoder (original `encoder`).
    pub encoder: Encoder3d<B>,
    /// 1x1x1 convolution on the encoder output, `2 z_dim -> 2 z_dim` (original `conv1`).
    pub quant_conv: CausalConv3d<B>,
    /// 1x1x1 convolution on the latent before decoding, `z_dim -> z_dim` (original `conv2`).
    pub post_quant_conv: CausalConv3d<B>,
    /// The decoder (original `decoder`).
    pub decoder: Decoder3d<B>,
    /// Per-channel latent mean, `[z_dim]` (a constant, not a checkpoint tensor).
    pub latents_mean: Vec<f32>,
    /// Per-channel latent standard deviation, `[z_dim]` (a constant, not a checkpoint tensor).
    pub latents_std: Vec<f32>,
    /// Video channels in.
    pub in_channels: usize,
    /// Latent channels.
    pub z_dim: usize,
    /// Spatial stride (8 for Wan2.1).
    pub spatial_stride: usize,
    /// Temporal stride (4 for Wan2.1).
    pub temporal_stride: usize,
}

impl WanVaeConfig {
    /// Builds the VAE with freshly initialised (lazy) parameters; load weights with
    /// [`WanVae::from_diffusers_dir`] or [`WanVae::load`].
    pub fn init<B: Backend>(&self, device: &B::Device) -> WanVae<B> {
        let z = self.z_dim;
        WanVae {
            encoder: self.init_encoder(device),
            quant_conv: CausalConv3dConfig::new([2 * z, 2 * z], [1, 1, 1]).init(device),
            post_quant_conv: CausalConv3dConfig::new([z, z], [1, 1, 1]).init(device),
            decoder: self.init_decoder(device),
            latents_mean: self.latents_mean.clone(),
            latents_std: self.latents_std.clone(),
            in_channels: self.in_channels,
            z_dim: z,
            spatial_stride: self.spatial_stride(),
            temporal_stride: self.temporal_stride(),
        }
    }
}

impl<B: Backend> WanVae<B> {
    /// Loads a diffusers VAE folder (`config.json` + `*.safetensors`, e.g.
    /// `Wan2.1-T2V-1.3B-Diffusers/vae`).
    pub fn from_diffusers_dir(dir: impl AsRef<Path>, device: &B::Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = WanVaeConfig::from_diffusers_config(dir.join("config.json"))?;
        let source = WeightSource::open_dir(dir)?;
        Self::load(&config, &source, &diffusers_key_map(), device)
    }

    /// Loads the official `Wan2.1_VAE.pth` (or any file with original `WanVAE_` key names) for
    /// `config` (normally [`WanVaeConfig::wan2_1`]).
    pub fn from_original_file(
        path: impl AsRef<Path>,
        config: &WanVaeConfig,
        device: &B::Device,
    ) -> Result<Self> {
        let source = WeightSource::open_files(&[path.as_ref().to_path_buf()])?;
        Self::load(config, &source, &original_key_map_for(config), device)
    }

    /// Builds the model of `config` and fills it from `source` renamed by `map`; every key and
    /// shape is checked first.
    pub fn load(
        config: &WanVaeConfig,
        source: &WeightSource,
        map: &crate::weights::KeyMap,
        device: &B::Device,
    ) -> Result<Self> {
        config.validate()?;
        load_module::<B, _>(config.init(device), source, map, &[], "Wan VAE")
    }

    /// The VAE with its weights cast to `dtype`; encode and decode then compute in that dtype
    /// (as diffusers' `AutoencoderKLWan` loaded with `torch_dtype=torch.bfloat16` does) and
    /// return their result in the dtype of their input. Use it with a backend that has `dtype`
    /// ([`crate::dtype::supports`]): on LibTorch CUDA, bf16 runs the convolutions on cuDNN's
    /// bf16 tensor-core kernels.
    pub fn with_dtype(self, dtype: burn::tensor::DType) -> Self {
        crate::dtype::cast_float_params(self, dtype)
    }

    /// The dtype of the weights (what encode and decode compute in).
    pub fn dtype(&self) -> burn::tensor::DType {
        self.post_quant_conv.weight.val().dtype()
    }

    /// Encodes a video to the posterior mean (unnormalised, as diffusers `latent_dist.mean`).
    ///
    /// # Shapes
    /// - `video`: `[batch, 3, 1 + 4k, H, W]`, values in `[-1, 1]`, `H` and `W` multiples of the
    ///   spatial stride (8)
    /// - returns `[batch, z_dim, 1 + 4k / temporal_stride, H / s, W / s]` (`s` the spatial
    ///   stride), i.e. `[batch, 16, 1 + k, H / 8, W / 8]` for Wan2.1
    pub fn encode(&self, video: Tensor<B, 5>) -> Result<Tensor<B, 5>> {
        let [_, c, f, h, w] = video.dims();
        let s = self.spatial_stride;
        if c != self.in_channels
            || f == 0
            || (f - 1) % ENCODE_CHUNK_FRAMES != 0
            || h == 0
            || w == 0
            || h % s != 0
            || w % s != 0
        {
            return Err(ModelError::BadShape {
                what: "VAE encode input video".into(),
                expected: format!(
                    "[batch, {}, 1 + 4k frames, H, W] with H and W positive multiples of {s}",
                    self.in_channels
                ),
                found: video.dims().to_vec(),
            });
        }
        let out_dtype = video.dtype();
        let video = video.cast(self.dtype());
        let mut cache = FeatCache::new();
        let mut outs = Vec::with_capacity(1 + (f - 1) / ENCODE_CHUNK_FRAMES);
        let mut start = 0;
        while start < f {
            let len = if start == 0 { 1 } else { ENCODE_CHUNK_FRAMES };
            let chunk = video.clone().narrow(2, start, len);
            outs.push(self.encoder.forward_chunk(chunk, &mut cache));
            start += len;
        }
        let moments = self.quant_conv.forward(Tensor::cat(outs, 2), None);
        // Diagonal Gaussian: the first z_dim channels are the mean, the rest the log-variance.
        Ok(moments.narrow(1, 0, self.z_dim).cast(out_dtype))
    }

    /// Decodes latents (unnormalised) to a video clamped to `[-1, 1]`.
    ///
    /// # Shapes
    /// - `z`: `[batch, z_dim, t, h, w]`, `t >= 1`
    /// - returns `[batch, 3, 1 + 4 (t - 1), 8 h, 8 w]` (Wan2.1 strides)
    pub fn decode(&self, z: Tensor<B, 5>) -> Result<Tensor<B, 5>> {
        let [_, c, t, h, w] = z.dims();
        if c != self.z_dim || t == 0 || h == 0 || w == 0 {
            return Err(ModelError::BadShape {
                what: "VAE decode input latent".into(),
                expected: format!("[batch, {}, frames >= 1, h >= 1, w >= 1]", self.z_dim),
                found: z.dims().to_vec(),
            });
        }
        let out_dtype = z.dtype();
        let x = self.post_quant_conv.forward(z.cast(self.dtype()), None);
        let mut cache = FeatCache::new();
        let outs: Vec<Tensor<B, 5>> = (0..t)
            .map(|i| {
                self.decoder
                    .forward_chunk(x.clone().narrow(2, i, 1), &mut cache)
            })
            .collect();
        Ok(Tensor::cat(outs, 2).clamp(-1.0, 1.0).cast(out_dtype))
    }

    /// Number of video frames [`decode`](Self::decode) makes from `latent_frames`:
    /// `1 + temporal_stride * (latent_frames - 1)`.
    pub fn decoded_frames(&self, latent_frames: usize) -> usize {
        if latent_frames == 0 {
            0
        } else {
            1 + self.temporal_stride * (latent_frames - 1)
        }
    }

    /// Number of latent frames [`encode`](Self::encode) makes from `frames = 1 + 4k` video frames:
    /// `1 + (frames - 1) / temporal_stride`.
    pub fn latent_frames(&self, frames: usize) -> usize {
        if frames == 0 {
            0
        } else {
            1 + (frames - 1) / self.temporal_stride
        }
    }

    fn stats(
        &self,
        device: &B::Device,
        dtype: burn::tensor::DType,
    ) -> (Tensor<B, 5>, Tensor<B, 5>) {
        let n = self.latents_mean.len();
        let shape = [1, n, 1, 1, 1];
        let mean = Tensor::<B, 1>::from_floats(self.latents_mean.as_slice(), device).reshape(shape);
        let std = Tensor::<B, 1>::from_floats(self.latents_std.as_slice(), device).reshape(shape);
        (mean.cast(dtype), std.cast(dtype))
    }

    fn check_latent_channels(&self, z: &Tensor<B, 5>, what: &str) -> Result<()> {
        if z.dims()[1] != self.latents_mean.len() {
            return Err(ModelError::BadShape {
                what: what.into(),
                expected: format!("[batch, {}, frames, h, w]", self.latents_mean.len()),
                found: z.dims().to_vec(),
            });
        }
        Ok(())
    }

    /// `(z - mean) / std` per channel: raw VAE latents -> what the DiT is trained on.
    ///
    /// # Shapes
    /// - `z`: `[batch, z_dim, frames, h, w]` -> same shape
    pub fn normalize_latents(&self, z: Tensor<B, 5>) -> Result<Tensor<B, 5>> {
        self.check_latent_channels(&z, "latents to normalise")?;
        let (mean, std) = self.stats(&z.device(), z.dtype());
        Ok((z - mean) / std)
    }

    /// `z * std + mean` per channel, the inverse of [`normalize_latents`](Self::normalize_latents).
    ///
    /// # Shapes
    /// - `z`: `[batch, z_dim, frames, h, w]` -> same shape
    pub fn denormalize_latents(&self, z: Tensor<B, 5>) -> Result<Tensor<B, 5>> {
        self.check_latent_channels(&z, "latents to denormalise")?;
        let (mean, std) = self.stats(&z.device(), z.dtype());
        Ok(z * std + mean)
    }

    /// [`encode`](Self::encode) then [`normalize_latents`](Self::normalize_latents).
    ///
    /// # Shapes
    /// - `video`: `[batch, 3, 1 + 4k, H, W]` -> `[batch, z_dim, 1 + k, H / 8, W / 8]`
    pub fn encode_normalized(&self, video: Tensor<B, 5>) -> Result<Tensor<B, 5>> {
        let z = self.encode(video)?;
        self.normalize_latents(z)
    }

    /// [`denormalize_latents`](Self::denormalize_latents) then [`decode`](Self::decode).
    ///
    /// # Shapes
    /// - `z`: `[batch, z_dim, t, h, w]` -> `[batch, 3, 1 + 4 (t - 1), 8 h, 8 w]`
    pub fn decode_normalized(&self, z: Tensor<B, 5>) -> Result<Tensor<B, 5>> {
        let z = self.denormalize_latents(z)?;
        self.decode(z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::{Distribution, Tolerance};

    type B = NdArray<f32>;

    #[test]
    fn normalisation_round_trips_and_uses_the_right_channel() {
        let device = Default::default();
        let vae = WanVaeConfig::tiny().init::<B>(&device);
        let z = Tensor::<B, 5>::random([2, 4, 3, 2, 3], Distribution::Normal(0.0, 1.0), &device);
        let back = vae
            .denormalize_latents(vae.normalize_latents(z.clone()).unwrap())
            .unwrap();
        back.into_data()
            .assert_approx_eq::<f32>(&z.into_data(), Tolerance::default());

        // Channel 1 of a constant latent equal to mean[1] normalises to 0; std scales channel 2.
        let ones = Tensor::<B, 5>::ones([1, 4, 1, 1, 1], &device);
        let n = vae
            .normalize_latents(ones)
            .unwrap()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        for c in 0..4 {
            let want = (1.0 - WAN21_LATENTS_MEAN[c]) / WAN21_LATENTS_STD[c];
            assert!(
                (n[c] - want).abs() < 1e-6,
                "channel {c}: {} vs {want}",
                n[c]
            );
        }
        let bad = Tensor::<B, 5>::zeros([1, 3, 1, 1, 1], &device);
        assert!(matches!(
            vae.normalize_latents(bad),
            Err(ModelError::BadShape { .. })
        ));
    }

    #[test]
    fn shapes_are_validated_and_frame_counts_follow_the_strides() {
        let device = Default::default();
        let vae = WanVaeConfig::tiny().init::<B>(&device);
        let wrong_frames = Tensor::<B, 5>::zeros([1, 3, 4, 8, 8], &device);
        assert!(matches!(
            vae.encode(wrong_frames),
            Err(ModelError::BadShape { .. })
        ));
        let wrong_size = Tensor::<B, 5>::zeros([1, 3, 5, 12, 8], &device);
        assert!(matches!(
            vae.encode(wrong_size),
            Err(ModelError::BadShape { .. })
        ));
        let wrong_z = Tensor::<B, 5>::zeros([1, 16, 2, 1, 1], &device);
        assert!(matches!(
            vae.decode(wrong_z),
            Err(ModelError::BadShape { .. })
        ));

        let video = Tensor::<B, 5>::zeros([1, 3, 5, 8, 16], &device);
        let z = vae.encode(video).unwrap();
        assert_eq!(z.dims(), [1, 4, 2, 1, 2]);
        assert_eq!(vae.latent_frames(5), 2);
        let out = vae.decode(z).unwrap();
        assert_eq!(out.dims(), [1, 3, 5, 8, 16]);
        assert_eq!(vae.decoded_frames(21), 81);
    }

    /// The VAE computes in its weights' dtype: every tensor its layers make follows the input's
    /// dtype (burn's `pad` made f32 zeros, which on LibTorch turned a bf16 decode into f32). NdArray
    /// has no bf16, so f64 stands in for "a dtype other than the default": a decode and an encode
    /// in f64 agree with f32 and hand back the input's dtype.
    #[test]
    fn runs_in_the_weights_dtype() {
        use burn::tensor::DType;
        let device = Default::default();
        B::seed(&device, 3);
        let vae = WanVaeConfig::tiny().init::<B>(&device);
        let z = Tensor::<B, 5>::random([1, 4, 3, 2, 3], Distribution::Normal(0.0, 1.0), &device);
        let want = vae.decode(z.clone()).unwrap();
        let video =
            Tensor::<B, 5>::random([1, 3, 5, 8, 16], Distribution::Uniform(-1.0, 1.0), &device);
        let want_z = vae.encode(video.clone()).unwrap();
        // (Cast after both passes: a fresh module's parameters are initialised lazily, on first
        // use, and a clone made before that would draw its own.)
        let vae64 = vae.with_dtype(DType::F64);
        assert_eq!(vae64.dtype(), DType::F64);
        let got = vae64.decode(z).unwrap();
        assert_eq!(got.dtype(), DType::F32);
        let err = (got.clone() - want.clone()).abs().max().into_scalar();
        assert!(err < 1e-4, "f64 decode differs from f32 by {err}");
        assert!(
            want.abs().max().into_scalar() > 1e-3,
            "decode output is all zeros"
        );

        let got = vae64.encode(video).unwrap();
        assert_eq!(got.dtype(), DType::F32);
        let err = (got - want_z).abs().max().into_scalar();
        assert!(err < 1e-4, "f64 encode differs from f32 by {err}");
    }

    #[test]
    fn config_presets_and_validation() {
        assert!(WanVaeConfig::wan2_1().validate().is_ok());
        assert!(WanVaeConfig::tiny().validate().is_ok());
        assert_eq!(WanVaeConfig::wan2_1().spatial_stride(), 8);
        assert_eq!(WanVaeConfig::wan2_1().temporal_stride(), 4);
        assert!(WanVaeConfig::preset("nope").is_err());
        let bad = WanVaeConfig::tiny().with_temperal_downsample(vec![true]);
        assert!(matches!(
            bad.validate(),
            Err(ModelError::InvalidConfig { .. })
        ));
    }
}
