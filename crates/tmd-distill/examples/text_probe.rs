//! How far apart does a teacher's text encoder put captions that differ in one attribute word?
//! Prints, for caption pairs that differ in one word, the relative distance of the encoder's
//! outputs (over the whole padded context) and of the output at the changed word.
//!
//! `cargo run --release -p tmd-distill --example text_probe -- MODEL_DIR`

use burn::backend::NdArray;
use burn::prelude::*;
use tmd_sampler::TeacherPipeline;

type B = NdArray;

fn rel(a: &Tensor<B, 2>, b: &Tensor<B, 2>) -> f32 {
    let d: f32 = (a.clone() - b.clone()).powf_scalar(2.0).sum().into_scalar();
    let n: f32 = a.clone().powf_scalar(2.0).sum().into_scalar();
    (d / n).sqrt()
}

fn main() {
    let model = std::env::args()
        .nth(1)
        .expect("usage: text_probe MODEL_DIR");
    let device = Default::default();
    let pipe = TeacherPipeline::<B>::load(&model, &device).unwrap();
    let base = "A large red circle moves right on a black background.";
    let enc = |c: &str| pipe.text.encode_cached(c).unwrap().squeeze::<2>();
    let e0 = enc(base);
    println!("context {:?}, rms {:.3}", e0.dims(), {
        let m: f32 = e0.clone().powf_scalar(2.0).mean().into_scalar();
        m.sqrt()
    });
    for (word, pos) in [
        ("square", 3),
        ("triangle", 3),
        ("cross", 3),
        ("blue", 2),
        ("small", 1),
        ("left", 5),
        ("white", 8),
    ] {
        let words: Vec<&str> = base.trim_end_matches('.').split(' ').collect();
        let mut w = words.clone();
        w[pos] = word;
        let cap = format!("{}.", w.join(" "));
        let e = enc(&cap);
        let at = |t: &Tensor<B, 2>| t.clone().narrow(0, pos, 1);
        println!(
            "{:>9} ({cap}): whole {:.3}, at word {:.3}",
            word,
            rel(&e0, &e),
            rel(&at(&e0), &at(&e))
        );
    }
}
