//! Tests of the synthetic world: determinism, split, captions, and that the pixels show the attributes.
//!
//! Run: `cargo test -p tmd-world --test world -- --nocapture`
//! Example GIFs and a contact sheet: `cargo test -p tmd-world --test world write_examples -- --ignored`
//! (writes to `$WORLD_EXAMPLES_DIR`, default `/tmp/world-examples`).

use std::collections::HashSet;
use std::time::Instant;

use tmd_world::*;

fn spec() -> ClipSpec {
    ClipSpec::default()
}

/// Chroma (max - min of RGB in [0, 1]) of one pixel.
fn chroma(clip: &Clip, f: usize, y: usize, x: usize) -> f32 {
    let v: Vec<f32> = (0..3)
        .map(|c| (clip.pixel(c, f, y, x) + 1.0) / 2.0)
        .collect();
    v.iter().cloned().fold(f32::MIN, f32::max) - v.iter().cloned().fold(f32::MAX, f32::min)
}

/// (area, centroid x, centroid y, touches border) of the object (pixels with chroma > 0.25) in frame `f`.
fn object_stats(clip: &Clip, f: usize) -> (f32, f32, f32, bool) {
    let s = clip.spec;
    let (mut n, mut sx, mut sy, mut border) = (0.0f32, 0.0f32, 0.0f32, false);
    for y in 0..s.height {
        for x in 0..s.width {
            if chroma(clip, f, y, x) > 0.25 {
                n += 1.0;
                sx += x as f32;
                sy += y as f32;
                if x == 0 || y == 0 || x + 1 == s.width || y + 1 == s.height {
                    border = true;
                }
            }
        }
    }
    (n, sx / n.max(1.0), sy / n.max(1.0), border)
}

#[test]
fn attribute_indices_round_trip() {
    assert_eq!(Attributes::COUNT, 960);
    assert_eq!(Attributes::CLASS_COUNTS, [4, 6, 5, 4, 2]);
    let all: Vec<Attributes> = Attributes::all().collect();
    assert_eq!(all.len(), 960);
    for (i, a) in all.iter().enumerate() {
        assert_eq!(a.index(), i);
        assert_eq!(Attributes::from_index(i).unwrap(), *a);
        assert_eq!(Attributes::from_classes(a.classes()), Some(*a));
    }
    assert!(Attributes::from_index(960).is_err());
    println!("example: {}", all[0]);
}

#[test]
fn determinism_and_seeds() {
    let a = Attributes::new(
        Shape::Triangle,
        Colour::Cyan,
        Motion::Bounce,
        Background::Striped,
        Size::Large,
    );
    let c1 = render(&a, 1234, &spec());
    let c2 = render(&a, 1234, &spec());
    assert_eq!(c1.pixels, c2.pixels);
    assert_eq!(c1.caption, c2.caption);
    let c3 = render(&a, 1235, &spec());
    assert_ne!(c1.pixels, c3.pixels);

    let d = WorldDataset::new(Some(Split::Train), 7, spec());
    let e = WorldDataset::new(Some(Split::Train), 8, spec());
    for i in [0u64, 1, 799, 800, 123_456_789] {
        assert_eq!(d.clip(i), d.clip(i), "clip {i} not reproducible");
        assert_ne!(
            d.clip(i).pixels,
            e.clip(i).pixels,
            "seeds 7 and 8 agree on clip {i}"
        );
    }
    // batch == individual clips.
    let batch = d.batch(100, 8);
    for (k, clip) in batch.iter().enumerate() {
        assert_eq!(*clip, d.clip(100 + k as u64));
    }
    let mut stream = d.batches(100, 4);
    assert_eq!(stream.next().unwrap(), batch[..4].to_vec());
    assert_eq!(stream.next().unwrap(), batch[4..].to_vec());
    let mut pre = d.prefetched_batches(100, 4, 2);
    assert_eq!(pre.next().unwrap(), batch[..4].to_vec());
    drop(pre);
}

