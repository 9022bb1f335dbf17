//! The attribute vocabulary of the synthetic world.
//!
//! A clip shows one object. Five independent attributes describe it, each stated by the caption and
//! checkable in the pixels:
//!
//! | attribute | values |
//! |---|---|
//! | [`Shape`] | circle, square, triangle, cross |
//! | [`Colour`] | red, green, blue, yellow, magenta, cyan |
//! | [`Motion`] | left, right, up, down, bounce (hops up and down in place) |
//! | [`Background`] | black, white, grey, striped |
//! | [`Size`] | small, large (the compositional attribute) |
//!
//! Object colours are all saturated and backgrounds all achromatic, so every colour stands out against
//! every background (the object is exactly the pixels with high chroma). That makes
//! `4 * 6 * 5 * 4 * 2 = 960` combinations, numbered by [`Attributes::index`].

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::WorldError;

/// Which of the five attributes (plus the object count, only used in errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttributeKind {
    /// [`Shape`] of the object.
    Shape,
    /// [`Colour`] of the object.
    Colour,
    /// [`Motion`] of the object.
    Motion,
    /// [`Background`] behind the object.
    Background,
    /// [`Size`] of the object.
    Size,
    /// Number of objects: the world always has exactly one; only appears in caption errors.
    Count,
}

impl AttributeKind {
    /// The five attributes of a clip, in the order used by [`Attributes::index`] and [`Attributes::classes`].
    pub const ALL: [AttributeKind; 5] = [
        AttributeKind::Shape,
        AttributeKind::Colour,
        AttributeKind::Motion,
        AttributeKind::Background,
        AttributeKind::Size,
    ];

    /// Lower-case name ("shape", "colour", ...).
    pub fn name(self) -> &'static str {
        match self {
            AttributeKind::Shape => "shape",
            AttributeKind::Colour => "colour",
            AttributeKind::Motion => "motion",
            AttributeKind::Background => "background",
            AttributeKind::Size => "size",
            AttributeKind::Count => "object count",
        }
    }

    /// Number of values of this attribute (classifier head width); 1 for [`AttributeKind::Count`].
    pub fn count(self) -> usize {
        match self {
            AttributeKind::Shape => Shape::COUNT,
            AttributeKind::Colour => Colour::COUNT,
            AttributeKind::Motion => Motion::COUNT,
            AttributeKind::Background => Background::COUNT,
            AttributeKind::Size => Size::COUNT,
            AttributeKind::Count => 1,
        }
    }
}

impl fmt::Display for AttributeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Common interface of the five attribute enums.
pub trait Attribute: Copy + Eq + fmt::Debug + fmt::Display + 'static {
    /// Which attribute this is.
    const KIND: AttributeKind;
    /// Number of values.
    const COUNT: usize;
    /// Every value, in index order.
    fn all() -> &'static [Self];
    /// Position of this value in [`Attribute::all`] (the class label of a classifier head).
    fn index(self) -> usize;
    /// The value at `index`, if in range.
    fn from_index(index: usize) -> Option<Self> {
        Self::all().get(index).copied()
    }
    /// Canonical lower-case word ("circle", "red", "left", ...).
    fn name(self) -> &'static str;
}

