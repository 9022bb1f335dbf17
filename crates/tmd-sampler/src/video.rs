//! Decoded clips and writing them to disk: `.gif`, a folder of `.png` frames, or `.mp4` (cargo
//! feature `mp4`, through FFmpeg).

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::FloatDType;

/// Errors while turning tensors into a clip or writing it.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// The tensor is not a decoded clip.
    #[error("expected a decoded clip of shape [1, 3, frames, height, width], got {0:?}")]
    BadShape(Vec<usize>),
    /// The decoded frames could not be copied from the device to the host.
    #[error("copying the decoded frames to the host: {0}")]
    Readback(String),
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
    /// Converts a VAE output in `[-1, 1]` to 8-bit frames (`(x + 1) / 2 * 255`, rounded half to
    /// even, clamped).
    ///
    /// The quantisation and the move to frame-major RGB run on the tensor's device (in f32, whatever
    /// the decoder's dtype), and on LibTorch the cast to u8 too, so only the finished bytes cross
    /// to the host ([`tmd_model::fused::to_host_u8`]): a 480x832x81 clip is 97 MB of u8 instead
    /// of 390 MB of f32 and a strided loop over 97M values on the CPU.
    ///
    /// # Shapes
    /// - `pixels`: `[1, 3, frames, height, width]`
    pub fn from_tensor<B: Backend>(pixels: Tensor<B, 5>, fps: u32) -> Result<Self, VideoError> {
        let dims = pixels.dims();
        if dims[0] != 1 || dims[1] != 3 {
            return Err(VideoError::BadShape(dims.to_vec()));
        }
        let [_, _, f, h, w] = dims;
        let quantised = pixels
            .cast(FloatDType::F32)
            .clamp(-1.0, 1.0)
            .add_scalar(1.0)
            .mul_scalar(127.5)
            .round()
            .reshape([3, f, h, w])
            .permute([1, 2, 3, 0]);
        let bytes = tmd_model::fused::to_host_u8(quantised).map_err(VideoError::Readback)?;
        let frame_len = h * w * 3;
        let frames = bytes.chunks_exact(frame_len).map(<[u8]>::to_vec).collect();
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
    ///
    /// Also checks that the folder it goes into exists, and that an existing frames folder holds
    /// nothing but frames (it is replaced whole), so a bad `--out` fails before sampling.
    pub fn check_output_path(path: impl AsRef<Path>) -> Result<(), VideoError> {
        let path = path.as_ref();
        tmd_model::output::check_parent_dir(path).map_err(|e| Self::write_err(path, e))?;
        match extension(path).as_deref() {
            None => tmd_model::output::check_dir_replaceable(path, &is_frame_name)
                .map_err(|e| Self::write_err(path, e)),
            Some("gif") => Ok(()),
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

    /// Written to a temporary name and renamed when complete; nothing is left on error.
    fn save_gif(&self, path: &Path) -> Result<(), VideoError> {
        use image::codecs::gif::{GifEncoder, Repeat};
        let delay = image::Delay::from_numer_denom_ms(1000, self.fps.max(1));
        tmd_model::output::write_file_atomic(path, |w| {
            let mut enc = GifEncoder::new_with_speed(w, 10);
            enc.set_repeat(Repeat::Infinite).map_err(image_io)?;
            for frame in &self.frames {
                let rgba = image::DynamicImage::ImageRgb8(self.rgb_image(frame)).to_rgba8();
                enc.encode_frame(image::Frame::from_parts(rgba, 0, 0, delay))
                    .map_err(image_io)?;
            }
            Ok(())
        })
        .map_err(|e| Self::write_err(path, e))
    }

    /// The frames are written into a temporary folder that replaces `dir` whole when complete:
    /// never a mix of two clips, never a partial clip. An existing `dir` holding anything but
    /// `frame_NNNN.png` files is refused.
    fn save_png_folder(&self, dir: &Path) -> Result<(), VideoError> {
        use image::ImageEncoder;
        tmd_model::output::write_dir_atomic(dir, is_frame_name, |tmp| {
            for (i, frame) in self.frames.iter().enumerate() {
                tmd_model::output::write_file_in(tmp, &format!("frame_{i:04}.png"), |w| {
                    image::codecs::png::PngEncoder::new(w)
                        .write_image(
                            frame,
                            self.width as u32,
                            self.height as u32,
                            image::ExtendedColorType::Rgb8,
                        )
                        .map_err(image_io)
                })?;
            }
            Ok(())
        })
        .map_err(|e| Self::write_err(dir, e))
    }

    #[cfg(not(feature = "mp4"))]
    fn save_mp4(&self, path: &Path) -> Result<(), VideoError> {
        Err(VideoError::Mp4NotBuilt {
            path: path.to_path_buf(),
        })
    }

    #[cfg(feature = "mp4")]
    fn save_mp4(&self, path: &Path) -> Result<(), VideoError> {
        use video_rs::encode::Settings;
        video_rs::init().map_err(|e| Self::write_err(path, e))?;
        // H.264 wants even dimensions; our resolutions are multiples of 16 (pixel) or 8 (tiny).
        let settings = Settings::preset_h264_yuv420p(self.width, self.height, false);
        // Encoded under a temporary name (ending in .mp4, which picks the container) and renamed
        // when complete: no half-written clip under `path`, nothing left on error.
        let mut tmp = tmd_model::output::temp_name(path, "tmp").into_os_string();
        tmp.push(".mp4");
        let tmp = PathBuf::from(tmp);
        let result = self.encode_mp4(&tmp, settings);
        match result
            .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Self::write_err(path, e)))
        {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    #[cfg(feature = "mp4")]
    fn encode_mp4(
        &self,
        path: &Path,
        settings: video_rs::encode::Settings,
    ) -> Result<(), VideoError> {
        use video_rs::encode::Encoder;
        use video_rs::time::Time;
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

/// Whether `name` is a frame file this module writes (`frame_0000.png`, ...).
fn is_frame_name(name: &str) -> bool {
    name.strip_prefix("frame_")
        .and_then(|r| r.strip_suffix(".png"))
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// An image error as the I/O error inside it when there is one (keeping its kind: a full disk
/// reads "No space left on device").
fn image_io(e: image::ImageError) -> std::io::Error {
    match e {
        image::ImageError::IoError(e) => e,
        other => std::io::Error::other(other),
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

    /// The device-side quantisation against the per-value formula on the host, on values that
    /// hit the clamps, exact halves and every layout index.
    #[test]
    fn tensor_to_frames_matches_host_formula() {
        let device = Default::default();
        let (f, h, w) = (3, 4, 5);
        let n = 3 * f * h * w;
        let values: Vec<f32> = (0..n)
            .map(|i| match i % 7 {
                0 => -1.5,
                1 => 1.25,
                2 => (2 * (i % 128) + 1) as f32 / 255.0 - 1.0, // (x + 1) * 127.5 = k + 0.5
                _ => ((i * 37) % 101) as f32 / 50.0 - 1.0,
            })
            .collect();
        let t = Tensor::<B, 1>::from_floats(values.as_slice(), &device).reshape([1, 3, f, h, w]);
        let v = Video::from_tensor(t, 16).unwrap();
        assert_eq!((v.num_frames(), v.height, v.width), (f, h, w));
        for fi in 0..f {
            for y in 0..h {
                for x in 0..w {
                    for c in 0..3 {
                        let src = values[((c * f + fi) * h + y) * w + x];
                        let want = ((src.clamp(-1.0, 1.0) + 1.0) * 127.5).round_ties_even() as u8;
                        assert_eq!(
                            v.frames[fi][(y * w + x) * 3 + c],
                            want,
                            "f{fi} y{y} x{x} c{c}"
                        );
                    }
                }
            }
        }
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
        let tmp = tempfile::Builder::new()
            .prefix("tmd-video-")
            .tempdir()
            .unwrap();
        let dir = tmp.path();
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

    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// A clip of noisy 16x16 frames (so every frame takes a few hundred bytes compressed).
    fn long_clip(frames: usize, level: u8) -> Video {
        let mut x = level as u32 + 1;
        let mut noise = || {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 16) as u8
        };
        Video {
            width: 16,
            height: 16,
            fps: 16,
            frames: (0..frames)
                .map(|_| (0..16 * 16 * 3).map(|_| noise()).collect())
                .collect(),
        }
    }

    /// Bad-input table rows 3 and 7: a full disk (injected writer error) at any point while
    /// writing a GIF or a PNG folder leaves no partial output, names the cause, and keeps an
    /// earlier clip intact; a second clip replaces a frames folder whole instead of mixing.
    #[test]
    fn a_full_disk_leaves_no_half_written_clip_and_folders_are_never_mixed() {
        use tmd_model::output::fail_writes_after;
        let tmp = tempfile::Builder::new()
            .prefix("tmd-video-full-")
            .tempdir()
            .unwrap();
        let dir = tmp.path();
        let (gif, frames) = (dir.join("c.gif"), dir.join("frames"));
        long_clip(6, 10).save(&gif).unwrap();
        long_clip(6, 10).save(&frames).unwrap();
        let gif_before = std::fs::read(&gif).unwrap();
        for limit in [0u64, 50, 300, 2_000] {
            for out in [&gif, &frames] {
                fail_writes_after(Some(limit));
                let err = long_clip(17, 200).save(out).unwrap_err().to_string();
                fail_writes_after(None);
                assert!(err.contains("No space left on device"), "{limit}: {err}");
            }
            assert_eq!(listing(dir), vec!["c.gif", "frames"], "limit {limit}");
            assert_eq!(std::fs::read(&gif).unwrap(), gif_before);
            assert_eq!(listing(&frames).len(), 6);
        }
        // Row 7: 17 frames, then 3: the folder holds exactly the 3 new ones.
        long_clip(17, 1).save(&frames).unwrap();
        assert_eq!(listing(&frames).len(), 17);
        long_clip(3, 2).save(&frames).unwrap();
        assert_eq!(
            listing(&frames),
            vec!["frame_0000.png", "frame_0001.png", "frame_0002.png"]
        );
        assert_eq!(listing(dir), vec!["c.gif", "frames"]);
        // A folder holding anything else is refused before and at writing, and left alone.
        std::fs::write(frames.join("notes.txt"), b"mine").unwrap();
        let err = Video::check_output_path(&frames).unwrap_err().to_string();
        assert!(err.contains("notes.txt"), "{err}");
        assert!(long_clip(3, 2).save(&frames).is_err());
        assert_eq!(listing(&frames).len(), 4);
    }

    /// Bad-input table row 11: an output in a missing folder is refused before any work.
    #[test]
    fn an_output_in_a_missing_folder_is_refused_up_front() {
        let tmp = tempfile::Builder::new()
            .prefix("tmd-video-missing-")
            .tempdir()
            .unwrap();
        // Never created.
        let missing = tmp.path().join("tmd-no-such");
        for name in ["c.gif", "frames"] {
            let err = Video::check_output_path(missing.join(name))
                .unwrap_err()
                .to_string();
            assert!(err.contains("does not exist"), "{err}");
        }
        Video::check_output_path(tmp.path().join("c.gif")).unwrap();
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
        let tmp = tempfile::Builder::new()
            .prefix("tmd-video-mp4-")
            .tempdir()
            .unwrap();
        let path = tmp.path().join("c.mp4");
        v.save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 100, "mp4 of {} bytes", bytes.len());
        assert_eq!(&bytes[4..8], b"ftyp", "not an MP4 container");
    }
}
