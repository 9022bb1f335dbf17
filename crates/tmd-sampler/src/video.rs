//! Decoded clips and writing them to disk: `.gif`, a folder of `.png` frames, or `.mp4` (cargo
//! feature `mp4`, through FFmpeg).

use std::path::{Path, PathBuf};

use burn::prelude::*;

/// Errors while turning tensors into a clip or writing it.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// The tensor is not a decoded clip.
    #[error("expected a decoded clip of shape [1, 3, frames, height, width], got {0:?}")]
    BadShape(Vec<usize>),
    /// The output path has an extension this build cannot write.
    #[error(
        "{path}: unsupported output format '{ext}'; use .gif, .mp4 or a folder name (PNG frames)"
    )]
    UnsupportedFormat {
        /// The output path.
        path: PathBuf,
        /// The extension found.
        ext: String,
    },
    /// `.mp4` was asked for in a build without the `mp4` feature.
    #[error(
        "{path}: this build has no mp4 support. Write .gif or a PNG folder instead, or rebuild with \
         `cargo build --release -p tmd-cli --features mp4` (needs FFmpeg's dev packages: \
         apt-get install libavcodec-dev libavformat-dev libavutil-dev libswscale-dev \
         libswresample-dev libavdevice-dev libavfilter-dev pkg-config clang libclang-dev)"
    )]
    Mp4NotBuilt {
        /// The output path.
        path: PathBuf,
    },
    /// Writing failed.
    #[error("{path}: {reason}")]
    Write {
        /// The output path.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

/// A decoded clip: RGB8 frames in display order.
#[derive(Clone, Debug, PartialEq)]
pub struct Video {
    /// Frame width in pixels.
    pub width: usize,
    /// Frame height in pixels.
    pub height: usize,
    /// Frames per second (Wan2.1: 16).
    pub fps: u32,
    /// Frames, each `height * width * 3` bytes, row-major RGB.
    pub frames: Vec<Vec<u8>>,
}

impl Video {
    /// Converts a VAE output in `[-1, 1]` to 8-bit frames (`(x + 1) / 2 * 255`, rounded, clamped).
    ///
    /// # Shapes
    /// - `pixels`: `[1, 3, frames, height, width]`
    pub fn from_tensor<B: Backend>(pixels: Tensor<B, 5>, fps: u32) -> Result<Self, VideoError> {
        let dims = pixels.dims();
        if dims[0] != 1 || dims[1] != 3 {
            return Err(VideoError::BadShape(dims.to_vec()));
        }
        let [_, _, f, h, w] = dims;
        let values: Vec<f32> = pixels
            .into_data()
            .convert::<f32>()
            .to_vec()
            .map_err(|_| VideoError::BadShape(dims.to_vec()))?;
        let plane = f * h * w;
        let frames = (0..f)
            .map(|fi| {
                let mut frame = Vec::with_capacity(h * w * 3);
                for y in 0..h {
                    for x in 0..w {
                        for c in 0..3 {
                            let v = values[c * plane + fi * h * w + y * w + x];
                            let v = ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round();
                            frame.push(v as u8);
                        }
                    }
                }
                frame
            })
            .collect();
        Ok(Self {
            width: w,
            height: h,
            fps,
            frames,
        })
    }

    /// Number of frames.
    pub fn num_frames(&self) -> usize {
        self.frames.len()
    }

    /// Checks, before any work, that `path` names a format this build can write.
    pub fn check_output_path(path: impl AsRef<Path>) -> Result<(), VideoError> {
        let path = path.as_ref();
        match extension(path).as_deref() {
            None | Some("gif") => Ok(()),
            #[cfg(feature = "mp4")]
            Some("mp4") => Ok(()),
            #[cfg(not(feature = "mp4"))]
            Some("mp4") => Err(VideoError::Mp4NotBuilt {
                path: path.to_path_buf(),
            }),
            Some(other) => Err(VideoError::UnsupportedFormat {
                path: path.to_path_buf(),
                ext: other.to_string(),
            }),
        }
    }

    /// Writes the clip; the format follows `path`: `*.gif`, `*.mp4`, or anything without an
    /// extension (a folder of `frame_0000.png`, ...).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), VideoError> {
        let path = path.as_ref();
        match extension(path).as_deref() {
            Some("gif") => self.save_gif(path),
            Some("mp4") => self.save_mp4(path),
            None => self.save_png_folder(path),
            Some(other) => Err(VideoError::UnsupportedFormat {
                path: path.to_path_buf(),
                ext: other.to_string(),
            }),
        }
    }

    fn write_err(path: &Path, e: impl std::fmt::Display) -> VideoError {
        VideoError::Write {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    }

    fn rgb_image(&self, frame: &[u8]) -> image::RgbImage {
        image::RgbImage::from_raw(self.width as u32, self.height as u32, frame.to_vec())
            .expect("frame size matches width*height*3 by construction")
    }

    fn save_gif(&self, path: &Path) -> Result<(), VideoError> {
        use image::codecs::gif::{GifEncoder, Repeat};
        let tmp = path.with_extension("gif.partial");
        let file = std::fs::File::create(&tmp).map_err(|e| Self::write_err(path, e))?;
        let mut enc = GifEncoder::new_with_speed(std::io::BufWriter::new(file), 10);
        enc.set_repeat(Repeat::Infinite)
            .map_err(|e| Self::write_err(path, e))?;
        let delay = image::Delay::from_numer_denom_ms(1000, self.fps.max(1));
        for frame in &self.frames {
            let rgba = image::DynamicImage::ImageRgb8(self.rgb_image(frame)).to_rgba8();
            enc.encode_frame(image::Frame::from_parts(rgba, 0, 0, delay))
                .map_err(|e| Self::write_err(path, e))?;
        }
        drop(enc);
        std::fs::rename(&tmp, path).map_err(|e| Self::write_err(path, e))
    }

    fn save_png_folder(&self, dir: &Path) -> Result<(), VideoError> {
        std::fs::create_dir_all(dir).map_err(|e| Self::write_err(dir, e))?;
        for (i, frame) in self.frames.iter().enumerate() {
            let p = dir.join(format!("frame_{i:04}.png"));
            self.rgb_image(frame)
                .save(&p)
                .map_err(|e| Self::write_err(&p, e))?;
        }
        Ok(())
    }

    #[cfg(not(feature = "mp4"))]
    fn save_mp4(&self, path: &Path) -> Result<(), VideoError> {
        Err(VideoError::Mp4NotBuilt {
            path: path.to_path_buf(),
        })
    }

    #[cfg(feature = "mp4")]
    fn save_mp4(&self, path: &Path) -> Result<(), VideoError> {
        use video_rs::encode::{Encoder, Settings};
        use video_rs::time::Time;
        video_rs::init().map_err(|e| Self::write_err(path, e))?;
        // H.264 wants even dimensions; our resolutions are multiples of 16 (pixel) or 8 (tiny).
        let settings = Settings::preset_h264_yuv420p(self.width, self.height, false);
        let mut encoder = Encoder::new(path, settings).map_err(|e| Self::write_err(path, e))?;
        let step = Time::from_nth_of_a_second(self.fps.max(1) as usize);
        let mut t = Time::zero();
        for frame in &self.frames {
            let arr = ndarray::Array3::from_shape_vec((self.height, self.width, 3), frame.clone())
                .map_err(|e| Self::write_err(path, e))?;
            encoder
                .encode(&arr, t)
                .map_err(|e| Self::write_err(path, e))?;
            t = t.aligned_with(step).add();
        }
        encoder.finish().map_err(|e| Self::write_err(path, e))
    }
}

/// The lower-cased extension of `path`, which picks the output format.
fn extension(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    fn clip() -> Video {
        let device = Default::default();
        // 2 frames of 2x3: red channel ramps, others -1 / +1.
        let mut v = vec![0f32; 3 * 2 * 2 * 3];
        for (i, x) in v.iter_mut().enumerate() {
            *x = match i / 12 {
                0 => -1.0 + (i % 12) as f32 / 11.0 * 2.0,
                1 => -1.0,
                _ => 1.0,
            };
        }
        let t = Tensor::<B, 1>::from_floats(v.as_slice(), &device).reshape([1, 3, 2, 2, 3]);
        Video::from_tensor(t, 16).unwrap()
    }

    #[test]
    fn tensor_to_frames_maps_range_and_layout() {
        let v = clip();
        assert_eq!((v.width, v.height, v.num_frames()), (3, 2, 2));
        // first pixel: r=-1 -> 0, g=-1 -> 0, b=1 -> 255
        assert_eq!(&v.frames[0][0..3], &[0, 0, 255]);
        // last pixel of the last frame: r = +1
        assert_eq!(v.frames[1][15], 255);
    }

    #[test]
    fn writes_gif_and_png_and_rejects_unknown() {
        let v = clip();
        let dir = std::env::temp_dir().join(format!("tmd-video-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let gif = dir.join("c.gif");
        v.save(&gif).unwrap();
        let decoded = image::open(&gif).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (3, 2));
        v.save(dir.join("frames")).unwrap();
        assert!(dir.join("frames/frame_0001.png").exists());
        assert!(matches!(
            v.save(dir.join("c.avi")),
            Err(VideoError::UnsupportedFormat { .. })
        ));
        #[cfg(not(feature = "mp4"))]
        assert!(v
            .save(dir.join("c.mp4"))
            .unwrap_err()
            .to_string()
            .contains("--features mp4"));
    }

    #[cfg(feature = "mp4")]
    #[test]
    fn writes_mp4() {
        let device = Default::default();
        let t = Tensor::<B, 5>::random(
            [1, 3, 5, 16, 16],
            burn::tensor::Distribution::Uniform(-1.0, 1.0),
            &device,
        );
        let v = Video::from_tensor(t, 16).unwrap();
        let path = std::env::temp_dir().join(format!("tmd-video-{}.mp4", std::process::id()));
        v.save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 100, "mp4 of {} bytes", bytes.len());
        assert_eq!(&bytes[4..8], b"ftyp", "not an MP4 container");
    }
}
