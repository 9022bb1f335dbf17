//! Loss floors of the world's clips, for reading a VAE's reconstruction MSE: the MSE of
//! predicting every pixel as 0, as the clip's mean colour, and as each pixel's mean over time
//! (a static picture). A VAE whose loss stays near the second has learnt nothing but the
//! background colour.
//!
//! `cargo run --release -p tmd-world --example pixel_floors -- [frames] [side] [clips]`
//! (defaults: 9 frames, 32x32, 256 training clips; the VAE recipe trains on 9-frame 32x32 crops).

use tmd_world::{ClipSpec, Split, WorldDataset};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers: frames side clips"))
        .collect();
    let frames = args.first().copied().unwrap_or(9);
    let side = args.get(1).copied().unwrap_or(32);
    let clips = args.get(2).copied().unwrap_or(256);
    let spec = ClipSpec::new(frames, side, side).expect("a valid clip size");
    let data = WorldDataset::new(Some(Split::Train), 0, spec);
    let (mut zero, mut colour, mut still, mut n) = (0.0f64, 0.0f64, 0.0f64, 0usize);
    let plane = side * side;
    for clip in data.batch(0, clips) {
        for c in 0..3 {
            let ch = &clip.pixels[c * frames * plane..(c + 1) * frames * plane];
            let mean = ch.iter().map(|&v| v as f64).sum::<f64>() / ch.len() as f64;
            for p in 0..plane {
                let t_mean =
                    (0..frames).map(|f| ch[f * plane + p] as f64).sum::<f64>() / frames as f64;
                for f in 0..frames {
                    let v = ch[f * plane + p] as f64;
                    zero += v * v;
                    colour += (v - mean) * (v - mean);
                    still += (v - t_mean) * (v - t_mean);
                    n += 1;
                }
            }
        }
    }
    let n = n as f64;
    println!(
        "{clips} clips of {frames}x{side}x{side}: MSE of 0 = {:.4}, of the clip's mean colour = {:.4}, of a still frame (per-pixel time mean) = {:.4}",
        zero / n,
        colour / n,
        still / n
    );
}
