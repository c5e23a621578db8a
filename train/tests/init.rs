//! `TrainConfig::init` (`dinonat train --init CHECKPOINT`): a run that starts from another run's
//! student, teacher and centre, with a fresh optimiser and schedules from step 0; and activation
//! checkpointing, which must not change a run.

use dinonat_train::trainer::config::TrainConfig;
use dinonat_train::trainer::network::named_tensors;
use dinonat_train::trainer::{checkpoint, checkpoint_path, Trainer};
use std::path::Path;

mod common;
use common::tmp_dir;

fn tiny(out_dir: &Path, seed: u64) -> TrainConfig {
    TrainConfig {
        seed,
        ..common::tiny(out_dir)
    }
}

fn values(t: &Trainer, which: &str) -> Vec<Vec<f64>> {
    let net = if which == "student" {
        &t.student
    } else {
        &t.teacher
    };
    named_tensors(net, which)
        .iter()
        .map(|(_, x)| x.to_vec_f64())
        .collect()
}

#[test]
fn init_loads_student_teacher_and_centre_and_restarts_the_schedules() {
    let (src, dst) = (tmp_dir("src"), tmp_dir("dst"));
    let mut source = Trainer::new(tiny(&src, 1)).unwrap();
    source.run(None, |_| {}).unwrap();
    let ck = checkpoint_path(&src);
    let centre = checkpoint::load(&ck).unwrap().center(32, &ck).unwrap();
    assert!(
        centre.iter().any(|&c| c != 0.0),
        "the source run moved its centre"
    );

    // another seed: without init the weights would differ
    let mut config = tiny(&dst, 7);
    config.steps = 3;
    config.init = Some(ck.clone());
    let mut t = Trainer::new(config).unwrap();
    assert_eq!(t.step, 0);
    assert_eq!(values(&t, "student"), values(&source, "student"));
    assert_eq!(values(&t, "teacher"), values(&source, "teacher"));
    assert_ne!(values(&t, "student"), values(&t, "teacher"));
    assert_eq!(t.loss.center, centre);
    let fresh = Trainer::new(tiny(&dst, 7)).unwrap();
    assert_ne!(values(&fresh, "student"), values(&t, "student"));
    // a fresh optimiser and schedules from step 0: the warm-up's first lr, no AdamW state
    assert!(t.optimizer.state_tensors().unwrap().is_empty());
    let logs = t.run(None, |_| {}).unwrap();
    assert_eq!(logs.len(), 3);
    assert_eq!(logs[0].lr, t.schedules.lr(0));
    assert!(logs.iter().all(|l| l.loss.is_finite()));

    // the run's own checkpoint resumes without reading the init file again
    std::fs::remove_dir_all(&src).unwrap();
    let resumed = Trainer::resume(&checkpoint_path(&dst), None).unwrap();
    assert_eq!(resumed.step, 3);
    assert_eq!(resumed.config.init, Some(ck));
    let _ = std::fs::remove_dir_all(&dst);
}

#[test]
fn init_from_another_network_is_an_error_naming_both() {
    let (src, dst) = (tmp_dir("src-k"), tmp_dir("dst-k"));
    let mut source = Trainer::new(tiny(&src, 1)).unwrap();
    source.run(Some(1), |_| {}).unwrap();
    let mut config = tiny(&dst, 1);
    config.out_dim = 48;
    config.init = Some(checkpoint_path(&src));
    let e = Trainer::new(config).err().expect("K differs").to_string();
    assert!(e.contains("init "), "{e}");
    assert!(e.contains("K 32") && e.contains("K 48"), "{e}");
    let mut config = tiny(&dst, 1);
    config.init = Some(src.join("missing.safetensors"));
    let e = Trainer::new(config).err().expect("no file").to_string();
    assert!(e.contains("missing.safetensors"), "{e}");
    for d in [src, dst] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Activation checkpointing changes memory, not numbers: three steps give the same losses and the
/// same teacher, bit for bit.
#[test]
fn checkpointed_levels_train_the_same_run() {
    let (a_dir, b_dir) = (tmp_dir("kept"), tmp_dir("recomputed"));
    let mut kept = Trainer::new(tiny(&a_dir, 2)).unwrap();
    let mut recomputed = Trainer::new(tiny(&b_dir, 2)).unwrap();
    recomputed.set_checkpoint_levels(true);
    let la: Vec<f64> = kept
        .run(Some(3), |_| {})
        .unwrap()
        .iter()
        .map(|l| l.loss)
        .collect();
    let lb: Vec<f64> = recomputed
        .run(Some(3), |_| {})
        .unwrap()
        .iter()
        .map(|l| l.loss)
        .collect();
    assert_eq!(la, lb);
    assert_eq!(values(&kept, "teacher"), values(&recomputed, "teacher"));
    for d in [a_dir, b_dir] {
        let _ = std::fs::remove_dir_all(d);
    }
}
