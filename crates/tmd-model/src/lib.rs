//! Wan2.1 text-to-video models in Burn, numerically equal to the reference implementation.
//!
//! * [`attention`]: scaled dot-product attention with an O(L)-memory backward pass.
//! * [`fused`]: one-kernel GELU, norms, bias and RoPE where the backend has them (LibTorch).
//! * [`dit`]: the diffusion transformer `WanModel` (diffusers: `WanTransformer3DModel`).
//! * [`vae`]: the causal 3D Wan VAE with chunked, feature-cached encode/decode.
//! * [`light_decoder`]: a small per-frame 2D decoder from Wan latents to pixels, distilled from
//!   the VAE's decoder (loaded from a model directory's optional `decoder-light/`).
//! * [`t5`]: the umT5 encoder and the Wan text pipeline (tokenizer, cleaning, padding, cache).
//! * [`dtype`]: whole-module casts (bf16 VAE and umT5 on GPUs) and dtype-keeping padding.
//! * [`conv`]: convolutions as per-tap matrix products (what the VAE runs on every backend).
//! * [`weights`]: the one place where checkpoint keys are read, remapped and checked.
//! * [`export`]: the reverse, modules written as safetensors / diffusers folders for other tools.
//!
//! Every module is generic over `B: Backend` and loads straight from a diffusers-format folder
//! (`transformer/`, `vae/`, `text_encoder/`) or from a converted model directory.

pub mod attention;
pub mod conv;
pub mod convert;
pub mod dit;
pub mod dtype;
pub mod error;
pub mod export;
pub mod fused;
pub mod integrity;
pub mod light_decoder;
pub mod model_dir;
pub mod output;
pub mod random;
pub mod t5;
pub mod vae;
pub mod weights;

pub use error::{ModelError, Result};

/// `x` as a `T` when its type is `T` (a checked move through `Any`), else `None`: how the
/// backend-specific paths ([`attention`], [`fused`]) reach a concrete backend's tensors from
/// code generic over `B`.
pub(crate) fn same_type<S: 'static, T: 'static>(x: S) -> Option<T> {
    let mut slot = Some(x);
    (&mut slot as &mut dyn std::any::Any)
        .downcast_mut::<Option<T>>()
        .and_then(Option::take)
}
