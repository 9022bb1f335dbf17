//! tmd-distill: Transition Matching Distillation of Wan2.1 text-to-video models: the method's
//! training stages (adapt-head, distill, the KD warm-up, distill-decoder), the teacher data they
//! learn from, and the training loop they share ([`train`]).
//!
//! The synthetic world the project tests on, its evaluator and the bundled teacher's pretraining
//! live in the `tmd-world` crate, which builds on this one; nothing here needs the world (stages
//! read a [`latent_cache::LatentCache`]).

pub mod adapt_head;
pub mod distill;
pub mod distill_decoder;
pub mod latent_cache;
pub mod teacher_data;
pub mod train;
