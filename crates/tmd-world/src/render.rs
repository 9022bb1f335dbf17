//! Rasterising a clip of the world.
//!
//! One object (shape, colour, size) moves over a static background. Edges are anti-aliased analytically:
//! each pixel's coverage is `clamp(0.5 - d, 0, 1)` where `d` is the signed distance (in pixels) from the
//! pixel centre to the shape's boundary, so no supersampling and no per-pixel allocation is needed.
//!
//! Per clip, the seed draws the start position, the travelled distance (speed), the bounce height, number
//! of hops and phase, the object brightness (x0.85 to x1.0) and the background shade and stripe geometry.
//! Linear motions travel 40 % to 65 % of the frame side (capped by the room there is) at constant speed and
//! keep the object fully inside the frame; a bouncing object hops 1.5 to 2.5 times in place.
//! All sizes scale with `min(height, width) / 64`.

use serde::{Deserialize, Serialize};

use super::attributes::{Attributes, Background, Motion, Shape, Size};
use super::caption::caption;
use super::error::WorldError;
use super::rng::{hash, Rng};
use super::split::{split_of, Split};

/// Size of a rendered clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClipSpec {
    /// Number of frames (17 by default: 5 latent frames for the Wan VAE's 4x temporal compression).
    pub frames: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
}

impl Default for ClipSpec {
    /// 17 frames of 64x64.
    fn default() -> Self {
        Self {
            frames: 17,
            height: 64,
            width: 64,
        }
    }
}

impl ClipSpec {
    /// A checked spec: at least one frame and sides of at least 16 pixels (at most 4096 each).
    ///
    /// # Errors
    /// [`WorldError::InvalidSpec`] otherwise.
    pub fn new(frames: usize, height: usize, width: usize) -> Result<Self, WorldError> {
        let bad = |reason| WorldError::InvalidSpec {
            frames,
            height,
            width,
            reason,
        };
        if frames == 0 {
            return Err(bad("need at least one frame"));
        }
        if height < 16 || width < 16 {
            return Err(bad("sides must be at least 16 pixels"));
        }
        if height > 4096 || width > 4096 || frames > 4096 {
            return Err(bad("sides and frames must be at most 4096"));
        }
        Ok(Self {
            frames,
            height,
            width,
        })
    }

    /// Number of `f32` values in one clip: `3 * frames * height * width`.
    pub fn numel(&self) -> usize {
        3 * self.frames * self.height * self.width
    }

    /// Pixel scale relative to the 64-pixel reference world: `min(height, width) / 64`.
    pub fn scale(&self) -> f32 {
        self.height.min(self.width) as f32 / 64.0
    }
}

/// A rendered clip.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    /// Pixels in `[-1, 1]` (the Wan VAE convention), layout `[3, frames, height, width]` (RGB), row-major.
    pub pixels: Vec<f32>,
    /// Size of the clip.
    pub spec: ClipSpec,
    /// What the clip shows.
    pub attributes: Attributes,
    /// A caption stating the attributes.
    pub caption: String,
    /// Seed the clip was rendered from.
    pub seed: u64,
}

impl Clip {
    /// Value at channel `c`, frame `f`, row `y`, column `x` (no bounds check beyond the slice's).
    ///
    /// # Panics
    /// If the position is outside the clip.
    pub fn pixel(&self, c: usize, f: usize, y: usize, x: usize) -> f32 {
        let s = &self.spec;
        self.pixels[((c * s.frames + f) * s.height + y) * s.width + x]
    }

    /// The window of `height x width` pixels whose top-left corner is at row `y0`, column `x0`,
    /// all frames kept (training on crops: the convolutional VAE sees objects at their real scale
    /// for a fraction of the cost).
    ///
    /// # Errors
    /// [`WorldError::InvalidSpec`] if the window is not a valid clip size or leaves the frame.
    pub fn crop(
        &self,
        y0: usize,
        x0: usize,
        height: usize,
        width: usize,
    ) -> Result<Clip, WorldError> {
        let s = self.spec;
        let spec = ClipSpec::new(s.frames, height, width)?;
        if y0 + height > s.height || x0 + width > s.width {
            return Err(WorldError::InvalidSpec {
                frames: s.frames,
                height,
                width,
                reason: "crop window leaves the frame",
            });
        }
        let mut pixels = Vec::with_capacity(spec.numel());
        for cf in 0..3 * s.frames {
            for y in y0..y0 + height {
                let row = (cf * s.height + y) * s.width;
                pixels.extend_from_slice(&self.pixels[row + x0..row + x0 + width]);
            }
        }
        Ok(Clip {
            pixels,
            spec,
            attributes: self.attributes,
            caption: self.caption.clone(),
            seed: self.seed,
        })
    }

    /// Which split the clip's attributes are in.
    pub fn split(&self) -> Split {
        split_of(&self.attributes)
    }

