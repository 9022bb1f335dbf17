//! The bundled-teacher recipe and the evaluator end to end at tiny sizes on the CPU: train the
//! VAE, measure latent statistics, train the DiT, export a model directory that the teacher
//! pipeline loads and samples from, resume, train an evaluator and evaluate teacher rows.

use burn::backend::{Autodiff, NdArray};
use tmd_distill::adapt_head::{run_adapt_head, AdaptHeadRecipe};
use tmd_distill::latent_cache::LatentCache;
use tmd_model::model_dir::ModelDir;
use tmd_sampler::TeacherPipeline;
use tmd_world::eval::{
    evaluate_teacher, judge_accuracy, judge_accuracy_of, load_prompts, markdown_table,
    split_prompts, spread, train_evaluator, EvalPlan, EvalReport, EvaluatorRecipe, FeatureStats,
    Judge, TeacherRow,
};
use tmd_world::pretrain::teacher::{
    check_vae, export_teacher, latent_stats, load_trained_vae, train_teacher_dit,
    train_teacher_vae, TeacherRecipe,
};
use tmd_world::{to_tensor, ClipSpec, Split, WorldDataset};

type A = Autodiff<NdArray>;

fn tiny_recipe() -> TeacherRecipe {
    let mut r = TeacherRecipe::default();
    r.world.frames = 5;
    r.world.height = 32;
    r.world.width = 32;
    r.world.vae_frames = 5;
    r.vae.base_dim = 4;
    r.vae.z_dim = 4;
    r.vae_train.batch = 2;
    r.vae_train.steps = 2;
    r.vae_train.checkpoint.every = 1;
    r.vae_train.progress = false;
    r.text.d_model = 16;
    r.text.d_kv = 8;
    r.text.num_heads = 2;
    r.text.d_ff = 16;
    r.text.num_layers = 1;
    r.text.text_len = 20;
    r.dit.dim = 24;
    r.dit.ffn_dim = 32;
    r.dit.num_heads = 2;
    r.dit.num_layers = 1;
    r.dit.freq_dim = 16;
    r.dit_train.batch = 2;
    r.dit_train.steps = 2;
    r.dit_train.checkpoint.every = 1;
    r.dit_train.progress = false;
    r.latent_stats_clips = 4;
    r.latent_cache_clips = 6;
    r.world.vae_crop = 16;
    r.sampling.steps = 2;
    r
}

#[test]
fn recipe_trains_exports_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = dir.path().join("model");
    let device = Default::default();
    let mut recipe = tiny_recipe();

    // The DiT stage refuses to start before the VAE is finished.
    let early = train_teacher_dit::<A>(&recipe, &run, &device).unwrap_err();
    assert!(
        early.to_string().contains("run the vae stage first"),
        "{early}"
    );

    let (_, vae_report) = train_teacher_vae::<A>(&recipe, &run, &device).unwrap();
    assert_eq!(vae_report.end_step, 2);
    let stats = latent_stats::<NdArray>(&recipe, &run, &device).unwrap();
    assert_eq!(stats.mean.len(), 4);
    assert!(
        stats.std.iter().all(|s| s.is_finite() && *s > 0.0),
        "{stats:?}"
    );

    let (_, dit_report) = train_teacher_dit::<A>(&recipe, &run, &device).unwrap();
    assert_eq!((dit_report.start_step, dit_report.end_step), (0, 2));
    assert!(dit_report.losses.iter().all(|(_, l)| l.is_finite()));

    // Resume: two more steps continue from the checkpoint of step 2.
    recipe.dit_train.steps = 4;
    let (_, resumed) = train_teacher_dit::<A>(&recipe, &run, &device).unwrap();
    assert_eq!((resumed.start_step, resumed.end_step), (2, 4));

    let manifest = export_teacher::<NdArray>(&recipe, &run, &out, "test", &device).unwrap();
    assert_eq!(manifest.defaults.frames, 5);
    let model = ModelDir::open(&out).unwrap();
    let vae_config = model.vae_config().unwrap();
    assert_eq!(vae_config.latents_mean, stats.mean);
    assert_eq!(vae_config.latents_std, stats.std);

    let pipeline = TeacherPipeline::<NdArray>::load(&out, &device).unwrap();
    let opts = pipeline.options("A small red circle moves to the left on a black background.");
    let (video, timings) = pipeline.generate(&opts, &mut |_, _| {}).unwrap();
    assert_eq!((video.frames.len(), video.height, video.width), (5, 32, 32));
    assert_eq!(timings.dit_evaluations, 4); // 2 steps with CFG
}

