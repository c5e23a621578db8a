//! The k-NN of a training run's teacher (weighted, k = 20, T = 0.07) on held-out labelled splits:
//! the reported split (the built-in test split, or a pair of labelled folders) and, on built-in
//! data, the tuning split, each beside raw pixels and the random-init network (the run's step-0
//! teacher); the tables and JSON of one run and the mean +- std over training seeds
//! (docs/training.md, "Held-out protocol"). Errors name the parameters `eval_train`, `eval_val`,
//! `eval_size` and `eval_builtin`.

use crate::features::{extract_features, FeatureSource};
use crate::knn::{knn_classify, KnnConfig};
use crate::metrics::{mean_std, ClassificationReport};
use dinonat_engine::DType;
use dinonat_model::{DinoNetwork, Nat};
use dinonat_train::augment::EvalTransform;
use dinonat_train::data::{open_dataset, Dataset, Procedural};
use dinonat_train::run_policy::{BUILTIN_TEST_SEEDS, BUILTIN_TUNING_SEEDS};
use dinonat_train::trainer::config::TrainConfig;
use serde_json::json;
use std::path::{Path, PathBuf};

/// Images per forward pass during extraction (as `dinonat knn`).
const EXTRACT_BATCH: usize = 64;

/// One labelled split of the k-NN: a memory bank and its queries.
struct Split {
    /// "test" (reported) or "tuning" (where the built-in recipe's choices were made).
    role: &'static str,
    train: Box<dyn Dataset>,
    val: Box<dyn Dataset>,
    name: String,
}

/// The k-NN evaluation of a run: the reported split first (the built-in test split, or the
/// `--eval-train/--eval-val` folders), then the built-in tuning split when training on built-in data.
pub struct EvalSplit {
    splits: Vec<Split>,
    classes: usize,
    pub size: usize,
}

