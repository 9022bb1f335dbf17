//! LibTorch (burn's tch backend, which `xtask --features tch` trains and checks with) against
//! NdArray on the same model directory and seed: a whole teacher sample (umT5, DiT with CFG, Wan
//! VAE decode) must come out the same.
//!
//! burn-tch 0.21 runs some operations in place when it believes a tensor's memory is unshared,
//! and its `swap_dims` / `permute` views are not tracked as shared: a model that keeps a tensor
//! alive while an in-place op runs on a transposed view of it silently computes something else,
//! in inference only (autodiff holds extra references). That broke the VAE's attention block once
//! (benches/NOTES.md, 2026-11-27). This test guards every inference path of the teacher.
//!
//! Needs LibTorch, so it only builds with the `tch` feature (CI has no LibTorch):
//! `LIBTORCH_USE_PYTORCH=1 cargo test -p xtask --features tch --test libtorch` (see the README's
//! LibTorch section for the environment).
#![cfg(feature = "tch")]

use burn::backend::libtorch::LibTorchDevice;
use burn::backend::{LibTorch, NdArray};
use tmd_sampler::{SampleOptions, Sampler};

#[test]
fn libtorch_samples_what_ndarray_samples() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/tiny-random");
    let options = SampleOptions {
        seed: 3,
        steps: Some(4),
        frames: Some(9),
        ..SampleOptions::default()
    };
    let prompt = "a red circle moves to the left";
    let reference = Sampler::<NdArray>::load(dir, &Default::default())
        .unwrap()
        .generate(prompt, &options)
        .unwrap();
    let torch = Sampler::<LibTorch>::load(dir, &LibTorchDevice::Cpu)
        .unwrap()
        .generate(prompt, &options)
        .unwrap();
    assert_eq!(torch.frames.len(), reference.frames.len());
    let (mut sum, mut max, mut n) = (0u64, 0u8, 0u64);
    for (a, b) in torch.frames.iter().zip(&reference.frames) {
        for (x, y) in a.iter().zip(b) {
            let d = x.abs_diff(*y);
            sum += u64::from(d);
            max = max.max(d);
            n += 1;
        }
    }
    let mean = sum as f64 / n as f64;
    // Rounding to 8 bits may flip a pixel by one level; anything more is a different computation.
    assert!(
        mean < 0.05 && max <= 2,
        "LibTorch and NdArray samples differ: mean {mean:.3} levels, max {max}"
    );
}

/// Every parameter's gradient of one flow-matching loss, by dotted path.
struct GradCollector<'a, B: burn::tensor::backend::AutodiffBackend> {
    grads: &'a <B as burn::tensor::backend::AutodiffBackend>::Gradients,
    stack: Vec<String>,
    out: Vec<(String, Vec<f32>)>,
}

impl<B: burn::tensor::backend::AutodiffBackend> burn::module::ModuleVisitor<B>
    for GradCollector<'_, B>
{
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.stack.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }
    fn visit_float<const D: usize>(
        &mut self,
        param: &burn::module::Param<burn::tensor::Tensor<B, D>>,
    ) {
        let grad = param.val().grad(self.grads).map_or_else(Vec::new, |g| {
            g.into_data().convert::<f32>().into_vec::<f32>().unwrap()
        });
        self.out.push((self.stack.join("."), grad));
    }
}