#[test]
fn evaluator_trains_and_scores_teacher_rows() {
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    let recipe = tiny_recipe();
    let run = dir.path().join("run");
    let model_dir = dir.path().join("model");
    train_teacher_vae::<A>(&recipe, &run, &device).unwrap();
    train_teacher_dit::<A>(&recipe, &run, &device).unwrap();
    export_teacher::<NdArray>(&recipe, &run, &model_dir, "test", &device).unwrap();

    let mut eval_recipe = EvaluatorRecipe {
        frames: 5,
        height: 32,
        width: 32,
        sampled_frames: 3,
        widths: vec![4, 8],
        check_clips: 4,
        ..EvaluatorRecipe::default()
    };
    eval_recipe.train.batch = 2;
    eval_recipe.train.steps = 2;
    eval_recipe.train.progress = false;
    let judge_dir = dir.path().join("judge");
    let accuracy = train_evaluator::<A>(
        &eval_recipe,
        &dir.path().join("judge-run"),
        &judge_dir,
        &device,
    )
    .unwrap();
    assert_eq!(accuracy.len(), 2);
    assert!(accuracy
        .iter()
        .all(|a| (0.0..=1.0).contains(&a.mean) && a.clips == 4));

    let judge = Judge::<NdArray>::load(&judge_dir, &device).unwrap();

    // The VAE check: the judge on reconstructions of whole clips, with the real clips beside them.
    let check = check_vae(&recipe, &run, &judge, Split::HeldOut, 3, 5, &device).unwrap();
    assert_eq!(check.step, recipe.vae_train.steps);
    assert!(check.mse.is_finite() && check.mse > 0.0, "{}", check.mse);
    assert_eq!(check.judged.clips, 3);
    assert!((0.0..=1.0).contains(&check.judged.mean));
    let real = WorldDataset::new(Some(Split::HeldOut), 5, recipe.clip_spec().unwrap()).batch(0, 3);
    assert_eq!(check.samples.len(), 6);
    let mut squared = 0.0f64;
    for (i, clip) in real.iter().enumerate() {
        let (shown, rebuilt) = (&check.samples[2 * i], &check.samples[2 * i + 1]);
        assert_eq!(shown, clip);
        assert_eq!(rebuilt.attributes, clip.attributes);
        assert_eq!(rebuilt.pixels.len(), clip.pixels.len());
        assert!(rebuilt.pixels.iter().all(|v| (-1.0..=1.0).contains(v)));
        squared += rebuilt
            .pixels
            .iter()
            .zip(&clip.pixels)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum::<f64>();
    }
    let by_hand = squared / (3 * real[0].pixels.len()) as f64;
    assert!(
        (check.mse - by_hand).abs() < 1e-5 * by_hand.max(1.0),
        "{} vs {by_hand}",
        check.mse
    );
    // Judging untransformed clips is the judge's own accuracy.
    let spec = recipe.clip_spec().unwrap();
    assert_eq!(
        judge_accuracy_of(&judge, Split::HeldOut, 3, 5, spec, Ok).unwrap(),
        judge_accuracy(&judge, Split::HeldOut, 3, 5, spec).unwrap()
    );

    let pipeline = TeacherPipeline::<NdArray>::load(&model_dir, &device).unwrap();
    let cases = spread(split_prompts(Split::HeldOut, 0), 2);
    assert_eq!(cases.len(), 2);
    let spec = ClipSpec::new(5, 32, 32).unwrap();
    let attrs: Vec<_> = cases.iter().map(|c| c.attributes).collect();
    let real = FeatureStats::from_rows(&judge.real_features(&attrs, 1, spec).unwrap(), 8);
    let plan = EvalPlan {
        teacher: vec![
            TeacherRow {
                solver: "euler".into(),
                steps: 1,
                guidance: Some(1.0),
                decoder: None,
            },
            TeacherRow {
                solver: "unipc".into(),
                steps: 2,
                guidance: None,
                decoder: None,
            },
        ],
        student: vec![],
    };
    let mut clips = 0;
    let rows = evaluate_teacher(
        &pipeline,
        &judge,
        &cases,
        &[0, 1],
        &plan,
        &real,
        &mut |_| {},
        &mut |_, _| clips += 1,
    )
    .unwrap();
    assert_eq!(clips, 2 * 2 * 2);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].spec.effective_nfe, 1.0);
    assert_eq!(rows[1].spec.effective_nfe, 4.0); // CFG from the model's defaults
    for row in &rows {
        assert!((0.0..=1.0).contains(&row.prompt_accuracy));
        assert!(row.frechet_distance.is_finite() && row.frechet_distance >= 0.0);
        assert_eq!((row.prompts, row.seeds), (2, 2));
    }
    let report = EvalReport {
        model: "m".into(),
        prompts_source: "held-out".into(),
        unexpressible: vec![],
        judge_accuracy: accuracy,
        device: "cpu".into(),
        command: "test".into(),
        rows,
    };
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    for key in [
        "method",
        "outer_steps",
        "inner_steps",
        "head_blocks",
        "guidance",
        "effective_nfe",
        "prompt_accuracy",
        "frechet_distance",
        "seconds_per_clip",
        "prompts",
        "seeds",
    ] {
        assert!(
            json["rows"][0].get(key).is_some(),
            "row lacks {key}: {}",
            json["rows"][0]
        );
    }
    let table = markdown_table(&report);
    assert!(table.contains("| teacher-euler | 1 |"), "{table}");
}