/// The k-NN of one feature source on every split, reported split first: top-1 and top-5, balanced
/// accuracy, the majority and uniform controls and bootstrap intervals (`ClassificationReport`).
#[derive(Clone, Debug)]
pub struct Scores(pub Vec<(&'static str, ClassificationReport)>);

impl Scores {
    /// The reported split's top-1 (percent).
    pub fn reported(&self) -> f64 {
        self.0[0].1.top1
    }
    /// The top-1 (percent) on the split `role`.
    pub fn get(&self, role: &str) -> Option<f64> {
        self.report(role).map(|r| r.top1)
    }
    pub fn report(&self, role: &str) -> Option<&ClassificationReport> {
        self.0.iter().find(|(r, _)| *r == role).map(|(_, c)| c)
    }
}

/// A labelled split for evaluation at `path`, named `name` in errors: any layout `open_dataset`
/// recognises, with images and class sub-folders.
pub fn open_labelled(name: &str, path: &Path, train: bool) -> Result<Box<dyn Dataset>, String> {
    let data = open_dataset(path, train).map_err(|e| format!("{name}: {e}"))?;
    if data.is_empty() {
        return Err(format!("{name} {}: holds no images", path.display()));
    }
    if data.class_names().is_none() {
        return Err(format!(
            "{name} {}: has no class sub-folders (evaluation needs labelled images: {}/CLASS/*.jpg)",
            path.display(),
            path.display()
        ));
    }
    Ok(data)
}

impl EvalSplit {
    /// `--eval-train/--eval-val` folders, else the built-in test and tuning splits when
    /// `builtin_ok`; None when neither applies.
    pub fn open(
        train: &Option<PathBuf>,
        val: &Option<PathBuf>,
        builtin_ok: bool,
        builtin: &[usize],
        size: usize,
    ) -> Result<Option<EvalSplit>, String> {
        if size == 0 {
            return Err("eval_size must be positive".into());
        }
        if let Some(train) = train {
            let val = val.as_ref().ok_or("eval_val is required with eval_train")?;
            let t = open_labelled("eval_train", train, true)?;
            let v = open_labelled("eval_val", val, false)?;
            if t.class_names() != v.class_names() {
                return Err("eval_train and eval_val need the same class sub-folders".into());
            }
            let classes = t.class_names().map(|c| c.len()).unwrap_or(0);
            let name = format!("{} / {}", train.display(), val.display());
            let split = Split {
                role: "val",
                train: t,
                val: v,
                name,
            };
            return Ok(Some(EvalSplit {
                splits: vec![split],
                classes,
                size,
            }));
        }
        if !builtin_ok {
            return Ok(None);
        }
        let (n_train, n_val) = (builtin[0], builtin[1]);
        if n_train == 0 || n_val == 0 {
            return Err("eval_builtin: both sizes must be positive".into());
        }
        let split = |role, (bank, queries): (u64, u64)| {
            Split {
            role,
            train: Box::new(Procedural::new(bank, n_train, Procedural::DEFAULT_SIZE)),
            val: Box::new(Procedural::new(queries, n_val, Procedural::DEFAULT_SIZE)),
            name: format!(
                "built-in {role} split (bank seed {bank} x {n_train} / queries seed {queries} x {n_val}, {size} px)"
            ),
        }
        };
        let test = split("test", BUILTIN_TEST_SEEDS);
        let classes = test.train.class_names().map(|c| c.len()).unwrap_or(0);
        Ok(Some(EvalSplit {
            splits: vec![test, split("tuning", BUILTIN_TUNING_SEEDS)],
            classes,
            size,
        }))
    }

    /// The reported split's description.
    pub fn describe(&self) -> String {
        self.splits[0].name.clone()
    }

    /// Every split's description by role.
    pub fn describe_all(&self) -> Vec<(&'static str, String)> {
        self.splits
            .iter()
            .map(|s| (s.role, s.name.clone()))
            .collect()
    }

    /// k-NN top-1 (percent) of `source`'s features on every split.
    fn knn(&self, source: FeatureSource<'_>) -> Result<Scores, String> {
        let t = EvalTransform::square(self.size);
        let all = |d: &dyn Dataset| (0..d.len()).collect::<Vec<_>>();
        let extract = |name: &str, d: &dyn Dataset| {
            extract_features(d, &all(d), &t, source, EXTRACT_BATCH, &mut |_, _| {})
                .map_err(|e| format!("{name}: {e}"))
        };
        let mut scores = Vec::new();
        for s in &self.splits {
            let bank = extract("eval_train", s.train.as_ref())?;
            let queries = extract("eval_val", s.val.as_ref())?;
            let report = knn_classify(
                &bank.values,
                &bank.labels,
                &queries.values,
                &queries.labels,
                bank.dim,
                &KnnConfig::new(self.classes),
            )
            .map_err(|e| format!("k-NN on the {} split: {e}", s.role))?;
            scores.push((s.role, report.classification));
        }
        Ok(Scores(scores))
    }

    pub fn knn_pixels(&self) -> Result<Scores, String> {
        self.knn(FeatureSource::Pixels)
    }

    pub fn knn_backbone(&self, nat: &Nat) -> Result<Scores, String> {
        self.knn(FeatureSource::Backbone(nat))
    }

    /// The run's teacher before any step: same architecture, same seed, untrained.
    pub fn knn_random_init(&self, config: &TrainConfig) -> Result<Scores, String> {
        let mut backbone = config.backbone().map_err(|e| e.to_string())?;
        backbone.drop_path = 0.0;
        let head = config.head(backbone.num_features());
        let net = DinoNetwork::new(&backbone, &head, DType::F32, config.seed)
            .map_err(|e| format!("arch: {e}"))?;
        self.knn_backbone(&net.backbone)
    }
}

/// The reported split in full: top-1 and balanced accuracy with their 95 % bootstrap intervals over
/// queries, top-5, and the majority-class and uniform controls of the query split.
pub fn detail_table(trained: &Scores, random: &Scores, pixels: &Scores) -> String {
    let (role, first) = (trained.0[0].0, &trained.0[0].1);
    let mut t = format!(
        "{role} split in full (95 % bootstrap intervals over the {} queries):\n\
         | features | top-1 % | 95 % interval | top-5 % | balanced accuracy % | 95 % interval |\n\
         |---|---|---|---|---|---|",
        first.queries
    );
    for (name, s) in [
        ("trained teacher", trained),
        ("random init", random),
        ("raw pixels", pixels),
    ] {
        let r = &s.0[0].1;
        t += &format!(
            "\n| {name} | {:.2} | {:.2}-{:.2} | {:.2} | {:.2} | {:.2}-{:.2} |",
            r.top1,
            r.top1_interval.low,
            r.top1_interval.high,
            r.top5,
            r.balanced,
            r.balanced_interval.low,
            r.balanced_interval.high
        );
    }
    t + &format!(
        "\ncontrols: majority class (class {}) {:.2} %, uniform chance {:.2} % ({} classes)",
        first.majority_class, first.majority, first.uniform, first.num_classes
    )
}

/// Every split's full report per feature source: `{role: {trained, random, pixels}}`, each a
/// `ClassificationReport::to_json`.
pub fn reports_json(trained: &Scores, random: &Scores, pixels: &Scores) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (role, r) in &trained.0 {
        let other = |s: &Scores| s.report(role).map(|c| c.to_json());
        m.insert(
            role.to_string(),
            serde_json::json!({"trained": r.to_json(), "random": other(random), "pixels": other(pixels)}),
        );
    }
    serde_json::Value::Object(m)
}

/// The mean +- std (sample std, n - 1) of several seeds' k-NN, as a table and one JSON object.
pub struct SeedSummary {
    pub table: String,
    pub json: serde_json::Value,
}

/// Summarises the JSON objects of one training run per seed (`seeds`, same order).
pub fn seed_summary(seeds: &[u64], runs: &[serde_json::Value]) -> SeedSummary {
    let mut table = format!(
        "k-NN top-1 % over training seeds {:?} (mean +- std):\n| features | split | mean | std | per seed |\n|---|---|---|---|---|",
        seeds
    );
    let mut stats = serde_json::Map::new();
    let mut balanced_by_split = serde_json::Map::new();
    let roles: Vec<String> = runs
        .first()
        .and_then(|r| r["knn_top1_by_split"].as_object())
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    for role in &roles {
        let mut per = serde_json::Map::new();
        let mut balanced = serde_json::Map::new();
        for what in ["trained", "random", "pixels"] {
            let x: Vec<f64> = runs
                .iter()
                .filter_map(|r| r["knn_top1_by_split"][role][what].as_f64())
                .collect();
            if x.len() != runs.len() {
                continue;
            }
            let (m, sd) = mean_std(&x);
            let each: Vec<String> = x.iter().map(|v| format!("{v:.2}")).collect();
            table += &format!(
                "\n| {what} | {role} | {m:.2} | {sd:.2} | {} |",
                each.join(", ")
            );
            per.insert(what.into(), json!({"mean": m, "std": sd, "per_seed": x}));
            let b: Vec<f64> = runs
                .iter()
                .filter_map(|r| r["knn_by_split"][role][what]["balanced_accuracy"].as_f64())
                .collect();
            if b.len() == runs.len() {
                let (bm, bsd) = mean_std(&b);
                table +=
                    &format!("\n| {what} (balanced accuracy) | {role} | {bm:.2} | {bsd:.2} | |");
                balanced.insert(what.into(), json!({"mean": bm, "std": bsd, "per_seed": b}));
            }
        }
        balanced_by_split.insert(role.clone(), serde_json::Value::Object(balanced));
        stats.insert(role.clone(), serde_json::Value::Object(per));
    }
    let warnings: Vec<u64> = runs
        .iter()
        .map(|r| r["collapse_warnings"].as_u64().unwrap_or(0))
        .collect();
    table += &format!("\ncollapse warnings per seed: {warnings:?}");
    SeedSummary {
        table,
        json: json!({
            "command": "train",
            "seeds": seeds,
            "knn_top1_by_split": stats,
            "knn_balanced_by_split": balanced_by_split,
            "collapse_warnings": warnings,
            "runs": runs,
        }),
    }
}
