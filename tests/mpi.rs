//! Data parallel under a real MPI launcher (cargo feature `mpi`; `.ci/run` installs Open MPI and runs
//! this with `cargo test --release --features mpi --test mpi`). Needs `mpirun` on PATH.
//! - 2 ranks x 16 images train what 1 rank x 32 trains (KoLeo off): the loss of every step within
//!   1e-5 relative, the final teacher within 1e-4;
//! - the all-reduce overlapped with the backward (the default, in small buckets here) and the one
//!   after the backward (`--no-overlap`) give the same losses and teacher, bit for bit;
//! - a rank killed with SIGKILL ends the job within seconds, naming the rank; the last checkpoint
//!   loads and the run resumes on 2 ranks.
#![cfg(feature = "mpi")]

use dinonat_train::trainer::network::named_tensors;
use dinonat_train::trainer::Trainer;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_dinonat");

fn tiny(steps: usize, out: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        "train --arch nat_pico --out-dim 64 --head-hidden 32 --head-bottleneck 16 \
        --global-size 16 --local-size 8 --local-crops 2 --procedural-len 128 --procedural-size 24 \
        --batch-size 32 --koleo 0 --no-eval --log-every 1"
            .split_whitespace()
            .map(String::from)
            .collect();
    v.extend([
        "--steps".into(),
        steps.to_string(),
        "--out".into(),
        out.display().to_string(),
    ]);
    v
}

/// A launched job that is killed and reaped when the test ends, whichever way it ends.
struct Job(Child);

impl Drop for Job {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mpirun(np: usize) -> Command {
    let mut c = Command::new("mpirun");
    c.args([
        "--allow-run-as-root",
        "--oversubscribe",
        "-np",
        &np.to_string(),
    ])
    // Open MPI 4.1's shared-memory single-copy path fails in some containers
    .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
    .env("RAYON_NUM_THREADS", "1");
    c
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dinonat-mpi-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn ok(o: Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn losses(dir: &Path) -> Vec<f64> {
    let csv = std::fs::read_to_string(dir.join("log.csv")).unwrap();
    csv.lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
        .collect()
}

fn teacher(dir: &Path) -> Vec<f32> {
    let t = Trainer::resume(&dir.join("checkpoint.safetensors"), None).unwrap();
    named_tensors(&t.teacher, "teacher")
        .iter()
        .flat_map(|(_, x)| x.to_vec::<f32>().unwrap())
        .collect()
}

#[test]
fn two_ranks_train_what_one_rank_trains() {
    let (one, two) = (tmp("one"), tmp("two"));
    ok(
        Command::new(BIN)
            .args(tiny(20, &one))
            .env("RAYON_NUM_THREADS", "1")
            .output()
            .unwrap(),
        "1 rank",
    );
    let o = mpirun(2).arg(BIN).args(tiny(20, &two)).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    ok(o, "mpirun -np 2");
    assert!(stdout.contains("data parallel: 2 ranks (mpi)"), "{stdout}");
    let (a, b) = (losses(&one), losses(&two));
    assert_eq!((a.len(), b.len()), (20, 20));
    for (s, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            ((x - y) / x).abs() < 1e-5,
            "step {}: {y} on 2 ranks vs {x}",
            s + 1
        );
    }
    let (ta, tb) = (teacher(&one), teacher(&two));
    let d: f64 = ta
        .iter()
        .zip(&tb)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum();
    let n: f64 = ta.iter().map(|x| (*x as f64).powi(2)).sum();
    assert!(
        (d / n).sqrt() < 1e-4,
        "teacher relative difference {}",
        (d / n).sqrt()
    );
    assert!(a[0] != a[19], "nothing trained");
}

#[test]
fn the_overlapped_all_reduce_gives_the_bits_of_the_one_after_the_backward() {
    let (after, overlapped) = (tmp("after"), tmp("overlapped"));
    let o = mpirun(2)
        .arg(BIN)
        .args(tiny(6, &after))
        .arg("--no-overlap")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    ok(o, "mpirun -np 2 ... --no-overlap");
    assert!(stdout.contains("after the backward"), "{stdout}");
    // 20 kB buckets: nat_pico's 0.1 M parameters in many buckets
    let o = mpirun(2)
        .arg(BIN)
        .args(tiny(6, &overlapped))
        .args(["--bucket-mb", "0.02"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    ok(o, "mpirun -np 2 ... --bucket-mb 0.02");
    assert!(
        stdout.contains("overlapped with the backward in buckets of 0.02 MB"),
        "{stdout}"
    );
    let (a, b) = (losses(&after), losses(&overlapped));
    assert_eq!(a.len(), 6);
    assert_eq!(a, b, "losses");
    assert_eq!(teacher(&after), teacher(&overlapped), "teacher");
    assert!(a[0] != a[5], "nothing trained");
}

#[test]
fn a_killed_rank_ends_the_job_and_the_run_resumes() {
    let dir = tmp("kill");
    let mut args = tiny(4000, &dir);
    args.extend(["--checkpoint-every".into(), "5".into()]);
    let mut job = Job(mpirun(2)
        .arg(BIN)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap());
    let ckpt = dir.join("checkpoint.safetensors");
    let start = Instant::now();
    while !ckpt.is_file() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint after 120 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // the ranks are mpirun's children; kill the one that is not rank 0 (rank 0 writes the log)
    let children = String::from_utf8(
        Command::new("pgrep")
            .args(["-P", &job.0.id().to_string()])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let pids: Vec<&str> = children.split_whitespace().collect();
    assert_eq!(pids.len(), 2, "mpirun's children: {children}");
    let rank_of = |pid: &str| {
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        String::from_utf8_lossy(&env)
            .split('\0')
            .find_map(|kv| kv.strip_prefix("OMPI_COMM_WORLD_RANK=").map(String::from))
    };
    let victim = pids
        .iter()
        .find(|p| rank_of(p).as_deref() == Some("1"))
        .expect("rank 1's pid");
    let killed = Instant::now();
    Command::new("kill").args(["-9", victim]).status().unwrap();
    let mut waited = None;
    while killed.elapsed() < Duration::from_secs(30) {
        if let Some(status) = job.0.try_wait().unwrap() {
            waited = Some(status);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let Some(status) = waited else {
        panic!("the job still ran 30 s after rank 1 was killed");
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(job.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("rank 1"),
        "mpirun's message should name rank 1: {stderr}"
    );
    println!(
        "job ended {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );
    // the last checkpoint loads and the run goes on, on 2 ranks
    let t = Trainer::resume(&ckpt, None).unwrap();
    assert!(t.step >= 5 && t.step.is_multiple_of(5), "step {}", t.step);
    let stop = (t.step + 5).to_string();
    ok(
        mpirun(2)
            .arg(BIN)
            .args([
                "train",
                "--resume",
                &ckpt.display().to_string(),
                "--stop-at",
                &stop,
                "--no-eval",
            ])
            .output()
            .unwrap(),
        "resume on 2 ranks",
    );
    assert_eq!(Trainer::resume(&ckpt, None).unwrap().step, t.step + 5);
}
