//! The training loop end to end on a tiny config: the loss moves, resume is bitwise, checkpoints
//! are atomic, bad input gives errors naming the flag or file.

use dinonat_engine::io::{load_safetensors, save_safetensors};
use dinonat_engine::{DType, Tensor};
use dinonat_train::trainer::config::TrainConfig;
use dinonat_train::trainer::log::{read_log, StepLog};
use dinonat_train::trainer::network::named_tensors;
use dinonat_train::trainer::{checkpoint, checkpoint_path, Trainer};
mod common;

use common::{tiny, tmp_dir};

fn teacher_values(t: &Trainer) -> Vec<Vec<f32>> {
    named_tensors(&t.teacher, "teacher")
        .iter()
        .map(|(_, x)| x.to_vec::<f32>().unwrap())
        .collect()
}

#[test]
fn tiny_run_has_finite_changing_loss_and_writes_log_and_checkpoint() {
    let dir = tmp_dir("e2e");
    let mut t = Trainer::new(tiny(&dir)).unwrap();
    let before = teacher_values(&t);
    let logs = t.run(None, |_| {}).unwrap();
    assert_eq!(logs.len(), 4);
    assert!(logs
        .iter()
        .all(|l| l.loss.is_finite() && l.teacher_entropy.is_finite()));
    assert!(logs[0].loss != logs[3].loss);
    assert!(logs.iter().all(|l| l.kl >= -1e-6));
    assert!(logs[0].teacher_temp < logs[3].teacher_temp);
    assert_ne!(before, teacher_values(&t)); // the EMA moved the teacher
    let csv = std::fs::read_to_string(dir.join("log.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5);
    assert!(csv.starts_with("step,epoch,loss,teacher_entropy,kl,lr"));
    assert_eq!(checkpoint::load(&checkpoint_path(&dir)).unwrap().step, 4);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn teacher_starts_as_an_exact_copy_of_the_student() {
    let dir = tmp_dir("copy");
    let t = Trainer::new(tiny(&dir)).unwrap();
    let s = named_tensors(&t.student, "x");
    let te = named_tensors(&t.teacher, "x");
    assert_eq!(s.len(), te.len());
    for ((a, x), (b, y)) in s.iter().zip(&te) {
        assert_eq!(a, b);
        assert_eq!(
            x.to_vec::<f32>().unwrap(),
            y.to_vec::<f32>().unwrap(),
            "{a}"
        );
    }
}

#[test]
fn resume_is_bitwise_identical_to_an_uninterrupted_run() {
    let (a, b) = (tmp_dir("full"), tmp_dir("split"));
    let mut full = Trainer::new(tiny(&a)).unwrap();
    let full_logs = full.run(None, |_| {}).unwrap();

    let mut first = Trainer::new(tiny(&b)).unwrap();
    let first_logs = first.run(Some(2), |_| {}).unwrap();
    drop(first);
    let mut second = Trainer::resume(&checkpoint_path(&b), None).unwrap();
    assert_eq!(second.step, 2);
    let second_logs = second.run(None, |_| {}).unwrap();

    let losses = |l: &[dinonat_train::trainer::log::StepLog]| -> Vec<u64> {
        l.iter().map(|x| x.loss.to_bits()).collect()
    };
    let mut split = losses(&first_logs);
    split.extend(losses(&second_logs));
    assert_eq!(losses(&full_logs), split);
    assert_eq!(teacher_values(&full), teacher_values(&second));
    assert_eq!(full.loss.center, second.loss.center);
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

#[test]
fn a_resumed_runs_curves_read_the_earlier_log_rows() {
    // issue 15, case 7: after a resume the curves showed only the resumed steps
    let dir = tmp_dir("read-log");
    let c = tiny(&dir);
    let mut t = Trainer::new(c).unwrap();
    let logs = t.run(None, |_| {}).unwrap();
    let log = dir.join("log.csv");
    // the rows as written (the CSV keeps 9 decimals of the loss: a value read back prints the
    // same 9 decimals, where scaling and rounding could land either side of a boundary)
    let rows = |l: &[StepLog]| -> Vec<(usize, String)> {
        l.iter()
            .map(|l| (l.step, format!("{:.9}", l.loss)))
            .collect()
    };
    assert_eq!(rows(&read_log(&log, 3)), rows(&logs[..3]));
    assert!(read_log(&dir.join("missing.csv"), 3).is_empty());
    // a torn last row (a kill mid-write) is left out, not misread
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str("4,1,0.5");
    std::fs::write(&log, text).unwrap();
    assert_eq!(rows(&read_log(&log, 99)), rows(&logs));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn checkpoint_write_is_atomic() {
    let dir = tmp_dir("atomic");
    let mut t = Trainer::new(tiny(&dir)).unwrap();
    t.run(Some(1), |_| {}).unwrap();
    let path = checkpoint_path(&dir);
    let before = std::fs::read(&path).unwrap();
    // make the temporary file impossible to create: a directory stands at its name
    let tmp = dir.join(format!(".checkpoint.safetensors.tmp{}", std::process::id()));
    std::fs::create_dir_all(tmp.join("blocker")).unwrap();
    t.step = 3;
    let err = t.save_checkpoint().unwrap_err().to_string();
    assert!(err.contains("checkpoint.safetensors"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(checkpoint::load(&path).unwrap().step, 1);
    // a leftover temporary file from a crash does not hurt the next save
    std::fs::remove_dir_all(&tmp).unwrap();
    std::fs::write(&tmp, b"half a file").unwrap();
    t.save_checkpoint().unwrap();
    assert_eq!(checkpoint::load(&path).unwrap().step, 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn corrupt_or_foreign_checkpoints_are_clear_errors() {
    let dir = tmp_dir("corrupt");
    let bad = dir.join("bad.safetensors");
    std::fs::write(&bad, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json").unwrap();
    let e = Trainer::resume(&bad, None).err().unwrap().to_string();
    assert!(e.contains("bad.safetensors"), "{e}");
    let e = Trainer::resume(&dir.join("missing.safetensors"), None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("missing.safetensors"), "{e}");
    // a valid safetensors file that is not a training checkpoint
    let other = dir.join("other.safetensors");
    dinonat_engine::io::save_safetensors(
        &other,
        &[("x".into(), Tensor::from_slice(&[1f32], &[1]).unwrap())],
        None,
    )
    .unwrap();
    let e = Trainer::resume(&other, None).err().unwrap().to_string();
    assert!(
        e.contains("other.safetensors") && e.contains("not a DinoNAT training checkpoint"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_parameters_are_named() {
    let dir = tmp_dir("flags");
    let err = |c: TrainConfig| Trainer::new(c).err().unwrap().to_string();
    let e = err(TrainConfig {
        batch_size: 100,
        ..tiny(&dir)
    });
    assert!(e.contains("batch_size"), "{e}");
    let e = err(TrainConfig {
        data: Some(dir.join("no-such-folder")),
        ..tiny(&dir)
    });
    assert!(
        e.starts_with("data:") && e.contains("no-such-folder"),
        "{e}"
    );
    let e = err(TrainConfig {
        arch: "nat_huge".into(),
        ..tiny(&dir)
    });
    assert!(e.starts_with("arch:") && e.contains("nat_huge"), "{e}");
    let e = err(TrainConfig {
        drop_path: 1.5,
        ..tiny(&dir)
    });
    assert!(e.starts_with("drop_path:"), "{e}");
    let e = err(TrainConfig {
        steps: 0,
        ..tiny(&dir)
    });
    assert!(e.starts_with("steps:"), "{e}");
    for (koleo, batch_size) in [(-0.1, 4), (f64::NAN, 4), (0.1, 1)] {
        let e = err(TrainConfig {
            koleo,
            batch_size,
            ..tiny(&dir)
        });
        assert!(e.starts_with("koleo:"), "{e}");
    }
    for lr_end in [-0.1, 1.5, f64::NAN] {
        let e = err(TrainConfig {
            lr_end: Some(lr_end),
            ..tiny(&dir)
        });
        assert!(e.starts_with("lr_end:"), "{e}");
    }
    for end in [0.9, 1.01, f64::NAN] {
        let e = err(TrainConfig {
            momentum_teacher: 0.99,
            momentum_teacher_end: end,
            ..tiny(&dir)
        });
        assert!(e.starts_with("momentum_teacher_end:"), "{e}");
    }
    for invert in [-0.1, 1.5, f64::NAN] {
        let e = err(TrainConfig {
            invert,
            ..tiny(&dir)
        });
        assert!(e.starts_with("invert:"), "{e}");
    }
}

/// --lr-end and --momentum-teacher-end reach the schedules: DINO's cosine to 1e-6 and to momentum 1
/// by default, a fraction of the peak lr and a constant momentum when asked.
#[test]
fn lr_end_and_momentum_end_shape_the_schedules() {
    let dir = tmp_dir("schedule-ends");
    let base = TrainConfig {
        steps: 200,
        momentum_teacher: 0.99,
        ..tiny(&dir)
    };
    let peak = base.peak_lr();
    let warm = base.schedules().lr_warmup_steps;
    assert!(warm > 0 && warm < 100, "{warm}");
    let dino = base.schedules();
    assert_eq!(dino.lr(warm), peak);
    // the cosine's last step lies one step short of its end value
    assert!(
        dino.lr(199) > 1e-6 && dino.lr(199) < 1e-6 + 1e-3 * peak,
        "{}",
        dino.lr(199)
    );
    assert_eq!(dino.teacher_momentum(0), 0.99);
    assert!(dino.teacher_momentum(199) > 0.9999);
    let constant = TrainConfig {
        lr_end: Some(1.0),
        momentum_teacher_end: 0.99,
        ..base.clone()
    }
    .schedules();
    for step in [warm, 100, 150, 199, 250] {
        assert!((constant.lr(step) - peak).abs() < 1e-15, "step {step}");
        assert!((constant.teacher_momentum(step) - 0.99).abs() < 1e-15);
    }
    assert!(constant.lr(0) < peak, "the warm-up stays");
    let tenth = TrainConfig {
        lr_end: Some(0.1),
        ..base.clone()
    }
    .schedules();
    let last = tenth.lr(199);
    assert!(last > 0.1 * peak && last < 0.1001 * peak, "{last}");
    // the trainer uses exactly these
    let t = Trainer::new(TrainConfig {
        lr_end: Some(1.0),
        momentum_teacher_end: 0.99,
        ..base
    })
    .unwrap();
    assert_eq!(t.schedules, constant);
    let _ = std::fs::remove_dir_all(&dir);
}

/// --koleo adds the spreading term: the same first batch gives a different update of the student
/// than DINO's loss alone, and the run stays finite.
#[test]
fn koleo_changes_the_update_and_stays_finite() {
    let student_after = |koleo: f64, name: &str| {
        let dir = tmp_dir(name);
        let mut t = Trainer::new(TrainConfig {
            koleo,
            ..tiny(&dir)
        })
        .unwrap();
        let logs = t.run(Some(2), |_| {}).unwrap();
        assert!(logs.iter().all(|l| l.loss.is_finite()), "{logs:?}");
        let v = named_tensors(&t.student, "student")
            .iter()
            .map(|(_, x)| x.to_vec::<f32>().unwrap())
            .collect::<Vec<_>>();
        let _ = std::fs::remove_dir_all(&dir);
        v
    };
    assert_ne!(
        student_after(0.0, "koleo-off"),
        student_after(0.5, "koleo-on")
    );
}

#[test]
fn configs_saved_before_new_fields_load_with_the_old_behaviour() {
    let dir = tmp_dir("old-config");
    let config = TrainConfig {
        momentum_teacher: 0.99,
        head_bn: true,
        ..tiny(&dir)
    };
    let mut json: serde_json::Value = serde_json::to_value(&config).unwrap();
    // a config written before --momentum-teacher / --head-bn / --hue / --grayscale existed
    for field in [
        "momentum_teacher",
        "momentum_teacher_end",
        "lr_end",
        "head_bn",
        "hue",
        "grayscale",
        "invert",
        "koleo",
        "centering",
    ] {
        assert!(
            json.as_object_mut().unwrap().remove(field).is_some(),
            "{field}"
        );
    }
    let old: TrainConfig = serde_json::from_value(json).unwrap();
    assert_eq!(old.momentum_teacher, 0.996);
    assert!(!old.head_bn);
    assert_eq!((old.hue, old.grayscale, old.koleo), (0.1, 0.2, 0.0));
    assert_eq!((old.momentum_teacher_end, old.lr_end), (1.0, None));
    assert_eq!(old.centering, dinonat_train::dino::Centering::Center);
    assert_eq!((old.invert, old.multi_crop().p_invert), (0.0, 0.0));
    let back: TrainConfig = serde_json::from_value(serde_json::to_value(&config).unwrap()).unwrap();
    assert_eq!(back, config);
    // the momentum reaches the schedule, the BN the head
    let t = Trainer::new(config).unwrap();
    assert_eq!(t.schedules.teacher_momentum(0), 0.99);
    assert_eq!(t.student.head.bn.len(), 2);
    assert!(t.student.head.params.get("mlp.1.weight").is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_checkpoint_with_f64_optimiser_state_still_resumes() {
    // checkpoints written before the moments became f32 hold adamw.{m,v}.* as F64 (the centre
    // is F64 in both forms)
    let (a, b) = (tmp_dir("f64-full"), tmp_dir("f64-old"));
    let mut full = Trainer::new(tiny(&a)).unwrap();
    let full_logs = full.run(None, |_| {}).unwrap();
    let mut first = Trainer::new(tiny(&b)).unwrap();
    first.run(Some(2), |_| {}).unwrap();
    drop(first);
    let path = checkpoint_path(&b);
    let file = load_safetensors(&path).unwrap();
    let old_form: Vec<(String, Tensor)> = file
        .tensors
        .iter()
        .map(|(n, t)| match n.starts_with("adamw.") {
            true => (n.clone(), t.to_dtype(DType::F64)),
            false => (n.clone(), t.clone()),
        })
        .collect();
    save_safetensors(&path, &old_form, Some(&file.metadata)).unwrap();
    let reread = load_safetensors(&path).unwrap();
    let moments: Vec<&Tensor> = reread
        .tensors
        .iter()
        .filter(|(n, _)| n.starts_with("adamw.m.") || n.starts_with("adamw.v."))
        .map(|(_, t)| t)
        .collect();
    assert!(!moments.is_empty() && moments.iter().all(|t| t.dtype() == DType::F64));
    assert_eq!(reread.get("center").unwrap().dtype(), DType::F64);

    let mut second = Trainer::resume(&path, None).unwrap();
    assert_eq!(second.step, 2);
    let second_logs = second.run(None, |_| {}).unwrap();
    // the F64 moments are f32 values widened, so the run continues bit for bit
    let losses: Vec<u64> = second_logs.iter().map(|l| l.loss.to_bits()).collect();
    let want: Vec<u64> = full_logs[2..].iter().map(|l| l.loss.to_bits()).collect();
    assert_eq!(losses, want);
    assert_eq!(teacher_values(&full), teacher_values(&second));
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}
