//! Captions: natural sentences from templates, and parsing them back into [`Attributes`].
//!
//! [`caption`] writes a caption for a combination with one of [`TEMPLATE_COUNT`] sentence templates and
//! seeded synonym choices, e.g.
//!
//! - "A small red circle moves to the left on a black background."
//! - "On a striped backdrop, a large blue square drifts upward."
//! - "Video of a tiny cyan cross bouncing up and down in front of a grey background."
//!
//! [`parse_caption`] reads any such caption, and other reasonable phrasings, back into [`Attributes`].
//! It works on words, not on the templates: it looks for one word (or phrase) per attribute, decides
//! whether a colour word describes the object or the background by the noun that follows it, and
//! reports with a typed [`CaptionError`] what it could not find, what conflicts, and what the world cannot
//! express (an orange object, a star, a checkered background, a spinning object, two objects).

use super::attributes::{AttributeKind, Attributes, Background, Colour, Motion, Shape, Size};
use super::error::CaptionError;
use super::rng::{hash, Rng};

/// Number of sentence templates used by [`caption`].
pub const TEMPLATE_COUNT: usize = 8;

fn shape_words(s: Shape) -> &'static [&'static str] {
    match s {
        Shape::Circle => &["circle", "disc", "ball"],
        Shape::Square => &["square", "block"],
        Shape::Triangle => &["triangle"],
        Shape::Cross => &["cross", "plus sign"],
    }
}

fn colour_words(c: Colour) -> &'static [&'static str] {
    match c {
        Colour::Red => &["red", "scarlet"],
        Colour::Green => &["green"],
        Colour::Blue => &["blue"],
        Colour::Yellow => &["yellow"],
        Colour::Magenta => &["magenta", "fuchsia"],
        Colour::Cyan => &["cyan", "turquoise"],
    }
}

fn size_words(s: Size) -> &'static [&'static str] {
    match s {
        Size::Small => &["small", "tiny", "little"],
        Size::Large => &["large", "big", "huge"],
    }
}

fn background_words(b: Background) -> &'static [&'static str] {
    match b {
        Background::Black => &["black"],
        Background::White => &["white"],
        Background::Grey => &["grey", "gray"],
        Background::Striped => &["striped", "stripy"],
    }
}

/// Motion phrases as (third person present, gerund).
fn motion_phrases(m: Motion) -> &'static [(&'static str, &'static str)] {
    match m {
        Motion::Left => &[
            ("moves to the left", "moving to the left"),
            ("drifts left", "drifting left"),
            ("slides leftward", "sliding leftward"),
            (
                "travels from right to left",
                "travelling from right to left",
            ),
        ],
        Motion::Right => &[
            ("moves to the right", "moving to the right"),
            ("drifts right", "drifting right"),
            ("slides rightward", "sliding rightward"),
            (
                "travels from left to right",
                "travelling from left to right",
            ),
        ],
        Motion::Up => &[
            ("moves up", "moving up"),
            ("rises", "rising"),
            ("drifts upward", "drifting upward"),
            (
                "travels from bottom to top",
                "travelling from bottom to top",
            ),
        ],
        Motion::Down => &[
            ("moves down", "moving down"),
            ("sinks", "sinking"),
            ("drifts downward", "drifting downward"),
            (
                "travels from top to bottom",
                "travelling from top to bottom",
            ),
        ],
        Motion::Bounce => &[
            ("bounces up and down", "bouncing up and down"),
            ("bounces in place", "bouncing in place"),
            ("hops up and down", "hopping up and down"),
            ("keeps bouncing", "bouncing"),
        ],
    }
}

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.below(items.len())]
}

/// A caption for `attributes`, with template and synonyms chosen deterministically from `seed`.
pub fn caption(attributes: &Attributes, seed: u64) -> String {
    let template = (hash(seed, &[0x7e3a]) % TEMPLATE_COUNT as u64) as usize;
    caption_with_template(attributes, template, seed)
}