#[test]
fn prompt_files_report_captions_the_world_cannot_express() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prompts.txt");
    std::fs::write(
        &path,
        "# comment\nA large red circle moves to the left on a black background.\n\nA purple dog runs.\n",
    )
    .unwrap();
    let (cases, rejected) = load_prompts(&path).unwrap();
    assert_eq!(cases.len(), 1);
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].line, 4);
    assert!(!rejected[0].reason.is_empty());
}

#[test]
fn shipped_recipes_parse_with_every_key_known() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let teacher: TeacherRecipe = tmd_distill::train::load_stage_config(
        Some(&root.join("configs/world-teacher.toml")),
        &["dit_train.steps=7".to_string()],
    )
    .unwrap();
    assert_eq!(teacher.dit_train.steps, 7);
    assert_eq!(teacher.latent_stats_clips, 256);
    assert_eq!((teacher.world.frames, teacher.world.height), (17, 64));
    assert_eq!(teacher.dit_config().text_dim, teacher.text.d_model);
    let evaluator: EvaluatorRecipe = tmd_distill::train::load_stage_config(
        Some(&root.join("configs/world-evaluator.toml")),
        &[],
    )
    .unwrap();
    assert_eq!(evaluator.split, "all");
    let adapt: AdaptHeadRecipe = tmd_distill::train::load_stage_config(
        Some(&root.join("configs/adapt-head.toml")),
        &["train.steps=5".to_string()],
    )
    .unwrap();
    assert_eq!((adapt.train.steps, adapt.head.head_blocks), (5, 1));
    // The shipped stage-1 recipe samples on the grids it trains on; a shift overridden in
    // `[train]` alone is named, with both keys.
    assert_eq!(adapt.sampling_shift_mismatch(), None);
    let shifted: AdaptHeadRecipe = tmd_distill::train::load_stage_config(
        Some(&root.join("configs/adapt-head.toml")),
        &["train.outer_shift=2".to_string()],
    )
    .unwrap();
    let note = shifted
        .sampling_shift_mismatch()
        .expect("the shifts differ");
    assert!(
        note.contains("train.outer_shift = 2") && note.contains("sampling.outer_shift = 10"),
        "{note}"
    );
    assert!(!note.contains("inner_shift"), "{note}");
    assert!(adapt.head.head_blocks <= teacher.dit.num_layers);
    let distill: tmd_distill::distill::run::DistillRecipe = tmd_distill::train::load_stage_config(
        Some(&root.join("configs/distill.toml")),
        &["train.steps=3".to_string()],
    )
    .unwrap();
    assert_eq!(
        (distill.method, distill.train.steps),
        (tmd_distill::distill::run::Method::Tmd, 3)
    );
    // The Wan-scale recipes turn activation checkpointing on; the small world's leave it off.
    assert!(!adapt.train.checkpoint_activations && !distill.train.checkpoint_activations);
    let wan_adapt: AdaptHeadRecipe = tmd_distill::train::load_stage_config(
        Some(&root.join("configs/adapt-head-wan1.3b.toml")),
        &[],
    )
    .unwrap();
    assert!(wan_adapt.train.checkpoint_activations);
    assert_eq!(wan_adapt.head.head_blocks, 5);
    // ... and mixed precision (measured 2.3-2.6x faster at 32,760 tokens); the world's stay f32.
    use tmd_model::dit::Precision;
    assert_eq!(wan_adapt.train.precision, Precision::Bf16Matmul);
    assert_eq!(adapt.train.precision, Precision::F32);
    let wan_distill: tmd_distill::distill::run::DistillRecipe =
        tmd_distill::train::load_stage_config(
            Some(&root.join("configs/distill-wan1.3b.toml")),
            &["train.checkpoint_activations=false".to_string()],
        )
        .unwrap();
    assert!(!wan_distill.train.checkpoint_activations);
    assert_eq!(wan_distill.train.precision, Precision::Bf16Matmul);
    assert_eq!(distill.train.precision, Precision::F32);
    let on: tmd_distill::distill::run::DistillRecipe = tmd_distill::train::load_stage_config(
        Some(&root.join("configs/distill.toml")),
        &["train.checkpoint_activations=true".to_string()],
    )
    .unwrap();
    assert!(on.train.checkpoint_activations);
    let baseline: tmd_distill::distill::run::DistillRecipe = tmd_distill::train::load_stage_config(
        Some(&root.join("configs/distill-dmd2v.toml")),
        &["train.outer_steps=1".to_string(), "kd.steps=10".to_string()],
    )
    .unwrap();
    assert_eq!(baseline.method, tmd_distill::distill::run::Method::Dmd2V);
    assert_eq!((baseline.train.outer_steps, baseline.kd.steps), (1, 10));
    let data: tmd_distill::teacher_data::TeacherDataConfig = tmd_distill::train::load_stage_config(
        Some(&root.join("configs/teacher-data.toml")),
        &["steps=4".to_string()],
    )
    .unwrap();
    assert_eq!((data.clips, data.steps), (1024, Some(4)));
    // A misspelt key is an error naming it.
    let err = tmd_distill::train::load_stage_config::<TeacherRecipe>(
        Some(&root.join("configs/world-teacher.toml")),
        &["dit_train.stepz=7".to_string()],
    )
    .unwrap_err();
    assert!(err.to_string().contains("stepz"), "{err}");
}

