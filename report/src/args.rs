//! The flag groups that the `dinonat` command line and its benchmarks (`dinonat bench`) share:
//! where the work runs ([`DeviceArg`]), at what GEMM precision ([`PrecisionArgs`]), and how a
//! library error's parameter names become the flags a person typed ([`param_flags`]).

use clap::{Args, ValueEnum};
use dinonat_engine::Device;
use dinonat_model::Nat;
use dinonat_train::trainer::config::Precision;

/// `--device cpu|cuda`: where the network runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    #[default]
    Cpu,
    Cuda,
}

impl DeviceArg {
    pub fn device(self) -> Device {
        match self {
            DeviceArg::Cpu => Device::Cpu,
            DeviceArg::Cuda => Device::Cuda(0),
        }
    }

    /// `nat` on this device: its parameters copied there (f32 only). Without a GPU, `cuda` gives
    /// "no CUDA device: use --device cpu (...)".
    pub fn place(self, nat: Nat) -> Result<Nat, String> {
        match self {
            DeviceArg::Cpu => Ok(nat),
            DeviceArg::Cuda => {
                let dev = self.device();
                // The GPU first, so that its absence is the error even for an f64 model.
                dinonat_engine::Tensor::zeros(&[1], dinonat_engine::DType::F32)
                    .to(dev)
                    .map_err(|e| device_error(&e.to_string()))?;
                nat.to_device(dev).map_err(|e| e.to_string())
            }
        }
    }
}

/// The engine's error without a GPU, reworded to lead with the fix.
pub fn device_error(engine: &str) -> String {
    match engine.find("no CUDA device") {
        Some(at) => engine[at..].to_string(),
        None => engine.to_string(),
    }
}

/// `--precision f32|bf16|tf32`: the precision of the GEMMs (matmul, linear, convolution), forward
/// and backward; parameters, optimiser state and checkpoints stay f32.
#[derive(Args, Clone, Copy, Debug, Default)]
pub struct PrecisionArgs {
    /// GEMM precision: f32 (FP32 FMA), bf16 (bf16 inputs, f32 accumulation) or tf32 (tensor
    /// cores; --device cuda only). Parameters and checkpoints stay f32.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    #[default]
    F32,
    Bf16,
    Tf32,
}

impl PrecisionArgs {
    /// The library's precision for work on `device` (None: a command without --device, the CPU).
    pub fn resolve(self, device: Option<DeviceArg>) -> Result<Precision, String> {
        match (self.precision, device) {
            (PrecisionArg::F32, _) => Ok(Precision::F32),
            (PrecisionArg::Bf16, _) => Ok(Precision::Bf16),
            (PrecisionArg::Tf32, Some(DeviceArg::Cuda)) => Ok(Precision::Tf32),
            (PrecisionArg::Tf32, _) => Err(
                "--precision tf32: TF32 is a tensor-core format of the GPU; it needs --device cuda \
                 (on the CPU use --precision f32 or bf16)"
                    .into(),
            ),
        }
    }
}

/// `message` of a library error with its parameter names as the command's flags (`(param, flag)`
/// pairs): a parameter that opens the message, and every parameter whose name holds an underscore
/// (with `everywhere`, every parameter) wherever it stands as a whole word outside a path (where
/// plain words such as `seed` are also prose, leave `everywhere` off).
pub fn param_flags(message: impl ToString, names: &[(&str, &str)], everywhere: bool) -> String {
    let mut m = message.to_string();
    let word_end = |s: &str, at: usize| {
        !s[at..]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || "_/\\.".contains(c))
    };
    if let Some((p, f)) = names
        .iter()
        .find(|(p, _)| m.starts_with(p) && word_end(&m, p.len()))
    {
        m = format!("{f}{}", &m[p.len()..]);
    }
    for (p, f) in names.iter().filter(|(p, _)| everywhere || p.contains('_')) {
        let mut out = String::new();
        let mut rest = m.as_str();
        while let Some(at) = rest.find(p) {
            let before = rest[..at].chars().next_back();
            let whole = !before.is_some_and(|c| c.is_alphanumeric() || "_-/\\.".contains(c))
                && word_end(rest, at + p.len());
            out += &rest[..at];
            out += if whole { f } else { p };
            rest = &rest[at + p.len()..];
        }
        m = out + rest;
    }
    m
}

/// The parameters of a training run (`TrainConfig`, `run_policy`, `knn_splits`) as the flags of
/// `dinonat train` and `dinonat bench train-step`.
pub const TRAIN_FLAGS: &[(&str, &str)] = &[
    ("arch", "--arch"),
    ("data", "--data"),
    ("seed", "--seed"),
    ("steps", "--steps"),
    ("epochs", "--epochs"),
    ("batch_size", "--batch-size"),
    ("max_minutes", "--max-minutes"),
    ("out_dim", "--out-dim"),
    ("head_hidden_dim", "--head-hidden"),
    ("head_bottleneck_dim", "--head-bottleneck"),
    ("global_size", "--global-size"),
    ("local_size", "--local-size"),
    ("n_local", "--local-crops"),
    ("procedural_len", "--procedural-len"),
    ("procedural_size", "--procedural-size"),
    ("base_lr", "--lr"),
    ("teacher_temp", "--teacher-temp"),
    ("drop_path", "--drop-path"),
    ("koleo", "--koleo"),
    ("dino_weight", "--dino-weight"),
    ("momentum_teacher", "--momentum-teacher"),
    ("momentum_teacher_end", "--momentum-teacher-end"),
    ("lr_end", "--lr-end"),
    ("hue", "--hue"),
    ("grayscale", "--grayscale"),
    ("invert", "--invert"),
    ("clip_grad", "--clip-grad"),
    ("lr_warmup", "--lr-warmup"),
    ("temp_warmup", "--temp-warmup"),
    ("freeze_last_layer", "--freeze-last-layer"),
    ("eval_train", "--eval-train"),
    ("eval_val", "--eval-val"),
    ("eval_size", "--eval-size"),
    ("eval_builtin", "--eval-builtin"),
    ("init", "--init"),
];

/// A training error with its parameters named as flags.
pub fn train_flagged(e: impl ToString) -> String {
    param_flags(e, TRAIN_FLAGS, false)
}
