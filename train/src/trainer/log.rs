//! Per-step diagnostics: one CSV row per step and a progress line every `log_every` steps.

use super::error::{Result, TrainError};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// One step's numbers (the paper's diagnostics plus the schedules' values and speed).
#[derive(Clone, Debug, PartialEq)]
pub struct StepLog {
    pub step: usize,
    pub epoch: usize,
    pub loss: f64,
    pub teacher_entropy: f64,
    pub kl: f64,
    pub lr: f64,
    pub weight_decay: f64,
    pub teacher_momentum: f64,
    pub teacher_temp: f64,
    pub last_layer_frozen: bool,
    /// Source images per second over the whole step (data wait included).
    pub img_per_s: f64,
    pub seconds: f64,
}

pub const HEADER: &str = "step,epoch,loss,teacher_entropy,kl,lr,weight_decay,teacher_momentum,teacher_temp,last_layer_frozen,img_per_s,seconds";

impl StepLog {
    pub fn csv_row(&self) -> String {
        format!(
            "{},{},{:.9},{:.9},{:.9},{:.6e},{:.6},{:.8},{:.6},{},{:.2},{:.4}",
            self.step,
            self.epoch,
            self.loss,
            self.teacher_entropy,
            self.kl,
            self.lr,
            self.weight_decay,
            self.teacher_momentum,
            self.teacher_temp,
            self.last_layer_frozen as u8,
            self.img_per_s,
            self.seconds
        )
    }

    pub fn progress_line(&self, total: usize) -> String {
        format!(
            "step {}/{total} ep {} | loss {:.4} H(teacher) {:.4} KL {:.4} | lr {:.2e} wd {:.3} m {:.5} τt {:.4}{} | {:.1} img/s",
            self.step + 1,
            self.epoch,
            self.loss,
            self.teacher_entropy,
            self.kl,
            self.lr,
            self.weight_decay,
            self.teacher_momentum,
            self.teacher_temp,
            if self.last_layer_frozen { " (last layer frozen)" } else { "" },
            self.img_per_s
        )
    }
}

impl StepLog {
    /// Parses a row of [`StepLog::csv_row`]; None for anything else.
    pub fn from_csv_row(row: &str) -> Option<StepLog> {
        let f: Vec<&str> = row.split(',').collect();
        if f.len() != 12 {
            return None;
        }
        let x = |i: usize| f[i].parse::<f64>().ok();
        Some(StepLog {
            step: f[0].parse().ok()?,
            epoch: f[1].parse().ok()?,
            loss: x(2)?,
            teacher_entropy: x(3)?,
            kl: x(4)?,
            lr: x(5)?,
            weight_decay: x(6)?,
            teacher_momentum: x(7)?,
            teacher_temp: x(8)?,
            last_layer_frozen: f[9] == "1",
            img_per_s: x(10)?,
            seconds: x(11)?,
        })
    }
}

/// The rows of the log at `path` for steps before `before` (none when it does not exist), so a
/// resumed run's curves start at step 1.
pub fn read_log(path: &Path, before: usize) -> Vec<StepLog> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(StepLog::from_csv_row)
        .filter(|l| l.step < before)
        .collect()
}

/// `log.csv` in the run directory, appended to on resume.
pub struct CsvLog {
    file: File,
}

impl CsvLog {
    /// Opens the log of a run that continues at `resume_step`: rows of steps from there on,
    /// written by a run killed after its last checkpoint, are dropped (rewritten atomically), so
    /// no step appears twice.
    pub fn open_at(path: &Path, resume_step: usize) -> Result<CsvLog> {
        if resume_step > 0 && path.is_file() {
            let text = std::fs::read_to_string(path)
                .map_err(|e| TrainError(format!("{}: cannot read the log: {e}", path.display())))?;
            let kept: Vec<&str> = text
                .lines()
                .filter(|row| {
                    let step = row.split(',').next().and_then(|s| s.parse::<usize>().ok());
                    step.is_none_or(|s| s < resume_step)
                })
                .collect();
            if kept.len() != text.lines().count() {
                let body = kept.join("\n") + "\n";
                dinonat_engine::io::write_atomic(path, body.as_bytes())?;
            }
        }
        Self::open(path, resume_step > 0)
    }

    pub fn open(path: &Path, append: bool) -> Result<CsvLog> {
        let exists = path.is_file();
        let file = OpenOptions::new()
            .create(true)
            .append(append)
            .write(true)
            .truncate(!append)
            .open(path)
            .map_err(|e| TrainError(format!("{}: cannot open the log: {e}", path.display())))?;
        let mut log = CsvLog { file };
        if !(append && exists) {
            log.line(HEADER)?;
        }
        Ok(log)
    }

    pub fn line(&mut self, line: &str) -> Result<()> {
        writeln!(self.file, "{line}").map_err(|e| TrainError(format!("cannot write the log: {e}")))
    }
}
