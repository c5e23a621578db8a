//! Frozen-feature evaluation of a labelled train / val pair (`dinonat knn`, `dinonat linear`;
//! docs/evaluation-commands.md): the splits opened and checked, the features of both extracted
//! with the evaluation transform, and the report of one or several seeds (mean +- std beside the
//! controls). Errors name the parameters `train`, `val`, `builtin_train`, `builtin_val`,
//! `builtin_image_size`, `limit_train`, `limit_val`, `size` and `batch_size`.

use crate::features::{extract_features, spread_indices, FeatureSource, Features};
use crate::metrics::{mean_std, ClassificationReport};
use dinonat_model::Nat;
use dinonat_train::augment::EvalTransform;
use dinonat_train::data::{Dataset, Procedural};
use dinonat_train::guard;
use serde_json::{json, Map, Value};
use std::time::Instant;

/// The built-in procedural splits: train = seed 1, val = seed 2.
#[derive(Clone, Copy, Debug)]
pub struct BuiltinSplits {
    pub train: usize,
    pub val: usize,
    pub image_size: usize,
}

impl BuiltinSplits {
    /// Checks the sizes (`builtin_train`, `builtin_val`, `builtin_image_size`).
    pub fn check(&self) -> Result<(), String> {
        let max = guard::MAX_BUILTIN_IMAGES;
        guard::at_most("builtin_train", self.train, max, "images")?;
        guard::at_most("builtin_val", self.val, max, "images")?;
        guard::image_side("builtin_image_size", self.image_size, 1)?;
        if self.train == 0 || self.val == 0 || self.image_size == 0 {
            return Err(
                "builtin_train, builtin_val and builtin_image_size must be positive".into(),
            );
        }
        Ok(())
    }

    pub fn open(&self) -> (Box<dyn Dataset>, Box<dyn Dataset>) {
        (
            Box::new(Procedural::new(1, self.train, self.image_size)),
            Box::new(Procedural::new(2, self.val, self.image_size)),
        )
    }
}

/// How the features of both splits are made.
pub struct Extraction<'a> {
    pub train: &'a dyn Dataset,
    pub val: &'a dyn Dataset,
    pub limit_train: Option<usize>,
    pub limit_val: Option<usize>,
    /// The backbone (None: raw pixels).
    pub backbone: Option<&'a Nat>,
    /// The evaluation transform's side; None: `run_policy::eval_image_size` of the backbone (64
    /// px for pixels).
    pub size: Option<usize>,
    pub batch_size: usize,
}

/// Train and val features plus what the report says about how they were made.
pub struct Extracted {
    pub train: Features,
    pub val: Features,
    pub classes: Vec<String>,
    /// `size`, `train_images`, `val_images`, `dim`, `classes` of the report.
    pub config: Map<String, Value>,
    pub extract_seconds: f64,
}

/// Checks the transform's side and the extraction batch, before anything is opened.
pub fn check_sizes(size: Option<usize>, batch_size: usize) -> Result<(), String> {
    if let Some(size) = size {
        guard::image_side("size", size, 8)?;
    }
    if batch_size == 0 {
        return Err("batch_size must be positive".into());
    }
    guard::at_most("batch_size", batch_size, 4096, "images")
}

/// Checks the class lists of both splits and the limits; returns the classes.
pub fn check(e: &Extraction<'_>) -> Result<Vec<String>, String> {
    let classes = e.train.class_names().unwrap_or_default();
    let val_classes = e.val.class_names().unwrap_or_default();
    if classes != val_classes {
        return Err(format!(
            "train has classes [{}] but val has [{}]; both splits need the same class sub-folders",
            classes.join(", "),
            val_classes.join(", ")
        ));
    }
    for (name, limit) in [("limit_train", e.limit_train), ("limit_val", e.limit_val)] {
        if limit == Some(0) {
            return Err(format!("{name} must be positive"));
        }
    }
    Ok(classes)
}

/// A `(done, total)` progress callback.
pub type Progress = Box<dyn FnMut(usize, usize)>;

/// The features of both splits; `progress(name)` gives the progress callback of the split `name`
/// ("train", "val").
pub fn extract(
    e: &Extraction<'_>,
    classes: Vec<String>,
    progress: &mut dyn FnMut(&str) -> Progress,
) -> Result<Extracted, String> {
    let size = e.size.unwrap_or(match e.backbone {
        Some(n) => dinonat_train::run_policy::eval_image_size(&n.config.name),
        None => 64,
    });
    let transform = EvalTransform::square(size);
    let source = match e.backbone {
        Some(n) => FeatureSource::Backbone(n),
        None => FeatureSource::Pixels,
    };
    let start = Instant::now();
    let mut run = |name: &str, set: &dyn Dataset, limit| {
        let indices = spread_indices(set.len(), limit);
        let mut p = progress(name);
        extract_features(set, &indices, &transform, source, e.batch_size, &mut *p)
            .map_err(|err| format!("{name}: {err}"))
    };
    let train = run("train", e.train, e.limit_train)?;
    let val = run("val", e.val, e.limit_val)?;
    let extract_seconds = start.elapsed().as_secs_f64();
    let mut config = Map::new();
    config.insert("size".into(), json!(size));
    config.insert("train_images".into(), json!(train.rows()));
    config.insert("val_images".into(), json!(val.rows()));
    config.insert("dim".into(), json!(train.dim));
    config.insert("classes".into(), json!(classes.len()));
    Ok(Extracted {
        train,
        val,
        classes,
        config,
        extract_seconds,
    })
}

/// One seed's evaluation: its report and every field of its JSON object.
pub type SeedRun = (ClassificationReport, Map<String, Value>);

/// The report of `runs` (one per seed of `seeds`, each with its JSON fields; `config` the fields
/// they share) of `command`: with `json` one JSON object, else the text. With several seeds the
/// top-level `top1`, `top5` and `balanced_accuracy` are means, `std` holds their sample standard
/// deviations and `runs` each seed's full report.
pub fn report(
    command: &str,
    mut runs: Vec<SeedRun>,
    config: Map<String, Value>,
    class_names: &[String],
    seeds: &[u64],
    json: bool,
) -> String {
    let headline = |c: &Map<String, Value>| {
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
        if json {
            return Value::Object(fields).to_string();
        }
        return format!("{}\n{}", headline(&fields), report.table(class_names));
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
    fields.insert("seeds".into(), json!(seeds));
    for (key, (mean, _)) in stats {
        fields.insert(key.into(), json!(mean));
    }
    let std = stats.iter().map(|(k, (_, sd))| (k.to_string(), json!(sd)));
    fields.insert("std".into(), Value::Object(std.collect()));
    fields.insert("majority".into(), json!(first.majority));
    fields.insert("uniform".into(), json!(first.uniform));
    let each: Vec<Value> = runs.iter().map(|(_, f)| Value::Object(f.clone())).collect();
    fields.insert("runs".into(), json!(each));
    if json {
        return Value::Object(fields).to_string();
    }
    let mut text = headline(&fields);
    for (report, f) in &runs {
        let table = report.table(class_names).replace('\n', "\n         ");
        text += &format!("\nseed {}: {table}", f["seed"]);
    }
    let [(_, (t1, s1)), (_, (t5, s5)), (_, (b, sb))] = stats;
    text += &format!(
        "\nmean +- std over {} seeds: top-1 {t1:.2} +- {s1:.2}%   top-5 {t5:.2} +- {s5:.2}%   balanced {b:.2} +- {sb:.2}%\n\
         controls: majority class {:.2}%, uniform chance {:.2}%",
        runs.len(),
        first.majority,
        first.uniform
    );
    text
}
