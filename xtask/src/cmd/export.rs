//! `cargo xtask export`: a model of this project in a format other tools load (`docs/export.md`).
//!
//! - `diffusers`: the teacher or a DMD2-v student as a diffusers `WanTransformer3DModel` folder
//!   (`config.json` + `diffusion_pytorch_model.safetensors`), written by
//!   [`tmd_model::export::export_diffusers_transformer`].
//! - `safetensors`: a student (TMD with its flow-head parts, or DMD2-v) as one safetensors file
//!   and a JSON config, written by [`tmd_flowhead::export_student`].
//! - `lora`: the student's DiT as a LoRA against its teacher: each kept `Linear` weight's delta
//!   `W_student - W_teacher` ([out, in]) factored by SVD into `lora_B` [out, r] and `lora_A`
//!   [r, in] (the best rank-r approximation, `B A`, split as `U sqrt(S)` and `sqrt(S) V^T`),
//!   under diffusers' key names (`transformer.blocks.N.attn1.to_q.lora_A.weight`), with no alpha
//!   (diffusers then scales by 1: `W = W_teacher + B A`). Every module gets the same rank (zero
//!   rows pad a module narrower than r), so any diffusers version reads one scale. The relative
//!   reconstruction error `||delta - B A||_F / ||delta||_F` of every module is printed and written
//!   to `<out>.report.json`, with what the LoRA leaves out (biases, norms, modulation tables,
//!   modules not kept, a TMD student's flow head).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use burn::backend::NdArray;
use burn::tensor::DType;
use nalgebra::DMatrix;
use rayon::prelude::*;
use serde::Serialize;

use crate::common::Dtype;
use tmd_flowhead::{export_student, has_student, load_student, Student};
use tmd_model::dit::{diffusers_export_key_map, WanModel};
use tmd_model::export::{
    export_diffusers_transformer, pytorch_tensors, write_safetensors, NamedTensor,
};
use tmd_model::model_dir::ModelDir;

type B = NdArray<f32>;

/// What `export` writes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// A diffusers `WanTransformer3DModel` folder (teacher or DMD2-v student).
    Diffusers,
    /// A student as safetensors + config.json (TMD with its flow head, or DMD2-v).
    Safetensors,
    /// A LoRA of the student against its teacher (diffusers key names) + a JSON error report.
    Lora,
}

/// Arguments of `export`.
pub struct ExportArgs<'a> {
    /// The model directory.
    pub model: &'a Path,
    /// What to write.
    pub format: ExportFormat,
    /// Where.
    pub out: &'a Path,
    /// Export the teacher even where a student is present (diffusers only).
    pub teacher: bool,
    /// The LoRA's base model directory (default: `model`).
    pub base: Option<&'a Path>,
    /// LoRA rank.
    pub rank: usize,
    /// LoRA module selectors.
    pub modules: &'a [String],
    /// Storage dtype.
    pub dtype: DType,
    /// Diffusers: also write one forward pass of the exported DiT here (inputs and output), for
    /// `scripts/reference/check_export.py`.
    pub io: Option<&'a Path>,
}

/// Arguments of `export` (its help text is the doc comment of `Command::Export`).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model directory (converted or diffusers layout; with `student/` for a student).
    #[arg(long)]
    model: PathBuf,
    /// What to write.
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// Output: a folder (diffusers, safetensors) or a `.safetensors` file (lora).
    #[arg(long)]
    out: PathBuf,
    /// Export the teacher of a directory that also holds a student (diffusers only).
    #[arg(long)]
    teacher: bool,
    /// LoRA: the model directory whose DiT the LoRA is taken against (default: --model's own
    /// teacher).
    #[arg(long)]
    base: Option<PathBuf>,
    /// LoRA rank.
    #[arg(long, default_value_t = 32)]
    rank: usize,
    /// LoRA: kept modules, comma-separated: groups attn, self-attn, cross-attn, ffn, embed,
    /// proj_out, all; or trailing name parts (to_q, attn2.to_k, ffn.net.2, blocks.3.attn1.to_out.0).
    #[arg(long, value_delimiter = ',', default_value = "attn,ffn")]
    modules: Vec<String>,
    /// Storage dtype of the written weights.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    dtype: Dtype,
    /// Diffusers: also write one forward pass (inputs and output) of the DiT to this
    /// safetensors file, for `scripts/reference/check_export.py`.
    #[arg(long)]
    io: Option<PathBuf>,
}