/// The canonical caption of a combination: template 0 with the first synonym of every word, e.g.
/// "A small red circle moves to the left on a black background."
pub fn canonical_caption(attributes: &Attributes) -> String {
    let a = attributes;
    let (motion, _) = motion_phrases(a.motion)[0];
    finish(format!(
        "a {} {} {} {} on a {} background",
        size_words(a.size)[0],
        colour_words(a.colour)[0],
        shape_words(a.shape)[0],
        motion,
        background_words(a.background)[0]
    ))
}

/// A caption for `attributes` with template `template % TEMPLATE_COUNT`; synonyms chosen from `seed`.
pub fn caption_with_template(attributes: &Attributes, template: usize, seed: u64) -> String {
    let a = attributes;
    let mut rng = Rng::new(hash(seed, &[0x5e1ec7, template as u64]));
    let size = *pick(&mut rng, size_words(a.size));
    let colour = *pick(&mut rng, colour_words(a.colour));
    let shape = *pick(&mut rng, shape_words(a.shape));
    let (motion, gerund) = *pick(&mut rng, motion_phrases(a.motion));
    let bg = *pick(&mut rng, background_words(a.background));
    let noun = *pick(&mut rng, &["background", "backdrop"]);
    let text = match template % TEMPLATE_COUNT {
        0 => format!("a {size} {colour} {shape} {motion} on a {bg} {noun}"),
        1 => format!("on a {bg} {noun}, a {size} {colour} {shape} {motion}"),
        2 => format!("a {size} {shape} in {colour} {motion} against a {bg} {noun}"),
        3 => format!("{bg} {noun}. A {size} {colour} {shape} {motion}"),
        4 => format!("a {size} {colour} {shape} that {motion}, seen against a {bg} {noun}"),
        5 => format!("video of a {size} {colour} {shape} {gerund} in front of a {bg} {noun}"),
        6 => format!("the {size} {colour} {shape} {motion} over a {bg} {noun}"),
        _ => format!("a {bg} {noun} with a {size} {colour} {shape} {gerund}"),
    };
    finish(text)
}

/// Capitalises the first letter and ends with a full stop.
fn finish(mut text: String) -> String {
    if let Some(first) = text.get(0..1) {
        let upper = first.to_ascii_uppercase();
        text.replace_range(0..1, &upper);
    }
    text.push('.');
    text
}

/// Attributes read from a caption, each `None` where the caption does not state it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartialAttributes {
    /// Shape, if stated.
    pub shape: Option<Shape>,
    /// Object colour, if stated.
    pub colour: Option<Colour>,
    /// Motion, if stated.
    pub motion: Option<Motion>,
    /// Background, if stated.
    pub background: Option<Background>,
    /// Size, if stated.
    pub size: Option<Size>,
}

impl PartialAttributes {
    /// The full combination, or [`CaptionError::Missing`] naming the first attribute (in
    /// [`AttributeKind::ALL`] order) that is not stated.
    pub fn complete(self, caption: &str) -> Result<Attributes, CaptionError> {
        let missing = |kind| CaptionError::Missing {
            kind,
            caption: caption.to_string(),
        };
        Ok(Attributes {
            shape: self.shape.ok_or_else(|| missing(AttributeKind::Shape))?,
            colour: self.colour.ok_or_else(|| missing(AttributeKind::Colour))?,
            motion: self.motion.ok_or_else(|| missing(AttributeKind::Motion))?,
            background: self
                .background
                .ok_or_else(|| missing(AttributeKind::Background))?,
            size: self.size.ok_or_else(|| missing(AttributeKind::Size))?,
        })
    }

    /// Whether `attributes` agrees with every stated attribute.
    pub fn matches(&self, attributes: &Attributes) -> bool {
        self.shape.is_none_or(|v| v == attributes.shape)
            && self.colour.is_none_or(|v| v == attributes.colour)
            && self.motion.is_none_or(|v| v == attributes.motion)
            && self.background.is_none_or(|v| v == attributes.background)
            && self.size.is_none_or(|v| v == attributes.size)
    }
}

