//! The fixed train / held-out split of attribute combinations.
//!
//! Held out are all combinations whose (shape, colour) pair is one of [`HELD_OUT_PAIRS`]:
//!
//! | shape | held-out colour |
//! |---|---|
//! | circle | green |
//! | square | magenta |
//! | triangle | blue |
//! | cross | yellow |
//!
//! Each held-out pair comes with every motion, background and size: `4 * 5 * 4 * 2 = 160` of the 960
//! combinations are held out and 800 are for training. Every shape is still seen in training (with five
//! colours) and every colour too (red and cyan with all four shapes, the others with three): a model that
//! generalises composes a seen shape with a seen colour it was never shown it with.
//!
//! The split is part of the world's definition: changing it invalidates every measurement made with it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::attributes::{Attributes, Colour, Shape};
use super::error::WorldError;

/// The (shape, colour) pairs never shown in training.
pub const HELD_OUT_PAIRS: [(Shape, Colour); 4] = [
    (Shape::Circle, Colour::Green),
    (Shape::Square, Colour::Magenta),
    (Shape::Triangle, Colour::Blue),
    (Shape::Cross, Colour::Yellow),
];

/// Which side of the split a combination is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    /// Combinations used for training (800).
    Train,
    /// Combinations never used for training (160): those with a (shape, colour) pair in [`HELD_OUT_PAIRS`].
    HeldOut,
}

impl Split {
    /// Every combination of this split, in [`Attributes::index`] order.
    pub fn combos(self) -> Vec<Attributes> {
        Attributes::all().filter(|a| split_of(a) == self).collect()
    }

    /// Lower-case name: "train" or "held-out".
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::HeldOut => "held-out",
        }
    }
}

/// The split a combination belongs to.
pub fn split_of(attributes: &Attributes) -> Split {
    if HELD_OUT_PAIRS.contains(&(attributes.shape, attributes.colour)) {
        Split::HeldOut
    } else {
        Split::Train
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Split {
    type Err = WorldError;

    /// Accepts "train", "held-out", "heldout", "held_out" or "test" (any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "held-out" | "heldout" | "held_out" | "test" => Ok(Split::HeldOut),
            _ => Err(WorldError::UnknownSplit(s.to_string())),
        }
    }
}
