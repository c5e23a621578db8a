//! `dinonat knn` and `dinonat linear`: frozen-feature evaluation (docs/evaluation-commands.md). Both extract
//! features of a train and a val split with the evaluation transform (dinonat_eval::features), then run the
//! weighted k-NN classifier or train a linear probe on the cached features (dinonat_eval::knn, ::linear).

use crate::cmd_embed::load_backbone;
use clap::{Args, ValueEnum};
use dinonat_eval::backbone::BackboneSource;
use dinonat_eval::features::{extract_features, spread_indices, FeatureSource, Features};
use dinonat_eval::knn::{knn_classify_with_progress, KnnConfig};
use dinonat_eval::linear::{train_linear_probe, LinearProbeConfig, Preprocess};
use dinonat_eval::metrics::{mean_std, ClassificationReport};
use dinonat_model::Nat;
use dinonat_train::augment::EvalTransform;
use dinonat_train::data::{open_dataset, Dataset, Procedural};
use dinonat_train::guard;
use serde_json::{json, Value};
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
}

#[derive(Args, Debug)]
pub struct KnnArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub features: FeatureArgs,
    /// Number of neighbours that vote.
    #[arg(long, default_value_t = 20)]
    pub k: usize,
    /// Temperature T of the vote weight exp(sim / T).
    #[arg(long, default_value_t = 0.07)]
    pub temperature: f32,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PreprocessArg {
    /// Divide each row by its l2 norm.
    L2,
    /// Zero mean, unit variance per column (training-set statistics).
    Standardize,
}

#[derive(Args, Debug)]
pub struct LinearArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub features: FeatureArgs,
    /// Probe training epochs (cosine learning-rate schedule over all of them).
    #[arg(long, default_value_t = 100)]
    pub epochs: usize,
    /// Peak learning rate of the probe (SGD, momentum 0.9, no weight decay).
    #[arg(long, default_value_t = 1.0)]
    pub lr: f32,
    /// Probe mini-batch size.
    #[arg(long, default_value_t = 256)]
    pub probe_batch_size: usize,
    /// Feature preprocessing before the linear layer.
    #[arg(long, value_enum, default_value_t = PreprocessArg::L2)]
    pub preprocess: PreprocessArg,
}

/// Train and val features plus what the JSON reports about how they were made.
struct Extracted {
    train: Features,
    val: Features,
    classes: Vec<String>,
    config: serde_json::Map<String, Value>,
    extract_seconds: f64,
}

