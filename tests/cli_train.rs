//! End-to-end checks of `dinonat train` (the main job: training, then the k-NN table) and
//! `dinonat bench train-step`, with tiny configs so each run takes about a second.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn dinonat(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dinonat"))
        .args(args)
        .output()
        .expect("the dinonat binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dinonat-cli-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn last_json(stdout: &str) -> Value {
    let line = stdout.lines().last().expect("some output");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {line}"))
}

/// nat_pico, K 32, head 16-16-8, 2 x 16 + 2 x 8 crops, batch 4, 4 steps, k-NN on 40 / 20 images.
const TINY: [&str; 22] = [
    "--arch",
    "nat_pico",
    "--out-dim",
    "32",
    "--head-hidden",
    "16",
    "--head-bottleneck",
    "8",
    "--global-size",
    "16",
    "--local-size",
    "8",
    "--local-crops",
    "2",
    "--batch-size",
    "4",
    "--steps",
    "4",
    "--procedural-len",
    "16",
    "--procedural-size",
    "32",
];

#[test]
fn train_json_ends_with_the_knn_of_trained_random_and_pixels() {
    let dir = temp_dir("json");
    let out = dir.to_str().unwrap();
    let mut args = vec!["train"];
    args.extend(TINY);
    args.extend([
        "--eval-builtin",
        "40",
        "20",
        "--eval-size",
        "16",
        "--eval-every",
        "2",
        "--out",
        out,
        "--json",
    ]);
    let (ok, stdout, stderr) = dinonat(&args);
    assert!(ok, "train failed: {stderr}");
    let v = last_json(&stdout);
    for key in ["knn_top1_trained", "knn_top1_random", "knn_top1_pixels"] {
        let x = v[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing: {v}"));
        assert!((0.0..=100.0).contains(&x), "{key} = {x}");
    }
    assert_eq!(v["steps"].as_u64(), Some(4));
    for f in [
        "checkpoint.safetensors",
        "log.csv",
        "curve_loss.png",
        "curve_entropy.png",
        "curve_knn.png",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    // the k-NN curve: step 0 (random init), step 2 (--eval-every), step 4 (the end)
    assert!(stderr.contains("step 2: k-NN top-1"), "{stderr}");
    // progress (stderr is not a terminal here: plain lines) stays off stdout, the one JSON line
    assert!(stderr.contains("train (steps): 4/4 ("), "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn train_progress_lines_go_to_stderr_about_every_tenth_with_rate_eta_and_loss() {
    let dir = temp_dir("progress");
    let out = dir.to_str().unwrap();
    let mut args = vec!["train"];
    args.extend(TINY);
    let steps = args.iter().position(|a| *a == "--steps").unwrap();
    args[steps + 1] = "20";
    args.extend(["--log-every", "5", "--no-eval", "--out", out]);
    let (ok, stdout, stderr) = dinonat(&args);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("train (steps): "))
        .collect();
    // a line at least every 2 steps of 20 (10 %), starting at the first and ending at the last
    assert!((10..=11).contains(&lines.len()), "{stderr}");
    assert!(lines[0].starts_with("train (steps): 1/20 ("), "{stderr}");
    assert!(
        lines.last().unwrap().starts_with("train (steps): 20/20 ("),
        "{stderr}"
    );
    for l in &lines {
        let (rate, eta) = l.split_once("/s, ETA ").expect("rate and ETA");
        let rate: f64 = rate.rsplit('(').next().unwrap().parse().expect("a rate");
        assert!(rate > 0.0 && rate.is_finite(), "{l}");
        let (eta, loss) = eta.split_once(" s) loss ").expect("ETA and loss");
        assert!(
            eta.parse::<f64>().is_ok() && loss.parse::<f64>().is_ok(),
            "{l}"
        );
    }
    // the per-step log lines stay on stdout, as before, and nothing of the progress joins them
    assert!(stdout.contains("step 5/20 ep "), "{stdout}");
    assert!(!stdout.contains("train (steps)"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_train_step_json_reports_img_per_s() {
    let (ok, stdout, stderr) = dinonat(&[
        "bench",
        "train-step",
        "--arch",
        "nat_pico",
        "--image-size",
        "32",
        "--global-size",
        "16",
        "--local-size",
        "8",
        "--local-crops",
        "2",
        "--batch-size",
        "2",
        "--out-dim",
        "32",
        "--head-hidden",
        "16",
        "--head-bottleneck",
        "8",
        "--steps",
        "1",
        "--json",
        "--profile",
    ]);
    assert!(ok, "bench failed: {stderr}");
    assert!(
        stderr.contains("bench train-step (steps): 2/2 ("),
        "{stderr}"
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let v = last_json(&stdout);
    let ips = v["img_per_s"].as_f64().expect("img_per_s");
    assert!(ips > 0.0 && ips.is_finite(), "img_per_s = {ips}");
    for key in [
        "forward_seconds",
        "backward_seconds",
        "optimizer_seconds",
        "ema_seconds",
        "data_seconds",
        "gflops",
    ] {
        assert!(v[key].as_f64().is_some(), "{key} missing: {v}");
    }
    // --profile: the kernels of each phase take part of that phase, and the GEMMs, the
    // neighborhood attention and the convolutions of the forward are among them
    let cells = v["profile"]["cells"].as_array().expect("profile cells");
    let phase = |name: &str| -> f64 {
        let kernels: f64 = cells
            .iter()
            .filter(|c| c["phase"] == name)
            .map(|c| c["seconds_per_step"].as_f64().unwrap())
            .sum();
        let outside = v["profile"]["outside_kernels"][name].as_f64().unwrap();
        assert!(kernels > 0.0 && outside >= 0.0, "{name}: {v}");
        kernels + outside
    };
    let forward = phase("forward");
    assert!((forward - v["forward_seconds"].as_f64().unwrap()).abs() < 1e-9);
    assert!(phase("backward") <= v["backward_seconds"].as_f64().unwrap() + 1e-9);
    for kind in ["GEMM (matmul, linear)", "neighborhood attention", "conv2d"] {
        let hit = |c: &&serde_json::Value| c["phase"] == "forward" && c["kind"] == kind;
        assert!(cells.iter().any(|c| hit(&c)), "{kind} missing: {v}");
    }
}

#[test]
fn bad_flags_name_the_flag() {
    let dir = temp_dir("bad");
    let out = dir.to_str().unwrap();
    for (args, flag) in [
        (
            vec!["train", "--batch-size", "0", "--out", out],
            "--batch-size",
        ),
        (
            vec!["train", "--max-minutes", "0", "--out", out],
            "--max-minutes",
        ),
        (vec!["train", "--arch", "nat_huge", "--out", out], "--arch"),
        (vec!["train", "--lr", "0", "--out", out], "--lr"),
        (
            vec![
                "train",
                "--eval-train",
                "/nonexistent/a",
                "--eval-val",
                "/nonexistent/b",
                "--out",
                out,
            ],
            "--eval-train",
        ),
        (vec!["bench", "train-step", "--steps", "0"], "--steps"),
        (vec!["bench", "train-step", "--arch", "nat_huge"], "--arch"),
    ] {
        let (ok, _, stderr) = dinonat(&args);
        assert!(!ok, "{args:?} should fail");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn resume_continues_and_max_minutes_stops_with_a_checkpoint() {
    let dir = temp_dir("resume");
    let out = dir.to_str().unwrap();
    let mut args = vec!["train"];
    args.extend(TINY);
    args.extend(["--no-eval", "--stop-at", "2", "--out", out]);
    let (ok, _, stderr) = dinonat(&args);
    assert!(ok, "{stderr}");
    let ck = dir.join("checkpoint.safetensors");
    let ck = ck.to_str().unwrap();
    let (ok, stdout, stderr) = dinonat(&["train", "--resume", ck, "--no-eval"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("resuming at step 2"), "{stdout}");
    assert!(stdout.contains("done: 2 steps"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A resumed run keeps the k-NN flags it was started with (eval.json) and its k-NN points (knn.csv):
/// the schedule goes on, the final table is printed, the curve holds every segment's points.
#[test]
fn resume_keeps_the_knn_schedule_and_curve() {
    let dir = temp_dir("resume-knn");
    let out = dir.to_str().unwrap();
    let mut args = vec!["train"];
    args.extend(TINY);
    args.extend([
        "--eval-builtin",
        "40",
        "20",
        "--eval-size",
        "16",
        "--eval-every",
        "1",
    ]);
    args.extend(["--stop-at", "2", "--out", out]);
    let (ok, stdout, stderr) = dinonat(&args);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("step 2: k-NN top-1"), "{stdout}");
    let ck = dir.join("checkpoint.safetensors");
    let (ok, stdout, stderr) = dinonat(&["train", "--resume", ck.to_str().unwrap(), "--json"]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("k-NN flags of the run from"), "{stderr}");
    assert!(stderr.contains("step 3: k-NN top-1"), "{stderr}");
    assert!(
        last_json(&stdout)["knn_top1_trained"].is_number(),
        "{stdout}"
    );
    let knn = std::fs::read_to_string(dir.join("knn.csv")).unwrap();
    let steps: Vec<&str> = knn
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(steps, ["0", "1", "2", "3", "4"], "{knn}");
    assert!(dir.join("curve_knn.png").is_file());
    // flags on the command line win over the record
    let (ok, stdout, stderr) = dinonat(&["train", "--resume", ck.to_str().unwrap(), "--no-eval"]);
    assert!(
        ok && !stdout.contains("k-NN") && !stderr.contains("k-NN flags"),
        "{stdout}{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let dir = temp_dir("nan");
    let out = dir.to_str().unwrap();
    let mut args = vec!["train"];
    args.extend(TINY);
    // an absurd lr without clipping: step 1 leaves weights that make step 2's loss NaN
    args.extend([
        "--no-eval",
        "--lr",
        "1e35",
        "--lr-warmup",
        "0",
        "--clip-grad",
        "0",
        "--checkpoint-every",
        "1",
        "--out",
        out,
    ]);
    let (ok, _, stderr) = dinonat(&args);
    assert!(!ok, "the run should stop");
    assert!(stderr.contains("step 2: the loss is NaN"), "{stderr}");
    assert!(stderr.contains("last good checkpoint is kept"), "{stderr}");
    let ck = dir.join("checkpoint.safetensors");
    let (ok, stdout, stderr) = dinonat(&["train", "--check-checkpoint", ck.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("step 1 of 4"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Training seeds 1-4 generate the built-in k-NN splits (tuning 1 / 2, test 3 / 4) and are refused;
/// a loss with both terms off is refused; `--seeds 2` reports mean and std of both splits.
#[test]
fn held_out_protocol_refuses_evaluation_seeds_and_summarises_seeds() {
    for seed in ["1", "2", "3", "4"] {
        let (ok, _, stderr) = dinonat(&["train", "--seed", seed, "--steps", "1"]);
        assert!(
            !ok && stderr.contains(&format!("--seed {seed}")),
            "{stderr}"
        );
    }
    let (ok, _, stderr) = dinonat(&["train", "--dino-weight", "0", "--koleo", "0"]);
    assert!(!ok && stderr.contains("--dino-weight"), "{stderr}");
    let dir = temp_dir("seeds");
    let mut args = vec!["train"];
    args.extend(TINY);
    let out = dir.to_str().unwrap();
    args.extend([
        "--eval-builtin",
        "40",
        "20",
        "--eval-size",
        "16",
        "--seeds",
        "2",
        "--dino-weight",
        "0.5",
        "--out",
        out,
        "--json",
    ]);
    let (ok, stdout, stderr) = dinonat(&args);
    assert!(ok, "train --seeds failed: {stderr}");
    let v = last_json(&stdout);
    assert_eq!(v["seeds"], serde_json::json!([0, 10]));
    for split in ["test", "tuning"] {
        for what in ["trained", "random", "pixels"] {
            let s = &v["knn_top1_by_split"][split][what];
            let per: Vec<f64> = s["per_seed"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            assert_eq!(per.len(), 2);
            assert!((s["mean"].as_f64().unwrap() - (per[0] + per[1]) / 2.0).abs() < 1e-9);
        }
    }
    assert_eq!(v["runs"][1]["seed"], 10);
    assert_eq!(v["runs"][0]["dino_weight"], 0.5);
    // Each run's full report: balanced accuracy and the controls beside the top-1, per split.
    for split in ["test", "tuning"] {
        let full = &v["runs"][0]["knn_by_split"][split];
        let top1 = v["runs"][0]["knn_top1_by_split"][split]["trained"].as_f64();
        assert_eq!(full["trained"]["top1"].as_f64(), top1, "{full}");
        for what in ["trained", "random", "pixels"] {
            let r = &full[what];
            assert_eq!(r["queries"], 20, "{r}");
            let majority = r["majority"].as_f64().unwrap();
            assert!(
                majority >= r["uniform"].as_f64().unwrap() && majority <= 100.0,
                "{r}"
            );
            assert!(r["balanced_accuracy"].as_f64().is_some(), "{r}");
        }
    }
    let b = &v["knn_balanced_by_split"]["test"]["trained"]["per_seed"];
    assert_eq!(b.as_array().map(|a| a.len()), Some(2), "{v}");
    assert!(stderr.contains("balanced accuracy") || stdout.contains("balanced accuracy"));
    assert!(dir.join("seed-10").join("checkpoint.safetensors").is_file());
}

/// `--init`: a new run from another run's checkpoint takes its network (the flags default to the
/// checkpoint's) and records it; a contradicting flag is an error naming the flag and the file;
/// `--device cuda` without a GPU is refused before anything is written, and `--checkpoint-levels`
/// trains the same numbers.
#[test]
fn init_takes_the_checkpoints_network_and_device_and_checkpointing_flags_work() {
    let dir = temp_dir("init");
    let src = dir.join("src");
    let mut args = vec!["train"];
    args.extend(TINY);
    args.extend(["--no-eval", "--json", "--out", src.to_str().unwrap()]);
    let (ok, _, stderr) = dinonat(&args);
    assert!(ok, "{stderr}");
    let ck = src.join("checkpoint.safetensors");
    let ck = ck.to_str().unwrap();
    // no network flags: K 32 and the 16-16-8 head come from the checkpoint
    let dst = dir.join("dst");
    let small = [
        "--global-size",
        "16",
        "--local-size",
        "8",
        "--local-crops",
        "2",
        "--batch-size",
        "4",
        "--steps",
        "2",
        "--procedural-len",
        "16",
        "--procedural-size",
        "32",
        "--no-eval",
        "--json",
    ];
    let mut args = vec!["train", "--init", ck, "--out", dst.to_str().unwrap()];
    args.extend(small);
    let (ok, stdout, stderr) = dinonat(&args);
    assert!(ok, "{stderr}");
    let js = last_json(&stdout);
    assert_eq!(js["init"], ck);
    assert_eq!(js["steps"], 2);
    let config = std::fs::read_to_string(dst.join("config.json")).unwrap();
    assert!(
        config.contains("\"out_dim\": 32") && config.contains("\"init\""),
        "{config}"
    );
    // a contradicting flag
    let mut args = vec!["train", "--init", ck, "--out-dim", "64"];
    let bad = dir.join("bad");
    args.extend(["--out", bad.to_str().unwrap()]);
    args.extend(small);
    let (ok, _, stderr) = dinonat(&args);
    assert!(!ok);
    assert!(
        stderr.contains("--out-dim 64") && stderr.contains(ck),
        "{stderr}"
    );
    // --device cuda: either a GPU run or the engine's message, and then no run directory
    let gpu = dir.join("gpu");
    let mut args = vec!["train", "--device", "cuda", "--out", gpu.to_str().unwrap()];
    args.extend(TINY);
    args.extend(["--no-eval", "--json"]);
    let (ok, _, stderr) = dinonat(&args);
    if !ok {
        assert!(
            stderr.contains("no CUDA device: use --device cpu"),
            "{stderr}"
        );
        assert!(!gpu.exists());
    }
    // activation checkpointing: the same final loss as the source run, bit for bit
    let mut args = vec!["train"];
    args.extend(TINY);
    let recomputed = dir.join("recomputed");
    args.extend(["--no-eval", "--json", "--checkpoint-levels"]);
    args.extend(["--out", recomputed.to_str().unwrap()]);
    let (ok, stdout, stderr) = dinonat(&args);
    assert!(ok, "{stderr}");
    let plain_dir = dir.join("plain");
    let mut plain = vec!["train"];
    plain.extend(TINY);
    plain.extend(["--no-eval", "--json", "--out", plain_dir.to_str().unwrap()]);
    let (ok, plain_out, stderr) = dinonat(&plain);
    assert!(ok, "{stderr}");
    assert_eq!(
        last_json(&stdout)["final_loss"],
        last_json(&plain_out)["final_loss"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
