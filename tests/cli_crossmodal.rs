//! End-to-end checks of `dinonat embed`, `filter`, `crossmodal` and `attention` on tiny images
//! written to temporary folders, with small random-init backbones (nat_pico at 32 px).

use dinonat_engine::DType;
use dinonat_model::{save_backbone, Nat, NatConfig};
use dinonat_train::data::{decode_image, RgbImage};
use dinonat_train::grid::write_png;
mod common;

use common::files_under;
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

/// A fresh temporary folder for one test.
fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dinonat-xmodal-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A distinct picture per seed: a coloured disc on a gradient, 40x30.
fn picture(seed: u64) -> RgbImage {
    let (w, h) = (40usize, 30usize);
    let s = seed as usize;
    let (cx, cy, r) = ((7 + 5 * s) % w, (4 + 3 * s) % h, 5 + s % 6);
    let mut px = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let inside =
                (x as i64 - cx as i64).pow(2) + (y as i64 - cy as i64).pow(2) < (r * r) as i64;
            let c = if inside {
                [
                    (40 * s % 256) as u8,
                    250 - (30 * s % 200) as u8,
                    (90 + 70 * s % 160) as u8,
                ]
            } else {
                [(x * 6) as u8, (y * 8) as u8, ((x + y) * 3 + 20 * s) as u8]
            };
            px.extend_from_slice(&c);
        }
    }
    RgbImage::new(w, h, px)
}

fn gray(img: &RgbImage) -> RgbImage {
    let g: Vec<u8> = img
        .pixels
        .chunks(3)
        .map(|p| ((p[0] as u32 * 3 + p[1] as u32 * 6 + p[2] as u32) / 10) as u8)
        .collect();
    RgbImage::from_gray(img.width, img.height, &g)
}

fn write_pictures(dir: &Path, names: &[&str], seed0: u64, f: impl Fn(RgbImage) -> RgbImage) {
    std::fs::create_dir_all(dir).unwrap();
    for (i, n) in names.iter().enumerate() {
        write_png(&dir.join(n), &f(picture(seed0 + i as u64))).unwrap();
    }
}

