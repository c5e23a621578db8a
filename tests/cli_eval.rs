//! End-to-end checks of `dinonat knn` and `dinonat linear` on tiny image folders in temporary directories.

use dinonat_train::data::RgbImage;
use dinonat_train::grid::write_png;
use serde_json::Value;
use std::path::{Path, PathBuf};
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

/// A fresh directory under the system temp dir, unique per test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dinonat-cli-eval-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An ImageFolder split: `per_class` 12 x 10 images per class, each a constant colour with small per-image noise.
fn write_split(root: &Path, classes: &[(&str, [u8; 3])], per_class: usize, seed: u64) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 41) as i32 - 20
    };
    for (name, colour) in classes {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..per_class {
            let pixels: Vec<u8> = (0..12 * 10)
                .flat_map(|_| colour.map(|c| (c as i32 + noise()).clamp(0, 255) as u8))
                .collect();
            write_png(
                &dir.join(format!("{i}.png")),
                &RgbImage::new(12, 10, pixels),
            )
            .unwrap();
        }
    }
}

const TOY: [(&str, [u8; 3]); 2] = [("blue", [30, 40, 220]), ("red", [220, 40, 30])];

/// A toy data set with train/ and val/ splits of two constant-colour classes.
fn toy(name: &str) -> (PathBuf, String, String) {
    let dir = temp_dir(name);
    write_split(&dir.join("train"), &TOY, 6, 1);
    write_split(&dir.join("val"), &TOY, 4, 2);
    let train = dir.join("train").display().to_string();
    let val = dir.join("val").display().to_string();
    (dir, train, val)
}

fn parse(stdout: &str) -> Value {
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{stdout}"))
}

fn percent(v: &Value, key: &str) -> f64 {
    let x = v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no number '{key}' in {v}"));
    assert!(
        (0.0..=100.0).contains(&x),
        "{key} = {x} is not a percentage"
    );
    x
}