#[test]
fn split_is_fixed_and_respected() {
    let train = Split::Train.combos();
    let held = Split::HeldOut.combos();
    assert_eq!(train.len(), 800);
    assert_eq!(held.len(), 160);
    // Every shape and colour is still seen in training.
    for &s in Shape::ALL {
        assert!(train.iter().any(|a| a.shape == s));
    }
    for &c in Colour::ALL {
        assert!(train.iter().any(|a| a.colour == c));
    }
    let held_set: HashSet<Attributes> = held.iter().copied().collect();
    let d = WorldDataset::new(Some(Split::Train), 3, spec());
    for i in (0..20_000u64).chain((0..2_000).map(|k| 1_000_000_007 * k + 13)) {
        let a = d.attributes(i);
        assert!(!held_set.contains(&a), "held-out {a} at train index {i}");
        assert_eq!(split_of(&a), Split::Train);
    }
    // Each epoch is a permutation of the split's combinations.
    for epoch in 0..3u64 {
        let seen: HashSet<Attributes> = (0..800).map(|k| d.attributes(epoch * 800 + k)).collect();
        assert_eq!(seen.len(), 800);
    }
    let h = WorldDataset::new(Some(Split::HeldOut), 3, spec());
    for i in 0..2_000u64 {
        assert_eq!(h.clip(i % 40 + i).split(), Split::HeldOut);
    }
    assert_eq!("held-out".parse::<Split>().unwrap(), Split::HeldOut);
    assert!("validation".parse::<Split>().is_err());
}

#[test]
fn captions_round_trip() {
    let mut n = 0;
    let mut distinct = HashSet::new();
    for a in Attributes::all() {
        for t in 0..TEMPLATE_COUNT {
            for seed in 0..3u64 {
                let c = caption_with_template(&a, t, seed * 7919 + a.index() as u64);
                let parsed = parse_caption(&c).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(parsed, a, "caption '{c}'");
                distinct.insert(c);
                n += 1;
            }
        }
        assert_eq!(parse_caption(&canonical_caption(&a)).unwrap(), a);
        assert_eq!(parse_caption(&caption(&a, 99)).unwrap(), a);
    }
    println!("{n} captions round-tripped, {} distinct", distinct.len());
    for t in 0..TEMPLATE_COUNT {
        let a = Attributes::from_index(t * 97 + 5).unwrap();
        println!("template {t}: {}", caption_with_template(&a, t, 1));
    }
}