/// Parses a caption into the full [`Attributes`] it states.
///
/// # Errors
/// [`CaptionError::Unsupported`] for a value the world cannot express (reported first),
/// [`CaptionError::Conflict`] for two different values of one attribute, and
/// [`CaptionError::Missing`] for an attribute the caption does not state.
pub fn parse_caption(caption: &str) -> Result<Attributes, CaptionError> {
    parse_partial(caption)?.complete(caption)
}

/// What one word (or phrase) of a caption means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    Shape(Shape),
    /// A shape noun the world does not draw (star, hexagon, ...).
    OtherShape,
    /// An object colour word.
    Colour(Colour),
    /// An achromatic or pattern word that names a background (black, white, grey, striped).
    Backdrop(Background),
    /// A chromatic colour word the world does not have (orange, purple, ...).
    OtherColour,
    /// A background pattern the world does not have (checkered, dotted, ...).
    OtherPattern,
    /// "background", "backdrop".
    BackdropNoun,
    /// "stripes", "stripe": names the striped background, and ends a stripe-colour description.
    Stripes,
    Size(Size),
    OtherSize,
    /// A number of objects other than one.
    Count,
    Motion(Motion),
    OtherMotion,
    /// A word that may sit between a colour and its noun ("dark", "light", "and", "coloured").
    Modifier,
    /// A phrase that looks like a direction but is not one ("speeds up", "slows down").
    Neutral,
}

/// Multi-word phrases, matched before single words (longest first at each position).
const PHRASES: &[(&[&str], Lex)] = &[
    (&["from", "right", "to", "left"], Lex::Motion(Motion::Left)),
    (&["from", "left", "to", "right"], Lex::Motion(Motion::Right)),
    (&["from", "bottom", "to", "top"], Lex::Motion(Motion::Up)),
    (&["from", "top", "to", "bottom"], Lex::Motion(Motion::Down)),
    (&["right", "to", "left"], Lex::Motion(Motion::Left)),
    (&["left", "to", "right"], Lex::Motion(Motion::Right)),
    (&["bottom", "to", "top"], Lex::Motion(Motion::Up)),
    (&["top", "to", "bottom"], Lex::Motion(Motion::Down)),
    (&["up", "and", "down"], Lex::Motion(Motion::Bounce)),
    (&["down", "and", "up"], Lex::Motion(Motion::Bounce)),
    (&["left", "and", "right"], Lex::OtherMotion),
    (&["right", "and", "left"], Lex::OtherMotion),
    (&["back", "and", "forth"], Lex::OtherMotion),
    (&["side", "to", "side"], Lex::OtherMotion),
    (&["to", "and", "fro"], Lex::OtherMotion),
    (&["in", "a", "circle"], Lex::OtherMotion),
    (&["zig", "zag"], Lex::OtherMotion),
    (&["plus", "sign"], Lex::Shape(Shape::Cross)),
    (&["plus", "shape"], Lex::Shape(Shape::Cross)),
    (&["speeds", "up"], Lex::Neutral),
    (&["speed", "up"], Lex::Neutral),
    (&["slows", "down"], Lex::Neutral),
    (&["slow", "down"], Lex::Neutral),
];

