//! The argument groups of the frozen-feature commands (`knn`, `linear`): the labelled splits
//! ([`DataArgs`]) and the features ([`FeatureArgs`]), and the loop over seeds they share; the
//! evaluation itself is `dinonat_eval::frozen`.

use super::{load_backbone, DeviceArg, PrecisionArgs};
use clap::Args;
use dinonat_eval::backbone::BackboneSource;
use dinonat_eval::frozen::{self, BuiltinSplits, Extracted, Extraction, SeedRun};
use dinonat_eval::knn_splits::open_labelled;
use dinonat_model::Nat;
use dinonat_train::data::{Dataset, Procedural};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// Where the images come from.
#[derive(Args, Debug)]
pub struct DataArgs {
    /// Training split (memory bank / probe training set): an ImageFolder with class sub-folders (or any layout
    /// `open_dataset` recognises: IDX, CIFAR-10, a folder with train/ and val/).
    #[arg(long, value_name = "DIR")]
    pub train: Option<PathBuf>,
    /// Validation split (queries / probe evaluation set), same layouts as --train.
    #[arg(long, value_name = "DIR")]
    pub val: Option<PathBuf>,
    /// Use the built-in procedural data set instead of folders: train = seed 1, val = seed 2.
    #[arg(long, conflicts_with_all = ["train", "val"])]
    pub builtin: bool,
    /// Number of built-in training images.
    #[arg(long, default_value_t = 2000)]
    pub builtin_train: usize,
    /// Number of built-in validation images.
    #[arg(long, default_value_t = 500)]
    pub builtin_val: usize,
    /// Side of the built-in images before the evaluation transform.
    #[arg(long, default_value_t = Procedural::DEFAULT_SIZE)]
    pub builtin_image_size: usize,
    /// Use only N training images, spread evenly over the split (keeps the class balance of sorted folders).
    #[arg(long, value_name = "N")]
    pub limit_train: Option<usize>,
    /// Use only N validation images, spread evenly over the split.
    #[arg(long, value_name = "N")]
    pub limit_val: Option<usize>,
}

/// Which features.
#[derive(Args, Clone, Debug)]
pub struct FeatureArgs {
    /// Raw normalised pixels of the transformed image as features (the baseline).
    #[arg(long, conflicts_with_all = ["weights", "random_init", "checkpoint"])]
    pub pixels: bool,
    /// A `dinonat train` checkpoint: its teacher backbone (`teacher.backbone.*`); the architecture comes from the
    /// checkpoint's config (an --arch must match it).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["weights", "random_init"])]
    pub checkpoint: Option<PathBuf>,
    /// Backbone weights (safetensors under NAT names; a DinoNetwork file's `backbone.*` also loads); the architecture
    /// is --arch, else the file's `arch` metadata.
    #[arg(long, value_name = "FILE", conflicts_with = "random_init")]
    pub weights: Option<PathBuf>,
    /// A randomly initialised backbone (seeded by --seed); needs --arch.
    #[arg(long)]
    pub random_init: bool,
    /// Backbone architecture (nat_pico, nat_nano, nat_mini, ...; dinat_ prefix / _full suffix allowed).
    #[arg(long, value_name = "NAME")]
    pub arch: Option<String>,
    /// Seed of --random-init and of the linear probe.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// With --random-init: repeat with N backbones (seeds --seed, --seed + 1, ...) and report mean +- std.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seeds: usize,
    /// Evaluation transform: resize the shorter side to N, centre-crop N x N [default: 32 for *pico*, else 64].
    #[arg(long, value_name = "N")]
    pub size: Option<usize>,
    /// Images per forward pass during extraction.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// One JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub precision: PrecisionArgs,
    /// Where the features are extracted: cpu, or cuda (the backbone moved to the GPU).
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
}

/// The library's parameters as these commands' flags.
const FLAGS: &[(&str, &str)] = &[
    ("train", "--train"),
    ("val", "--val"),
    ("size", "--size"),
    ("batch_size", "--batch-size"),
    ("builtin_train", "--builtin-train"),
    ("builtin_val", "--builtin-val"),
    ("builtin_image_size", "--builtin-image-size"),
    ("limit_train", "--limit-train"),
    ("limit_val", "--limit-val"),
];

fn flagged(e: impl ToString) -> String {
    super::param_flags(e, FLAGS, true)
}

/// The labelled split of `--{flag}`.
fn open_split(flag: &str, path: &Option<PathBuf>, train: bool) -> Result<Box<dyn Dataset>, String> {
    let path = path
        .as_ref()
        .ok_or_else(|| format!("--{flag} DIR is required (or use --builtin)"))?;
    open_labelled(&format!("--{flag}"), path, train)
}

fn build_backbone(args: &FeatureArgs) -> Result<Option<Nat>, String> {
    if args.pixels {
        if let Some(arch) = &args.arch {
            return Err(format!("--pixels uses no backbone; drop --arch {arch}"));
        }
        return Ok(None);
    }
    let arch = args.arch.clone();
    let source = if let Some(path) = &args.checkpoint {
        BackboneSource::Checkpoint {
            path: path.clone(),
            arch,
        }
    } else if let Some(path) = &args.weights {
        BackboneSource::Weights {
            path: path.clone(),
            arch,
        }
    } else if args.random_init {
        BackboneSource::RandomInit {
            arch: arch.ok_or("--arch NAME is required with --random-init")?,
            seed: args.seed,
        }
    } else {
        return Err(
            "choose the features: --pixels, --checkpoint FILE, --weights FILE --arch NAME, or --random-init --arch NAME"
                .into(),
        );
    };
    load_backbone(&source).map(Some)
}