#[test]
fn knn_json_reports_top1_top5_and_config_for_a_random_backbone() {
    let (dir, train, val) = toy("knn-json");
    let args = [
        "knn",
        "--train",
        &train,
        "--val",
        &val,
        "--random-init",
        "--arch",
        "nat_pico",
    ];
    let (ok, stdout, stderr) =
        dinonat(&[&args[..], &["--size", "32", "--seed", "3", "--json"]].concat());
    assert!(ok, "knn failed: {stderr}");
    let v = parse(&stdout);
    let (top1, top5) = (percent(&v, "top1"), percent(&v, "top5"));
    assert!(top5 >= top1, "top5 {top5} < top1 {top1}");
    assert_eq!(top5, 100.0, "two classes: top-5 always holds the label");
    assert_eq!(v["k"], 20);
    assert_eq!(v["arch"], "nat_pico");
    assert_eq!(v["features"], "random-init");
    assert_eq!(
        (v["train_images"].as_u64(), v["val_images"].as_u64()),
        (Some(12), Some(8))
    );
    assert_eq!(v["classes"], 2);
    // The controls: 4 + 4 val images, so the majority class holds 50 % and uniform chance is 50 %.
    assert_eq!(percent(&v, "majority"), 50.0);
    assert_eq!(percent(&v, "uniform"), 50.0);
    percent(&v, "balanced_accuracy");
    assert_eq!(v["per_class_recall"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["class_names"], serde_json::json!(["blue", "red"]));
    for key in ["top1", "top5", "balanced_accuracy"] {
        let iv = &v["intervals"][key];
        let (lo, hi) = (iv[0].as_f64().unwrap(), iv[1].as_f64().unwrap());
        assert!(
            lo <= percent(&v, key) && percent(&v, key) <= hi,
            "{key}: {iv}"
        );
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn seeds_repeat_random_init_and_report_mean_and_std() {
    let (dir, train, val) = toy("knn-seeds");
    let common = [
        "knn",
        "--train",
        &train,
        "--val",
        &val,
        "--random-init",
        "--arch",
        "nat_pico",
        "--size",
        "32",
    ];
    let (ok, stdout, stderr) =
        dinonat(&[&common[..], &["--seeds", "3", "--seed", "5", "--json"]].concat());
    assert!(ok, "knn --seeds failed: {stderr}");
    let v = parse(&stdout);
    assert_eq!(v["seeds"], serde_json::json!([5, 6, 7]));
    let runs = v["runs"].as_array().expect("runs");
    let top1: Vec<f64> = runs.iter().map(|r| percent(r, "top1")).collect();
    let mean = top1.iter().sum::<f64>() / 3.0;
    assert!((percent(&v, "top1") - mean).abs() < 1e-9, "{v}");
    assert!(v["std"]["top1"].as_f64().unwrap() >= 0.0);
    // Each run is the single-seed command's report.
    let (ok, single, stderr) = dinonat(&[&common[..], &["--seed", "6", "--json"]].concat());
    assert!(ok, "knn --seed 6 failed: {stderr}");
    assert_eq!(parse(&single)["top1"], runs[1]["top1"]);
    // Text output shows the spread and the controls.
    let (ok, text, _) = dinonat(&[&common[..], &["--seeds", "2"]].concat());
    assert!(
        ok && text.contains("mean +- std over 2 seeds") && text.contains("majority class"),
        "{text}"
    );
    assert_error(
        &["knn", "--builtin", "--pixels", "--seeds", "2"],
        &["--seeds", "--random-init"],
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn knn_on_raw_pixels_separates_constant_colours() {
    let (dir, train, val) = toy("knn-pixels");
    let (ok, stdout, stderr) = dinonat(&[
        "knn", "--train", &train, "--val", &val, "--pixels", "--size", "8", "--json",
    ]);
    assert!(ok, "knn failed: {stderr}");
    let v = parse(&stdout);
    assert_eq!(percent(&v, "top1"), 100.0, "{v}");
    assert_eq!(v["dim"], 3 * 8 * 8);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn linear_json_reports_top1_top5_and_separates_constant_colours() {
    let (dir, train, val) = toy("linear");
    let (ok, stdout, stderr) = dinonat(&[
        "linear", "--train", &train, "--val", &val, "--pixels", "--size", "8", "--epochs", "20",
        "--json",
    ]);
    assert!(ok, "linear failed: {stderr}");
    let v = parse(&stdout);
    assert_eq!(percent(&v, "top1"), 100.0, "{v}");
    assert_eq!(percent(&v, "top5"), 100.0, "{v}");
    assert_eq!(percent(&v, "balanced_accuracy"), 100.0, "{v}");
    assert_eq!(v["per_class_recall"], serde_json::json!([100.0, 100.0]));
    assert_eq!(percent(&v, "majority"), 50.0);
    percent(&v, "best_top1");
    assert_eq!(v["epochs"], 20);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn builtin_split_with_limits() {
    let (ok, stdout, stderr) = dinonat(&[
        "knn",
        "--builtin",
        "--builtin-train",
        "40",
        "--builtin-val",
        "30",
        "--limit-val",
        "20",
        "--builtin-image-size",
        "16",
        "--pixels",
        "--size",
        "16",
        "--json",
    ]);
    assert!(ok, "knn --builtin failed: {stderr}");
    let v = parse(&stdout);
    percent(&v, "top1");
    assert_eq!(
        (v["train_images"].as_u64(), v["val_images"].as_u64()),
        (Some(40), Some(20))
    );
    assert_eq!(v["classes"], 10);
}

fn assert_error(args: &[&str], names: &[&str]) {
    let (ok, stdout, stderr) = dinonat(args);
    assert!(!ok, "{args:?} succeeded:\n{stdout}");
    assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    for n in names {
        assert!(
            stderr.contains(n),
            "{args:?}: error does not name '{n}':\n{stderr}"
        );
    }
}

#[test]
fn bad_input_is_an_error_naming_the_flag_or_path() {
    let (dir, train, _) = toy("errors");
    let missing = dir.join("no-such-val").display().to_string();
    assert_error(
        &["knn", "--train", &train, "--val", &missing, "--pixels"],
        &["--val", &missing],
    );
    assert_error(
        &[
            "linear",
            "--train",
            &train,
            "--val",
            &train,
            "--random-init",
            "--arch",
            "nat_huge",
        ],
        &["--arch", "nat_huge"],
    );
    // A folder of images without class sub-folders.
    let flat = dir.join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    write_png(&flat.join("a.png"), &RgbImage::new(2, 2, vec![9; 12])).unwrap();
    let flat = flat.display().to_string();
    assert_error(
        &["knn", "--train", &flat, "--val", &train, "--pixels"],
        &["--train", "class sub-folders"],
    );
    assert_error(
        &["knn", "--train", &train, "--val", &train],
        &["--pixels", "--random-init"],
    );
    assert_error(&["knn", "--builtin", "--pixels", "--k", "zero"], &["--k"]);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn checkpoint_uses_the_teacher_backbone() {
    use dinonat_engine::io::save_safetensors;
    use dinonat_engine::DType;
    use dinonat_model::{Nat, NatConfig};
    use std::collections::HashMap;
    let (dir, train, val) = toy("checkpoint");
    // A file in `dinonat train`'s layout: the teacher is nat_pico from seed 3, the student something else.
    let teacher = Nat::new(&NatConfig::nat_pico(), DType::F32, 3).unwrap();
    let student = Nat::new(&NatConfig::nat_pico(), DType::F32, 4).unwrap();
    let mut tensors: Vec<_> = teacher
        .params
        .named_tensors()
        .into_iter()
        .map(|(n, t)| (format!("teacher.backbone.{n}"), t))
        .collect();
    tensors.extend(
        student
            .params
            .named_tensors()
            .into_iter()
            .map(|(n, t)| (format!("student.backbone.{n}"), t)),
    );
    let meta = HashMap::from([
        ("format".to_string(), "dinonat-dino-checkpoint".to_string()),
        ("step".to_string(), "7".to_string()),
        (
            "config".to_string(),
            r#"{"arch":"nat_pico","out_dim":16}"#.to_string(),
        ),
    ]);
    let ck = dir.join("checkpoint.safetensors");
    save_safetensors(&ck, &tensors, Some(&meta)).unwrap();
    let ck = ck.display().to_string();
    let common = ["knn", "--train", &train, "--val", &val, "--json"];
    let (ok, from_ck, stderr) = dinonat(&[&common[..], &["--checkpoint", &ck]].concat());
    assert!(ok, "knn --checkpoint failed: {stderr}");
    let (ok, from_seed, stderr) = dinonat(
        &[
            &common[..],
            &["--random-init", "--arch", "nat_pico", "--seed", "3"],
        ]
        .concat(),
    );
    assert!(ok, "knn --random-init failed: {stderr}");
    let (a, b) = (parse(&from_ck), parse(&from_seed));
    assert_eq!(a["arch"], "nat_pico");
    assert_eq!(a["size"], 32);
    assert_eq!(a["features"], "checkpoint");
    assert_eq!(
        (a["top1"].as_f64(), a["top5"].as_f64()),
        (b["top1"].as_f64(), b["top5"].as_f64())
    );
    assert_error(
        &[&common[..], &["--checkpoint", &ck, "--arch", "nat_nano"]].concat(),
        &["--checkpoint", "nat_nano"],
    );
    // A backbone file is not a training checkpoint.
    let plain = dir.join("backbone.safetensors");
    save_safetensors(&plain, &teacher.params.named_tensors(), None).unwrap();
    let plain = plain.display().to_string();
    assert_error(
        &[&common[..], &["--checkpoint", &plain]].concat(),
        &["--checkpoint", &plain, "--weights"],
    );
    std::fs::remove_dir_all(dir).ok();
}
