//! The PNG curves of a training run: loss and KL, the teacher's entropy and the k-NN against the
//! step (docs/training.md, "Curves and k-NN").

use crate::plot::line_chart;
use dinonat_train::trainer::log::StepLog;
use std::io::Write;
use std::path::Path;

/// The file in a run directory that keeps its k-NN points (`step,top1`), so a resumed run draws the
/// whole curve.
pub const KNN_FILE: &str = "knn.csv";

/// The run's curves against the step (1-based: the step just finished).
#[derive(Default)]
pub struct Curves {
    pub loss: Vec<(f64, f64)>,
    pub kl: Vec<(f64, f64)>,
    pub entropy: Vec<(f64, f64)>,
    pub knn: Vec<(f64, f64)>,
}

impl Curves {
    /// The curves of the steps before `step` of the run in `dir`: log.csv's losses and knn.csv's k-NN
    /// points. knn.csv is cut back to those points (a killed run may have measured past its last
    /// checkpoint).
    pub fn resumed(dir: &Path, step: usize) -> Result<Curves, String> {
        let mut c = Curves::default();
        for l in dinonat_train::trainer::log::read_log(&dir.join("log.csv"), step) {
            c.record(&l);
        }
        let file = dir.join(KNN_FILE);
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let mut f = line.split(',').map(|v| v.trim().parse::<f64>());
            if let (Some(Ok(s)), Some(Ok(top1))) = (f.next(), f.next()) {
                if s <= step as f64 {
                    if c.knn.last().is_some_and(|p| p.0 == s) {
                        c.knn.pop();
                    }
                    c.knn.push((s, top1));
                }
            }
        }
        if !text.is_empty() {
            let kept: String = c.knn.iter().map(|(s, v)| format!("{s},{v}\n")).collect();
            std::fs::write(&file, format!("step,top1\n{kept}"))
                .map_err(|e| format!("{}: {e}", file.display()))?;
        }
        Ok(c)
    }

    /// A k-NN point of the teacher after `step` steps: on the curve (replacing one at the same step)
    /// and appended to `dir/knn.csv`.
    pub fn knn_point(&mut self, dir: &Path, step: usize, top1: f64) -> Result<(), String> {
        let x = step as f64;
        if self.knn.last().is_some_and(|p| p.0 == x) {
            self.knn.pop();
        }
        self.knn.push((x, top1));
        let file = dir.join(KNN_FILE);
        let new = !file.is_file();
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
            .and_then(|mut f| {
                if new {
                    writeln!(f, "step,top1")?;
                }
                writeln!(f, "{step},{top1}")
            })
            .map_err(|e| format!("{}: {e}", file.display()))
    }

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