fn pico_weights(dir: &Path) -> PathBuf {
    let nat = Nat::new(&NatConfig::from_name("nat_pico").unwrap(), DType::F32, 3).unwrap();
    let p = dir.join("pico.safetensors");
    save_backbone(&nat, &p).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn embed_exact_form_writes_sorted_rows() {
    let t = temp("embed");
    let images = t.join("images");
    // Written out of order: rows must follow the sorted names.
    write_pictures(&images, &["c.png", "a.png", "d.png", "b.png"], 0, |i| i);
    let weights = pico_weights(&t);
    let out = t.join("emb.safetensors");
    let (ok, _, err) = dinonat(&[
        "embed",
        "--weights",
        s(&weights),
        "--arch",
        "nat_pico",
        "--images",
        s(&images),
        "--size",
        "32",
        "--out",
        s(&out),
    ]);
    assert!(ok, "embed failed: {err}");
    let file = dinonat_engine::io::load_safetensors(&out).unwrap();
    let e = file.get("embeddings").expect("tensor `embeddings`");
    assert_eq!(e.shape(), &[4, 128]);
    let csv = std::fs::read_to_string(t.join("emb.csv")).unwrap();
    let names: Vec<String> = csv
        .lines()
        .skip(1)
        .map(|l| {
            Path::new(l.split_once(',').unwrap().1)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(names, ["a.png", "b.png", "c.png", "d.png"]);
    // Row 0 is a.png: embed it alone and compare.
    let solo = t.join("solo");
    std::fs::create_dir_all(&solo).unwrap();
    std::fs::copy(images.join("a.png"), solo.join("a.png")).unwrap();
    let out1 = t.join("one.safetensors");
    let (ok, _, err) = dinonat(&[
        "embed",
        "--weights",
        s(&weights),
        "--images",
        s(&solo),
        "--size",
        "32",
        "--out",
        s(&out1),
    ]);
    assert!(ok, "embed (arch from metadata) failed: {err}");
    let one = dinonat_engine::io::load_safetensors(&out1).unwrap();
    let (a, b) = (
        e.to_vec::<f32>().unwrap(),
        one.get("embeddings").unwrap().to_vec::<f32>().unwrap(),
    );
    for (x, y) in a[..128].iter().zip(&b) {
        assert!((x - y).abs() < 1e-4, "{x} vs {y}");
    }
    let _ = std::fs::remove_dir_all(&t);
}

#[test]
fn filter_writes_report_and_sheets_and_leaves_input_untouched() {
    let t = temp("filter");
    let images = t.join("images");
    let names: Vec<String> = (0..8).map(|i| format!("img{i}.png")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    write_pictures(&images, &refs, 10, |i| i);
    std::fs::copy(images.join("img3.png"), images.join("img3_copy.png")).unwrap();
    let exemplars = t.join("exemplars");
    write_pictures(&exemplars, &["e.png"], 13, |i| i);
    let before = files_under(&images);
    let out = t.join("report");
    let keep = t.join("kept.txt");
    let (ok, stdout, err) = dinonat(&[
        "filter",
        "--random-init",
        "--arch",
        "nat_pico",
        "--images",
        s(&images),
        "--out",
        s(&out),
        "--size",
        "32",
        "--clusters",
        "2",
        "--dup-threshold",
        "0.99999",
        "--outlier-percentile",
        "20",
        "--keep-like",
        s(&exemplars),
        "--keep-list",
        s(&keep),
    ]);
    assert!(ok, "filter failed: {err}");
    assert!(stdout.contains("9 images"), "{stdout}");
    assert_eq!(files_under(&images), before, "the input folder changed");
    let csv = std::fs::read_to_string(out.join("report.csv")).unwrap();
    assert_eq!(csv.lines().count(), 10);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["images"], 9);
    let groups = json["duplicate_groups"].as_array().unwrap();
    assert!(
        groups.iter().any(|g| g
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().ends_with("img3_copy.png"))),
        "the copy is in no duplicate group: {groups:?}"
    );
    assert_eq!(json["outliers"].as_array().unwrap().len(), 2); // ceil(9 * 0.2)
    for sheet in [
        "cluster_000.png",
        "cluster_001.png",
        "duplicates_000.png",
        "outliers.png",
    ] {
        let p = out.join("sheets").join(sheet);
        assert!(
            p.is_file() || sheet.starts_with("cluster"),
            "missing {sheet}"
        );
    }
    let sheets = json["sheets"].as_array().unwrap();
    assert!(sheets.len() >= 3, "{sheets:?}");
    let kept = std::fs::read_to_string(&keep).unwrap();
    assert_eq!(
        kept.lines().count(),
        json["kept"].as_u64().unwrap() as usize
    );
    // Outputs inside the input folder are refused before anything is written.
    let (ok, _, err) = dinonat(&[
        "filter",
        "--random-init",
        "--arch",
        "nat_pico",
        "--images",
        s(&images),
        "--out",
        s(&images.join("report")),
        "--size",
        "32",
    ]);
    assert!(!ok && err.contains("--out"), "{err}");
    assert_eq!(files_under(&images), before);
    let _ = std::fs::remove_dir_all(&t);
}

#[test]
fn filter_reject_like_keeps_the_images_nearest_to_the_keep_exemplars() {
    let t = temp("reject");
    // pictures 20.. are copies of the keep exemplars, 30.. of the reject exemplars
    let (images, keep, reject) = (t.join("images"), t.join("keep"), t.join("reject"));
    write_pictures(&images, &["a0.png", "a1.png", "a2.png"], 20, |i| i);
    write_pictures(&keep, &["k0.png", "k1.png", "k2.png"], 20, |i| i);
    write_pictures(&reject, &["r0.png", "r1.png"], 30, |i| i);
    write_pictures(&images, &["b0.png", "b1.png"], 30, |i| i);
    let out = t.join("report");
    let (ok, _, err) = dinonat(&[
        "filter",
        "--random-init",
        "--arch",
        "nat_pico",
        "--images",
        s(&images),
        "--out",
        s(&out),
        "--size",
        "32",
        "--clusters",
        "0",
        "--outlier-percentile",
        "0",
        "--keep-like",
        s(&keep),
        "--reject-like",
        s(&reject),
    ]);
    assert!(ok, "filter failed: {err}");
    let csv = std::fs::read_to_string(out.join("report.csv")).unwrap();
    for line in csv.lines().skip(1) {
        let matched = !line.split(',').nth(6).unwrap().is_empty();
        assert_eq!(matched, line.contains("/images/a"), "{line}");
    }
    let (ok, _, err) = dinonat(&[
        "filter",
        "--random-init",
        "--arch",
        "nat_pico",
        "--images",
        s(&images),
        "--out",
        s(&out),
        "--size",
        "32",
        "--reject-like",
        s(&reject),
    ]);
    assert!(!ok && err.contains("--keep-like"), "{err}");
    let _ = std::fs::remove_dir_all(&t);
}

fn crossmodal_json(rgb: &Path, ir: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "crossmodal",
        "--random-init",
        "--arch",
        "nat_pico",
        "--rgb",
        s(rgb),
        "--ir",
        s(ir),
        "--size",
        "32",
        "--json",
    ];
    args.extend_from_slice(extra);
    let (ok, stdout, err) = dinonat(&args);
    assert!(ok, "crossmodal failed: {err}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[test]
fn crossmodal_json_keys_and_ranges() {
    let t = temp("xjson");
    let names = ["p0.png", "p1.png", "p2.png", "p3.png", "p4.png", "p5.png"];
    write_pictures(&t.join("rgb"), &names, 20, |i| i);
    write_pictures(&t.join("ir"), &names, 20, |i| gray(&i));
    let fig = t.join("fig.png");
    let v = crossmodal_json(
        &t.join("rgb"),
        &t.join("ir"),
        &["--figure", s(&fig), "--figure-pairs", "2"],
    );
    assert_eq!(v["pairs"], 6);
    // Pooled and layout retrieval, both ways: percentages in [0, 100], median ranks among 6 pairs in [1, 6].
    for prefix in ["", "layout_"] {
        for dir in ["ir_to_rgb", "rgb_to_ir"] {
            for (stat, lo, hi) in [
                ("top1", 0.0, 100.0),
                ("top5", 0.0, 100.0),
                ("median_rank", 1.0, 6.0),
            ] {
                let k = format!("{prefix}retrieval_{stat}_{dir}");
                let x = v[&k].as_f64().unwrap_or_else(|| panic!("no {k}"));
                assert!((lo..=hi).contains(&x), "{k} = {x}");
            }
        }
    }
    let iou = v["attention_iou"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&iou));
    assert_eq!(v["chance_median_rank"], 3.5);
    // The network and the non-learned descriptors: the same keys, the same ranges.
    let retrieval = v["retrieval"].as_array().unwrap();
    let names: Vec<&str> = retrieval
        .iter()
        .map(|x| x["features"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "network_pooled",
            "network_layout",
            "luminance",
            "gradient",
            "signed_gradient"
        ]
    );
    for x in retrieval {
        for dir in ["ir_to_rgb", "rgb_to_ir"] {
            for (stat, lo, hi) in [
                ("top1", 0.0, 100.0),
                ("top5", 0.0, 100.0),
                ("median_rank", 1.0, 6.0),
            ] {
                let y = x[format!("{stat}_{dir}")].as_f64().unwrap();
                assert!((lo..=hi).contains(&y), "{x}");
            }
        }
    }
    assert_eq!(
        retrieval[0]["top1_ir_to_rgb"],
        v["retrieval_top1_ir_to_rgb"]
    );
    assert_eq!(
        retrieval[1]["median_rank_rgb_to_ir"],
        v["layout_retrieval_median_rank_rgb_to_ir"]
    );
    // The mask IoU of the network and of each prior, with an interval over the pairs.
    common::check_scored_maps(
        &v["iou"],
        "map",
        "iou",
        &[
            "network",
            "centre_gaussian",
            "central_square",
            "intensity",
            "uniform",
            "shifted_pairs",
        ],
    );
    let ious = v["iou"].as_array().unwrap();
    // A fixed map gives both images the same mask.
    assert_eq!(ious[1]["iou"], 1.0);
    assert_eq!(ious[0]["iou"], v["attention_iou"]);
    assert!(v["retrieval_top5_ir_to_rgb"].as_f64() >= v["retrieval_top1_ir_to_rgb"].as_f64());
    let fig = decode_image(&std::fs::read(&fig).unwrap(), "fig").unwrap();
    assert!(fig.width > fig.height, "{}x{}", fig.width, fig.height);
    let _ = std::fs::remove_dir_all(&t);
}

#[test]
fn crossmodal_identical_folders_retrieve_every_pair() {
    // Same images on both sides: each query's partner has cosine 1 and every other image less
    // (distinct pictures), so even with ties counted against the partner top-1 is 100%; the
    // masks coincide, so the IoU is 1.
    let t = temp("xsame");
    let names = ["a.png", "b.png", "c.png", "d.png", "e.png"];
    write_pictures(&t.join("rgb"), &names, 30, |i| i);
    write_pictures(&t.join("ir"), &names, 30, |i| i);
    let v = crossmodal_json(&t.join("rgb"), &t.join("ir"), &[]);
    assert_eq!(v["retrieval_top1_ir_to_rgb"], 100.0);
    assert_eq!(v["retrieval_top1_rgb_to_ir"], 100.0);
    assert_eq!(v["retrieval_median_rank_ir_to_rgb"], 1.0);
    assert_eq!(v["layout_retrieval_top1_ir_to_rgb"], 100.0);
    assert_eq!(v["layout_retrieval_top1_rgb_to_ir"], 100.0);
    assert_eq!(v["attention_iou"], 1.0);
    // Every non-learned descriptor retrieves identical images too, and the image-dependent priors agree.
    for x in v["retrieval"].as_array().unwrap() {
        assert_eq!(x["top1_ir_to_rgb"], 100.0, "{x}");
    }
    let ious = v["iou"].as_array().unwrap();
    for k in [2, 3] {
        assert_eq!(ious[k]["iou"], 1.0, "{}", ious[k]);
    }
    assert!(
        ious[4]["iou"].as_f64() < Some(1.0),
        "random masks of the same areas rarely coincide"
    );
    let _ = std::fs::remove_dir_all(&t);
}

#[test]
fn crossmodal_unmatched_names_fail_or_are_skipped() {
    let t = temp("xunmatched");
    write_pictures(
        &t.join("rgb"),
        &["a.png", "b.png", "only_rgb.png"],
        40,
        |i| i,
    );
    write_pictures(&t.join("ir"), &["a.png", "b.png", "only_ir.png"], 40, |i| {
        gray(&i)
    });
    let (ok, _, err) = dinonat(&[
        "crossmodal",
        "--random-init",
        "--arch",
        "nat_pico",
        "--rgb",
        s(&t.join("rgb")),
        "--ir",
        s(&t.join("ir")),
        "--size",
        "32",
    ]);
    assert!(
        !ok && err.contains("only_rgb.png") && err.contains("only_ir.png"),
        "{err}"
    );
    let v = crossmodal_json(&t.join("rgb"), &t.join("ir"), &["--skip-unmatched"]);
    assert_eq!(v["pairs"], 2);
    let _ = std::fs::remove_dir_all(&t);
}

#[test]
fn attention_writes_figures_of_the_right_size() {
    let t = temp("attn");
    write_pictures(&t.join("rgb"), &["a.png", "b.png"], 50, |i| i);
    write_pictures(&t.join("ir"), &["a.png"], 50, |i| gray(&i));
    let out = t.join("maps");
    let (ok, _, err) = dinonat(&[
        "attention",
        "--random-init",
        "--arch",
        "nat_pico",
        "--images",
        s(&t.join("rgb")),
        "--pair-dir",
        s(&t.join("ir")),
        "--out",
        s(&out),
        "--size",
        "32",
        "--pixel",
        "8,8",
        "--sheet",
        s(&t.join("sheet.png")),
    ]);
    assert!(ok, "attention failed: {err}");
    // 32 px shown at 5x = 160; pico level 0 (16x16) has 1 head: image | head | mask.
    let size = |name: &str| {
        let img = decode_image(&std::fs::read(out.join(name)).unwrap(), name).unwrap();
        (img.width, img.height)
    };
    assert_eq!(size("a_pooled.png"), (3 * 164 + 4, 168));
    assert_eq!(size("b_pooled.png"), (3 * 164 + 4, 168));
    // the sheet stacks both pooled figures with 4 px of padding around and between
    let sheet = decode_image(&std::fs::read(t.join("sheet.png")).unwrap(), "sheet").unwrap();
    assert_eq!((sheet.width, sheet.height), (3 * 164 + 4 + 8, 2 * 168 + 12));
    let (ok, _, err) = dinonat(&[
        "attention",
        "--random-init",
        "--arch",
        "nat_pico",
        "--images",
        s(&t.join("rgb")),
        "--out",
        s(&out),
        "--size",
        "32",
        "--sheet",
        s(&t.join("s0.png")),
        "--sheet-images",
        "0",
    ]);
    assert!(!ok && err.contains("--sheet-images"), "{err}");
    assert_eq!(size("a_pca.png"), (2 * 164 + 4, 168));
    assert_eq!(size("a_neighbourhood.png"), (2 * 164 + 4, 168)); // 1 block at level 0
    assert_eq!(size("a_pair.png"), (2 * (3 * 164 + 4) + 12, 176));
    assert!(!out.join("b_pair.png").exists());
    let _ = std::fs::remove_dir_all(&t);
}

#[test]
fn commands_name_the_missing_folder_or_bad_flag() {
    // A private folder with one picture: listing /tmp itself races with other tests removing theirs.
    let images = temp("bad-flags");
    write_pictures(&images, &["a.png"], 7, |i| i);
    let images = s(&images).to_string();
    let missing = "/nonexistent/dinonat-folder";
    for (cmd, flag) in [
        ("embed", "--images"),
        ("filter", "--images"),
        ("attention", "--images"),
    ] {
        let mut args = vec![
            cmd,
            "--random-init",
            "--arch",
            "nat_pico",
            "--images",
            missing,
            "--out",
        ];
        args.push(if cmd == "embed" {
            "/tmp/dinonat-x.safetensors"
        } else {
            "/tmp/dinonat-x-out"
        });
        let (ok, _, err) = dinonat(&args);
        assert!(
            !ok && err.contains(flag) && err.contains(missing),
            "{cmd}: {err}"
        );
        assert!(!err.contains("panicked"), "{cmd}: {err}");
    }
    let (ok, _, err) = dinonat(&[
        "crossmodal",
        "--random-init",
        "--rgb",
        missing,
        "--ir",
        missing,
    ]);
    assert!(
        !ok && err.contains("--rgb") && !err.contains("panicked"),
        "{err}"
    );
    let (ok, _, err) = dinonat(&["embed", "--images", &images, "--out", "/tmp/x.safetensors"]);
    assert!(
        !ok && err.contains("--weights") && err.contains("--random-init"),
        "{err}"
    );
    let (ok, _, err) = dinonat(&[
        "embed",
        "--random-init",
        "--arch",
        "nat_huge",
        "--images",
        &images,
        "--out",
        "/tmp/x",
    ]);
    assert!(!ok && err.contains("nat_huge"), "{err}");
    let (ok, _, err) = dinonat(&[
        "crossmodal",
        "--random-init",
        "--rgb",
        "a",
        "--ir",
        "b",
        "--bogus",
    ]);
    assert!(!ok && err.contains("--bogus"), "{err}");
    let (ok, _, err) = dinonat(&[
        "attention",
        "--random-init",
        "--images",
        "a",
        "--out",
        "b",
        "--pixel",
        "3",
    ]);
    assert!(!ok && err.contains("--pixel"), "{err}");
}

#[cfg(unix)]
#[test]
fn crossmodal_on_roadscene_pairs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/roadscene");
    if !root.join("rgb").is_dir() || !root.join("ir").is_dir() {
        eprintln!(
            "skipped: {} is absent (development data, not part of the repository)",
            root.display()
        );
        return;
    }
    // A few pairs, linked into a temporary folder (the data stays where it is).
    let t = temp("roadscene");
    let mut names: Vec<PathBuf> = std::fs::read_dir(root.join("rgb"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for m in ["rgb", "ir"] {
        std::fs::create_dir_all(t.join(m)).unwrap();
        for p in names.iter().take(6) {
            let n = p.file_name().unwrap();
            std::os::unix::fs::symlink(root.join(m).join(n), t.join(m).join(n)).unwrap();
        }
    }
    let v = crossmodal_json(&t.join("rgb"), &t.join("ir"), &[]);
    assert_eq!(v["pairs"], 6);
    assert!((0.0..=100.0).contains(&v["retrieval_top1_ir_to_rgb"].as_f64().unwrap()));
    assert!((0.0..=1.0).contains(&v["attention_iou"].as_f64().unwrap()));
    let _ = std::fs::remove_dir_all(&t);
}

#[test]
fn embed_from_a_training_checkpoint_uses_the_teacher_backbone() {
    // A checkpoint in the trainer's format: teacher.backbone.* = `teacher`, student.backbone.* =
    // another network; embedding it must equal embedding the teacher's backbone file.
    let t = temp("ckpt");
    let images = t.join("images");
    write_pictures(&images, &["a.png", "b.png"], 60, |i| i);
    let cfg = NatConfig::from_name("nat_pico").unwrap();
    let teacher = Nat::new(&cfg, DType::F32, 11).unwrap();
    let student = Nat::new(&cfg, DType::F32, 12).unwrap();
    let mut tensors = Vec::new();
    for (prefix, net) in [("teacher", &teacher), ("student", &student)] {
        for (n, tensor) in net.params.named_tensors() {
            tensors.push((format!("{prefix}.backbone.{n}"), tensor));
        }
    }
    let meta = std::collections::HashMap::from([
        ("format".to_string(), "dinonat-dino-checkpoint".to_string()),
        ("step".to_string(), "5".to_string()),
        ("config".to_string(), r#"{"arch":"nat_pico"}"#.to_string()),
    ]);
    let ckpt = t.join("ckpt.safetensors");
    dinonat_engine::io::save_safetensors(&ckpt, &tensors, Some(&meta)).unwrap();
    let weights = t.join("teacher.safetensors");
    save_backbone(&teacher, &weights).unwrap();
    let run = |flag: &str, file: &Path, out: &str| {
        let out = t.join(out);
        let (ok, _, err) = dinonat(&[
            "embed",
            flag,
            s(file),
            "--images",
            s(&images),
            "--size",
            "32",
            "--out",
            s(&out),
        ]);
        assert!(ok, "embed {flag} failed: {err}");
        let f = dinonat_engine::io::load_safetensors(&out).unwrap();
        f.get("embeddings").unwrap().to_vec::<f32>().unwrap()
    };
    assert_eq!(
        run("--checkpoint", &ckpt, "c.safetensors"),
        run("--weights", &weights, "w.safetensors")
    );
    // A backbone file is not a checkpoint.
    let (ok, _, err) = dinonat(&[
        "embed",
        "--checkpoint",
        s(&weights),
        "--images",
        s(&images),
        "--out",
        s(&t.join("x")),
    ]);
    assert!(
        !ok && err.contains("--checkpoint") && err.contains("--weights"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&t);
}

/// `duplicates`: three clips of three frames per folder (a frame is its clip's picture with one
/// pixel changed), so the pixels' cosine separates clips perfectly: precision and recall 100 %
/// at the threshold chosen on --tune, 9 of the 36 eval pairs of one clip. A name without the
/// separator is an error naming the file.
#[test]
fn duplicates_scores_clips_of_frames() {
    let root = temp("duplicates");
    for (split, seed0) in [("tune", 0u64), ("eval", 3)] {
        let dir = root.join(split);
        std::fs::create_dir_all(&dir).unwrap();
        for clip in 0..3u64 {
            for frame in 0..3usize {
                let mut img = picture(seed0 + clip);
                img.pixels[3 * (5 + frame)] ^= 0x40;
                write_png(&dir.join(format!("clip{clip}__{frame}.png")), &img).unwrap();
            }
        }
    }
    let (tune, eval) = (root.join("tune"), root.join("eval"));
    let base = [
        "duplicates",
        "--random-init",
        "--arch",
        "nat_pico",
        "--size",
        "32",
        "--tune",
        tune.to_str().unwrap(),
        "--eval",
        eval.to_str().unwrap(),
    ];
    let (ok, out, err) = dinonat(&[&base[..], &["--json"]].concat());
    assert!(ok, "duplicates failed: {err}");
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["eval_pairs"], 36);
    assert_eq!(r["eval_duplicate_pairs"], 9);
    assert_eq!(r["eval_clips"], 3);
    let pixels = r["scores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["method"] == "pixels")
        .unwrap();
    for key in ["precision", "recall", "average_precision"] {
        assert_eq!(pixels[key].as_f64(), Some(1.0), "pixels {key}: {pixels}");
    }
    write_png(&eval.join("stray.png"), &picture(9)).unwrap();
    let (ok, _, err) = dinonat(&base);
    assert!(
        !ok && err.contains("stray.png") && err.contains("no clip"),
        "{err}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

/// `exemplars`: keep-exemplars are pictures 0-2, reject-exemplars pictures 3-5 (two frames of one
/// clip each); the scored folder holds a frame of each picture, in `pos/` (0-2) and `neg/` (3-5),
/// so the pixels rank every positive first: AP 1, and the filter's rule keeps exactly them. A
/// --positive that names no folder is an error naming the flag.
#[test]
fn exemplars_scores_the_keep_rule_as_a_retrieval() {
    let root = temp("exemplars");
    for (dir, seeds, frames) in [
        ("keep", 0..3u64, 0..2usize),
        ("reject", 3..6, 0..2),
        ("images/pos", 0..3, 2..3),
        ("images/neg", 3..6, 2..3),
    ] {
        let d = root.join(dir);
        std::fs::create_dir_all(&d).unwrap();
        for s in seeds {
            for f in frames.clone() {
                let mut img = picture(s);
                img.pixels[3 * (5 + f)] ^= 0x40;
                write_png(&d.join(format!("clip{s}__{f}.png")), &img).unwrap();
            }
        }
    }
    let path = |d: &str| root.join(d).to_str().unwrap().to_string();
    let (keep, reject, images) = (path("keep"), path("reject"), path("images"));
    let base = [
        "exemplars",
        "--random-init",
        "--arch",
        "nat_pico",
        "--size",
        "32",
        "--keep-like",
        &keep,
        "--reject-like",
        &reject,
        "--images",
        &images,
    ];
    let (ok, out, err) = dinonat(&[&base[..], &["--positive", "pos", "--json"]].concat());
    assert!(ok, "exemplars failed: {err}");
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (r["images"].as_u64(), r["positives"].as_u64()),
        (Some(6), Some(3))
    );
    let pixels = r["scores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["features"] == "pixels")
        .unwrap();
    for key in ["average_precision", "rule_precision", "rule_recall"] {
        assert_eq!(pixels[key].as_f64(), Some(1.0), "pixels {key}: {pixels}");
    }
    let (ok, _, err) = dinonat(&[&base[..], &["--positive", "none"]].concat());
    assert!(!ok && err.contains("--positive"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}