macro_rules! attribute_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $kind:expr, [$( $(#[$vmeta:meta])* $variant:ident => $word:literal ),+ $(,)?]
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in index order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
        }

        impl Attribute for $name {
            const KIND: AttributeKind = $kind;
            const COUNT: usize = $name::ALL.len();
            fn all() -> &'static [Self] {
                $name::ALL
            }
            fn index(self) -> usize {
                self as usize
            }
            fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

attribute_enum!(
    /// Shape of the object. Shapes are scaled so their areas are comparable for one [`Size`].
    Shape, AttributeKind::Shape, [
        /// A filled disc.
        Circle => "circle",
        /// A filled axis-aligned square.
        Square => "square",
        /// A filled equilateral triangle, apex up.
        Triangle => "triangle",
        /// A filled plus-shaped cross.
        Cross => "cross",
    ]
);

attribute_enum!(
    /// Colour of the object: saturated hues, each far (in chroma) from every achromatic [`Background`].
    Colour, AttributeKind::Colour, [
        /// Red, sRGB about (0.95, 0.10, 0.10).
        Red => "red",
        /// Green, sRGB about (0.10, 0.85, 0.15).
        Green => "green",
        /// Blue, sRGB about (0.15, 0.30, 1.00).
        Blue => "blue",
        /// Yellow, sRGB about (0.95, 0.85, 0.05).
        Yellow => "yellow",
        /// Magenta, sRGB about (0.90, 0.10, 0.90).
        Magenta => "magenta",
        /// Cyan, sRGB about (0.10, 0.85, 0.90).
        Cyan => "cyan",
    ]
);

attribute_enum!(
    /// How the object moves during the clip.
    Motion, AttributeKind::Motion, [
        /// Travels steadily towards the left edge.
        Left => "left",
        /// Travels steadily towards the right edge.
        Right => "right",
        /// Travels steadily upwards.
        Up => "up",
        /// Travels steadily downwards.
        Down => "down",
        /// Bounces up and down in place (at least one and a half hops per clip); no net horizontal motion.
        Bounce => "bounce",
    ]
);

attribute_enum!(
    /// What is behind the object: all achromatic and static.
    Background, AttributeKind::Background, [
        /// Near-black.
        Black => "black",
        /// Near-white.
        White => "white",
        /// Mid grey.
        Grey => "grey",
        /// Diagonal dark-grey and light-grey stripes.
        Striped => "striped",
    ]
);

attribute_enum!(
    /// Size of the object: at 64x64 the bounding radius is about 7 px (small) or 14 px (large).
    Size, AttributeKind::Size, [
        /// Bounding radius 0.11 of the shorter side.
        Small => "small",
        /// Bounding radius 0.22 of the shorter side.
        Large => "large",
    ]
);

impl Colour {
    /// Nominal sRGB colour in `[0, 1]` (before the per-clip brightness jitter).
    pub fn rgb(self) -> [f32; 3] {
        match self {
            Colour::Red => [0.95, 0.10, 0.10],
            Colour::Green => [0.10, 0.85, 0.15],
            Colour::Blue => [0.15, 0.30, 1.00],
            Colour::Yellow => [0.95, 0.85, 0.05],
            Colour::Magenta => [0.90, 0.10, 0.90],
            Colour::Cyan => [0.10, 0.85, 0.90],
        }
    }
}

/// The full description of one clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Attributes {
    /// Shape of the object.
    pub shape: Shape,
    /// Colour of the object.
    pub colour: Colour,
    /// Motion of the object.
    pub motion: Motion,
    /// Background behind the object.
    pub background: Background,
    /// Size of the object.
    pub size: Size,
}

impl Attributes {
    /// Number of attribute combinations (960).
    pub const COUNT: usize =
        Shape::COUNT * Colour::COUNT * Motion::COUNT * Background::COUNT * Size::COUNT;

    /// Number of values per attribute in [`AttributeKind::ALL`] order: `[4, 6, 5, 4, 2]`
    /// (the widths of per-attribute classifier heads).
    pub const CLASS_COUNTS: [usize; 5] = [
        Shape::COUNT,
        Colour::COUNT,
        Motion::COUNT,
        Background::COUNT,
        Size::COUNT,
    ];

    /// Builds a combination from its five values.
    pub fn new(
        shape: Shape,
        colour: Colour,
        motion: Motion,
        background: Background,
        size: Size,
    ) -> Self {
        Self {
            shape,
            colour,
            motion,
            background,
            size,
        }
    }

    /// Mixed-radix index in `0..COUNT`, shape most significant, size least:
    /// `(((shape * 6 + colour) * 5 + motion) * 4 + background) * 2 + size`.
    pub fn index(&self) -> usize {
        let c = self.classes();
        let mut i = 0;
        for (k, &n) in Self::CLASS_COUNTS.iter().enumerate() {
            i = i * n + c[k];
        }
        i
    }

    /// Inverse of [`Attributes::index`].
    ///
    /// # Errors
    /// [`WorldError::IndexOutOfRange`] if `index >= COUNT`.
    pub fn from_index(index: usize) -> Result<Self, WorldError> {
        if index >= Self::COUNT {
            return Err(WorldError::IndexOutOfRange {
                index,
                count: Self::COUNT,
            });
        }
        let mut rest = index;
        let mut c = [0usize; 5];
        for k in (0..5).rev() {
            c[k] = rest % Self::CLASS_COUNTS[k];
            rest /= Self::CLASS_COUNTS[k];
        }
        Self::from_classes(c).ok_or(WorldError::IndexOutOfRange {
            index,
            count: Self::COUNT,
        })
    }

    /// Per-attribute class labels in [`AttributeKind::ALL`] order (shape, colour, motion, background, size).
    pub fn classes(&self) -> [usize; 5] {
        [
            self.shape.index(),
            self.colour.index(),
            self.motion.index(),
            self.background.index(),
            self.size.index(),
        ]
    }

    /// Inverse of [`Attributes::classes`]; `None` if a label is out of range.
    pub fn from_classes(classes: [usize; 5]) -> Option<Self> {
        Some(Self {
            shape: Shape::from_index(classes[0])?,
            colour: Colour::from_index(classes[1])?,
            motion: Motion::from_index(classes[2])?,
            background: Background::from_index(classes[3])?,
            size: Size::from_index(classes[4])?,
        })
    }

    /// Every combination, in index order.
    pub fn all() -> impl Iterator<Item = Attributes> {
        (0..Self::COUNT).filter_map(|i| Self::from_index(i).ok())
    }

    /// The canonical word of one attribute ("circle", "red", ...).
    pub fn word(&self, kind: AttributeKind) -> &'static str {
        match kind {
            AttributeKind::Shape => self.shape.name(),
            AttributeKind::Colour => self.colour.name(),
            AttributeKind::Motion => self.motion.name(),
            AttributeKind::Background => self.background.name(),
            AttributeKind::Size => self.size.name(),
            AttributeKind::Count => "one",
        }
    }
}

impl fmt::Display for Attributes {
    /// Words, e.g. "small red circle, moves left, on black".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let motion = match self.motion {
            Motion::Left => "moves left",
            Motion::Right => "moves right",
            Motion::Up => "moves up",
            Motion::Down => "moves down",
            Motion::Bounce => "bounces",
        };
        write!(
            f,
            "{} {} {}, {}, on {}",
            self.size, self.colour, self.shape, motion, self.background
        )
    }
}