/// The bundled teacher's DiT shape, its loss and every gradient on backend `B`, from weights and
/// inputs fixed on NdArray; the weights are written to `file` on the first call and read back from
/// it on every call.
fn dit_loss_and_grads<B: burn::tensor::backend::AutodiffBackend>(
    file: &std::path::Path,
    device: &B::Device,
) -> (f32, Vec<(String, Vec<f32>)>) {
    use burn::module::Module;
    use burn::tensor::{Tensor, TensorData};
    use tmd_model::weights::{load_module, save_burnpack, KeyMap, WeightSource};
    use tmd_world::pretrain::flow_matching_loss;
    type N = NdArray;
    let recipe = tmd_world::pretrain::teacher::TeacherRecipe::default();
    let config = recipe.dit_config();
    if !file.exists() {
        <N as burn::tensor::backend::Backend>::seed(&Default::default(), 77);
        save_burnpack::<N, _>(&config.init::<N>(&Default::default()), file).unwrap();
    }
    let source = WeightSource::open_files(&[file.to_path_buf()]).unwrap();
    let model = load_module::<B, _>(
        config.init::<B>(device),
        &source,
        &KeyMap::identity(),
        &[],
        "dit",
    )
    .unwrap();
    let fixed = |shape: Vec<usize>, seed: u64| {
        let t = tmd_sampler::noise::gaussian::<N, 3>(
            [1, 1, shape.iter().product()],
            seed,
            &Default::default(),
        );
        TensorData::new(
            t.into_data().convert::<f32>().into_vec::<f32>().unwrap(),
            shape,
        )
    };
    let latent = vec![2, recipe.vae.z_dim, 5, 16, 16];
    let x0 = Tensor::<B, 5>::from_data(fixed(latent.clone(), 1), device);
    let noise = Tensor::<B, 5>::from_data(fixed(latent, 2), device);
    let context =
        Tensor::<B, 3>::from_data(fixed(vec![2, config.text_len, config.text_dim], 3), device);
    let t = Tensor::<B, 1>::from_data(TensorData::new(vec![0.3f32, 0.8], [2]), device);
    let loss = flow_matching_loss(&model, x0, context, t, noise).unwrap();
    let value: f32 = burn::tensor::ElementConversion::elem(loss.clone().into_scalar());
    let grads = loss.backward();
    let mut collector = GradCollector::<B> {
        grads: &grads,
        stack: Vec::new(),
        out: Vec::new(),
    };
    model.visit(&mut collector);
    (value, collector.out)
}

#[test]
fn libtorch_trains_the_dit_with_ndarray_gradients() {
    use burn::backend::Autodiff;
    let dir = tempfile::Builder::new()
        .prefix("tmd-libtorch-dit-")
        .tempdir()
        .unwrap();
    let file = dir.path().join("dit.bpk");
    let (want_loss, want) = dit_loss_and_grads::<Autodiff<NdArray>>(&file, &Default::default());
    let (loss, got) = dit_loss_and_grads::<Autodiff<LibTorch>>(&file, &LibTorchDevice::Cpu);
    assert!(
        (loss - want_loss).abs() < 1e-4 * want_loss.abs(),
        "loss {loss} against {want_loss}"
    );
    assert_eq!(got.len(), want.len());
    let mut worst = (0f32, String::new());
    for ((path, g), (_, w)) in got.iter().zip(&want) {
        assert_eq!(g.len(), w.len(), "{path}");
        let norm = w.iter().map(|x| x * x).sum::<f32>().sqrt();
        let diff = g
            .iter()
            .zip(w)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
            .sqrt();
        let rel = diff / norm.max(1e-12);
        println!("{path}: |grad| {norm:.3e}, relative difference {rel:.2e}");
        if rel > worst.0 {
            worst = (rel, path.clone());
        }
    }
    assert!(
        worst.0 < 1e-3,
        "gradient of {} differs by {:.2e}",
        worst.1,
        worst.0
    );
}

/// The DiT forward on LibTorch, where `tmd_model::fused` replaces the elementwise chains (GELU,
/// norms, modulation, gated residuals, bias, RoPE) with single PyTorch kernels, against NdArray's
/// plain burn composition: in f32, and under the bf16-matmul policy (native bf16 on LibTorch,
/// host-emulated rounding on NdArray; the fused bias rounds once instead of twice).
#[test]
fn the_fused_libtorch_dit_matches_ndarray() {
    use burn::prelude::*;
    use tmd_model::dit::Precision;
    use tmd_model::model_dir::ModelDir;

    let dir = ModelDir::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../assets/tiny-random"
    ))
    .unwrap();
    // Deterministic inputs: x [1, 4, 3, 8, 8] (48 tokens), text [1, 16, 32].
    let values = |n: usize, seed: u64| -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
            })
            .collect()
    };
    fn run<B: Backend>(
        dir: &ModelDir,
        device: &B::Device,
        precision: Precision,
        x: &[f32],
        ctx: &[f32],
    ) -> Vec<f32> {
        let model = dir
            .load_transformer::<B>(device)
            .unwrap()
            .with_precision(precision);
        let x = Tensor::<B, 5>::from_data(TensorData::new(x.to_vec(), [1, 4, 3, 8, 8]), device);
        let ctx = Tensor::<B, 3>::from_data(TensorData::new(ctx.to_vec(), [1, 16, 32]), device);
        let t = Tensor::<B, 1>::from_floats([500.0], device);
        model
            .forward(x, t, ctx)
            .unwrap()
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap()
    }
    let (x, ctx) = (values(4 * 3 * 8 * 8, 1), values(16 * 32, 2));
    for (precision, tol) in [(Precision::F32, 1e-5), (Precision::Bf16Matmul, 2e-2)] {
        let a = run::<LibTorch>(&dir, &LibTorchDevice::Cpu, precision, &x, &ctx);
        let b = run::<NdArray>(&dir, &Default::default(), precision, &x, &ctx);
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = a
            .iter()
            .zip(&b)
            .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        println!(
            "{precision:?}: max |diff| {diff:.3e}, max |ref| {scale:.3e}, rel {:.3e}",
            diff / scale
        );
        assert!(
            diff / scale <= tol,
            "{precision:?}: LibTorch DiT differs from NdArray by {:.3e} relative",
            diff / scale
        );
    }
}