#[test]
fn latent_cache_matches_direct_encoding_resumes_and_rejects_damage() {
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    let recipe = tiny_recipe();
    let run = dir.path().join("run");
    train_teacher_vae::<A>(&recipe, &run, &device).unwrap();
    let stats = latent_stats::<NdArray>(&recipe, &run, &device).unwrap();
    let vae = load_trained_vae::<NdArray>(&recipe, &run, Some(&stats), &device).unwrap();
    let data = WorldDataset::new(Some(Split::Train), 9, recipe.clip_spec().unwrap());
    let cache_dir = dir.path().join("latents");
    let build =
        || tmd_world::latents::encode_world(&cache_dir, &vae, 2, &data, 5, 2, false, &device);

    let cache = build().unwrap();
    assert_eq!(cache.len(), 5);
    assert_eq!(cache.index().latent_shape, [4, 2, 4, 4]);
    let (latents, captions) = cache.batch::<NdArray>(&[3, 0], &device);
    let clips = data.batch(0, 5);
    let direct = vae
        .encode_normalized(
            to_tensor::<NdArray>(&[clips[3].clone(), clips[0].clone()], &device).unwrap(),
        )
        .unwrap();
    let err: f32 = (latents - direct).abs().max().into_scalar();
    assert!(
        err < 1e-5,
        "cached latents differ from a direct encode by {err}"
    );
    assert_eq!(
        captions,
        vec![clips[3].caption.clone(), clips[0].caption.clone()]
    );

    // Later stages open the finished cache without the VAE or the dataset.
    let opened = LatentCache::open(&cache_dir).unwrap();
    let (again, captions_again) = opened.batch::<NdArray>(&[3, 0], &device);
    assert_eq!(captions_again, captions);
    let same: f32 = (again - cache.batch::<NdArray>(&[3, 0], &device).0)
        .abs()
        .max()
        .into_scalar();
    assert_eq!(same, 0.0);

    // An interrupted build (a chunk missing) resumes and gives the same bytes.
    let chunk = cache_dir.join("chunk-00001.f32");
    let before = std::fs::read(&chunk).unwrap();
    std::fs::remove_file(&chunk).unwrap();
    build().unwrap();
    assert_eq!(std::fs::read(&chunk).unwrap(), before);

    // A damaged chunk is named, not read.
    std::fs::write(&chunk, &before[..before.len() - 4]).unwrap();
    let damaged = build().unwrap_err().to_string();
    assert!(damaged.contains("chunk-00001.f32"), "{damaged}");
    std::fs::write(&chunk, &before).unwrap();

    // A cache of other clips is refused, not silently reused.
    let other = tmd_world::latents::encode_world(&cache_dir, &vae, 2, &data, 7, 2, false, &device)
        .unwrap_err()
        .to_string();
    assert!(
        other.contains("index.json") && other.contains("delete"),
        "{other}"
    );
}

