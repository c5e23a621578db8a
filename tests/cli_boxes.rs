//! End-to-end checks of `dinonat boxes` on a tiny generated folder (images + YOLO labels in a temp dir), with a
//! random-init nat_pico at 32 px.

use dinonat_train::data::RgbImage;
use dinonat_train::grid::write_png;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

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
    let d = std::env::temp_dir().join(format!("dinonat-boxes-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A 48 x 32 picture (landscape: the 32 px eval transform keeps x 8..40) with a bright rectangle.
fn picture(seed: usize) -> RgbImage {
    let (w, h) = (48usize, 32usize);
    let mut px = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let inside = (16..32).contains(&x) && (8..24).contains(&y);
            px.extend_from_slice(&if inside {
                [240, 200 - (10 * seed) as u8, 60]
            } else {
                [(x * 4 + seed * 9) as u8, (y * 6) as u8, 90]
            });
        }
    }
    RgbImage::new(w, h, px)
}

/// images/{a..e}.png; labels for a, b, c (c empty), none for d; e has its box in the cropped-away left edge.
fn folder(root: &Path) -> (PathBuf, PathBuf) {
    let (images, labels) = (root.join("images"), root.join("labels"));
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&labels).unwrap();
    for (k, n) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        write_png(&images.join(format!("{n}.png")), &picture(k)).unwrap();
    }
    // Class 0: x 16..32 (crop 8..24), y 8..24: 16 x 16 of 32 x 32 = a quarter of the crop.
    let quarter = "0 0.5 0.5 0.3333333333333333 0.5\n";
    std::fs::write(labels.join("a.txt"), quarter).unwrap();
    // b: the same box plus a class-1 box x 32..40 (crop 24..32), y 0..8: 8 x 8 = 1/16 of the crop.
    std::fs::write(
        labels.join("b.txt"),
        format!("{quarter}1 0.75 0.125 0.16666666666666666 0.25\n"),
    )
    .unwrap();
    std::fs::write(labels.join("c.txt"), "\n").unwrap();
    std::fs::write(labels.join("e.txt"), "1 0.05 0.5 0.1 0.5\n").unwrap();
    (images, labels)
}

#[test]
fn boxes_reports_shares_chance_and_skips() {
    let root = temp("report");
    let (images, labels) = folder(&root);
    let csv = root.join("out/per_image.csv");
    std::fs::create_dir_all(root.join("out")).unwrap();
    let (ok, out, err) = dinonat(&[
        "boxes",
        "--random-init",
        "--arch",
        "nat_pico",
        "--size",
        "32",
        "--images",
        s(&images),
        "--labels",
        s(&labels),
        "--class-names",
        "dog,person",
        "--csv",
        s(&csv),
        "--json",
    ]);
    assert!(ok, "boxes failed: {err}");
    let r: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["images_found"], 5);
    assert_eq!(r["images_used"], 2);
    assert_eq!(r["skipped_no_label_file"], 1);
    assert_eq!(r["skipped_no_boxes"], 1);
    assert_eq!(r["skipped_outside_crop"], 1);
    // Chance: a covers 1/4, b covers 1/4 + 1/16 (disjoint boxes): mean (0.25 + 0.3125) / 2.
    let close = |v: &Value, want: f64| (v.as_f64().unwrap() - want).abs() < 1e-9;
    assert!(close(&r["all"]["chance"], 0.28125), "{}", r["all"]);
    let classes = r["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 2);
    assert_eq!(classes[0]["name"], "dog");
    assert_eq!(classes[0]["images"], 2);
    assert!(close(&classes[0]["chance"], 0.25));
    assert_eq!(classes[1]["name"], "person");
    assert_eq!(
        (classes[1]["images"].clone(), classes[1]["boxes"].clone()),
        (1.into(), 1.into())
    );
    assert!(close(&classes[1]["chance"], 0.0625));
    for k in ["share_masked", "share_map"] {
        let v = r["all"][k].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{k} = {v}");
    }
    // The network and every control carry the same keys, with an interval holding the mean.
    for summary in std::iter::once(&r["all"]).chain(classes) {
        common::check_scored_maps(
            &summary["scores"],
            "map",
            "share_masked",
            &[
                "network",
                "centre_gaussian",
                "central_square",
                "intensity",
                "uniform",
            ],
        );
        let scores = summary["scores"].as_array().unwrap();
        assert!(close(
            &scores[4]["share_masked"],
            summary["chance"].as_f64().unwrap()
        ));
        assert!(close(
            &scores[0]["share_masked"],
            summary["share_masked"].as_f64().unwrap()
        ));
    }
    // The boxes of a and b hold the crop's central 16 x 16 pixels, so the centre Gaussian's mask lies mostly
    // on them: above uniform.
    let all = r["all"]["scores"].as_array().unwrap();
    assert!(
        all[1]["share_masked"].as_f64() > all[4]["share_masked"].as_f64(),
        "{all:?}"
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0]
        .starts_with("image,boxes,box_fraction,share_masked,share_map,kept_tokens,centre_gaussian_share_masked,central_square_share_masked,intensity_share_masked,dog_boxes"));
    assert!(lines[1].contains("a.png\",1,0.250000,"), "{}", lines[1]);
    // The text report names the chance column and the skips.
    let text_report = |figure: &Path| {
        dinonat(&[
            "boxes",
            "--random-init",
            "--arch",
            "nat_pico",
            "--size",
            "32",
            "--images",
            s(&images),
            "--labels",
            s(&labels),
            "--figure",
            s(figure),
        ])
    };
    let (ok, out, err) = text_report(&root.join("out/figure.png"));
    assert!(ok, "{err}");
    assert!(
        out.contains("chance") && out.contains("1 without a label file"),
        "{out}"
    );
    // The figure: both measured images (of 4 asked), five 160 px panels a row (32 px crops enlarged 5x).
    let fig = image::open(root.join("out/figure.png")).unwrap();
    assert_eq!(
        (fig.width(), fig.height()),
        (5 * 160 + 8 * 4, 2 * (160 + 8) + 12)
    );
    assert!(err.contains("row 2:") && !err.contains("row 3:"), "{err}");
    // Never written over an input.
    let inside = images.join("figure.png");
    let (ok, _, err) = text_report(&inside);
    assert!(!ok && err.contains("--figure") && !inside.exists(), "{err}");
    assert!(
        out.contains("central_square") && out.contains("intensity") && out.contains("bootstrap"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn boxes_errors_name_the_file_and_line() {
    let root = temp("errors");
    let (images, labels) = folder(&root);
    std::fs::write(labels.join("b.txt"), "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2\n").unwrap();
    let args = |l: &Path| {
        dinonat(&[
            "boxes",
            "--random-init",
            "--arch",
            "nat_pico",
            "--size",
            "32",
            "--images",
            s(&images),
            "--labels",
            s(l),
        ])
    };
    let (ok, _, err) = args(&labels);
    assert!(!ok);
    assert!(
        err.contains("b.txt line 2") && err.contains("5 fields"),
        "{err}"
    );
    let (ok, _, err) = args(&root.join("nope"));
    assert!(
        !ok && err.contains("--labels") && err.contains("nope"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&root);
}