fn lex_word(w: &str) -> Option<Lex> {
    use Lex::*;
    Some(match w {
        "circle" | "disc" | "disk" | "ball" | "dot" | "sphere" => Shape(self::Shape::Circle),
        "square" | "block" | "box" => Shape(self::Shape::Square),
        "triangle" => Shape(self::Shape::Triangle),
        "cross" | "plus" => Shape(self::Shape::Cross),
        "star" | "hexagon" | "pentagon" | "octagon" | "heart" | "rectangle" | "oval"
        | "ellipse" | "diamond" | "ring" | "arrow" | "cube" | "cylinder" | "cone" | "crescent"
        | "moon" => OtherShape,

        "red" | "scarlet" => Colour(self::Colour::Red),
        "green" => Colour(self::Colour::Green),
        "blue" => Colour(self::Colour::Blue),
        "yellow" => Colour(self::Colour::Yellow),
        "magenta" | "fuchsia" => Colour(self::Colour::Magenta),
        "cyan" | "turquoise" | "aqua" => Colour(self::Colour::Cyan),
        "orange" | "purple" | "pink" | "violet" | "brown" | "indigo" | "gold" | "golden"
        | "silver" | "beige" | "teal" | "navy" | "maroon" | "olive" | "lime" | "rainbow" => {
            OtherColour
        }

        "black" => Backdrop(Background::Black),
        "white" => Backdrop(Background::White),
        "grey" | "gray" => Backdrop(Background::Grey),
        "striped" | "stripy" => Backdrop(Background::Striped),
        "stripes" | "stripe" => Stripes,
        "checkered" | "chequered" | "checkerboard" | "checked" | "dotted" | "spotted" | "polka"
        | "gradient" | "textured" | "noisy" | "plaid" | "starry" | "cloudy" => OtherPattern,
        "background" | "backdrop" | "backgrounds" | "backdrops" => BackdropNoun,

        "small" | "tiny" | "little" | "smaller" => Size(self::Size::Small),
        "large" | "big" | "huge" | "giant" | "larger" | "bigger" => Size(self::Size::Large),
        "medium" | "midsize" => OtherSize,

        "two" | "three" | "four" | "five" | "several" | "many" | "multiple" | "pair" | "couple"
        | "both" => Count,

        "left" | "leftward" | "leftwards" => Motion(self::Motion::Left),
        "right" | "rightward" | "rightwards" => Motion(self::Motion::Right),
        "up" | "upward" | "upwards" | "rises" | "rise" | "rising" | "ascends" | "ascend"
        | "ascending" | "climbs" | "climb" | "climbing" => Motion(self::Motion::Up),
        "down" | "downward" | "downwards" | "falls" | "fall" | "falling" | "sinks" | "sink"
        | "sinking" | "descends" | "descend" | "descending" | "drops" | "dropping" => {
            Motion(self::Motion::Down)
        }
        "bounce" | "bounces" | "bouncing" | "bouncy" | "hops" | "hop" | "hopping" | "jumps"
        | "jump" | "jumping" => Motion(self::Motion::Bounce),
        "spins" | "spin" | "spinning" | "rotates" | "rotate" | "rotating" | "orbits"
        | "orbiting" | "zigzags" | "zigzag" | "zigzagging" | "wobbles" | "wobbling"
        | "diagonally" | "stationary" | "motionless" | "static" | "grows" | "growing"
        | "shrinks" | "shrinking" | "pulses" | "pulsing" => OtherMotion,

        "dark" | "light" | "bright" | "pale" | "deep" | "vivid" | "pure" | "coloured"
        | "colored" | "and" => Modifier,
        _ => return None,
    })
}

/// Lexes a caption into (meaning, words) items, skipping words with no meaning for the world.
fn lex(caption: &str) -> Vec<(Lex, String)> {
    let lower = caption.to_lowercase();
    let tokens: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    'outer: while i < tokens.len() {
        let mut best: Option<(usize, Lex)> = None;
        for (phrase, lex) in PHRASES {
            let n = phrase.len();
            if i + n <= tokens.len()
                && tokens[i..i + n] == **phrase
                && best.is_none_or(|(m, _)| n > m)
            {
                best = Some((n, *lex));
            }
        }
        if let Some((n, lex)) = best {
            out.push((lex, tokens[i..i + n].join(" ")));
            i += n;
            continue 'outer;
        }
        if let Some(lex) = lex_word(tokens[i]) {
            out.push((lex, tokens[i].to_string()));
        }
        i += 1;
    }
    out
}

/// What a colour-like word describes, decided by the next meaningful item after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Object,
    Backdrop,
    StripeColour,
    Default,
}

fn role_at(items: &[(Lex, String)], i: usize) -> Role {
    for (lex, _) in &items[i + 1..] {
        match lex {
            Lex::Modifier
            | Lex::Size(_)
            | Lex::OtherSize
            | Lex::Colour(_)
            | Lex::OtherColour
            | Lex::Backdrop(_)
            | Lex::OtherPattern => continue,
            Lex::Shape(_) | Lex::OtherShape => return Role::Object,
            Lex::BackdropNoun => return Role::Backdrop,
            Lex::Stripes => return Role::StripeColour,
            _ => return Role::Default,
        }
    }
    Role::Default
}