#[test]
fn parse_other_phrasings_and_errors() {
    use AttributeKind as K;
    let ok =
        |s: &str, a: Attributes| assert_eq!(parse_caption(s).unwrap_or_else(|e| panic!("{e}")), a);
    ok(
        "a big yellow ball bouncing on a white background",
        Attributes::new(
            Shape::Circle,
            Colour::Yellow,
            Motion::Bounce,
            Background::White,
            Size::Large,
        ),
    );
    ok(
        "Tiny Green Triangle, falling; dark-grey backdrop",
        Attributes::new(
            Shape::Triangle,
            Colour::Green,
            Motion::Down,
            Background::Grey,
            Size::Small,
        ),
    );
    ok(
        "Over black-and-white stripes a large magenta plus sign goes left to right",
        Attributes::new(
            Shape::Cross,
            Colour::Magenta,
            Motion::Right,
            Background::Striped,
            Size::Large,
        ),
    );
    ok(
        "A small blue square on black, moving upwards.",
        Attributes::new(
            Shape::Square,
            Colour::Blue,
            Motion::Up,
            Background::Black,
            Size::Small,
        ),
    );

    let err = |s: &str| parse_caption(s).unwrap_err();
    let kind_of = |e: &CaptionError| match e {
        CaptionError::Missing { kind, .. }
        | CaptionError::Conflict { kind, .. }
        | CaptionError::Unsupported { kind, .. } => *kind,
    };
    let e = err("A small circle moves left on a black background.");
    assert!(
        matches!(
            e,
            CaptionError::Missing {
                kind: K::Colour,
                ..
            }
        ),
        "{e}"
    );
    println!("{e}");
    let e = err("A small red circle moves left.");
    assert!(
        matches!(
            e,
            CaptionError::Missing {
                kind: K::Background,
                ..
            }
        ),
        "{e}"
    );
    let e = err("A small red circle and a large blue square move left on a black background.");
    assert!(matches!(e, CaptionError::Conflict { .. }), "{e}");
    println!("{e}");
    let e = err("A small orange circle moves left on a black background.");
    assert!(
        matches!(
            e,
            CaptionError::Unsupported {
                kind: K::Colour,
                ..
            }
        ),
        "{e}"
    );
    println!("{e}");
    let e = err("A small red star moves left on a black background.");
    assert_eq!(kind_of(&e), K::Shape);
    let e = err("A small red circle moves left on a blue background.");
    assert!(
        matches!(
            e,
            CaptionError::Unsupported {
                kind: K::Background,
                ..
            }
        ),
        "{e}"
    );
    println!("{e}");
    let e = err("A small white circle moves left on a black background.");
    assert!(
        matches!(
            e,
            CaptionError::Unsupported {
                kind: K::Colour,
                ..
            }
        ),
        "{e}"
    );
    let e = err("A small red circle spins on a black background.");
    assert!(
        matches!(
            e,
            CaptionError::Unsupported {
                kind: K::Motion,
                ..
            }
        ),
        "{e}"
    );
    let e = err("Two small red circles move left on a black background.");
    assert!(
        matches!(e, CaptionError::Unsupported { kind: K::Count, .. }),
        "{e}"
    );
    let e = err("A small red circle bounces to the left on a black background.");
    assert!(
        matches!(
            e,
            CaptionError::Conflict {
                kind: K::Motion,
                ..
            }
        ),
        "{e}"
    );
    let e = err("A small red circle moves left on a checkered background.");
    assert!(
        matches!(
            e,
            CaptionError::Unsupported {
                kind: K::Background,
                ..
            }
        ),
        "{e}"
    );
    let e = err("A medium red circle moves left on a black background.");
    assert!(
        matches!(e, CaptionError::Unsupported { kind: K::Size, .. }),
        "{e}"
    );

    let partial = parse_partial("a red circle").unwrap();
    assert_eq!(partial.colour, Some(Colour::Red));
    assert_eq!(partial.motion, None);
    assert!(partial.matches(&Attributes::from_index(0).unwrap()));
}

#[test]
fn motion_is_measurable_and_object_stays_visible() {
    let s = spec();
    let last = s.frames - 1;
    let mut min_travel = f32::MAX;
    let mut min_bounce = f32::MAX;
    for a in Attributes::all() {
        let clip = render(&a, a.index() as u64 * 31 + 5, &s);
        let (n0, x0, y0, b0) = object_stats(&clip, 0);
        let (n1, x1, y1, b1) = object_stats(&clip, last);
        assert!(
            n0 > 20.0 && n1 > 20.0,
            "{a}: object too small ({n0}, {n1} px)"
        );
        assert!(
            (n0 - n1).abs() / n0 < 0.15,
            "{a}: area changed {n0} -> {n1} (clipped?)"
        );
        assert!(!b0 && !b1, "{a}: object touches the frame border");
        let (dx, dy) = (x1 - x0, y1 - y0);
        match a.motion {
            Motion::Left | Motion::Right | Motion::Up | Motion::Down => {
                let (along, across) = match a.motion {
                    Motion::Left => (-dx, dy),
                    Motion::Right => (dx, dy),
                    Motion::Up => (-dy, dx),
                    _ => (dy, dx),
                };
                assert!(
                    along > 20.0,
                    "{a}: moved only {along:.1} px in its direction"
                );
                assert!(across.abs() < 1.0, "{a}: drifted {across:.1} px sideways");
                min_travel = min_travel.min(along);
            }
            Motion::Bounce => {
                let ys: Vec<f32> = (0..s.frames).map(|f| object_stats(&clip, f).2).collect();
                let xs: Vec<f32> = (0..s.frames).map(|f| object_stats(&clip, f).1).collect();
                let range = ys.iter().cloned().fold(f32::MIN, f32::max)
                    - ys.iter().cloned().fold(f32::MAX, f32::min);
                let xrange = xs.iter().cloned().fold(f32::MIN, f32::max)
                    - xs.iter().cloned().fold(f32::MAX, f32::min);
                let steps: Vec<f32> = ys
                    .windows(2)
                    .map(|w| w[1] - w[0])
                    .filter(|d| d.abs() > 0.5)
                    .collect();
                let reversals = steps
                    .windows(2)
                    .filter(|w| w[0].signum() != w[1].signum())
                    .count();
                assert!(range > 15.0, "{a}: bounce height {range:.1} px");
                assert!(xrange < 1.0, "{a}: bounce drifted {xrange:.1} px sideways");
                assert!(reversals >= 2, "{a}: only {reversals} direction reversals");
                min_bounce = min_bounce.min(range);
            }
        }
    }
    println!(
        "smallest linear travel {min_travel:.1} px, smallest bounce height {min_bounce:.1} px"
    );
}

