//! What `dinonat train` measures besides the loss: the weighted k-NN (k = 20, T = 0.07) of the
//! teacher's backbone on a labelled split, next to raw pixels and the random-init network (the
//! run's step-0 teacher), and the PNG curves of a run (docs/training.md, "Curves and k-NN").

use crate::plot::line_chart;
use dinonat_engine::DType;
use dinonat_model::{DinoNetwork, Nat};
use dinonat_train::augment::EvalTransform;
use dinonat_train::data::{Dataset, Procedural};
use dinonat_train::eval::knn::{knn_classify, KnnConfig};
use dinonat_train::features::{extract_features, FeatureSource};
use dinonat_train::trainer::config::TrainConfig;
use dinonat_train::trainer::log::StepLog;
use std::path::{Path, PathBuf};

/// Images per forward pass during extraction (as `dinonat knn`).
const EXTRACT_BATCH: usize = 64;

/// The labelled train (memory bank) and val (queries) split of the k-NN, and its transform size.
pub struct EvalSplit {
    train: Box<dyn Dataset>,
    val: Box<dyn Dataset>,
    classes: usize,
    pub size: usize,
    name: String,
}

impl EvalSplit {
    /// `--eval-train/--eval-val` folders, else the built-in split (seed 1 / seed 2, as
    /// `dinonat knn --builtin`) when `builtin_ok`; None when neither applies.
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
            return Ok(Some(EvalSplit {
                train: t,
                val: v,
                classes,
                size,
                name,
            }));
        }
        if !builtin_ok {
            return Ok(None);
        }
        let (n_train, n_val) = (builtin[0], builtin[1]);
        if n_train == 0 || n_val == 0 {
            return Err("--eval-builtin: both sizes must be positive".into());
        }
        let t = Procedural::new(1, n_train, Procedural::DEFAULT_SIZE);
        let classes = t.class_names().map(|c| c.len()).unwrap_or(0);
        Ok(Some(EvalSplit {
            train: Box::new(t),
            val: Box::new(Procedural::new(2, n_val, Procedural::DEFAULT_SIZE)),
            classes,
            size,
            name: format!("built-in split ({n_train} train / {n_val} val, {size} px)"),
        }))
    }

    pub fn describe(&self) -> String {
        self.name.clone()
    }

    /// k-NN top-1 (percent) of `source`'s features.
    fn knn(&self, source: FeatureSource<'_>) -> Result<f64, String> {
        let t = EvalTransform::square(self.size);
        let all = |d: &dyn Dataset| (0..d.len()).collect::<Vec<_>>();
        let extract = |flag: &str, d: &dyn Dataset| {
            extract_features(d, &all(d), &t, source, EXTRACT_BATCH, &mut |_, _| {})
                .map_err(|e| format!("--{flag}: {e}"))
        };
        let bank = extract("eval-train", self.train.as_ref())?;
        let queries = extract("eval-val", self.val.as_ref())?;
        let report = knn_classify(
            &bank.values,
            &bank.labels,
            &queries.values,
            &queries.labels,
            bank.dim,
            &KnnConfig::new(self.classes),
        )
        .map_err(|e| format!("k-NN: {e}"))?;
        Ok(report.top1)
    }

    pub fn knn_pixels(&self) -> Result<f64, String> {
        self.knn(FeatureSource::Pixels)
    }

    pub fn knn_backbone(&self, nat: &Nat) -> Result<f64, String> {
        self.knn(FeatureSource::Backbone(nat))
    }

    /// The run's teacher before any step: same architecture, same seed, untrained.
    pub fn knn_random_init(&self, config: &TrainConfig) -> Result<f64, String> {
        let mut backbone = config.backbone().map_err(|e| e.to_string())?;
        backbone.drop_path = 0.0;
        let head = config.head(backbone.num_features());
        let net = DinoNetwork::new(&backbone, &head, DType::F32, config.seed)
            .map_err(|e| format!("--arch: {e}"))?;
        self.knn_backbone(&net.backbone)
    }
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