    /// Frame `frame` as 8-bit RGB, layout `[height, width, 3]`.
    ///
    /// # Errors
    /// [`WorldError::FrameOutOfRange`] if `frame >= frames`.
    pub fn frame_rgb8(&self, frame: usize) -> Result<Vec<u8>, WorldError> {
        let s = self.spec;
        if frame >= s.frames {
            return Err(WorldError::FrameOutOfRange {
                frame,
                frames: s.frames,
            });
        }
        let plane = s.height * s.width;
        let mut out = vec![0u8; plane * 3];
        for c in 0..3 {
            let base = (c * s.frames + frame) * plane;
            for (i, &v) in self.pixels[base..base + plane].iter().enumerate() {
                out[i * 3 + c] = ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
            }
        }
        Ok(out)
    }
}

/// Half extents of a shape around its centre, in units of the bounding radius: (left, right, up, down).
fn extents(shape: Shape) -> (f32, f32, f32, f32) {
    match shape {
        Shape::Circle | Shape::Cross => (1.0, 1.0, 1.0, 1.0),
        Shape::Square => (SQUARE_HALF, SQUARE_HALF, SQUARE_HALF, SQUARE_HALF),
        Shape::Triangle => {
            let half_base = TRIANGLE_CIRCUM * 0.866_025_4;
            (half_base, half_base, TRIANGLE_CIRCUM, TRIANGLE_CIRCUM * 0.5)
        }
    }
}

/// Square half side, in bounding radii (area 2.96 R^2, near the circle's 3.14 R^2).
const SQUARE_HALF: f32 = 0.86;
/// Triangle circumradius, in bounding radii (area 1.87 R^2).
const TRIANGLE_CIRCUM: f32 = 1.2;
/// Cross half thickness of an arm, in bounding radii (area 2.27 R^2).
const CROSS_HALF_THICKNESS: f32 = 0.33;

/// Signed distance in pixels from `(dx, dy)` (relative to the centre) to the shape of bounding radius `r`;
/// negative inside. Exact on and near the boundary except at corners, where it errs by under a pixel.
#[inline]
fn signed_distance(shape: Shape, dx: f32, dy: f32, r: f32) -> f32 {
    match shape {
        Shape::Circle => (dx * dx + dy * dy).sqrt() - r,
        Shape::Square => dx.abs().max(dy.abs()) - SQUARE_HALF * r,
        Shape::Triangle => {
            // Apex up; centroid at the origin; inradius = circumradius / 2.
            let c = TRIANGLE_CIRCUM * r;
            let base = dy - 0.5 * c;
            let right = 0.866_025_4 * dx - 0.5 * dy - 0.5 * c;
            let left = -0.866_025_4 * dx - 0.5 * dy - 0.5 * c;
            base.max(right).max(left)
        }
        Shape::Cross => {
            let t = CROSS_HALF_THICKNESS * r;
            let (ax, ay) = (dx.abs(), dy.abs());
            (ax - r).max(ay - t).min((ax - t).max(ay - r))
        }
    }
}

/// The object's path over the clip: centre at normalised time `t` in `[0, 1]`.
#[derive(Debug, Clone, Copy)]
enum Path {
    Linear {
        x0: f32,
        y0: f32,
        x1: f32,
        y1: f32,
    },
    Bounce {
        x: f32,
        ground: f32,
        height: f32,
        hops: f32,
        phase: f32,
    },
}

impl Path {
    fn at(&self, t: f32) -> (f32, f32) {
        match *self {
            Path::Linear { x0, y0, x1, y1 } => (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t),
            Path::Bounce {
                x,
                ground,
                height,
                hops,
                phase,
            } => {
                let y = ground - height * (std::f32::consts::PI * (hops * t + phase)).sin().abs();
                (x, y)
            }
        }
    }
}

/// Uniform in `[lo, hi]`, or the midpoint if the interval is empty.
fn within(rng: &mut Rng, lo: f32, hi: f32) -> f32 {
    if hi > lo {
        rng.range(lo, hi)
    } else {
        0.5 * (lo + hi)
    }
}

fn choose_path(a: &Attributes, r: f32, spec: &ClipSpec, rng: &mut Rng) -> Path {
    let (w, h) = (spec.width as f32, spec.height as f32);
    let margin = spec.scale();
    let (el, er, eu, ed) = extents(a.shape);
    let (el, er, eu, ed) = (el * r, er * r, eu * r, ed * r);
    // Allowed centre ranges that keep the whole object inside the frame.
    let (xmin, xmax) = (margin + el, w - margin - er);
    let (ymin, ymax) = (margin + eu, h - margin - ed);
    match a.motion {
        Motion::Left | Motion::Right => {
            let travel = (rng.range(0.40, 0.65) * w).min((xmax - xmin).max(0.0));
            let start = within(rng, xmin, xmax - travel);
            let y = within(rng, ymin, ymax);
            let (x0, x1) = if a.motion == Motion::Right {
                (start, start + travel)
            } else {
                (start + travel, start)
            };
            Path::Linear {
                x0,
                y0: y,
                x1,
                y1: y,
            }
        }
        Motion::Up | Motion::Down => {
            let travel = (rng.range(0.40, 0.65) * h).min((ymax - ymin).max(0.0));
            let start = within(rng, ymin, ymax - travel);
            let x = within(rng, xmin, xmax);
            let (y0, y1) = if a.motion == Motion::Down {
                (start, start + travel)
            } else {
                (start + travel, start)
            };
            Path::Linear {
                x0: x,
                y0,
                x1: x,
                y1,
            }
        }
        Motion::Bounce => {
            let height = (rng.range(0.35, 0.50) * h).min((ymax - ymin).max(0.0));
            let ground = within(rng, ymin + height, ymax);
            let x = within(rng, xmin, xmax);
            let hops = rng.range(1.5, 2.5);
            let phase = rng.unit();
            Path::Bounce {
                x,
                ground,
                height,
                hops,
                phase,
            }
        }
    }
}

