//! The policy of a training run around the trainer: the defaults that depend on the data
//! ([`RunDefaults`]), the built-in k-NN splits a training seed must not generate, the evaluation
//! image size of an architecture, and the watches of a run (collapse warnings, the k-NN schedule,
//! the wall-clock deadline). docs/training.md, "Held-out protocol" and "Curves and k-NN".

use crate::trainer::config::TrainConfig;
use crate::trainer::TrainError;
use std::time::Instant;

/// What the data-dependent parameters default to. On the built-in set: the values that make a run
/// of minutes learn (docs/notebook/2026-11-27-fourth-diagnosis-short-run-recipe.md). With a data
/// folder: DINO's values (the Imagenette recipe's), because the built-in values were measured to
/// hurt there (28.1 % against 35.4 % k-NN at step 800).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunDefaults {
    pub batch_size: usize,
    pub steps: usize,
    /// Local crops when none are given; None: the crop preset's.
    pub n_local: Option<usize>,
    pub lr_end: Option<f64>,
    pub momentum_teacher: f64,
    pub momentum_teacher_end: f64,
    pub koleo: f64,
}

impl RunDefaults {
    pub const BUILTIN: RunDefaults = RunDefaults {
        batch_size: 64,
        steps: 500,
        n_local: Some(4),
        lr_end: Some(1.0),
        momentum_teacher: 0.99,
        momentum_teacher_end: 0.99,
        koleo: 1.0,
    };

    pub const DATA: RunDefaults = RunDefaults {
        batch_size: 32,
        steps: 600,
        n_local: None,
        lr_end: None,
        momentum_teacher: 0.996,
        momentum_teacher_end: 1.0,
        koleo: 0.0,
    };

    /// The defaults of a run on a data folder (`has_data`) or on the built-in set.
    pub fn for_data(has_data: bool) -> RunDefaults {
        if has_data {
            Self::DATA
        } else {
            Self::BUILTIN
        }
    }
}

/// The parameters whose defaults depend on the data, as given (None: not given).
#[derive(Clone, Copy, Debug, Default)]
pub struct DataDependent {
    pub batch_size: Option<usize>,
    pub steps: Option<usize>,
    /// Sets `steps` when `steps` is not given.
    pub epochs: Option<usize>,
    pub n_local: Option<usize>,
    pub lr_end: Option<f64>,
    pub momentum_teacher: Option<f64>,
    pub momentum_teacher_end: Option<f64>,
    pub koleo: Option<f64>,
}

impl DataDependent {
    /// Sets `c`'s data-dependent fields: the given values, else [`RunDefaults::for_data`] of
    /// `c.data`; `preset_local` is the crop preset's local crops. `epochs` opens the data set to
    /// count its batches.
    pub fn apply(&self, c: &mut TrainConfig, preset_local: usize) -> Result<(), TrainError> {
        let d = RunDefaults::for_data(c.data.is_some());
        c.batch_size = self.batch_size.unwrap_or(d.batch_size);
        c.steps = self.steps.unwrap_or(d.steps);
        c.n_local = self.n_local.or(d.n_local).unwrap_or(preset_local);
        c.lr_end = self.lr_end.or(d.lr_end);
        c.momentum_teacher = self.momentum_teacher.unwrap_or(d.momentum_teacher);
        c.momentum_teacher_end = self.momentum_teacher_end.unwrap_or(d.momentum_teacher_end);
        c.koleo = self.koleo.unwrap_or(d.koleo);
        if let (None, Some(epochs)) = (self.steps, self.epochs) {
            let len = c.dataset()?.len();
            c.steps = epochs * (len / c.batch_size.max(1));
            if c.steps == 0 {
                return Err(TrainError(format!(
                    "epochs {epochs}: no full batch of {} in {len} images",
                    c.batch_size
                )));
            }
        }
        Ok(())
    }
}

/// The built-in k-NN splits' seeds: tuning bank / queries, test bank / queries. Training seeds that
/// equal one of them would train on evaluation images and are refused ([`check_training_seed`]).
pub const BUILTIN_TUNING_SEEDS: (u64, u64) = (1, 2);
pub const BUILTIN_TEST_SEEDS: (u64, u64) = (3, 4);