#[test]
fn crops_keep_pixels_and_reject_windows_outside_the_frame() {
    let data = WorldDataset::new(Some(Split::Train), 1, ClipSpec::new(5, 32, 48).unwrap());
    let clip = data.batch(0, 1).remove(0);
    let crop = clip.crop(16, 8, 16, 32).unwrap();
    assert_eq!(
        (crop.spec.frames, crop.spec.height, crop.spec.width),
        (5, 16, 32)
    );
    for (c, f, y, x) in [(0, 0, 0, 0), (2, 4, 15, 31), (1, 2, 7, 20)] {
        assert_eq!(crop.pixel(c, f, y, x), clip.pixel(c, f, y + 16, x + 8));
    }
    assert!(clip.crop(24, 0, 16, 16).is_err());
    let mut recipe = tiny_recipe();
    recipe.world.vae_crop = 24;
    let dir = tempfile::tempdir().unwrap();
    let err = train_teacher_vae::<A>(&recipe, dir.path(), &Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("world.vae_crop = 24"), "{err}");
}

#[test]
fn adapt_head_turns_the_exported_teacher_into_a_student_that_generates() {
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    let recipe = tiny_recipe();
    let run = dir.path().join("run");
    let teacher_dir = dir.path().join("teacher");
    train_teacher_vae::<A>(&recipe, &run, &device).unwrap();
    train_teacher_dit::<A>(&recipe, &run, &device).unwrap();
    export_teacher::<NdArray>(&recipe, &run, &teacher_dir, "test", &device).unwrap();
    let cache_dir = run.join(tmd_world::pretrain::teacher::LATENT_CACHE_DIR);
    assert!(
        cache_dir.join("index.json").is_file(),
        "the DiT stage wrote its latent cache"
    );

    let mut adapt = AdaptHeadRecipe::default();
    adapt.head.head_blocks = 1;
    adapt.train.batch = 2;
    adapt.train.steps = 2;
    adapt.train.checkpoint.every = 1;
    adapt.train.progress = false;
    adapt.sampling.outer_steps = 1;
    adapt.sampling.inner_steps = 2;
    let out = dir.path().join("student");
    let (_, report) = run_adapt_head::<A>(
        &adapt,
        &teacher_dir,
        &cache_dir,
        &dir.path().join("adapt-run"),
        &out,
        "test",
        &device,
    )
    .unwrap();
    assert_eq!(report.end_step, 2);
    assert!(tmd_flowhead::has_student(&out));
    assert!(!tmd_flowhead::has_student(&teacher_dir));

    let pipe = tmd_sampler::StudentPipeline::<NdArray>::load(&out, &device).unwrap();
    let opts = pipe.options("A small red circle moves to the left on a black background.");
    assert_eq!((opts.outer_steps, opts.inner_steps), (1, 2));
    let (video, timings) = pipe.generate(&opts, &mut |_, _| {}).unwrap();
    assert_eq!((video.frames.len(), video.height, video.width), (5, 32, 32));
    // 1 outer step, N = 2, H = 1 of L = 1 blocks: 1 + (2 - 1) * 1/1 = 2 full passes.
    assert_eq!(timings.effective_nfe, 2.0);

    // The teacher is still there for `generate --teacher`.
    TeacherPipeline::<NdArray>::load(&out, &device).unwrap();

    // A damaged student is named.
    std::fs::write(out.join("student/model.bpk"), b"not a burnpack").unwrap();
    let err = tmd_sampler::StudentPipeline::<NdArray>::load(&out, &device)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("model.bpk"), "{err}");
}

