//! What several xtask commands share: the storage dtype and backend flags, running a body on the
//! chosen backend ([`on_backend!`]), and the command line as provenance.

/// Storage dtype of converted weights.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Dtype {
    /// 32-bit float (exact copy of an f32 checkpoint).
    F32,
    /// bfloat16 (half the size; what the GPU runs in).
    Bf16,
    /// IEEE half (half the size, 3 more mantissa bits than bf16; how the bundled model is stored).
    F16,
}

impl Dtype {
    pub fn burn(self) -> burn::tensor::DType {
        match self {
            Dtype::F32 => burn::tensor::DType::F32,
            Dtype::Bf16 => burn::tensor::DType::BF16,
            Dtype::F16 => burn::tensor::DType::F16,
        }
    }
}

/// Compute backend of the training commands.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// CPU (burn NdArray).
    Cpu,
    /// NVIDIA GPU (burn CUDA).
    Cuda,
    /// CPU through LibTorch (burn's `tch` backend; a build with `--features tch` linked against
    /// a PyTorch install, see the README). Training only: its native convolutions make the VAE
    /// stage several times faster than NdArray's per-tap path.
    TorchCpu,
    /// NVIDIA GPU through LibTorch (cuDNN convolutions, no kernel compilation before the first step).
    TorchCuda,
}

impl DeviceKind {
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
            DeviceKind::TorchCpu => "torch-cpu",
            DeviceKind::TorchCuda => "torch-cuda",
        }
    }
}

/// Evaluates `$body` with the type `$B` bound to the backend `$device` names (NdArray, CUDA or
/// LibTorch) and `$dev` to its device; on CUDA, first checks that a driver and a device are
/// there, and in builds without the backend's feature says how to rebuild.
macro_rules! on_backend {
    ($device:expr, $B:ident, $dev:ident => $body:expr) => {
        on_backend!($device, $B, ranks device_of => {
            let $dev = device_of(0);
            $body
        })
    };
    // `$dev_of(r)`: the device of data-parallel rank r (GPU r; the CPU for every rank).
    ($device:expr, $B:ident, ranks $dev_of:ident => $body:expr) => {
        match $device {
            $crate::common::DeviceKind::Cpu => {
                type $B = burn::backend::NdArray;
                let $dev_of = |_: usize| -> burn::tensor::Device<$B> { Default::default() };
                $body
            }
            $crate::common::DeviceKind::Cuda => {
                tmd_sampler::device::check_cuda(0)?;
                #[cfg(feature = "cuda")]
                {
                    type $B = burn::backend::Cuda;
                    let $dev_of = |r: usize| -> burn::tensor::Device<$B> {
                        burn::backend::cuda::CudaDevice::new(r)
                    };
                    $body
                }
                #[cfg(not(feature = "cuda"))]
                anyhow::bail!(
                    "this xtask was built without CUDA: rebuild with `cargo build --release -p xtask --features cuda`"
                )
            }
            $crate::common::DeviceKind::TorchCpu | $crate::common::DeviceKind::TorchCuda => {
                #[cfg(feature = "tch")]
                {
                    // LibTorch's own convolutions (oneDNN / cuDNN) beat the per-tap matmuls
                    // (measured: 0.30 against 1.44 s per VAE step on 2 CPU cores).
                    if std::env::var_os("TMD_CONV").is_none() {
                        std::env::set_var("TMD_CONV", "native");
                    }
                    type $B = burn::backend::LibTorch;
                    let cuda = $device == $crate::common::DeviceKind::TorchCuda;
                    let $dev_of = |r: usize| -> burn::tensor::Device<$B> {
                        if cuda {
                            burn::backend::libtorch::LibTorchDevice::Cuda(r)
                        } else {
                            burn::backend::libtorch::LibTorchDevice::Cpu
                        }
                    };
                    $body
                }
                #[cfg(not(feature = "tch"))]
                anyhow::bail!(
                    "this xtask was built without LibTorch: rebuild with `cargo build --release -p xtask --features tch` (see the README's LibTorch section)"
                )
            }
        }
    };
}

/// The command line as run (`cargo xtask <args>`), stored as the provenance of what it writes;
/// arguments are quoted as a POSIX shell reads them ([`command_line`]).
pub fn invocation() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("`cargo xtask {}`", command_line(&args))
}

/// `args` joined into one line that a POSIX shell splits back into the same arguments: an
/// argument with a space, quote or other shell character is single-quoted (`--names 'outer
/// shift 2'`), a plain one is written as it is.
pub fn command_line(args: &[String]) -> String {
    let quote = |a: &String| {
        let plain = !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-./=:,@%+".contains(c));
        if plain {
            a.clone()
        } else {
            format!("'{}'", a.replace('\'', r"'\''"))
        }
    };
    args.iter().map(quote).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::command_line;

    #[test]
    fn command_lines_split_back_into_the_same_arguments() {
        let args: Vec<String> = [
            "eval-merge",
            "--names",
            "outer shift 2",
            "it's",
            "",
            "--set",
            "train.outer_shift=2",
            "runs/a-b_c.json",
        ]
        .map(String::from)
        .to_vec();
        let line = command_line(&args);
        assert_eq!(
            line,
            r"eval-merge --names 'outer shift 2' 'it'\''s' '' --set train.outer_shift=2 runs/a-b_c.json"
        );
        // What a POSIX shell makes of it.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("for a in {line}; do printf '%s\\n' \"$a\"; done"))
            .output()
            .unwrap();
        let back: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(back, args);
    }
}