impl DataArgs {
    fn builtin_splits(&self) -> BuiltinSplits {
        BuiltinSplits {
            train: self.builtin_train,
            val: self.builtin_val,
            image_size: self.builtin_image_size,
        }
    }

    /// The JSON name of a split: its folder, or the built-in set it is.
    fn describe(&self, folder: &Option<PathBuf>, seed: u64, n: usize) -> String {
        match folder {
            Some(p) => p.display().to_string(),
            None => format!(
                "builtin(seed {seed}, {n} images of {} px)",
                self.builtin_image_size
            ),
        }
    }
}

impl FeatureArgs {
    /// The JSON fields of the features: their source, backbone, seed and precision.
    fn describe(
        &self,
        nat: Option<&Nat>,
        precision: &str,
    ) -> serde_json::Map<String, serde_json::Value> {
        let features = if self.pixels {
            "pixels"
        } else if self.checkpoint.is_some() {
            "checkpoint"
        } else if self.weights.is_some() {
            "weights"
        } else {
            "random-init"
        };
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let mut m = serde_json::Map::new();
        m.insert("features".into(), json!(features));
        m.insert("arch".into(), json!(nat.map(|n| n.config.name.clone())));
        m.insert("checkpoint".into(), json!(path(&self.checkpoint)));
        m.insert("weights".into(), json!(path(&self.weights)));
        m.insert("seed".into(), json!(self.seed));
        m.insert("precision".into(), json!(precision));
        m
    }
}

/// The features of both splits of `data` from `args`'s source, with the report's fields.
fn extract(data: &DataArgs, args: &FeatureArgs) -> Result<Extracted, String> {
    frozen::check_sizes(args.size, args.batch_size).map_err(flagged)?;
    if data.builtin {
        data.builtin_splits().check().map_err(flagged)?;
    }
    let (train, val) = if data.builtin {
        data.builtin_splits().open()
    } else {
        (
            open_split("train", &data.train, true)?,
            open_split("val", &data.val, false)?,
        )
    };
    let mut e = Extraction {
        train: train.as_ref(),
        val: val.as_ref(),
        limit_train: data.limit_train,
        limit_val: data.limit_val,
        backbone: None,
        size: args.size,
        batch_size: args.batch_size,
    };
    let classes = frozen::check(&e).map_err(flagged)?;
    // The data is opened first (cheap) so a wrong folder is reported before a backbone is built or loaded.
    let nat = build_backbone(args)?
        .map(|n| args.device.place(n))
        .transpose()?;
    e.backbone = nat.as_ref();
    let precision = args.precision.resolve(Some(args.device))?;
    let mut progress = |name: &str| -> frozen::Progress {
        Box::new(crate::progress::progress(format!("{name} features")))
    };
    let mut ex = precision
        .scope(|| frozen::extract(&e, classes, &mut progress))
        .map_err(flagged)?;
    ex.config.insert(
        "train".into(),
        json!(data.describe(&data.train, 1, data.builtin_train)),
    );
    ex.config.insert(
        "val".into(),
        json!(data.describe(&data.val, 2, data.builtin_val)),
    );
    ex.config
        .extend(args.describe(nat.as_ref(), precision.name()));
    Ok(ex)
}

/// Extracts features for each seed (one, or `--seeds N` random-init backbones from --seed on), runs
/// `evaluate` on them and prints the report (`dinonat_eval::frozen::report`).
pub fn run_seeds(
    data: &DataArgs,
    features: &FeatureArgs,
    command: &str,
    evaluate: impl Fn(&Extracted, u64) -> Result<SeedRun, String>,
) -> Result<(), String> {
    if features.seeds == 0 {
        return Err("--seeds must be at least 1".into());
    }
    if features.seeds > 1 && !features.random_init {
        return Err(format!(
            "--seeds {} repeats --random-init backbones; the other feature sources do not depend on a seed",
            features.seeds
        ));
    }
    let mut runs = Vec::new();
    let mut config = serde_json::Map::new();
    let mut class_names = Vec::new();
    let seeds: Vec<u64> = (0..features.seeds as u64)
        .map(|k| features.seed + k)
        .collect();
    for &seed in &seeds {
        let mut args = features.clone();
        args.seed = seed;
        let ex = extract(data, &args)?;
        let start = Instant::now();
        let (report, extra) = evaluate(&ex, args.seed)?;
        let mut fields = ex.config.clone();
        if let serde_json::Value::Object(m) = report.to_json() {
            fields.extend(m);
        }
        fields.extend(extra);
        fields.insert("extract_seconds".into(), json!(ex.extract_seconds));
        fields.insert("eval_seconds".into(), json!(start.elapsed().as_secs_f64()));
        config = ex.config;
        class_names = ex.classes;
        runs.push((report, fields));
    }
    let text = frozen::report(command, runs, config, &class_names, &seeds, features.json);
    println!("{text}");
    Ok(())
}
