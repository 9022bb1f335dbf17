//! The umT5-XXL text encoder of Wan2.1 and its text pipeline.
//!
//! ```text
//! cargo test -p tmd-model --test t5_parity -- --nocapture
//! ```
//! loads the tiny fixture model through [`TextEncoder::from_dirs`] and compares with transformers.
//!
//! ```ignore
//! use tmd_model::t5::TextEncoder;
//! let text = TextEncoder::<B>::from_dirs("Wan2.1-T2V-1.3B-Diffusers/text_encoder",
//!     "Wan2.1-T2V-1.3B-Diffusers/tokenizer/tokenizer.json", &device)?;
//! let context = text.encode_cached("a cat surfing a wave at sunset")?; // [1, 512, 4096]
//! ```
//!
//! * [`UMT5Config`], [`UMT5Encoder`]: the encoder (transformers `UMT5EncoderModel`, Wan2.1 `T5Encoder`):
//!   a relative position bias table per layer, T5 RMS norms in f32, unscaled attention, gated
//!   tanh-GELU feed-forward, no biases.
//! * [`relative_position_bucket`]: the bucket function, in one place.
//! * [`hf_key_map`], [`original_key_map`]: checkpoint names (transformers, official Wan2.1).
//! * [`TextEncoder`]: cleaning ([`clean_prompt`]), tokenizer (`</s>` appended, padded to `text_len`),
//!   encoder, zeroed padding rows, [`EmbeddingCache`].

mod bucket;
mod clean;
mod config;
mod keys;
mod model;
mod pipeline;
pub mod prompt_check;

pub use bucket::{bucket_matrix, relative_position_bucket};
pub use clean::{clean_prompt, collapse_whitespace, fix_text_subset, html_unescape};
pub use config::UMT5Config;
pub use keys::{hf_ignored_keys, hf_key_map, original_key_map};
pub use model::{gelu_tanh, T5LayerNorm, UMT5Attention, UMT5Block, UMT5Encoder, UMT5FeedForward};
pub use pipeline::{EmbeddingCache, TextEncoder, TokenBatch, DEFAULT_TEXT_LEN};