pub(crate) fn open_split(
    flag: &str,
    path: &Option<PathBuf>,
    train: bool,
) -> Result<Box<dyn Dataset>, String> {
    let path = path
        .as_ref()
        .ok_or_else(|| format!("--{flag} DIR is required (or use --builtin)"))?;
    let data = open_dataset(path, train).map_err(|e| format!("--{flag}: {e}"))?;
    if data.is_empty() {
        return Err(format!("--{flag} {}: holds no images", path.display()));
    }
    if data.class_names().is_none() {
        return Err(format!(
            "--{flag} {}: has no class sub-folders (evaluation needs labelled images: {}/CLASS/*.jpg)",
            path.display(),
            path.display()
        ));
    }
    Ok(data)
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

fn extract(data: &DataArgs, args: &FeatureArgs) -> Result<Extracted, String> {
    if let Some(size) = args.size {
        guard::image_side("--size", size, 8)?;
    }
    if args.batch_size == 0 {
        return Err("--batch-size must be positive".into());
    }
    guard::at_most("--batch-size", args.batch_size, 4096, "images")?;
    if data.builtin {
        guard::at_most(
            "--builtin-train",
            data.builtin_train,
            guard::MAX_BUILTIN_IMAGES,
            "images",
        )?;
        guard::at_most(
            "--builtin-val",
            data.builtin_val,
            guard::MAX_BUILTIN_IMAGES,
            "images",
        )?;
        guard::image_side("--builtin-image-size", data.builtin_image_size, 1)?;
    }
    let (train, val): (Box<dyn Dataset>, Box<dyn Dataset>) = if data.builtin {
        if data.builtin_train == 0 || data.builtin_val == 0 || data.builtin_image_size == 0 {
            return Err(
                "--builtin-train, --builtin-val and --builtin-image-size must be positive".into(),
            );
        }
        (
            Box::new(Procedural::new(
                1,
                data.builtin_train,
                data.builtin_image_size,
            )),
            Box::new(Procedural::new(
                2,
                data.builtin_val,
                data.builtin_image_size,
            )),
        )
    } else {
        (
            open_split("train", &data.train, true)?,
            open_split("val", &data.val, false)?,
        )
    };
    let classes = train.class_names().unwrap_or_default();
    let val_classes = val.class_names().unwrap_or_default();
    if classes != val_classes {
        return Err(format!(
            "--train has classes [{}] but --val has [{}]; both splits need the same class sub-folders",
            classes.join(", "),
            val_classes.join(", ")
        ));
    }
    for (flag, limit) in [
        ("limit-train", data.limit_train),
        ("limit-val", data.limit_val),
    ] {
        if limit == Some(0) {
            return Err(format!("--{flag} must be positive"));
        }
    }
    // The data is opened first (cheap) so a wrong folder is reported before a backbone is built or loaded.
    let nat = build_backbone(args)?;
    let size = args.size.unwrap_or(match &nat {
        Some(n) if n.config.name.contains("pico") => 32,
        _ => 64,
    });
    let transform = EvalTransform::square(size);
    let source = match &nat {
        Some(n) => FeatureSource::Backbone(n),
        None => FeatureSource::Pixels,
    };
    let start = Instant::now();
    let run = |name: &str, set: &dyn Dataset, limit| {
        let indices = spread_indices(set.len(), limit);
        let mut progress = crate::progress::progress(format!("{name} features"));
        extract_features(
            set,
            &indices,
            &transform,
            source,
            args.batch_size,
            &mut progress,
        )
        .map_err(|e| format!("--{name}: {e}"))
    };
    let train_features = run("train", train.as_ref(), data.limit_train)?;
    let val_features = run("val", val.as_ref(), data.limit_val)?;
    let extract_seconds = start.elapsed().as_secs_f64();

    let describe = |flag: &Option<PathBuf>, seed: u64, n: usize| match flag {
        Some(p) => p.display().to_string(),
        None => format!(
            "builtin(seed {seed}, {n} images of {} px)",
            data.builtin_image_size
        ),
    };
    let mut config = serde_json::Map::new();
    config.insert(
        "train".into(),
        json!(describe(&data.train, 1, data.builtin_train)),
    );
    config.insert(
        "val".into(),
        json!(describe(&data.val, 2, data.builtin_val)),
    );
    let features = if args.pixels {
        "pixels"
    } else if args.checkpoint.is_some() {
        "checkpoint"
    } else if args.weights.is_some() {
        "weights"
    } else {
        "random-init"
    };
    config.insert("features".into(), json!(features));
    config.insert(
        "arch".into(),
        json!(nat.as_ref().map(|n| n.config.name.clone())),
    );
    config.insert(
        "checkpoint".into(),
        json!(args.checkpoint.as_ref().map(|p| p.display().to_string())),
    );
    config.insert(
        "weights".into(),
        json!(args.weights.as_ref().map(|p| p.display().to_string())),
    );
    config.insert("seed".into(), json!(args.seed));
    config.insert("size".into(), json!(size));
    config.insert("train_images".into(), json!(train_features.rows()));
    config.insert("val_images".into(), json!(val_features.rows()));
    config.insert("dim".into(), json!(train_features.dim));
    config.insert("classes".into(), json!(classes.len()));
    Ok(Extracted {
        train: train_features,
        val: val_features,
        classes,
        config,
        extract_seconds,
    })
}

/// What one evaluation of one set of features gives: the classification report and the command's own fields.
type Evaluated = (ClassificationReport, serde_json::Map<String, Value>);

/// Extracts features for each seed (one, or `--seeds N` random-init backbones from --seed on), runs `evaluate`
/// on them and prints the report: the metrics beside their controls, or one JSON object. With several seeds the
/// top-level `top1`, `top5` and `balanced_accuracy` are means, `std` holds their sample standard deviations and
/// `runs` each seed's full report.
fn run_seeds(
    data: &DataArgs,
    features: &FeatureArgs,
    command: &str,
    evaluate: impl Fn(&Extracted, u64) -> Result<Evaluated, String>,
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
    for k in 0..features.seeds as u64 {
        let mut args = features.clone();
        args.seed = features.seed + k;
        let ex = extract(data, &args)?;
        let start = Instant::now();
        let (report, extra) = evaluate(&ex, args.seed)?;
        let mut fields = ex.config.clone();
        if let Value::Object(m) = report.to_json() {
            fields.extend(m);
        }
        fields.extend(extra);
        fields.insert("extract_seconds".into(), json!(ex.extract_seconds));
        fields.insert("eval_seconds".into(), json!(start.elapsed().as_secs_f64()));
        config = ex.config;
        class_names = ex.classes;
        runs.push((report, fields));
    }
    let headline = |c: &serde_json::Map<String, Value>| {
        format!(
            "{command}: {} train / {} val images, {} classes, {}-dim {} features at {} px",
            c["train_images"],
            c["val_images"],
            c["classes"],
            c["dim"],
            c["features"].as_str().unwrap_or("?"),
            c["size"],
        )
    };
    if runs.len() == 1 {
        let (report, mut fields) = runs.pop().expect("one run");
        fields.insert("command".into(), json!(command));
        fields.insert("class_names".into(), json!(class_names));
        if features.json {
            println!("{}", Value::Object(fields));
        } else {
            println!("{}", headline(&fields));
            println!("{}", report.table(&class_names));
        }
        return Ok(());
    }
    let metric = |f: fn(&ClassificationReport) -> f64| {
        mean_std(&runs.iter().map(|(r, _)| f(r)).collect::<Vec<_>>())
    };
    let stats = [
        ("top1", metric(|r| r.top1)),
        ("top5", metric(|r| r.top5)),
        ("balanced_accuracy", metric(|r| r.balanced)),
    ];
    let first = &runs[0].0;
    let mut fields = config;
    fields.remove("seed");
    fields.insert("command".into(), json!(command));
    fields.insert("class_names".into(), json!(class_names));
    fields.insert(
        "seeds".into(),
        json!((0..features.seeds as u64)
            .map(|k| features.seed + k)
            .collect::<Vec<_>>()),
    );
    for (key, (mean, _)) in stats {
        fields.insert(key.into(), json!(mean));
    }
    fields.insert(
        "std".into(),
        Value::Object(
            stats
                .iter()
                .map(|(k, (_, sd))| (k.to_string(), json!(sd)))
                .collect(),
        ),
    );
    fields.insert("majority".into(), json!(first.majority));
    fields.insert("uniform".into(), json!(first.uniform));
    fields.insert(
        "runs".into(),
        json!(runs
            .iter()
            .map(|(_, f)| Value::Object(f.clone()))
            .collect::<Vec<_>>()),
    );
    if features.json {
        println!("{}", Value::Object(fields));
        return Ok(());
    }
    println!("{}", headline(&fields));
    for (report, f) in &runs {
        println!(
            "seed {}: {}",
            f["seed"],
            report.table(&class_names).replace('\n', "\n         ")
        );
    }
    let [(_, (t1, s1)), (_, (t5, s5)), (_, (b, sb))] = stats;
    println!(
        "mean +- std over {} seeds: top-1 {t1:.2} +- {s1:.2}%   top-5 {t5:.2} +- {s5:.2}%   balanced {b:.2} +- {sb:.2}%\n\
         controls: majority class {:.2}%, uniform chance {:.2}%",
        runs.len(),
        first.majority,
        first.uniform
    );
    Ok(())
}

pub fn run_knn(args: KnnArgs) -> Result<(), String> {
    run_seeds(&args.data, &args.features, "knn", |ex, _| {
        let config = KnnConfig {
            k: args.k,
            temperature: args.temperature,
            num_classes: ex.classes.len(),
        };
        let report = knn_classify_with_progress(
            &ex.train.values,
            &ex.train.labels,
            &ex.val.values,
            &ex.val.labels,
            ex.train.dim,
            &config,
            &mut crate::progress::progress("k-NN search (queries)"),
        )
        .map_err(|e| e.to_string())?;
        let mut fields = serde_json::Map::new();
        fields.insert("k".into(), json!(args.k));
        fields.insert("temperature".into(), json!(args.temperature));
        Ok((report.classification, fields))
    })
}

pub fn run_linear(args: LinearArgs) -> Result<(), String> {
    if args.epochs == 0 || args.probe_batch_size == 0 || !(args.lr > 0.0 && args.lr.is_finite()) {
        return Err(format!(
            "--epochs {}, --probe-batch-size {} and --lr {} must all be positive",
            args.epochs, args.probe_batch_size, args.lr
        ));
    }
    run_seeds(&args.data, &args.features, "linear", |ex, seed| {
        let mut config = LinearProbeConfig::new(ex.classes.len(), seed);
        config.epochs = args.epochs;
        config.learning_rate = args.lr;
        config.batch_size = args.probe_batch_size;
        config.preprocess = match args.preprocess {
            PreprocessArg::L2 => Preprocess::L2Normalize,
            PreprocessArg::Standardize => Preprocess::Standardize,
        };
        let report = train_linear_probe(
            (&ex.train.values, &ex.train.labels),
            (&ex.val.values, &ex.val.labels),
            ex.train.dim,
            &config,
        )
        .map_err(|e| e.to_string())?;
        let classification = report
            .probe
            .classification(&ex.val.values, &ex.val.labels)
            .map_err(|e| e.to_string())?;
        let mut fields = serde_json::Map::new();
        fields.insert("best_top1".into(), json!(report.best_val_top1));
        fields.insert("train_top1".into(), json!(report.train_top1));
        fields.insert("epochs".into(), json!(args.epochs));
        fields.insert("lr".into(), json!(args.lr));
        fields.insert("probe_batch_size".into(), json!(args.probe_batch_size));
        fields.insert(
            "preprocess".into(),
            json!(match args.preprocess {
                PreprocessArg::L2 => "l2",
                PreprocessArg::Standardize => "standardize",
            }),
        );
        fields.insert(
            "final_loss".into(),
            json!(report.train_loss_per_epoch.last().copied()),
        );
        Ok((classification, fields))
    })
}