/// Runs `export`.
pub fn run(args: Args) -> Result<()> {
    export(&ExportArgs {
        model: &args.model,
        format: args.format,
        out: &args.out,
        teacher: args.teacher,
        base: args.base.as_deref(),
        rank: args.rank,
        modules: &args.modules,
        dtype: args.dtype.burn(),
        io: args.io.as_deref(),
    })
}

/// Runs `export`.
pub fn export(args: &ExportArgs) -> Result<()> {
    let device = Default::default();
    let dir = ModelDir::open(args.model)
        .with_context(|| format!("opening model directory {}", args.model.display()))?;
    let config = dir.transformer_config()?;
    let student = has_student(args.model);
    ensure!(
        !args.teacher || args.format == ExportFormat::Diffusers,
        "--teacher exports the teacher as a diffusers folder; it goes with --format diffusers only"
    );
    ensure!(
        args.io.is_none() || args.format == ExportFormat::Diffusers,
        "--io writes a forward pass of a diffusers export; it goes with --format diffusers only"
    );
    match args.format {
        ExportFormat::Diffusers => {
            let (dit, what) = if student && !args.teacher {
                match load_student::<B>(args.model, &device)
                    .with_context(|| format!("loading the student of {}", args.model.display()))?
                {
                    (Student::Dmd2V(dit), _) => (dit, "DMD2-v student"),
                    (Student::Tmd(_), _) => bail!(
                        "{} holds a TMD student: its flow head (fusion layer, step embedding) has \
                         no diffusers counterpart. Export it with --format safetensors, as a LoRA \
                         of its DiT with --format lora, or its teacher with --teacher",
                        args.model.display()
                    ),
                }
            } else {
                let dit = dir
                    .load_transformer::<B>(&device)
                    .with_context(|| format!("loading the DiT of {}", args.model.display()))?;
                (dit, "teacher")
            };
            let n = export_diffusers_transformer(&dit, &config, args.dtype, args.out)
                .with_context(|| format!("writing {}", args.out.display()))?;
            println!(
                "wrote {} ({what} as a diffusers WanTransformer3DModel, {n} tensors)",
                args.out.display()
            );
            if let Some(io) = args.io {
                write_forward(&dit, io).with_context(|| format!("writing {}", io.display()))?;
                println!(
                    "wrote {} (one forward pass: x, timestep, context, out)",
                    io.display()
                );
            }
        }
        ExportFormat::Safetensors => {
            ensure!(
                student,
                "{} holds no student (student/config.json); export a teacher with --format diffusers",
                args.model.display()
            );
            let (s, manifest) = load_student::<B>(args.model, &device)
                .with_context(|| format!("loading the student of {}", args.model.display()))?;
            let n = export_student(&s, &config, &manifest, args.dtype, args.out)
                .with_context(|| format!("writing {}", args.out.display()))?;
            println!(
                "wrote {} (student safetensors + config.json, {n} tensors)",
                args.out.display()
            );
        }
        ExportFormat::Lora => {
            ensure!(
                student,
                "{} holds no student (student/config.json): a LoRA is a student's difference \
                 from its teacher",
                args.model.display()
            );
            let (s, _) = load_student::<B>(args.model, &device)
                .with_context(|| format!("loading the student of {}", args.model.display()))?;
            let base_dir = args.base.unwrap_or(args.model);
            let teacher = ModelDir::open(base_dir)
                .and_then(|d| d.load_transformer::<B>(&device))
                .with_context(|| format!("loading the teacher DiT of {}", base_dir.display()))?;
            let (dit, flow_head) = match &s {
                Student::Tmd(t) => (&t.dit, true),
                Student::Dmd2V(d) => (d, false),
            };
            let report = export_lora(dit, &teacher, args.rank, args.modules, args.dtype, args.out)?;
            let report = LoraReport {
                student: args.model.display().to_string(),
                teacher: base_dir.display().to_string(),
                flow_head_left_out: flow_head,
                ..report
            };
            for l in &report.layers {
                println!(
                    "{:<40} {:>5} x {:<5} rank {:>4}  |delta|/|W| {:.3e}  rel error {:.3e}",
                    l.name, l.shape[0], l.shape[1], l.rank, l.rel_delta, l.rel_error
                );
            }
            println!(
                "{} modules, rank {}: rel error of all kept deltas {:.3e} (left out: {} tensors \
                 that differ, |delta| share {:.3e}{})",
                report.layers.len(),
                report.rank,
                report.rel_error,
                report.left_out.len(),
                report.left_out_share,
                if flow_head {
                    "; and the TMD flow head, which a LoRA cannot hold"
                } else {
                    ""
                }
            );
            let path = report_path(args.out);
            let json = serde_json::to_string_pretty(&report).context("serialising the report")?;
            tmd_model::model_dir::write_atomically(&path, json.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {} and {}", args.out.display(), path.display());
        }
    }
    Ok(())
}

/// Runs `dit` once on seeded inputs and writes inputs and output to the safetensors file `path`:
/// `x` `[1, in_channels, 2, 8, 8]`, `timestep` `[1]` (700, in diffusers' 0..1000 scale),
/// `context` `[1, text_len, text_dim]` (8 random rows, then zeros: a padded prompt, which is what
/// diffusers' pipeline feeds), `out` `[1, out_channels, 2, 8, 8]`.
fn write_forward(dit: &WanModel<B>, path: &Path) -> Result<()> {
    use burn::prelude::*;
    use burn::tensor::Distribution;
    let device = Default::default();
    <B as Backend>::seed(&device, 20261206);
    let [pt, ph, pw] = dit.patch_size;
    let n = Distribution::Normal(0.0, 1.0);
    let x = Tensor::<B, 5>::random([1, dit.in_channels, 2 * pt, 8 * ph, 8 * pw], n, &device);
    let t = Tensor::<B, 1>::from_floats([700.0], &device);
    let rows = dit.text_len.min(8);
    let text = Tensor::<B, 3>::random([1, rows, dit.text_dim], n, &device);
    let context = if rows < dit.text_len {
        let pad = Tensor::<B, 3>::zeros([1, dit.text_len - rows, dit.text_dim], &device);
        Tensor::cat(vec![text, pad], 1)
    } else {
        text
    };
    let out = dit.forward(x.clone(), t.clone(), context.clone())?;
    let tensors = [
        NamedTensor::from_data("x", x.into_data()),
        NamedTensor::from_data("timestep", t.into_data()),
        NamedTensor::from_data("context", context.into_data()),
        NamedTensor::from_data("out", out.into_data()),
    ];
    write_safetensors(&tensors, DType::F32, None, path)?;
    Ok(())
}

/// `lora.safetensors` -> `lora.report.json`.
pub fn report_path(out: &Path) -> PathBuf {
    out.with_extension("report.json")
}

/// One LoRA module in the report.
#[derive(Serialize, Debug, Clone)]
pub struct LoraLayer {
    /// Diffusers module name, e.g. `blocks.0.attn1.to_q`.
    pub name: String,
    /// Weight shape `[out, in]`.
    pub shape: [usize; 2],
    /// Rank kept (`min(rank, out, in)`; the file pads to the common rank with zeros).
    pub rank: usize,
    /// `||W_student - W_teacher||_F`.
    pub delta_norm: f64,
    /// `||delta||_F / ||W_teacher||_F`.
    pub rel_delta: f64,
    /// `||delta - B A||_F / ||delta||_F` of the factors as written (0 for an unchanged module).
    pub rel_error: f64,
    /// `sqrt(sum of s_i^2 over i >= rank) / ||delta||_F` from the singular values: what the
    /// best rank-r approximation must leave out (equals `rel_error` up to rounding).
    pub tail_energy: f64,
    /// Singular values of the delta, descending.
    pub singular_values: Vec<f64>,
}

/// A tensor that differs between student and teacher and that the LoRA does not hold.
#[derive(Serialize, Debug, Clone)]
pub struct LeftOut {
    /// Diffusers key.
    pub name: String,
    /// `||delta||_F`.
    pub delta_norm: f64,
    /// `||delta||_F / ||W_teacher||_F`.
    pub rel_delta: f64,
}

/// `<out>.report.json` of a LoRA export.
#[derive(Serialize, Debug, Clone, Default)]
pub struct LoraReport {
    /// The student's model directory.
    pub student: String,
    /// The teacher's model directory.
    pub teacher: String,
    /// The rank asked for.
    pub rank: usize,
    /// The module selectors.
    pub modules: Vec<String>,
    /// `sqrt(sum ||delta - B A||^2) / sqrt(sum ||delta||^2)` over the kept modules.
    pub rel_error: f64,
    /// Kept modules.
    pub layers: Vec<LoraLayer>,
    /// Tensors that differ but are not in the LoRA.
    pub left_out: Vec<LeftOut>,
    /// `sqrt(sum ||delta||^2 of left_out) / sqrt(sum ||delta||^2 of everything)`.
    pub left_out_share: f64,
    /// Whether a TMD flow head (fusion layer, step embedding) was left out.
    pub flow_head_left_out: bool,
}

/// Named groups of `--modules`; any other selector names modules by their trailing name parts.
pub const MODULE_GROUPS: &[(&str, &[&str])] = &[
    (
        "attn",
        &[
            "attn1.to_q",
            "attn1.to_k",
            "attn1.to_v",
            "attn1.to_out.0",
            "attn2.to_q",
            "attn2.to_k",
            "attn2.to_v",
            "attn2.to_out.0",
        ],
    ),
    (
        "self-attn",
        &["attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0"],
    ),
    (
        "cross-attn",
        &["attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0"],
    ),
    ("ffn", &["ffn.net.0.proj", "ffn.net.2"]),
    (
        "embed",
        &[
            "condition_embedder.time_embedder.linear_1",
            "condition_embedder.time_embedder.linear_2",
            "condition_embedder.text_embedder.linear_1",
            "condition_embedder.text_embedder.linear_2",
            "condition_embedder.time_proj",
        ],
    ),
    ("proj_out", &["proj_out"]),
];

/// Whether the module `name` (e.g. `blocks.3.attn1.to_q`) ends with the dotted parts `suffix`.
fn ends_with_parts(name: &str, suffix: &str) -> bool {
    name == suffix || name.ends_with(&format!(".{suffix}"))
}

/// Whether the selector `sel` keeps the `Linear` module `name`: a group of [`MODULE_GROUPS`],
/// `all`, or trailing name parts (`to_q`, `attn2.to_k`, `blocks.3.ffn.net.2`).
pub fn selects(sel: &str, name: &str) -> bool {
    if sel == "all" {
        return true;
    }
    match MODULE_GROUPS.iter().find(|(g, _)| *g == sel) {
        Some((_, members)) => members.iter().any(|m| ends_with_parts(name, m)),
        None => ends_with_parts(name, sel),
    }
}

/// The best rank-`rank` factors of a matrix and how well they reconstruct it.
#[derive(Debug, Clone)]
pub struct Factors {
    /// `lora_B`, `[out, rank]` row-major (zero columns past `min(out, in)`).
    pub b: Vec<f32>,
    /// `lora_A`, `[rank, in]` row-major (zero rows past `min(out, in)`).
    pub a: Vec<f32>,
    /// Rank kept, `min(rank, out, in)`.
    pub kept: usize,
    /// Singular values, descending.
    pub singular_values: Vec<f64>,
    /// `||delta||_F`.
    pub norm: f64,
    /// `||delta - B A||_F / ||delta||_F` of the f32 factors (0 when delta is 0).
    pub rel_error: f64,
    /// `sqrt(sum_{i >= kept} s_i^2) / ||delta||_F` (0 when delta is 0).
    pub tail_energy: f64,
}

/// Factors `delta` (`[out, inp]`, row-major) by SVD: `B = U_r sqrt(S_r)`, `A = sqrt(S_r) V_r^T`,
/// padded with zeros to `rank` when the matrix is narrower.
pub fn factorize(delta: &[f32], out: usize, inp: usize, rank: usize) -> Factors {
    let m = DMatrix::<f64>::from_fn(out, inp, |r, c| delta[r * inp + c] as f64);
    let norm = m.norm();
    let svd = m.clone().svd(true, true);
    let (u, v_t) = (
        svd.u.expect("SVD computed U"),
        svd.v_t.expect("SVD computed V^T"),
    );
    let s: Vec<f64> = svd.singular_values.iter().copied().collect();
    let kept = rank.min(s.len());
    let mut b = vec![0f32; out * rank];
    let mut a = vec![0f32; rank * inp];
    for k in 0..kept {
        let root = s[k].sqrt();
        for r in 0..out {
            b[r * rank + k] = (u[(r, k)] * root) as f32;
        }
        for c in 0..inp {
            a[k * inp + c] = (v_t[(k, c)] * root) as f32;
        }
    }
    let ba = DMatrix::<f64>::from_fn(out, rank, |r, k| b[r * rank + k] as f64)
        * DMatrix::<f64>::from_fn(rank, inp, |k, c| a[k * inp + c] as f64);
    let (rel_error, tail_energy) = if norm > 0.0 {
        let tail: f64 = s[kept..].iter().map(|x| x * x).sum();
        ((m - ba).norm() / norm, tail.sqrt() / norm)
    } else {
        (0.0, 0.0)
    };
    Factors {
        b,
        a,
        kept,
        singular_values: s,
        norm,
        rel_error,
        tail_energy,
    }
}

fn read_f32(t: &NamedTensor) -> Result<Vec<f32>> {
    t.read()?
        .convert_dtype(DType::F32)
        .into_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{}: {e:?}", t.name))
}

fn frobenius(v: &[f32]) -> f64 {
    v.iter()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt()
}

/// Writes the LoRA of `student` against `teacher` (same architecture) to `out` and returns its
/// report (without the directory names).
pub fn export_lora(
    student: &WanModel<B>,
    teacher: &WanModel<B>,
    rank: usize,
    selectors: &[String],
    dtype: DType,
    out: &Path,
) -> Result<LoraReport> {
    ensure!(rank > 0, "--rank must be positive");
    ensure!(!selectors.is_empty(), "--modules lists no module");
    let map = diffusers_export_key_map();
    let s_tensors = pytorch_tensors(student, &map, "student DiT")?;
    let t_tensors: BTreeMap<String, NamedTensor> = pytorch_tensors(teacher, &map, "teacher DiT")?
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    let is_linear = |t: &NamedTensor| t.shape.len() == 2 && t.name.ends_with(".weight");
    for sel in selectors {
        ensure!(
            s_tensors
                .iter()
                .any(|t| is_linear(t) && selects(sel, t.name.trim_end_matches(".weight"))),
            "--modules: '{sel}' selects no Linear module of the DiT (groups: all, {}; or trailing \
             name parts such as to_q, attn2.to_k, ffn.net.2, blocks.3.attn1.to_out.0)",
            MODULE_GROUPS
                .iter()
                .map(|g| g.0)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    struct Job {
        name: String,
        shape: [usize; 2],
        delta: Vec<f32>,
        base_norm: f64,
    }
    let mut jobs = Vec::new();
    let mut left_out = Vec::new();
    let (mut kept_sq, mut all_sq) = (0f64, 0f64);
    for st in &s_tensors {
        let tt = t_tensors.get(&st.name).with_context(|| {
            format!(
                "the teacher has no tensor '{}' (another architecture?)",
                st.name
            )
        })?;
        ensure!(
            st.shape == tt.shape,
            "'{}': student shape {:?}, teacher shape {:?}",
            st.name,
            st.shape,
            tt.shape
        );
        let (sv, tv) = (read_f32(st)?, read_f32(tt)?);
        let delta: Vec<f32> = sv.iter().zip(&tv).map(|(s, t)| s - t).collect();
        let (dn, bn) = (frobenius(&delta), frobenius(&tv));
        all_sq += dn * dn;
        let module = st.name.trim_end_matches(".weight");
        if is_linear(st) && selectors.iter().any(|sel| selects(sel, module)) {
            kept_sq += dn * dn;
            jobs.push(Job {
                name: module.to_string(),
                shape: [st.shape[0], st.shape[1]],
                delta,
                base_norm: bn,
            });
        } else if dn > 0.0 {
            left_out.push(LeftOut {
                name: st.name.clone(),
                delta_norm: dn,
                rel_delta: if bn > 0.0 { dn / bn } else { f64::INFINITY },
            });
        }
    }
    let factored: Vec<(Job, Factors)> = jobs
        .into_par_iter()
        .map(|job| {
            let f = factorize(&job.delta, job.shape[0], job.shape[1], rank);
            (job, f)
        })
        .collect();
    let mut tensors = Vec::new();
    let mut layers = Vec::new();
    let mut err_sq = 0f64;
    for (job, f) in factored {
        let [o, i] = job.shape;
        err_sq += (f.rel_error * f.norm).powi(2);
        tensors.push(NamedTensor::from_data(
            format!("transformer.{}.lora_A.weight", job.name),
            burn::tensor::TensorData::new(f.a, [rank, i]),
        ));
        tensors.push(NamedTensor::from_data(
            format!("transformer.{}.lora_B.weight", job.name),
            burn::tensor::TensorData::new(f.b, [o, rank]),
        ));
        layers.push(LoraLayer {
            name: job.name,
            shape: job.shape,
            rank: f.kept,
            delta_norm: f.norm,
            rel_delta: if job.base_norm > 0.0 {
                f.norm / job.base_norm
            } else {
                f64::INFINITY
            },
            rel_error: f.rel_error,
            tail_energy: f.tail_energy,
            singular_values: f.singular_values,
        });
    }
    write_safetensors(&tensors, dtype, None, out)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(LoraReport {
        rank,
        modules: selectors.to_vec(),
        rel_error: if kept_sq > 0.0 {
            (err_sq / kept_sq).sqrt()
        } else {
            0.0
        },
        layers,
        left_out,
        left_out_share: if all_sq > 0.0 {
            ((all_sq - kept_sq).max(0.0) / all_sq).sqrt()
        } else {
            0.0
        },
        ..LoraReport::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random matrix.
    fn noise(rows: usize, cols: usize, seed: u64) -> DMatrix<f64> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        DMatrix::from_fn(rows, cols, |_, _| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        })
    }

    /// `U diag(s) V^T` with random orthonormal `U` [out, k] and `V` [inp, k]: singular values `s`.
    fn with_singular_values(out: usize, inp: usize, s: &[f64]) -> Vec<f32> {
        let k = s.len();
        let u = noise(out, k, 1).qr().q();
        let v = noise(inp, k, 2).qr().q();
        let m =
            u * DMatrix::from_diagonal(&nalgebra::DVector::from_column_slice(s)) * v.transpose();
        (0..out)
            .flat_map(|r| (0..inp).map(move |c| (r, c)))
            .map(|(r, c)| m[(r, c)] as f32)
            .collect()
    }

    #[test]
    fn the_error_at_rank_r_is_the_energy_of_the_tail_singular_values() {
        let s = [3.0, 2.0, 1.0, 0.5, 0.25];
        let delta = with_singular_values(7, 5, &s);
        let total: f64 = s.iter().map(|x| x * x).sum();
        for r in 1..=5 {
            let f = factorize(&delta, 7, 5, r);
            for (got, want) in f.singular_values.iter().zip(s) {
                assert!((got - want).abs() < 1e-5, "{:?}", f.singular_values);
            }
            let tail: f64 = s[r..].iter().map(|x| x * x).sum();
            let want = (tail / total).sqrt();
            assert!(
                (f.rel_error - want).abs() < 1e-5,
                "rank {r}: {} vs {want}",
                f.rel_error
            );
            assert!((f.tail_energy - want).abs() < 1e-6);
            assert_eq!((f.b.len(), f.a.len(), f.kept), (7 * r, r * 5, r));
        }
        // Full rank reconstructs to f32 rounding.
        assert!(factorize(&delta, 7, 5, 5).rel_error < 1e-6);
        // A rank above min(out, in) pads with zeros: same product.
        let f = factorize(&delta, 7, 5, 8);
        assert_eq!((f.kept, f.a.len(), f.b.len()), (5, 8 * 5, 7 * 8));
        assert!(f.a[5 * 5..].iter().all(|&x| x == 0.0));
        assert!(f.rel_error < 1e-6);
        // An unchanged module: zero factors, zero error.
        let z = factorize(&[0.0; 12], 3, 4, 2);
        assert!(z.a.iter().chain(&z.b).all(|&x| x == 0.0));
        assert_eq!((z.rel_error, z.tail_energy), (0.0, 0.0));
    }

    #[test]
    fn module_selectors() {
        assert!(selects("attn", "blocks.0.attn1.to_q"));
        assert!(selects("attn", "blocks.11.attn2.to_out.0"));
        assert!(!selects("attn", "blocks.0.ffn.net.2"));
        assert!(selects("ffn", "blocks.0.ffn.net.0.proj"));
        assert!(!selects("self-attn", "blocks.0.attn2.to_q"));
        assert!(selects("to_q", "blocks.3.attn2.to_q"));
        assert!(selects("attn2.to_k", "blocks.3.attn2.to_k"));
        assert!(!selects("to_k", "blocks.3.attn2.to_q"));
        assert!(!selects("net.2", "blocks.3.ffn.net.0.proj"));
        assert!(selects("blocks.3.ffn.net.2", "blocks.3.ffn.net.2"));
        assert!(!selects("blocks.3.ffn.net.2", "blocks.13.ffn.net.2"));
        assert!(selects("embed", "condition_embedder.time_proj"));
        assert!(selects("all", "proj_out"));
    }
}
