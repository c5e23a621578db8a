//! `dinonat embed`: a folder of images -> embeddings (safetensors tensor `embeddings`, [N, F]) and
//! a CSV of the paths in row order (sorted by path). Also the weight flags every curation command
//! shares.

use clap::{Args, ValueEnum};
use dinonat_engine::Device;
use dinonat_eval::backbone::{BackboneSource, Param};
use dinonat_eval::curate::embed::{csv_beside, embed_paths, write_embeddings};
use dinonat_eval::curate::list_images;
use dinonat_model::Nat;
use dinonat_train::guard::{check_outputs, Named};
use std::path::PathBuf;

/// Where the backbone comes from: --checkpoint FILE, --weights FILE [--arch NAME] or
/// --random-init [--arch NAME].
#[derive(Args, Clone, Debug)]
pub struct WeightArgs {
    /// Backbone weights (safetensors with the reference NAT names; DINO's `backbone.` prefix is
    /// stripped, `head.*` ignored).
    #[arg(long, value_name = "FILE", conflicts_with = "random_init")]
    pub weights: Option<PathBuf>,
    /// Architecture (nat_mini, nat_tiny, nat_small, nat_base, nat_nano, nat_pico; dinat_ prefix,
    /// _full suffix). Default: the file's `arch` metadata (--weights), the training config
    /// (--checkpoint), nat_mini (--random-init).
    #[arg(long, value_name = "NAME")]
    pub arch: Option<String>,
    /// A DINO training checkpoint (`dinonat train`): its teacher backbone is used.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["weights", "random_init"])]
    pub checkpoint: Option<PathBuf>,
    /// Fresh NAT initialisation (an untrained baseline).
    #[arg(long)]
    pub random_init: bool,
    /// Seed of --random-init.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl WeightArgs {
    pub fn source(&self) -> Result<BackboneSource, String> {
        if let Some(path) = &self.checkpoint {
            return Ok(BackboneSource::Checkpoint {
                path: path.clone(),
                arch: self.arch.clone(),
            });
        }
        match (&self.weights, self.random_init) {
            (Some(path), false) => Ok(BackboneSource::Weights {
                path: path.clone(),
                arch: self.arch.clone(),
            }),
            (None, true) => Ok(BackboneSource::RandomInit {
                arch: self.arch.clone().unwrap_or_else(|| "nat_mini".into()),
                seed: self.seed,
            }),
            (Some(_), true) => Err("--weights and --random-init exclude each other".into()),
            (None, false) => Err(
                "no backbone: pass --checkpoint FILE, --weights FILE [--arch NAME] or --random-init [--arch NAME]"
                    .into(),
            ),
        }
    }

    /// The files these flags read, for [`dinonat_train::guard::check_outputs`].
    pub fn inputs(&self) -> Vec<Named<'_>> {
        let files = [
            ("--weights", &self.weights),
            ("--checkpoint", &self.checkpoint),
        ];
        files
            .into_iter()
            .filter_map(|(flag, p)| p.as_deref().map(|p| (flag, p)))
            .collect()
    }

    /// Loads the backbone, printing notes (ignored head tensors) to stderr.
    pub fn load(&self) -> Result<Nat, String> {
        load_backbone(&self.source()?)
    }
}

/// The flag of a backbone parameter (the library's errors name parameters, the command line its flags).
pub fn flag(param: Param) -> &'static str {
    match param {
        Param::Weights => "--weights",
        Param::Checkpoint => "--checkpoint",
        Param::Arch => "--arch",
    }
}

/// Loads `source` with the one backbone loader, printing notes (ignored head tensors) to stderr.
pub fn load_backbone(source: &BackboneSource) -> Result<Nat, String> {
    let mut notes = Vec::new();
    let nat = source.load(&mut notes).map_err(|e| e.describe(flag))?;
    for n in notes {
        eprintln!("note: {n}");
    }
    Ok(nat)
}

pub use crate::progress::progress;

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
fn device_error(engine: &str) -> String {
    match engine.find("no CUDA device") {
        Some(at) => engine[at..].to_string(),
        None => engine.to_string(),
    }
}

#[derive(Args, Debug)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub weights: WeightArgs,
    /// Folder of .jpg/.jpeg/.png images (flat, or class sub-folders).
    #[arg(long, value_name = "DIR")]
    pub images: PathBuf,
    /// Output safetensors file (tensor `embeddings`, [N, F]).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// CSV of `index,path` rows (default: --out with the extension .csv).
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Input size: shorter side resized to it, centre crop SIZE x SIZE.
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Where the backbone runs: cpu, or cuda (the process's GPU; images are uploaded per batch,
    /// embeddings downloaded).
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
}

pub fn run(args: EmbedArgs) -> Result<(), String> {
    let csv = args.csv.clone().unwrap_or_else(|| csv_beside(&args.out));
    let mut inputs = args.weights.inputs();
    inputs.push(("--images", &args.images));
    check_outputs(&[("--out", &args.out), ("--csv", &csv)], &inputs)?;
    let paths = list_images(&args.images, "--images").map_err(|e| e.to_string())?;
    let nat = args.device.place(args.weights.load()?)?;
    let features = embed_paths(
        &nat,
        &paths,
        args.size,
        args.batch,
        &mut progress("embed (images)"),
    )
    .map_err(|e| e.to_string())?;
    let dim = features.len() / paths.len();
    write_embeddings(&args.out, &csv, &features, dim, &paths, &nat.config.name)
        .map_err(|e| e.to_string())?;
    eprintln!(
        "embeddings [{}, {dim}] -> {} (paths: {})",
        paths.len(),
        args.out.display(),
        csv.display()
    );
    Ok(())
}
