//! `dinonat builtin` writes the procedural set with thermal twins and YOLO boxes; `crossmodal` and `boxes` run
//! on its output (random-init nat_pico, 32 px images).

use dinonat_train::data::{decode_image, Procedural};
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

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dinonat-builtin-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn builtin_writes_pairs_labels_and_feeds_the_folder_commands() {
    let out = temp("set");
    let (ok, _, err) = dinonat(&[
        "builtin",
        "--out",
        s(&out),
        "--n",
        "12",
        "--size",
        "32",
        "--seed",
        "4",
    ]);
    assert!(ok, "builtin failed: {err}");
    // Layout: class folders with the index first, same names under rgb/ and ir/, one label per sample.
    let rgb = out.join("rgb/3-cross/00003.png");
    let ir = out.join("ir/3-cross/00003.png");
    let set = Procedural::new(4, 12, 32);
    let pair = set.pair(3);
    let read =
        |p: &Path| decode_image(&std::fs::read(p).unwrap(), &p.display().to_string()).unwrap();
    assert_eq!(read(&rgb), pair.rgb);
    assert_eq!(read(&ir), pair.thermal);
    assert!(out.join("rgb/1-square/00011.png").is_file());
    let label = std::fs::read_to_string(out.join("labels/00003.txt")).unwrap();
    let f: Vec<f64> = label
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let want = pair.object_box.yolo(32);
    assert_eq!(f[0], 3.0);
    for k in 0..4 {
        assert!((f[k + 1] - want[k]).abs() < 1e-6, "{label}");
    }
    assert_eq!(std::fs::read_dir(out.join("labels")).unwrap().count(), 12);

    // A non-empty folder is refused without --force.
    let (ok, _, err) = dinonat(&["builtin", "--out", s(&out), "--n", "2", "--size", "32"]);
    assert!(!ok && err.contains("--force"), "{err}");

    // crossmodal pairs rgb/ and ir/ by relative name.
    let (ok, o, err) = dinonat(&[
        "crossmodal",
        "--random-init",
        "--arch",
        "nat_pico",
        "--size",
        "32",
        "--rgb",
        s(&out.join("rgb")),
        "--ir",
        s(&out.join("ir")),
        "--json",
    ]);
    assert!(ok, "crossmodal failed: {err}");
    let r: Value = serde_json::from_str(o.trim()).unwrap();
    assert_eq!(r["pairs"], 12);

    // boxes finds labels/<stem>.txt for images in class folders, on either modality.
    for modality in ["rgb", "ir"] {
        let (ok, o, err) = dinonat(&[
            "boxes",
            "--random-init",
            "--arch",
            "nat_pico",
            "--size",
            "32",
            "--images",
            s(&out.join(modality)),
            "--labels",
            s(&out.join("labels")),
            "--json",
        ]);
        assert!(ok, "boxes on {modality} failed: {err}");
        let r: Value = serde_json::from_str(o.trim()).unwrap();
        assert_eq!(r["images_used"], 12);
        let classes = r["classes"].as_array().unwrap();
        assert_eq!(classes.len(), 10);
        // Names from DIR/data.yaml (the parent of --labels).
        assert_eq!(classes[3]["name"], "cross");
        assert_eq!(classes[8]["name"], "l-shape");
        let chance = r["all"]["chance"].as_f64().unwrap();
        assert!(chance > 0.1 && chance < 0.8, "{chance}");
    }

    // attention --pair-dir pairs rgb/<class>/x.png with ir/<class>/x.png: one pair figure per image.
    let maps = std::env::temp_dir().join(format!("dinonat-builtin-maps-{}", std::process::id()));
    let (ok, _, err) = dinonat(&[
        "attention",
        "--random-init",
        "--arch",
        "nat_pico",
        "--size",
        "32",
        "--images",
        s(&out.join("rgb")),
        "--pair-dir",
        s(&out.join("ir")),
        "--out",
        s(&maps),
    ]);
    assert!(ok, "attention --pair-dir failed: {err}");
    let pairs = std::fs::read_dir(&maps)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with("_pair.png")
        })
        .count();
    assert_eq!(pairs, 12);
    let _ = std::fs::remove_dir_all(&maps);
    let _ = std::fs::remove_dir_all(&out);
}