/// Fills one background plane (values in `[-1, 1]`, layout `[height, width]`).
fn background_plane(bg: Background, spec: &ClipSpec, rng: &mut Rng, plane: &mut [f32]) {
    let uniform = |v: f32, plane: &mut [f32]| plane.fill(2.0 * v - 1.0);
    match bg {
        Background::Black => uniform(rng.range(0.0, 0.08), plane),
        Background::White => uniform(rng.range(0.92, 1.0), plane),
        Background::Grey => uniform(rng.range(0.42, 0.58), plane),
        Background::Striped => {
            let dark = rng.range(0.12, 0.25);
            let light = rng.range(0.65, 0.80);
            let period = rng.range(10.0, 14.0) * spec.scale();
            let base = if rng.unit() < 0.5 { 45.0f32 } else { 135.0 };
            let angle = (base + rng.range(-10.0, 10.0)).to_radians();
            let (ux, uy) = (angle.cos(), angle.sin());
            let footprint = ux.abs() + uy.abs();
            let phase = rng.unit();
            for y in 0..spec.height {
                for x in 0..spec.width {
                    let q = ((x as f32 + 0.5) * ux + (y as f32 + 0.5) * uy) / period + phase;
                    let f = q - q.floor();
                    // Signed distance (pixels) into the light half [0.5, 1) of each period.
                    let sd = if f >= 0.5 {
                        (f - 0.5).min(1.0 - f)
                    } else {
                        -(0.5 - f).min(f)
                    } * period;
                    let cover = (0.5 + sd / footprint).clamp(0.0, 1.0);
                    let v = dark + (light - dark) * cover;
                    plane[y * spec.width + x] = 2.0 * v - 1.0;
                }
            }
        }
    }
}

/// The caption of the clip rendered from `(attributes, seed)` (without rendering it).
pub fn clip_caption(attributes: &Attributes, seed: u64) -> String {
    caption(attributes, hash(seed, &[0xca7]))
}

/// Renders one clip of `attributes` from `seed`.
///
/// The result is a pure function of `(attributes, seed, spec)`; the caption is drawn from the same seed.
///
/// # Shapes
/// - output `pixels`: `[3, frames, height, width]`, values in `[-1, 1]`
pub fn render(attributes: &Attributes, seed: u64, spec: &ClipSpec) -> Clip {
    let s = *spec;
    let mut rng = Rng::new(hash(seed, &[0x9e11de7]));
    let plane_len = s.height * s.width;
    let mut pixels = vec![0.0f32; s.numel()];

    let mut bg = vec![0.0f32; plane_len];
    background_plane(attributes.background, &s, &mut rng, &mut bg);

    let r = match attributes.size {
        Size::Small => 0.11,
        Size::Large => 0.22,
    } * s.height.min(s.width) as f32;
    let path = choose_path(attributes, r, &s, &mut rng);
    let brightness = rng.range(0.85, 1.0);
    let colour = attributes.colour.rgb().map(|v| 2.0 * v * brightness - 1.0);
    let reach = r * TRIANGLE_CIRCUM + 1.5;

    for f in 0..s.frames {
        let t = if s.frames > 1 {
            f as f32 / (s.frames - 1) as f32
        } else {
            0.0
        };
        let (cx, cy) = path.at(t);
        // Background into all three channels of this frame.
        for c in 0..3 {
            let base = (c * s.frames + f) * plane_len;
            pixels[base..base + plane_len].copy_from_slice(&bg);
        }
        // Object over its bounding box only.
        let x_lo = (cx - reach).floor().max(0.0) as usize;
        let x_hi = ((cx + reach).ceil().max(0.0) as usize).min(s.width);
        let y_lo = (cy - reach).floor().max(0.0) as usize;
        let y_hi = ((cy + reach).ceil().max(0.0) as usize).min(s.height);
        for y in y_lo..y_hi {
            let dy = y as f32 + 0.5 - cy;
            for x in x_lo..x_hi {
                let dx = x as f32 + 0.5 - cx;
                let alpha = (0.5 - signed_distance(attributes.shape, dx, dy, r)).clamp(0.0, 1.0);
                if alpha <= 0.0 {
                    continue;
                }
                let i = y * s.width + x;
                for (c, &col) in colour.iter().enumerate() {
                    let p = &mut pixels[(c * s.frames + f) * plane_len + i];
                    *p += alpha * (col - *p);
                }
            }
        }
    }

    Clip {
        pixels,
        spec: s,
        attributes: *attributes,
        caption: clip_caption(attributes, seed),
        seed,
    }
}
