//! The features of both splits from the flags: the splits opened, the backbone built or loaded,
//! the extraction run (`dinonat_eval::frozen`), and the report's fields that say what they were.

use super::flags::{flagged, DataArgs, FeatureArgs};
use crate::args::load_backbone;
use dinonat_eval::backbone::BackboneSource;
use dinonat_eval::frozen::{self, BuiltinSplits, Extracted, Extraction};
use dinonat_eval::knn_splits::open_labelled;
use dinonat_model::Nat;
use dinonat_train::data::Dataset;
use serde_json::json;
use std::path::PathBuf;

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
pub(super) fn extract(data: &DataArgs, args: &FeatureArgs) -> Result<Extracted, String> {
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