/// The VAE decode and the umT5 encoder on LibTorch (PyTorch's convolutions, the fused channel
/// norm, SiLU and GELU) against NdArray, in f32; and in bf16 (LibTorch only: NdArray has none),
/// which must stay within bf16's rounding of the f32 result and keep the output's dtype.
#[test]
fn libtorch_vae_and_umt5_match_ndarray_in_f32_and_bf16() {
    use burn::prelude::*;
    use burn::tensor::DType;
    use tmd_model::model_dir::ModelDir;

    let dir = ModelDir::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../assets/tiny-random"
    ))
    .unwrap();
    let values = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect()
    };
    fn decode<B: Backend>(dir: &ModelDir, device: &B::Device, dtype: DType, z: &[f32]) -> Vec<f32> {
        let vae = dir.load_vae::<B>(device).unwrap().with_dtype(dtype);
        let z = Tensor::<B, 5>::from_data(TensorData::new(z.to_vec(), [1, 4, 3, 4, 4]), device);
        let out = vae.decode(z).unwrap();
        assert_eq!(out.dtype(), DType::F32, "decode returns its input's dtype");
        out.into_data().convert::<f32>().to_vec().unwrap()
    }
    fn encode<B: Backend>(dir: &ModelDir, device: &B::Device, dtype: DType) -> Vec<f32> {
        let text = dir
            .load_text_encoder::<B>(device)
            .unwrap()
            .with_dtype(dtype);
        let out = text.encode(&["a red circle moves to the left"]).unwrap();
        assert_eq!(
            out.dtype(),
            DType::F32,
            "the context is f32 whatever the encoder's dtype"
        );
        out.into_data().convert::<f32>().to_vec().unwrap()
    }
    let rel = |a: &[f32], b: &[f32]| -> f32 {
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        a.iter().zip(b).fold(0f32, |m, (p, q)| m.max((p - q).abs())) / scale
    };
    let z = values(4 * 3 * 4 * 4);
    let reference = decode::<NdArray>(&dir, &Default::default(), DType::F32, &z);
    let f32_torch = decode::<LibTorch>(&dir, &LibTorchDevice::Cpu, DType::F32, &z);
    let bf16_torch = decode::<LibTorch>(&dir, &LibTorchDevice::Cpu, DType::BF16, &z);
    println!(
        "VAE: f32 rel {:.3e}, bf16 rel {:.3e}",
        rel(&f32_torch, &reference),
        rel(&bf16_torch, &reference)
    );
    assert!(rel(&f32_torch, &reference) < 1e-4);
    assert!(rel(&bf16_torch, &reference) < 5e-2);
    assert!(rel(&bf16_torch, &reference) > 0.0, "bf16 ran in f32");

    let reference = encode::<NdArray>(&dir, &Default::default(), DType::F32);
    let f32_torch = encode::<LibTorch>(&dir, &LibTorchDevice::Cpu, DType::F32);
    let bf16_torch = encode::<LibTorch>(&dir, &LibTorchDevice::Cpu, DType::BF16);
    println!(
        "umT5: f32 rel {:.3e}, bf16 rel {:.3e}",
        rel(&f32_torch, &reference),
        rel(&bf16_torch, &reference)
    );
    assert!(rel(&f32_torch, &reference) < 1e-4);
    assert!(rel(&bf16_torch, &reference) < 5e-2);
    assert!(rel(&bf16_torch, &reference) > 0.0, "bf16 ran in f32");
}
