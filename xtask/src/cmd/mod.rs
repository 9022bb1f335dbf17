//! One module per xtask command: its clap arguments (`Args`) and what it does (`run`).

pub mod adapt_head;
pub mod bench;
pub mod bench_distill;
pub mod convert_weights;
pub mod distill;
pub mod distill_decoder;
pub mod encode_world;
pub mod eval;
pub mod eval_merge;
pub mod export;
pub mod make_random_model;
pub mod make_tiny_model;
pub mod pretrain;
pub mod teacher_data;
pub mod train_evaluator;
pub mod world_preview;
pub mod world_tokenizer;
