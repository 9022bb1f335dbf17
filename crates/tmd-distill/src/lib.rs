//! tmd-distill: Transition Matching Distillation of Wan2.1 text-to-video models.
//!
//! The weights of the real Wan2.1 models cannot be downloaded here, so the crate ships its own small,
//! fully synthetic [`world`]: seeded captioned clips whose attributes (shape, colour, motion, background,
//! size) are stated by the caption and checkable in the pixels, with a fixed held-out set of attribute
//! combinations for measuring generalisation.
//!
//! ```
//! use tmd_distill::world::{ClipSpec, Split, WorldDataset};
//! let data = WorldDataset::new(Some(Split::Train), 7, ClipSpec::default());
//! let clip = data.clip(0);
//! assert_eq!(clip.pixels.len(), 3 * 17 * 64 * 64);
//! println!("{}", clip.caption);
//! ```

pub mod adapt_head;
pub mod distill;
pub mod distill_decoder;
pub mod eval;
pub mod latent_cache;
pub mod pretrain;
pub mod teacher_data;
pub mod train;
pub mod world;