#[test]
fn sizes_differ_in_area() {
    for &shape in Shape::ALL {
        for seed in 0..4u64 {
            let small = Attributes::new(
                shape,
                Colour::Red,
                Motion::Right,
                Background::Grey,
                Size::Small,
            );
            let large = Attributes {
                size: Size::Large,
                ..small
            };
            let a_small = object_stats(&render(&small, seed, &spec()), 8).0;
            let a_large = object_stats(&render(&large, seed, &spec()), 8).0;
            assert!(
                a_large > 3.0 * a_small,
                "{shape}: large {a_large} vs small {a_small} px"
            );
            if seed == 0 {
                println!("{shape}: small {a_small} px, large {a_large} px");
            }
        }
    }
}

#[test]
fn backgrounds_are_what_they_say() {
    for &bg in Background::ALL {
        for seed in 0..4u64 {
            let a = Attributes::new(Shape::Square, Colour::Blue, Motion::Left, bg, Size::Small);
            let clip = render(&a, seed, &spec());
            let s = clip.spec;
            let mut vals = Vec::new();
            for y in 0..s.height {
                for x in 0..s.width {
                    if chroma(&clip, 0, y, x) < 0.02 {
                        vals.push((clip.pixel(0, 0, y, x) + 1.0) / 2.0);
                    }
                }
            }
            assert!(vals.len() > s.height * s.width / 2);
            let mean = vals.iter().sum::<f32>() / vals.len() as f32;
            let std =
                (vals.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / vals.len() as f32).sqrt();
            match bg {
                Background::Black => assert!(mean < 0.1 && std < 0.01, "{bg}: {mean} {std}"),
                Background::White => assert!(mean > 0.88 && std < 0.01, "{bg}: {mean} {std}"),
                Background::Grey => assert!(
                    (0.4..0.6).contains(&mean) && std < 0.01,
                    "{bg}: {mean} {std}"
                ),
                Background::Striped => assert!(std > 0.15, "{bg}: {mean} {std}"),
            }
            // Static background: a background pixel is the same in the first and last frame.
            if let Some((y, x)) = (0..s.height)
                .flat_map(|y| (0..s.width).map(move |x| (y, x)))
                .find(|&(y, x)| {
                    chroma(&clip, 0, y, x) < 0.02 && chroma(&clip, s.frames - 1, y, x) < 0.02
                })
            {
                assert_eq!(clip.pixel(1, 0, y, x), clip.pixel(1, s.frames - 1, y, x));
            }
        }
    }
}

#[test]
fn pixels_in_range_and_other_specs() {
    let a = Attributes::new(
        Shape::Cross,
        Colour::Yellow,
        Motion::Down,
        Background::White,
        Size::Large,
    );
    for sp in [
        ClipSpec::new(9, 32, 48).unwrap(),
        ClipSpec::new(1, 16, 16).unwrap(),
        ClipSpec::new(5, 128, 96).unwrap(),
    ] {
        let clip = render(&a, 5, &sp);
        assert_eq!(clip.pixels.len(), sp.numel());
        assert!(clip.pixels.iter().all(|v| (-1.0..=1.0).contains(v)));
    }
    assert!(ClipSpec::new(0, 64, 64).is_err());
    assert!(ClipSpec::new(17, 8, 64).is_err());
}