/// Trains and exports the tiny teacher into `root/teacher`; returns it and the run's latent cache.
fn exported_teacher(root: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let device = Default::default();
    let recipe = tiny_recipe();
    let run = root.join("run");
    let teacher_dir = root.join("teacher");
    train_teacher_vae::<A>(&recipe, &run, &device).unwrap();
    train_teacher_dit::<A>(&recipe, &run, &device).unwrap();
    export_teacher::<NdArray>(&recipe, &run, &teacher_dir, "test", &device).unwrap();
    (
        teacher_dir,
        run.join(tmd_world::pretrain::teacher::LATENT_CACHE_DIR),
    )
}

#[test]
fn teacher_data_reproduces_the_teacher_and_resumes() {
    use tmd_distill::teacher_data::{clip_noise, generate_teacher_data, TeacherDataConfig};
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    let (teacher_dir, _) = exported_teacher(dir.path());
    let pipe = TeacherPipeline::<NdArray>::load(&teacher_dir, &device).unwrap();
    let prompts = vec![
        "A small red circle moves to the left on a black background.".to_string(),
        "A large blue square moves up on a white background.".to_string(),
    ];
    let config = TeacherDataConfig {
        clips: 3,
        chunk: 2,
        steps: Some(2),
        progress: false,
        ..Default::default()
    };
    let data = dir.path().join("data");
    let cache =
        generate_teacher_data(&data, &pipe, &teacher_dir, &prompts, &config, &device).unwrap();
    assert_eq!(cache.len(), 3);
    let sampling = tmd_distill::teacher_data::sampling_of(&cache, &data).unwrap();
    assert_eq!((sampling.steps, sampling.prompts), (2, 2));

    // Clip 2 is the teacher's own sample for prompt 2 % 2 = 0 from its recorded noise, as the
    // teacher pipeline computes it one clip at a time.
    let (latent, captions) = cache.batch::<NdArray>(&[2], &device);
    assert_eq!(captions[0], prompts[0]);
    let shape = cache.index().latent_shape;
    let noise = clip_noise::<NdArray>(&sampling, shape, 2, &device);
    let cond = pipe.text.encode_cached(&prompts[0]).unwrap();
    let uncond = pipe
        .text
        .encode_cached_batch(&[pipe.dir.defaults().negative_prompt.as_str()], true)
        .unwrap();
    let schedule = tmd_sampler::FlowSchedule::wan_original(2, sampling.shift).unwrap();
    let (direct, evaluations) = tmd_sampler::pipeline::teacher_sample(
        &pipe.dit,
        noise,
        cond,
        Some((uncond, sampling.guidance)),
        schedule,
        tmd_sampler::pipeline::Solver::UniPc,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(evaluations, 4);
    let err: f32 = (latent - direct).abs().max().into_scalar();
    assert!(err < 1e-4, "stored pair differs from the teacher by {err}");

    // An interrupted run resumes with the same bytes; other settings are refused, named.
    let chunk = data.join("chunk-00001.f32");
    let before = std::fs::read(&chunk).unwrap();
    std::fs::remove_file(&chunk).unwrap();
    generate_teacher_data(&data, &pipe, &teacher_dir, &prompts, &config, &device).unwrap();
    assert_eq!(std::fs::read(&chunk).unwrap(), before);
    let other = TeacherDataConfig {
        steps: Some(3),
        ..config.clone()
    };
    let err = generate_teacher_data(&data, &pipe, &teacher_dir, &prompts, &other, &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("index.json") && err.contains("delete"),
        "{err}"
    );
    let err = generate_teacher_data(&data, &pipe, &teacher_dir, &[" ".into()], &config, &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("prompt 1 is empty"), "{err}");
}

#[test]
fn the_pipeline_distills_tmd_and_dmd2v_students_that_generate() {
    use tmd_distill::distill::run::{run_distill, DistillRecipe, Method};
    use tmd_distill::teacher_data::{generate_teacher_data, TeacherDataConfig};
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    let (teacher_dir, cache_dir) = exported_teacher(dir.path());

    // Stage 1.
    let mut adapt = AdaptHeadRecipe::default();
    adapt.head.head_blocks = 1;
    adapt.train.batch = 2;
    adapt.train.steps = 1;
    adapt.train.progress = false;
    let stage1 = dir.path().join("stage1");
    run_adapt_head::<A>(
        &adapt,
        &teacher_dir,
        &cache_dir,
        &dir.path().join("adapt-run"),
        &stage1,
        "test",
        &device,
    )
    .unwrap();

    // Teacher data.
    let pipe = TeacherPipeline::<NdArray>::load(&teacher_dir, &device).unwrap();
    let data = dir.path().join("data");
    let prompts = vec!["A small red circle moves to the left on a black background.".into()];
    let config = TeacherDataConfig {
        clips: 4,
        chunk: 4,
        steps: Some(2),
        progress: false,
        ..Default::default()
    };
    generate_teacher_data(&data, &pipe, &teacher_dir, &prompts, &config, &device).unwrap();

    // Stage 2, TMD: one student and one critic update each way (student_every 2).
    let mut recipe = DistillRecipe::default();
    recipe.train.batch = 2;
    recipe.train.steps = 2;
    recipe.train.student_every = 2;
    recipe.train.outer_steps = 2;
    recipe.train.inner_steps = 2;
    recipe.train.checkpoint.every = 1;
    recipe.train.progress = false;
    recipe.discriminator.hidden = Some(4);
    let tmd_out = dir.path().join("tmd");
    let run = dir.path().join("distill-run");
    let (_, report) =
        run_distill::<A>(&recipe, &stage1, &data, &run, &tmd_out, "test", &device).unwrap();
    assert_eq!((report.stage2.end_step, report.kd.is_none()), (2, true));
    let student = tmd_sampler::StudentPipeline::<NdArray>::load(&tmd_out, &device).unwrap();
    let opts = student.options("A small red circle moves to the left on a black background.");
    assert_eq!((opts.outer_steps, opts.inner_steps), (2, 2));
    let (video, timings) = student.generate(&opts, &mut |_, _| {}).unwrap();
    assert_eq!(video.frames.len(), 5);
    assert_eq!(timings.effective_nfe, 4.0); // M = 2, N = 2, H = L = 1: 2 (1 + 1)

    // Running it again resumes at the end instead of training again.
    let (_, again) =
        run_distill::<A>(&recipe, &stage1, &data, &run, &tmd_out, "test", &device).unwrap();
    assert_eq!(again.stage2.start_step, 2);

    // A TMD run from a directory without a stage-1 student is refused, naming it.
    let err = run_distill::<A>(
        &recipe,
        &teacher_dir,
        &data,
        &dir.path().join("bad-run"),
        &dir.path().join("bad"),
        "test",
        &device,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("adapt-head"), "{err}");

    // The 1-step DMD2-v baseline with its KD warm-up, from the teacher directory.
    recipe.method = Method::Dmd2V;
    recipe.train.outer_steps = 1;
    recipe.kd.steps = 2;
    recipe.kd.batch = 2;
    recipe.kd.progress = false;
    let dmd_out = dir.path().join("dmd");
    let (student, report) = run_distill::<A>(
        &recipe,
        &teacher_dir,
        &data,
        &dir.path().join("dmd-run"),
        &dmd_out,
        "test",
        &device,
    )
    .unwrap();
    assert!(matches!(student, tmd_flowhead::Student::Dmd2V(_)));
    assert_eq!(report.kd.map(|r| r.end_step), Some(2));
    let student = tmd_sampler::StudentPipeline::<NdArray>::load(&dmd_out, &device).unwrap();
    let opts = student.options("A small red circle moves to the left on a black background.");
    assert_eq!(opts.outer_steps, 1);
    let (_, timings) = student.generate(&opts, &mut |_, _| {}).unwrap();
    assert_eq!((timings.effective_nfe, timings.dit_evaluations), (1.0, 1));

    // Both students are evaluation rows (an untrained judge: only the row bookkeeping counts).
    let classifier = tmd_world::eval::WorldClassifierConfig::new()
        .with_frames(5)
        .with_sampled_frames(3)
        .with_widths(vec![4]);
    let judge = Judge::new(classifier.init::<NdArray>(&device), classifier, &device);
    let cases = spread(split_prompts(Split::HeldOut, 0), 1);
    let spec = ClipSpec::new(5, 32, 32).unwrap();
    let attrs: Vec<_> = cases.iter().map(|c| c.attributes).collect();
    let real = FeatureStats::from_rows(
        &judge.real_features(&attrs, 1, spec).unwrap(),
        judge.config.feature_dim(),
    );
    let plan = EvalPlan {
        teacher: vec![],
        student: vec![
            tmd_world::eval::StudentRow {
                model: tmd_out.clone(),
                label: None,
                outer_steps: Some(1),
                inner_steps: Some(4),
                decoder: None,
            },
            tmd_world::eval::StudentRow {
                model: dmd_out.clone(),
                label: Some("dmd2-v (KD)".into()),
                outer_steps: None,
                inner_steps: None,
                decoder: None,
            },
        ],
    };
    let rows = tmd_world::eval::evaluate_students(
        &judge,
        &cases,
        &[0, 1],
        &plan,
        &real,
        &device,
        &mut |_| {},
        &mut |_, _| {},
    )
    .unwrap();
    let specs: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.spec.method.as_str(),
                r.spec.outer_steps,
                r.spec.inner_steps,
                r.spec.effective_nfe,
            )
        })
        .collect();
    assert_eq!(specs, vec![("tmd", 1, 4, 4.0), ("dmd2-v (KD)", 1, 0, 1.0)]);

    // KD needs each clip's noise: a cache of real clips is refused, named.
    let err = run_distill::<A>(
        &recipe,
        &teacher_dir,
        &cache_dir,
        &dir.path().join("dmd-run-2"),
        &dir.path().join("dmd-2"),
        "test",
        &device,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("teacher-data"), "{err}");
}
