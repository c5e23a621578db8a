//! What `dinonat train` measures besides the loss: the weighted k-NN (k = 20, T = 0.07) of the
//! teacher's backbone on a held-out labelled split (and the tuning split), next to raw pixels and
//! the random-init network (the run's step-0 teacher), and the PNG curves of a run
//! (docs/training.md, "Held-out protocol" and "Curves and k-NN").

use crate::plot::line_chart;
use dinonat_engine::DType;
use dinonat_eval::features::{extract_features, FeatureSource};
use dinonat_eval::knn::{knn_classify, KnnConfig};
use dinonat_eval::metrics::ClassificationReport;
use dinonat_model::{DinoNetwork, Nat};
use dinonat_train::augment::EvalTransform;
use dinonat_train::data::{Dataset, Procedural};
use dinonat_train::trainer::config::TrainConfig;
use dinonat_train::trainer::log::StepLog;
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

/// The built-in k-NN splits' seeds: tuning bank / queries, test bank / queries. Training seeds that
/// equal one of them would train on evaluation images and are refused (`check_training_seed`).
pub const BUILTIN_TUNING_SEEDS: (u64, u64) = (1, 2);
pub const BUILTIN_TEST_SEEDS: (u64, u64) = (3, 4);

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

/// Refuses a training seed that generates built-in evaluation images (docs/training.md, "Held-out
/// protocol").
pub fn check_training_seed(seed: u64) -> Result<(), String> {
    let (a, b) = BUILTIN_TUNING_SEEDS;
    let (c, d) = BUILTIN_TEST_SEEDS;
    if [a, b, c, d].contains(&seed) {
        return Err(format!(
            "--seed {seed}: the built-in set of that seed is a k-NN evaluation split (tuning bank {a} / \
             queries {b}, test bank {c} / queries {d}); training on it would test on training images: \
             choose another seed (the README's runs use 0, 10, 20)"
        ));
    }
    Ok(())
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
            return Err("--eval-size must be positive".into());
        }
        if train.is_some() {
            let t = crate::cmd_eval::open_split("eval-train", train, true)?;
            let v = crate::cmd_eval::open_split("eval-val", val, false)?;
            if t.class_names() != v.class_names() {
                return Err("--eval-train and --eval-val need the same class sub-folders".into());
            }
            let classes = t.class_names().map(|c| c.len()).unwrap_or(0);
            let name = format!(
                "{} / {}",
                train.as_ref().unwrap().display(),
                val.as_ref().unwrap().display()
            );
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
            return Err("--eval-builtin: both sizes must be positive".into());
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
        let extract = |flag: &str, d: &dyn Dataset| {
            extract_features(d, &all(d), &t, source, EXTRACT_BATCH, &mut |_, _| {})
                .map_err(|e| format!("--{flag}: {e}"))
        };
        let mut scores = Vec::new();
        for s in &self.splits {
            let bank = extract("eval-train", s.train.as_ref())?;
            let queries = extract("eval-val", s.val.as_ref())?;
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
            .map_err(|e| format!("--arch: {e}"))?;
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

/// "near 0" / "near ln K" when the teacher's entropy signals a collapse (docs/dino.md).
pub fn collapse(entropy: f64, ln_k: f64) -> Option<&'static str> {
    if entropy < 0.02 * ln_k {
        Some("near 0")
    } else if entropy > 0.98 * ln_k {
        Some("near ln K")
    } else {
        None
    }
}

/// The run's curves against the step (1-based: the step just finished).
#[derive(Default)]
pub struct Curves {
    pub loss: Vec<(f64, f64)>,
    pub kl: Vec<(f64, f64)>,
    pub entropy: Vec<(f64, f64)>,
    pub knn: Vec<(f64, f64)>,
}

impl Curves {
    pub fn record(&mut self, l: &StepLog) {
        let x = (l.step + 1) as f64;
        self.loss.push((x, l.loss));
        self.kl.push((x, l.kl));
        self.entropy.push((x, l.teacher_entropy));
    }

    /// `curve_loss.png`, `curve_entropy.png` and (with two or more k-NN points) `curve_knn.png` in
    /// `dir`; returns the paths written.
    pub fn write_pngs(&self, dir: &Path) -> Result<Vec<String>, String> {
        let none: &[(&str, f64)] = &[];
        let mut written = Vec::new();
        let mut chart = |name: &str, title: &str, y: &str, series: &[(&str, Vec<(f64, f64)>)]| {
            if series.iter().all(|s| s.1.is_empty()) {
                return Ok::<(), String>(());
            }
            let path = dir.join(name);
            line_chart(&path, title, "step", y, series, none)?;
            written.push(path.display().to_string());
            Ok(())
        };
        chart(
            "curve_loss.png",
            "DINO loss and KL(teacher || student)",
            "nats",
            &[("loss", self.loss.clone()), ("KL", self.kl.clone())],
        )?;
        chart(
            "curve_entropy.png",
            "teacher entropy",
            "nats",
            &[("H(teacher)", self.entropy.clone())],
        )?;
        if self.knn.len() >= 2 {
            chart(
                "curve_knn.png",
                "k-NN top-1 of the teacher (k = 20, T = 0.07)",
                "top-1 %",
                &[("teacher", self.knn.clone())],
            )?;
        }
        Ok(written)
    }
}

/// The mean +- std (sample std, n - 1) of several seeds' k-NN, as a table and one JSON object.
pub struct SeedSummary {
    pub table: String,
    pub json: serde_json::Value,
}

/// Summarises the JSON objects of `train_run` over `seeds` (same order).
pub fn seed_summary(seeds: &[u64], runs: &[serde_json::Value]) -> SeedSummary {
    use dinonat_eval::metrics::mean_std;
    use serde_json::json;
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
