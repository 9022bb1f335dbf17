//! tmd-world: the testbed, not the method. The real Wan2.1 weights cannot be downloaded here, so
//! the project ships its own small, fully synthetic world, a teacher pretrained on it, and an
//! evaluator that checks generated clips against their captions.
//!
//! The world: seeded captioned clips whose attributes (shape, colour, motion, background, size) are
//! stated by the caption and checkable in the pixels, with a fixed held-out set of attribute
//! combinations for measuring generalisation.
//!
//! - [`attributes`]: the vocabulary (shape, colour, motion, background, size) and combination indices.
//! - [`split`]: the fixed train / held-out split of combinations.
//! - [`caption`](mod@caption): natural captions from templates, and parsing captions back into attributes.
//! - [`render`](mod@render): rasterising a clip, `[3, frames, height, width]` in `[-1, 1]`.
//! - [`dataset`]: an endless seeded dataset, parallel batches, tensors.
//! - [`latents`]: world clips encoded once by a VAE into a [`tmd_distill::latent_cache`].
//! - [`preview`]: GIFs and contact sheets for looking at clips.
//! - [`tokenizer`]: the world's word-level tokenizer.
//! - [`eval`]: the evaluator (our small VBench): the world classifier, prompt adherence and
//!   Fréchet distance of generated clips.
//! - [`pretrain`]: pretraining the bundled teacher (VAE, text encoder, DiT) on the world, through
//!   tmd-distill's training loop ([`tmd_distill::train`]).
//!
//! Dependency direction: this crate uses tmd-distill's generic training loop and latent cache;
//! tmd-distill's stages never need the world (they read a latent cache).
//!
//! ```
//! use tmd_world::{parse_caption, render, Attributes, ClipSpec};
//! let attrs = parse_caption("A small red circle moves to the left on a black background.").unwrap();
//! let clip = render(&attrs, 42, &ClipSpec::default());
//! assert_eq!(clip.attributes, attrs);
//! assert_eq!(Attributes::COUNT, 960);
//! ```
//!
//! ```
//! use tmd_world::{ClipSpec, Split, WorldDataset};
//! let data = WorldDataset::new(Some(Split::Train), 7, ClipSpec::default());
//! let clip = data.clip(0);
//! assert_eq!(clip.pixels.len(), 3 * 17 * 64 * 64);
//! println!("{}", clip.caption);
//! ```

pub mod attributes;
pub mod caption;
pub mod dataset;
pub mod error;
pub mod eval;
pub mod latents;
pub mod pretrain;
pub mod preview;
pub mod render;
mod rng;
pub mod split;
pub mod tokenizer;

pub use attributes::{
    Attribute, AttributeKind, Attributes, Background, Colour, Motion, Shape, Size,
};
pub use caption::{
    canonical_caption, caption, caption_with_template, parse_caption, parse_partial,
    PartialAttributes, TEMPLATE_COUNT,
};
pub use dataset::{captions, to_tensor, Batches, PrefetchedBatches, WorldDataset};
pub use error::{CaptionError, WorldError};
pub use preview::{contact_sheet, frame_image, save_contact_sheet, save_gif, save_gif_scaled};
pub use render::{render, Clip, ClipSpec};
pub use split::{split_of, Split, HELD_OUT_PAIRS};
pub use tokenizer::{world_tokenizer_json, world_vocabulary, write_world_tokenizer};
