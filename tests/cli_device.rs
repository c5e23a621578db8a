//! `--device cpu|cuda` of `dinonat embed`: the default and `cpu` agree; `cuda` either matches the
//! CPU's embeddings (with a GPU) or fails with "no CUDA device: use --device cpu", never a panic.

use dinonat_train::data::RgbImage;
use dinonat_train::grid::write_png;
mod common;

use common::files_under;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The binary under test: `DINONAT_BIN` when set (the packed GPU check runs this test binary on
/// another machine, scripts/gpu-check-all.sh), else the one cargo built.
fn bin() -> PathBuf {
    std::env::var_os("DINONAT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_dinonat")))
}

/// (success, stdout, stderr) of one `dinonat` run.
fn dinonat(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("the dinonat binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dinonat-device-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Three small distinct pictures.
fn write_pictures(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for s in 0..3usize {
        let (w, h) = (36usize, 34usize);
        let px: Vec<u8> = (0..w * h * 3)
            .map(|i| ((i * (7 + 3 * s) + 11 * s) % 251) as u8)
            .collect();
        write_png(&dir.join(format!("{s}.png")), &RgbImage::new(w, h, px)).unwrap();
    }
}

fn embed(images: &Path, out: &Path, device: Option<&str>) -> (bool, String) {
    let (i, o) = (images.to_str().unwrap(), out.to_str().unwrap());
    let mut args = vec![
        "embed",
        "--random-init",
        "--arch",
        "nat_pico",
        "--images",
        i,
        "--size",
        "32",
        "--batch",
        "2",
        "--out",
        o,
    ];
    if let Some(d) = device {
        args.extend(["--device", d]);
    }
    let (ok, _, err) = dinonat(&args);
    (ok, err)
}

fn embeddings(path: &Path) -> Vec<f32> {
    let f = dinonat_engine::io::load_safetensors(path).unwrap();
    f.get("embeddings").unwrap().to_vec::<f32>().unwrap()
}

#[test]
fn embed_device_flag() {
    let t = temp("embed");
    let images = t.join("images");
    write_pictures(&images);
    let (default_out, cpu_out, cuda_out) = (
        t.join("default.safetensors"),
        t.join("cpu.safetensors"),
        t.join("cuda.safetensors"),
    );
    let (ok, err) = embed(&images, &default_out, None);
    assert!(ok, "{err}");
    let (ok, err) = embed(&images, &cpu_out, Some("cpu"));
    assert!(ok, "{err}");
    let cpu = embeddings(&cpu_out);
    assert_eq!(embeddings(&default_out), cpu);

    let (ok, err) = embed(&images, &cuda_out, Some("cuda"));
    assert!(!err.contains("panicked"), "{err}");
    if ok {
        let gpu = embeddings(&cuda_out);
        assert_eq!(gpu.len(), cpu.len());
        let num: f64 = gpu
            .iter()
            .zip(&cpu)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum();
        let den: f64 = cpu.iter().map(|b| (*b as f64).powi(2)).sum();
        let rel = (num / den).sqrt();
        println!("embed --device cuda vs cpu: rel err {rel:.2e}");
        assert!(rel < 1e-4, "rel err {rel:.3e}");
    } else {
        assert!(err.contains("no CUDA device: use --device cpu"), "{err}");
        assert!(!cuda_out.exists(), "no output on failure");
        dinonat_kernels::cuda::skip_gpu_test(&format!("the GPU comparison: {}", err.trim()));
    }

    let (ok, err) = embed(&images, &cuda_out, Some("tpu"));
    assert!(!ok && err.contains("--device"), "{err}");
    let _ = std::fs::remove_dir_all(&t);
}

fn json_f64(json: &str, key: &str) -> f64 {
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    v.pointer(key)
        .and_then(|x| x.as_f64())
        .unwrap_or_else(|| panic!("{key} in {json}"))
}

/// The files under `dir` with their bytes; in the text reports `dir` itself is written as `OUT`
/// (they name the figures they wrote).
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = files_under(dir);
    for (p, bytes) in files.iter_mut() {
        if matches!(p.extension().and_then(|e| e.to_str()), Some("json" | "csv")) {
            let text = String::from_utf8(std::mem::take(bytes)).unwrap();
            *bytes = text.replace(dir.to_str().unwrap(), "OUT").into_bytes();
        }
    }
    files
}

/// `--device` of the map and curation commands (crossmodal, boxes, filter, attention) on the
/// built-in pairs: no flag and `cpu` give identical output; `cuda` either agrees with the CPU
/// within the stated tolerances (with a GPU) or fails with the "no CUDA device" message.
#[test]
fn map_commands_device_flag() {
    let t = temp("maps");
    let data = t.join("builtin");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (ok, _, err) = dinonat(&["builtin", "--out", &s(&data), "--n", "12", "--size", "32"]);
    assert!(ok, "{err}");
    let (rgb, ir, labels) = (data.join("rgb"), data.join("ir"), data.join("labels"));
    let weights = ["--random-init", "--arch", "nat_pico", "--size", "32"];
    // (command, its arguments, an output folder it writes or None for JSON on stdout)
    let commands: Vec<(&str, Vec<String>, Option<&str>)> = vec![
        (
            "crossmodal",
            vec![
                "--rgb".into(),
                s(&rgb),
                "--ir".into(),
                s(&ir),
                "--json".into(),
            ],
            None,
        ),
        (
            "boxes",
            vec![
                "--images".into(),
                s(&rgb),
                "--labels".into(),
                s(&labels),
                "--json".into(),
            ],
            None,
        ),
        ("filter", vec!["--images".into(), s(&ir)], Some("--out")),
        ("attention", vec!["--images".into(), s(&rgb)], Some("--out")),
    ];
    for (cmd, args, out_flag) in commands {
        let run = |device: Option<&str>| {
            let out = t.join(format!("{cmd}-{}", device.unwrap_or("default")));
            let mut a: Vec<String> = vec![cmd.into()];
            a.extend(args.iter().cloned());
            a.extend(weights.iter().map(|w| w.to_string()));
            if let Some(flag) = out_flag {
                a.extend([flag.to_string(), s(&out)]);
            }
            if let Some(d) = device {
                a.extend(["--device".to_string(), d.to_string()]);
            }
            let (ok, stdout, stderr) = dinonat(&a.iter().map(String::as_str).collect::<Vec<_>>());
            (ok, stdout, stderr, out)
        };
        let (ok, default_stdout, err, default_dir) = run(None);
        assert!(ok, "{cmd}: {err}");
        let (ok, cpu_stdout, err, cpu_dir) = run(Some("cpu"));
        assert!(ok, "{cmd} --device cpu: {err}");
        match out_flag {
            None => assert_eq!(default_stdout, cpu_stdout, "{cmd}"),
            Some(_) => {
                let (a, b) = (tree(&default_dir), tree(&cpu_dir));
                assert!(!a.is_empty(), "{cmd} wrote nothing");
                assert!(
                    a == b,
                    "{cmd}: --device cpu output differs from the default"
                );
            }
        }
        let (ok, gpu_stdout, err, gpu_dir) = run(Some("cuda"));
        assert!(!err.contains("panicked"), "{cmd}: {err}");
        if !ok {
            assert!(
                err.contains("no CUDA device: use --device cpu"),
                "{cmd}: {err}"
            );
            let why = err
                .lines()
                .find(|l| l.contains("no CUDA device"))
                .unwrap_or("");
            dinonat_kernels::cuda::skip_gpu_test(&format!("{cmd}: the GPU comparison: {why}"));
            continue;
        }
        match cmd {
            // One pair of 12 may swap rank on a near tie; IoU within 0.05.
            "crossmodal" => {
                for key in [
                    "/retrieval_top1_ir_to_rgb",
                    "/retrieval_top1_rgb_to_ir",
                    "/layout_retrieval_top1_ir_to_rgb",
                    "/layout_retrieval_top1_rgb_to_ir",
                ] {
                    let (g, c) = (json_f64(&gpu_stdout, key), json_f64(&cpu_stdout, key));
                    assert!(
                        (g - c).abs() <= 100.0 / 12.0 + 1e-9,
                        "{cmd} {key}: {g} vs {c}"
                    );
                }
                let (g, c) = (
                    json_f64(&gpu_stdout, "/attention_iou"),
                    json_f64(&cpu_stdout, "/attention_iou"),
                );
                assert!((g - c).abs() <= 0.05, "{cmd} IoU: {g} vs {c}");
                println!("crossmodal --device cuda: IoU {g:.4} vs cpu {c:.4}");
            }
            "boxes" => {
                let (g, c) = (
                    json_f64(&gpu_stdout, "/all/share_map"),
                    json_f64(&cpu_stdout, "/all/share_map"),
                );
                assert!((g - c).abs() <= 1e-3, "{cmd} share_map: {g} vs {c}");
                println!("boxes --device cuda: share_map {g:.5} vs cpu {c:.5}");
            }
            _ => {
                // The same files (figures, report); pixel values may differ in the last bit.
                let names = |d: &Path| tree(d).into_keys().collect::<Vec<_>>();
                assert_eq!(names(&gpu_dir), names(&cpu_dir), "{cmd}");
                println!("{cmd} --device cuda: same {} files", names(&gpu_dir).len());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&t);
}

/// `knn`, `linear` and `train` with `--device cuda`: with a GPU, the same results as the CPU within
/// stated tolerances (k-NN and probe top-1 within 2 points on 60 queries: a few near-tie queries may
/// flip; the training loss of 3 steps within 1e-3 relative, as train/tests/cuda_train.rs); without
/// one, "no CUDA device: use --device cpu".
#[test]
fn knn_linear_and_train_device_flag() {
    let tiny_train = [
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
        "3",
        "--procedural-len",
        "16",
        "--procedural-size",
        "32",
        "--no-eval",
        "--json",
    ];
    let dir = temp("knn-linear-train");
    for cmd in ["knn", "linear", "train"] {
        let run = |device: &str| {
            let out = dir.join(format!("{cmd}-{device}"));
            let mut args = vec![cmd, "--device", device];
            if cmd == "train" {
                args.extend(tiny_train);
                args.extend(["--out", out.to_str().unwrap()]);
                dinonat(&args)
            } else {
                args.extend(["--builtin", "--random-init", "--arch", "nat_pico", "--json"]);
                args.extend(["--builtin-train", "200", "--builtin-val", "60"]);
                dinonat(&args)
            }
        };
        let (ok, cpu, err) = run("cpu");
        assert!(ok, "{cmd} --device cpu: {err}");
        let (ok, gpu, err) = run("cuda");
        if !ok {
            assert!(
                err.contains("no CUDA device: use --device cpu"),
                "{cmd}: {err}"
            );
            dinonat_kernels::cuda::skip_gpu_test(&format!("{cmd} --device cuda: {}", err.trim()));
            continue;
        }
        let last = |s: &str| s.lines().last().unwrap_or_default().to_string();
        let (c, g) = (last(&cpu), last(&gpu));
        if cmd == "train" {
            let (c, g) = (json_f64(&c, "final_loss"), json_f64(&g, "final_loss"));
            println!("train --device cuda: final loss {g:.6} vs cpu {c:.6}");
            assert!(((g - c) / c).abs() < 1e-3, "train: {g} vs {c}");
        } else {
            let (c, g) = (json_f64(&c, "top1"), json_f64(&g, "top1"));
            println!("{cmd} --device cuda: top-1 {g:.2} vs cpu {c:.2}");
            assert!((g - c).abs() <= 2.0, "{cmd}: {g} vs {c}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
