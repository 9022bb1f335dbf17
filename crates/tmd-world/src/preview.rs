//! Looking at clips: animated GIFs and PNG contact sheets.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, Frame, Rgb, RgbImage, RgbaImage};

use super::error::WorldError;
use super::render::Clip;

/// Frame `frame` of `clip` as an RGB image enlarged `scale` times (nearest neighbour; `scale` >= 1).
///
/// # Errors
/// [`WorldError::FrameOutOfRange`].
pub fn frame_image(clip: &Clip, frame: usize, scale: u32) -> Result<RgbImage, WorldError> {
    let rgb = clip.frame_rgb8(frame)?;
    let (w, h) = (clip.spec.width as u32, clip.spec.height as u32);
    let scale = scale.max(1);
    Ok(RgbImage::from_fn(w * scale, h * scale, |x, y| {
        let i = (((y / scale) * w + x / scale) * 3) as usize;
        Rgb([rgb[i], rgb[i + 1], rgb[i + 2]])
    }))
}

/// Writes `clip` as a looping GIF at its own resolution, 16 frames per second (Wan2.1's frame rate,
/// rounded to GIF's 10 ms steps).
///
/// # Errors
/// [`WorldError::Io`] or [`WorldError::Image`] naming `path`.
pub fn save_gif(clip: &Clip, path: impl AsRef<Path>) -> Result<(), WorldError> {
    save_gif_scaled(clip, path, 1)
}

/// Like [`save_gif`], enlarged `scale` times (nearest neighbour).
///
/// # Errors
/// [`WorldError::Io`] or [`WorldError::Image`] naming `path`.
pub fn save_gif_scaled(clip: &Clip, path: impl AsRef<Path>, scale: u32) -> Result<(), WorldError> {
    let path = path.as_ref();
    let io = |source| WorldError::Io {
        path: path.to_path_buf(),
        source,
    };
    let img = |source| WorldError::Image {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(io)?;
    let mut encoder = GifEncoder::new_with_speed(BufWriter::new(file), 10);
    encoder.set_repeat(Repeat::Infinite).map_err(img)?;
    for f in 0..clip.spec.frames {
        let rgb = frame_image(clip, f, scale)?;
        let (w, h) = rgb.dimensions();
        let rgba = RgbaImage::from_fn(w, h, |x, y| {
            let p = rgb.get_pixel(x, y).0;
            image::Rgba([p[0], p[1], p[2], 255])
        });
        let frame = Frame::from_parts(rgba, 0, 0, Delay::from_numer_denom_ms(60, 1));
        encoder.encode_frame(frame).map_err(img)?;
    }
    Ok(())
}

/// A contact sheet: one row per clip, one column per entry of `frames`, each cell enlarged `scale` times,
/// separated by 2-pixel dark lines.
///
/// # Errors
/// [`WorldError::Empty`] for no clips or no frames, [`WorldError::SpecMismatch`] if the clips differ in
/// size, [`WorldError::FrameOutOfRange`] for a frame past the end.
pub fn contact_sheet(clips: &[Clip], frames: &[usize], scale: u32) -> Result<RgbImage, WorldError> {
    let first = clips.first().ok_or(WorldError::Empty {
        what: "contact_sheet",
    })?;
    if frames.is_empty() {
        return Err(WorldError::Empty {
            what: "contact_sheet (frames)",
        });
    }
    let spec = first.spec;
    let scale = scale.max(1);
    let gap = 2u32;
    let (cw, ch) = (spec.width as u32 * scale, spec.height as u32 * scale);
    let width = frames.len() as u32 * (cw + gap) + gap;
    let height = clips.len() as u32 * (ch + gap) + gap;
    let mut sheet = RgbImage::from_pixel(width, height, Rgb([40, 20, 40]));
    for (row, clip) in clips.iter().enumerate() {
        if clip.spec != spec {
            return Err(WorldError::SpecMismatch {
                index: row,
                expected: spec,
                found: clip.spec,
            });
        }
        for (col, &f) in frames.iter().enumerate() {
            let cell = frame_image(clip, f, scale)?;
            let (ox, oy) = (gap + col as u32 * (cw + gap), gap + row as u32 * (ch + gap));
            for (x, y, p) in cell.enumerate_pixels() {
                sheet.put_pixel(ox + x, oy + y, *p);
            }
        }
    }
    Ok(sheet)
}

/// Writes [`contact_sheet`] to `path` (format from the extension, e.g. `.png`).
///
/// # Errors
/// As [`contact_sheet`], plus [`WorldError::Image`] naming `path`.
pub fn save_contact_sheet(
    clips: &[Clip],
    frames: &[usize],
    scale: u32,
    path: impl AsRef<Path>,
) -> Result<(), WorldError> {
    let path = path.as_ref();
    contact_sheet(clips, frames, scale)?
        .save(path)
        .map_err(|source| WorldError::Image {
            path: path.to_path_buf(),
            source,
        })
}