/// Collects values of one attribute and reports the first conflict.
struct Slot<T> {
    value: Option<(T, String)>,
    kind: AttributeKind,
}

impl<T: Copy + PartialEq> Slot<T> {
    fn new(kind: AttributeKind) -> Self {
        Self { value: None, kind }
    }

    fn set(&mut self, v: T, word: &str, caption: &str) -> Result<(), CaptionError> {
        match &self.value {
            Some((old, first)) if *old != v => Err(CaptionError::Conflict {
                kind: self.kind,
                first: first.clone(),
                second: word.to_string(),
                caption: caption.to_string(),
            }),
            Some(_) => Ok(()),
            None => {
                self.value = Some((v, word.to_string()));
                Ok(())
            }
        }
    }

    fn get(&self) -> Option<T> {
        self.value.as_ref().map(|(v, _)| *v)
    }
}

/// Parses a caption into the attributes it states, leaving unstated ones `None`.
///
/// # Errors
/// [`CaptionError::Unsupported`] (reported first, for the first such word) and [`CaptionError::Conflict`];
/// never [`CaptionError::Missing`].
pub fn parse_partial(caption: &str) -> Result<PartialAttributes, CaptionError> {
    let items = lex(caption);
    let unsupported = |kind: AttributeKind, word: &str| CaptionError::Unsupported {
        kind,
        word: word.to_string(),
        caption: caption.to_string(),
    };

    // Pass 1: anything the world cannot express.
    for (i, (lex, word)) in items.iter().enumerate() {
        let role = role_at(&items, i);
        match lex {
            Lex::OtherShape => return Err(unsupported(AttributeKind::Shape, word)),
            Lex::OtherSize => return Err(unsupported(AttributeKind::Size, word)),
            Lex::Count => return Err(unsupported(AttributeKind::Count, word)),
            Lex::OtherMotion => return Err(unsupported(AttributeKind::Motion, word)),
            Lex::OtherColour => match role {
                Role::Backdrop => {
                    return Err(unsupported(
                        AttributeKind::Background,
                        &format!("{word} background"),
                    ))
                }
                Role::StripeColour => {}
                Role::Object | Role::Default => {
                    return Err(unsupported(AttributeKind::Colour, word))
                }
            },
            Lex::Colour(_) if role == Role::Backdrop => {
                return Err(unsupported(
                    AttributeKind::Background,
                    &format!("{word} background"),
                ))
            }
            Lex::Backdrop(_) if role == Role::Object => {
                return Err(unsupported(
                    AttributeKind::Colour,
                    &format!("{word} object"),
                ))
            }
            Lex::OtherPattern if role != Role::Object => {
                return Err(unsupported(AttributeKind::Background, word))
            }
            Lex::OtherPattern => return Err(unsupported(AttributeKind::Colour, word)),
            _ => {}
        }
    }

    // Pass 2: values and conflicts.
    let mut shape = Slot::new(AttributeKind::Shape);
    let mut colour = Slot::new(AttributeKind::Colour);
    let mut motion = Slot::new(AttributeKind::Motion);
    let mut background = Slot::new(AttributeKind::Background);
    let mut size = Slot::new(AttributeKind::Size);
    for (i, (lex, word)) in items.iter().enumerate() {
        let role = role_at(&items, i);
        match *lex {
            Lex::Shape(v) => shape.set(v, word, caption)?,
            Lex::Colour(v) if role != Role::StripeColour => colour.set(v, word, caption)?,
            Lex::Backdrop(v) if role != Role::StripeColour => background.set(v, word, caption)?,
            Lex::Stripes => background.set(Background::Striped, word, caption)?,
            Lex::Size(v) => size.set(v, word, caption)?,
            Lex::Motion(v) => motion.set(v, word, caption)?,
            _ => {}
        }
    }
    Ok(PartialAttributes {
        shape: shape.get(),
        colour: colour.get(),
        motion: motion.get(),
        background: background.get(),
        size: size.get(),
    })
}
