//! The synthetic world: seeded captioned clips with checkable attributes.
//!
//! - [`attributes`]: the vocabulary (shape, colour, motion, background, size) and combination indices.
//! - [`split`]: the fixed train / held-out split of combinations.
//! - [`caption`](mod@caption): natural captions from templates, and parsing captions back into attributes.
//! - [`render`](mod@render): rasterising a clip, `[3, frames, height, width]` in `[-1, 1]`.
//! - [`dataset`]: an endless seeded dataset, parallel batches, tensors.
//! - [`preview`]: GIFs and contact sheets for looking at clips.
//!
//! ```
//! use tmd_distill::world::{parse_caption, render, Attributes, ClipSpec};
//! let attrs = parse_caption("A small red circle moves to the left on a black background.").unwrap();
//! let clip = render(&attrs, 42, &ClipSpec::default());
//! assert_eq!(clip.attributes, attrs);
//! assert_eq!(Attributes::COUNT, 960);
//! ```

pub mod attributes;
pub mod caption;
pub mod dataset;
pub mod error;
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
