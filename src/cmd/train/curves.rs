//! The PNG curves of a training run: loss and KL, the teacher's entropy and the k-NN against the
//! step (docs/training.md, "Curves and k-NN").

use crate::plot::line_chart;
use dinonat_train::trainer::log::StepLog;
use std::path::Path;

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