/// Refuses a training seed that generates built-in evaluation images (docs/training.md, "Held-out
/// protocol"). The error names the parameter `seed`.
pub fn check_training_seed(seed: u64) -> Result<(), TrainError> {
    let (a, b) = BUILTIN_TUNING_SEEDS;
    let (c, d) = BUILTIN_TEST_SEEDS;
    if [a, b, c, d].contains(&seed) {
        return Err(TrainError(format!(
            "seed {seed}: the built-in set of that seed is a k-NN evaluation split (tuning bank {a} / \
             queries {b}, test bank {c} / queries {d}); training on it would test on training images: \
             choose another seed (the README's runs use 0, 10, 20)"
        )));
    }
    Ok(())
}

/// The side of the evaluation transform of an architecture when none is given: 32 px for the
/// `pico` configs (made for 32 px crops), else 64 px.
pub fn eval_image_size(arch: &str) -> usize {
    if arch.contains("pico") {
        32
    } else {
        64
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

/// Collapse warnings of a run: from a tenth of the run on, at most one per ten log intervals.
#[derive(Clone, Debug)]
pub struct CollapseWatch {
    ln_k: f64,
    after: usize,
    spacing: usize,
    warned_at: Option<usize>,
    /// Warnings given so far.
    pub warnings: usize,
}

impl CollapseWatch {
    pub fn new(c: &TrainConfig) -> CollapseWatch {
        CollapseWatch {
            ln_k: (c.out_dim as f64).ln(),
            after: (c.steps / 10).max(1),
            spacing: 10 * c.log_every.max(1),
            warned_at: None,
            warnings: 0,
        }
    }

    /// The warning due after 0-based `step` with the teacher's `entropy`, if any.
    pub fn check(&mut self, step: usize, entropy: f64) -> Option<String> {
        let kind = collapse(entropy, self.ln_k)?;
        if step < self.after || self.warned_at.is_some_and(|w| step < w + self.spacing) {
            return None;
        }
        self.warned_at = Some(step);
        self.warnings += 1;
        Some(format!(
            "step {}: teacher entropy {entropy:.4} is {kind} (ln K = {:.4}): the teacher may be collapsing",
            step + 1,
            self.ln_k
        ))
    }
}

/// Whether the k-NN of the teacher is due after 0-based `step` of `total`: every `every` steps
/// (0: never), but not after the last step (the final evaluation covers it).
pub fn knn_due(every: usize, step: usize, total: usize) -> bool {
    every > 0 && (step + 1).is_multiple_of(every) && step + 1 < total
}

/// Whether 0-based `step` of `total` prints a progress line: the first step, every `every`-th
/// (0 counts as 1) and the last.
pub fn progress_due(every: usize, step: usize, total: usize) -> bool {
    (step + 1).is_multiple_of(every.max(1)) || step + 1 == total || step == 0
}

/// The seeds of `n` runs from `first`: first, first + 10, first + 20, ...; None when one would not
/// fit in a u64.
pub fn run_seeds(first: u64, n: usize) -> Option<Vec<u64>> {
    (0..n as u64).map(|i| first.checked_add(10 * i)).collect()
}

/// A wall-clock limit on a run; the schedules still span all its steps.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    start: Instant,
    minutes: f64,
}

impl Deadline {
    /// A deadline `minutes` from now; the parameter must be positive and finite.
    pub fn new(minutes: f64) -> Result<Deadline, TrainError> {
        if !(minutes.is_finite() && minutes > 0.0) {
            return Err(TrainError(format!(
                "max_minutes: {minutes} must be positive"
            )));
        }
        Ok(Deadline {
            start: Instant::now(),
            minutes,
        })
    }

    pub fn minutes(&self) -> f64 {
        self.minutes
    }

    /// Whether the run stops after 0-based `step` of `total` (never after the last).
    pub fn passed(&self, step: usize, total: usize) -> bool {
        self.start.elapsed().as_secs_f64() >= self.minutes * 60.0 && step + 1 < total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_at_the_first_every_nth_and_last_step() {
        let due: Vec<usize> = (0..23).filter(|&s| progress_due(10, s, 23)).collect();
        assert_eq!(due, [0, 9, 19, 22]);
        assert!((0..5).all(|s| progress_due(0, s, 5)));
    }

    #[test]
    fn seeds_step_by_ten_and_overflow_is_none() {
        assert_eq!(run_seeds(3, 3), Some(vec![3, 13, 23]));
        assert_eq!(run_seeds(u64::MAX - 5, 2), None);
        assert_eq!(run_seeds(7, 1), Some(vec![7]));
    }

    type Knobs = (usize, usize, usize, f64, Option<f64>, f64, f64);

    fn knobs(given: &DataDependent, data: bool) -> Knobs {
        let mut c = TrainConfig {
            data: data.then(|| "/nonexistent".into()),
            ..TrainConfig::default()
        };
        given.apply(&mut c, 8).unwrap();
        let (b, s, n, k, l) = (c.batch_size, c.steps, c.n_local, c.koleo, c.lr_end);
        (b, s, n, k, l, c.momentum_teacher, c.momentum_teacher_end)
    }

    /// The built-in set gets the values of runs of minutes; a data folder gets DINO's; given
    /// values win over both.
    #[test]
    fn defaults_depend_on_the_data_and_given_values_win() {
        let none = DataDependent::default();
        assert_eq!(
            knobs(&none, false),
            (64, 500, 4, 1.0, Some(1.0), 0.99, 0.99)
        );
        assert_eq!(knobs(&none, true), (32, 600, 8, 0.0, None, 0.996, 1.0));
        let given = DataDependent {
            batch_size: Some(16),
            steps: Some(7),
            epochs: Some(3),
            n_local: Some(2),
            lr_end: Some(0.1),
            momentum_teacher: Some(0.98),
            momentum_teacher_end: Some(0.985),
            koleo: Some(0.5),
        };
        let want = (16, 7, 2, 0.5, Some(0.1), 0.98, 0.985);
        assert_eq!(knobs(&given, false), want);
        assert_eq!(knobs(&given, true), want);
    }

    /// Epochs count full batches of the data set; none is an error naming the parameter.
    #[test]
    fn epochs_set_the_steps() {
        let mut c = TrainConfig {
            procedural_len: 100,
            ..TrainConfig::default()
        };
        let epochs = |e, b| DataDependent {
            epochs: Some(e),
            batch_size: Some(b),
            ..DataDependent::default()
        };
        epochs(3, 32).apply(&mut c, 8).unwrap();
        assert_eq!(c.steps, 3 * 3);
        let e = epochs(2, 128).apply(&mut c, 8).unwrap_err().to_string();
        assert!(
            e.starts_with("epochs 2: no full batch of 128 in 100"),
            "{e}"
        );
    }

    #[test]
    fn evaluation_seeds_are_refused() {
        for seed in [1, 2, 3, 4] {
            let e = check_training_seed(seed).unwrap_err().to_string();
            assert!(e.starts_with(&format!("seed {seed}:")), "{e}");
        }
        for seed in [0, 5, 10, 20] {
            assert!(check_training_seed(seed).is_ok());
        }
    }

    #[test]
    fn eval_size_follows_the_architecture() {
        assert_eq!(eval_image_size("nat_pico"), 32);
        assert_eq!(eval_image_size("dinat_pico_full"), 32);
        assert_eq!(eval_image_size("nat_mini"), 64);
    }

    /// No warning in the first tenth; then at most one per ten log intervals; both collapse kinds.
    #[test]
    fn collapse_warnings_are_spaced() {
        let c = TrainConfig {
            out_dim: 1024,
            steps: 1000,
            log_every: 10,
            ..TrainConfig::default()
        };
        let ln_k = (1024f64).ln();
        let mut w = CollapseWatch::new(&c);
        assert!(w.check(50, 0.0).is_none(), "before a tenth of the run");
        assert!(w.check(100, 0.5 * ln_k).is_none(), "a healthy entropy");
        let first = w.check(100, 0.0).expect("near 0");
        assert!(
            first.contains("step 101") && first.contains("near 0"),
            "{first}"
        );
        assert!(w.check(150, ln_k).is_none(), "within 10 log intervals");
        assert!(w.check(200, ln_k).unwrap().contains("near ln K"));
        assert_eq!(w.warnings, 2);
    }

    #[test]
    fn knn_schedule_and_deadline() {
        let due: Vec<usize> = (0..10).filter(|&s| knn_due(3, s, 10)).collect();
        assert_eq!(due, [2, 5, 8]);
        assert!(
            !(0..9).any(|s| knn_due(3, s, 9) && s == 8),
            "not after the last step"
        );
        assert!((0..10).all(|s| !knn_due(0, s, 10)));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = Deadline::new(bad).unwrap_err().to_string();
            assert!(e.starts_with("max_minutes:"), "{e}");
        }
        let tiny = Deadline::new(1e-9).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(tiny.passed(3, 10) && !tiny.passed(9, 10));
        assert!(!Deadline::new(60.0).unwrap().passed(3, 10));
    }
}
