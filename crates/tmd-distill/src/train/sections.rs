//! The two sections every training stage's settings share, defined once: the optimizer
//! (`[<stage>.optimizer]`) and checkpointing (`[<stage>.checkpoint]`). A stage's recipe holds them
//! as nested tables, so their keys read the same in every config file and override the same way
//! (`--set train.optimizer.lr=1e-4`, `--set train.checkpoint.every=100`).
//!
//! Each stage's `Default` sets its own values (the stage's learning rate, stage 2's
//! `beta2 = 0.99`); a config file that names only `optimizer.lr` keeps the stage's other defaults
//! (the stage's defaults are the bottom layer of [`load_stage_config`](super::load_stage_config)).

use serde::{Deserialize, Serialize};

/// Learning rate and AdamW settings of a stage.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
#[serde(default)]
pub struct OptimizerConfig {
    /// Learning rate (the peak of the stage's schedule, if it has one).
    pub lr: f64,
    /// AdamW first-moment decay.
    pub beta1: f64,
    /// AdamW second-moment decay.
    pub beta2: f64,
    /// AdamW epsilon.
    pub epsilon: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Clip the global gradient norm to this value; 0 disables.
    pub grad_clip_norm: f64,
}

impl Default for OptimizerConfig {
    /// PyTorch's AdamW defaults (betas 0.9 / 0.999, epsilon 1e-8, weight decay 0.01), a learning
    /// rate of 1e-4 and a gradient clip at norm 1.
    fn default() -> Self {
        Self {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.01,
            grad_clip_norm: 1.0,
        }
    }
}

/// When a stage writes checkpoints and what it keeps.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
#[serde(default)]
pub struct CheckpointConfig {
    /// Write a checkpoint every this many steps (and after the last step); 0 writes none
    /// (benchmarks: an interrupted run then starts over).
    pub every: u64,
    /// Keep this many newest checkpoints (0 keeps all).
    pub keep_last: usize,
    /// Number of recent losses kept in each checkpoint's `state.json`.
    pub loss_tail: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            every: 500,
            keep_last: 3,
            loss_tail: 100,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{CheckpointConfig, OptimizerConfig};
    use crate::train::{load_stage_config, TrainError};
    use serde::{Deserialize, Serialize};

    /// A stage whose defaults differ from the sections' own (like stage 2's `beta2 = 0.99`).
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    #[serde(default)]
    struct Stage {
        steps: u64,
        optimizer: OptimizerConfig,
        checkpoint: CheckpointConfig,
    }

    impl Default for Stage {
        fn default() -> Self {
            Self {
                steps: 10,
                optimizer: OptimizerConfig {
                    lr: 1e-5,
                    beta2: 0.99,
                    ..OptimizerConfig::default()
                },
                checkpoint: CheckpointConfig {
                    every: 250,
                    ..CheckpointConfig::default()
                },
            }
        }
    }

    #[test]
    fn a_section_named_in_part_keeps_the_stages_other_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stage.toml");
        std::fs::write(
            &file,
            "steps = 3\n[optimizer]\nlr = 2e-4\n[checkpoint]\nkeep_last = 1\n",
        )
        .unwrap();
        let s: Stage = load_stage_config(Some(&file), &["checkpoint.loss_tail=7".into()]).unwrap();
        let d = Stage::default();
        assert_eq!(s.steps, 3);
        assert_eq!(s.optimizer.lr, 2e-4);
        assert_eq!(
            s.optimizer.beta2, d.optimizer.beta2,
            "the stage's beta2, not AdamW's default"
        );
        assert_eq!(
            (
                s.checkpoint.every,
                s.checkpoint.keep_last,
                s.checkpoint.loss_tail
            ),
            (d.checkpoint.every, 1, 7)
        );
        let s: Stage = load_stage_config(None, &["optimizer.weight_decay=0".into()]).unwrap();
        assert_eq!(
            (s.optimizer.weight_decay, s.optimizer.lr),
            (0.0, d.optimizer.lr)
        );
    }

    #[test]
    fn the_keys_before_the_sections_are_errors_that_say_where_they_went() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("old.toml");
        for (text, key, now) in [
            ("lr = 1e-3\n", "lr", "optimizer.lr"),
            (
                "checkpoint_every = 5\n",
                "checkpoint_every",
                "checkpoint.every",
            ),
        ] {
            std::fs::write(&file, text).unwrap();
            match load_stage_config::<Stage>(Some(&file), &[]) {
                Err(TrainError::Config {
                    key: Some(k),
                    message,
                    ..
                }) => {
                    assert_eq!(k, key);
                    assert!(message.contains(&format!("now `{now}`")), "{message}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        match load_stage_config::<Stage>(None, &["keep_last=2".into()]) {
            Err(TrainError::Config {
                key: Some(k),
                message,
                ..
            }) => {
                assert_eq!(k, "keep_last");
                assert!(message.contains("now `checkpoint.keep_last`"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let err = load_stage_config::<Stage>(None, &["optimizer.lr=-1".into()]).unwrap_err();
        assert!(err.to_string().contains("optimizer.lr"), "{err}");
    }
}