#[test]
fn tensor_shape() {
    type B = burn::backend::NdArray<f32>;
    let d = WorldDataset::new(None, 1, ClipSpec::new(5, 32, 32).unwrap());
    let clips = d.batch(0, 3);
    let t = to_tensor::<B>(&clips, &Default::default()).unwrap();
    assert_eq!(t.dims(), [3, 3, 5, 32, 32]);
    let v: Vec<f32> = t.into_data().to_vec().unwrap();
    assert_eq!(&v[..clips[0].pixels.len()], &clips[0].pixels[..]);
    assert!(to_tensor::<B>(&[], &Default::default()).is_err());
    let other = render(&clips[0].attributes, 1, &spec());
    assert!(to_tensor::<B>(&[clips[0].clone(), other], &Default::default()).is_err());
}

/// A measurement, not a test (it asserts nothing): `cargo test -p tmd-world --test world
/// -- --ignored --nocapture throughput`.
#[test]
#[ignore = "a measurement: prints the rendering rate, asserts nothing"]
fn throughput() {
    let d = WorldDataset::new(Some(Split::Train), 11, spec());
    let _ = d.batch(0, 16);
    let t = Instant::now();
    let clips = d.batch(1000, 256);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "rendered {} clips of 17x64x64 in {:.3} s: {:.0} clips/s ({} rayon threads, dev profile)",
        clips.len(),
        secs,
        clips.len() as f64 / secs,
        rayon::current_num_threads()
    );
}

#[test]
#[ignore = "writes example GIFs and a contact sheet to $WORLD_EXAMPLES_DIR (default /tmp/world-examples)"]
fn write_examples() {
    let dir = std::env::var("WORLD_EXAMPLES_DIR").unwrap_or_else(|_| "/tmp/world-examples".into());
    std::fs::create_dir_all(&dir).unwrap();
    let train = WorldDataset::new(Some(Split::Train), 2024, spec());
    let held = WorldDataset::new(Some(Split::HeldOut), 2024, spec());
    let mut clips: Vec<Clip> = train.batch(0, 4);
    clips.extend(held.batch(0, 2));
    for (k, clip) in clips.iter().enumerate() {
        let path = format!("{dir}/{k}-{}.gif", clip.split());
        save_gif_scaled(clip, &path, 2).unwrap();
        println!("{path}: [{}] {}", clip.attributes, clip.caption);
    }
    // A sheet covering every shape, colour, motion, background and size.
    let mut sheet: Vec<Clip> = clips.clone();
    for k in 0..6usize {
        let a = Attributes::new(
            Shape::ALL[k % 4],
            Colour::ALL[k],
            Motion::ALL[k % 5],
            Background::ALL[(k + 1) % 4],
            Size::ALL[k % 2],
        );
        let c = render(&a, k as u64, &spec());
        println!(
            "sheet row {}: [{}] {}",
            sheet.len(),
            c.attributes,
            c.caption
        );
        sheet.push(c);
    }
    save_contact_sheet(&sheet, &[0, 8, 16], 2, format!("{dir}/sheet.png")).unwrap();
    // Every other frame of a few bouncing and linear clips.
    let motions: Vec<Clip> = (0..5u64)
        .map(|k| {
            let a = Attributes::new(
                Shape::ALL[k as usize % 4],
                Colour::Cyan,
                Motion::ALL[k as usize],
                Background::Black,
                Size::ALL[k as usize % 2],
            );
            render(&a, 100 + k, &spec())
        })
        .chain((0..2u64).map(|k| {
            let a = Attributes::new(
                Shape::Triangle,
                Colour::Red,
                Motion::Bounce,
                Background::ALL[k as usize + 1],
                Size::ALL[k as usize],
            );
            render(&a, 200 + k, &spec())
        }))
        .collect();
    let frames: Vec<usize> = (0..17).step_by(2).collect();
    save_contact_sheet(&motions, &frames, 1, format!("{dir}/motions.png")).unwrap();
}
