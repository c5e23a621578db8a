//! The hostile-input corpus of issue 15 (docs/data.md, "Hostile inputs"): one test per case, each
//! generating its inputs, asserting the exit code and the message, and that no input changed.

mod common;

use common::files_under;
use dinonat_engine::io::{load_safetensors, save_safetensors};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary with a 60 s watchdog: a hang is a failure, not a stuck test.
fn dinonat(args: &[&str]) -> Run {
    let dir = std::env::temp_dir();
    let tag = format!("{}-{:?}", std::process::id(), std::thread::current().id());
    let (out, err) = (
        dir.join(format!("dinonat-hostile-{tag}.out")),
        dir.join(format!("dinonat-hostile-{tag}.err")),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_dinonat"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("the dinonat binary runs");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("dinonat {args:?} hung for 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
    let run = Run {
        code: status.code(),
        stdout: read(&out),
        stderr: read(&err),
    };
    let _ = (std::fs::remove_file(&out), std::fs::remove_file(&err));
    run
}

/// Asserts a clean failure (exit 1, no abort) whose message holds every `needle`.
fn fails_with(r: &Run, needles: &[&str]) {
    assert_eq!(r.code, Some(1), "stdout {}\nstderr {}", r.stdout, r.stderr);
    for n in needles {
        assert!(r.stderr.contains(n), "no '{n}' in: {}", r.stderr);
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dinonat-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A small PNG with a pattern (never a flat image).
fn png(w: u32, h: u32, seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 13) as u8 ^ seed, (y * 7) as u8, seed.wrapping_mul(3)])
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// `n` PNGs of 20 x 20 in two class folders of `dir`.
fn image_folder(dir: &Path, n: usize) {
    for i in 0..n {
        let class = dir.join(format!("c{}", i % 2));
        std::fs::create_dir_all(&class).unwrap();
        std::fs::write(class.join(format!("{i:03}.png")), png(20, 20, i as u8)).unwrap();
    }
}

const EMBED: [&str; 5] = ["--random-init", "--arch", "nat_pico", "--size", "16"];

fn embed(images: &Path, out: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["embed", "--images", s(images), "--out", s(out)];
    args.extend(EMBED);
    args.extend(extra);
    dinonat(&args)
}

/// nat_pico, K 16, head 16-16-8, 2 x 16 + 2 x 8 crops, batch 4, no k-NN.
const TINY: [&str; 17] = [
    "--arch",
    "nat_pico",
    "--out-dim",
    "16",
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
    "--no-eval",
];

/// A tiny run of `steps` steps (checkpoint every 2) in `dir/run`; returns the checkpoint.
fn tiny_run(dir: &Path, steps: &str, stop_at: &str) -> PathBuf {
    let run = dir.join("run");
    let mut args = vec![
        "train",
        "--steps",
        steps,
        "--stop-at",
        stop_at,
        "--out",
        s(&run),
    ];
    args.extend(TINY);
    args.extend(["--procedural-len", "16", "--checkpoint-every", "2"]);
    let r = dinonat(&args);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    run.join("checkpoint.safetensors")
}

/// Case 1: no command overwrites its inputs.
#[test]
fn case1_outputs_never_overwrite_inputs() {
    let dir = temp_dir("case1");
    let images = dir.join("images");
    image_folder(&images, 4);
    let ck = tiny_run(&dir, "4", "2");
    let weights = dir.join("backbone.safetensors");
    let r = dinonat(&["export", "--checkpoint", s(&ck), "--out", s(&weights)]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let before = files_under(&dir);

    let r = dinonat(&["export", "--checkpoint", s(&ck), "--out", s(&ck)]);
    fails_with(&r, &["--out", "same file as --checkpoint"]);
    let w = [
        "embed",
        "--weights",
        s(&weights),
        "--images",
        s(&images),
        "--out",
    ];
    let r = dinonat(&[&w[..], &[s(&weights), "--size", "16"]].concat());
    fails_with(&r, &["--out", "same file as --weights"]);
    let c = [
        "embed",
        "--checkpoint",
        s(&ck),
        "--images",
        s(&images),
        "--out",
    ];
    let r = dinonat(&[&c[..], &[s(&ck), "--size", "16"]].concat());
    fails_with(&r, &["same file as --checkpoint"]);
    let inside = images.join("c0/000.png");
    let r = embed(&images, &dir.join("e.safetensors"), &["--csv", s(&inside)]);
    fails_with(&r, &["--csv", "inside --images"]);
    let r = embed(&images, &inside, &[]);
    fails_with(&r, &["--out", "inside --images"]);
    let e = dir.join("e.safetensors");
    let r = embed(&images, &e, &["--csv", s(&e)]);
    fails_with(&r, &["--csv", "--out", "same file"]);
    assert_eq!(files_under(&dir), before, "an input changed");
}

/// Case 2: symlink cycles end, back-links do not multiply the set, a FIFO does not block.
#[cfg(unix)]
#[test]
fn case2_cycles_links_and_fifos_do_not_hang() {
    let dir = temp_dir("case2");
    let images = dir.join("images");
    image_folder(&images, 5);
    std::os::unix::fs::symlink("..", images.join("c0/up")).unwrap();
    std::os::unix::fs::symlink("000.png", images.join("c0/again.png")).unwrap();
    let before = files_under(&images);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let r = embed(&images, &out.join("e.safetensors"), &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("embeddings [5, "), "{}", r.stderr);
    assert!(
        r.stderr.contains("reached twice through symlinks"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("1 file(s) are links to files listed already"),
        "{}",
        r.stderr
    );

    // knn walks folders with the same rule: 5 images, not 84, and it ends
    let i = s(&images);
    let r = dinonat(&["knn", "--train", i, "--val", i, "--pixels", "--size", "8"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.contains("knn: 5 train / 5 val images"),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains("reached twice through symlinks"),
        "{}",
        r.stderr
    );

    let fifo = images.join("c1/x.png");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let r = embed(&images, &out.join("f.safetensors"), &[]);
    fails_with(&r, &["x.png", "not a regular file"]);
    std::fs::remove_file(&fifo).unwrap();
    assert_eq!(files_under(&images), before, "an input changed");
}

/// Case 3: a decompression bomb is refused from its header; /dev/zero is not read.
#[test]
fn case3_memory_is_bounded() {
    let dir = temp_dir("case3");
    let images = dir.join("images");
    image_folder(&images, 2);
    // A valid 20 x 20 PNG whose header claims 12000 x 12000 (CRC fixed): refused before decoding.
    let mut bomb = png(20, 20, 1);
    bomb[16..20].copy_from_slice(&12000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&12000u32.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    std::fs::write(images.join("c0/bomb.png"), &bomb).unwrap();
    let images_before = files_under(&images);
    let out = dir.join("e.safetensors");
    let r = embed(&images, &out, &[]);
    fails_with(&r, &["bomb.png", "144000000 pixels", "--max-megapixels"]);
    assert!(!out.exists(), "a failed embed wrote its output");
    assert_eq!(files_under(&images), images_before, "an input changed");
    std::fs::remove_file(images.join("c0/bomb.png")).unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("/dev/zero", images.join("c0/zero.png")).unwrap();
        let images_before = files_under(&images);
        let r = embed(&images, &out, &[]);
        fails_with(&r, &["zero.png", "not a regular file"]);
        assert!(!out.exists(), "a failed embed wrote its output");
        assert_eq!(files_under(&images), images_before, "an input changed");
        std::fs::remove_file(images.join("c0/zero.png")).unwrap();
    }
    // An IDX whose header asks for 100000 x 100 x 100 bytes, gzipped: refused at the header.
    let idx = dir.join("idx");
    std::fs::create_dir_all(&idx).unwrap();
    let mut header = vec![0u8, 0, 8, 3];
    for d in [100_000u32, 100, 100] {
        header.extend(d.to_be_bytes());
    }
    let gz = |bytes: &[u8]| {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    };
    let mut body = header.clone();
    body.resize(header.len() + (8 << 20), 0); // 8 MB of zeros behind it, 8 KB gzipped
    std::fs::write(idx.join("train-images-idx3-ubyte.gz"), gz(&body)).unwrap();
    std::fs::write(
        idx.join("train-labels-idx1-ubyte"),
        [0u8, 0, 8, 1, 0, 0, 0, 1, 0],
    )
    .unwrap();
    let before = files_under(&dir);
    let r = dinonat(&[
        "train",
        "--data",
        s(&idx),
        "--out",
        s(&dir.join("run")),
        "--steps",
        "1",
    ]);
    fails_with(&r, &["train-images-idx3-ubyte.gz", "cap"]);
    assert_eq!(files_under(&dir), before, "an input changed");
}

/// Case 4: unreadable training files are skipped with a warning and counted; --strict stops.
/// A truncated JPEG is an unreadable file.
#[test]
fn case4_no_silent_skips() {
    let dir = temp_dir("case4");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a_good.png"), png(24, 24, 5)).unwrap();
    std::fs::write(data.join("b_bad.png"), b"not a png at all").unwrap();
    std::fs::write(data.join("c_bad.png"), &png(24, 24, 6)[..40]).unwrap();
    let mut jpeg = Vec::new();
    image::RgbImage::from_fn(64, 64, |x, y| {
        image::Rgb([(x * y) as u8, (x ^ y) as u8 * 5, 77])
    })
    .write_to(
        &mut std::io::Cursor::new(&mut jpeg),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    jpeg.truncate(jpeg.len() / 2);
    std::fs::write(data.join("d_half.jpg"), &jpeg).unwrap();
    let before = files_under(&data);
    let run = dir.join("run");
    let mut args = vec![
        "train",
        "--data",
        s(&data),
        "--out",
        s(&run),
        "--steps",
        "2",
    ];
    args.extend(TINY);
    let r = dinonat(&args);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr.contains("3 unreadable file(s) skipped"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout.contains("3 unreadable file(s) skipped"),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains("d_half.jpg: truncated JPEG"),
        "{}",
        r.stderr
    );
    let strict = dir.join("strict");
    let mut args = vec![
        "train",
        "--data",
        s(&data),
        "--out",
        s(&strict),
        "--steps",
        "2",
    ];
    args.extend(TINY);
    args.push("--strict");
    let r = dinonat(&args);
    fails_with(&r, &[s(&data), "no checkpoint was written yet"]);
    assert_eq!(files_under(&data), before, "an input changed");
}

/// Case 5: huge flag values are errors naming the flag (no abort) and leave nothing behind.
#[test]
fn case5_huge_flags_are_errors() {
    let dir = temp_dir("case5");
    let run = dir.join("run");
    for (flag, extra) in [
        ("--global-size", vec!["--global-size", "100000"]),
        ("--procedural-size", vec!["--procedural-size", "100000"]),
    ] {
        let mut args = vec!["train", "--no-eval", "--steps", "1", "--out", s(&run)];
        args.extend(extra);
        fails_with(&dinonat(&args), &[flag, "at most"]);
    }
    let knn = ["knn", "--builtin", "--pixels"];
    let r = dinonat(&[&knn[..], &["--builtin-train", "100000000"]].concat());
    fails_with(&r, &["--builtin-train 100000000", "at most"]);
    let r = dinonat(&[&knn[..], &["--builtin-image-size", "100000"]].concat());
    fails_with(&r, &["--builtin-image-size 100000", "at most"]);
    let tree = dir.join("tree");
    let r = dinonat(&["builtin", "--out", s(&tree), "--size", "100000"]);
    fails_with(&r, &["--size 100000", "at most"]);
    assert!(
        !tree.exists() && !run.exists(),
        "a failed command left files"
    );
}

/// Case 6: a checkpoint without optimiser state, beyond --steps, or with NaN weights is refused.
#[test]
fn case6_checkpoint_checks() {
    let dir = temp_dir("case6");
    let ck = tiny_run(&dir, "4", "2");
    let file = load_safetensors(&ck).unwrap();
    let save = |name: &str, tensors: Vec<(String, dinonat_engine::Tensor)>, meta| {
        let p = dir.join(name);
        save_safetensors(&p, &tensors, Some(&meta)).unwrap();
        p
    };
    let no_adamw: Vec<_> = (file.tensors.iter())
        .filter(|(n, _)| !n.starts_with("adamw."))
        .cloned()
        .collect();
    let stripped = save("stripped.safetensors", no_adamw, file.metadata.clone());
    let mut late = file.metadata.clone();
    late.insert("step".into(), "9".into());
    let beyond = save("beyond.safetensors", file.tensors.clone(), late);
    let mut nan = file.tensors.clone();
    let (_, t) = nan
        .iter_mut()
        .find(|(n, _)| n.starts_with("teacher.backbone."))
        .unwrap();
    let mut values = t.to_vec_f64();
    values[0] = f64::NAN;
    *t = dinonat_engine::Tensor::from_vec(values.iter().map(|&v| v as f32).collect(), t.shape())
        .unwrap();
    let nan = save("nan.safetensors", nan, file.metadata.clone());
    let before = files_under(&dir);

    let check = |p: &Path| dinonat(&["train", "--check-checkpoint", s(p)]);
    let resume = |p: &Path| dinonat(&["train", "--resume", s(p), "--out", s(&dir.join("r2"))]);
    fails_with(
        &check(&stripped),
        &["stripped.safetensors", "optimiser state missing"],
    );
    fails_with(&resume(&stripped), &["--resume", "optimiser state missing"]);
    fails_with(&check(&beyond), &["step 9 is beyond the run's 4 steps"]);
    fails_with(&check(&nan), &["nan.safetensors", "holds NaN"]);
    let images = dir.join("images");
    image_folder(&images, 2);
    let c = [
        "embed",
        "--checkpoint",
        s(&nan),
        "--images",
        s(&images),
        "--size",
        "16",
    ];
    let r = dinonat(&[&c[..], &["--out", s(&dir.join("e.safetensors"))]].concat());
    fails_with(&r, &["nan.safetensors", "NaN", "finite"]);
    assert!(!dir.join("e.safetensors").exists());
    let after = files_under(&dir);
    for (name, bytes) in &before {
        assert!(after.get(name) == Some(bytes), "{name:?} changed");
    }
    assert!(!dir.join("r2").join("checkpoint.safetensors").exists());
    let ok = check(&ck);
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
}

/// Case 7: a resume removes orphan temporary files and replays no log row twice.
#[test]
fn case7_no_clutter_after_kills() {
    let dir = temp_dir("case7");
    let ck = tiny_run(&dir, "6", "4");
    let run = ck.parent().unwrap().to_path_buf();
    // What a run killed after step 5 (checkpoint at 4) leaves: rows 4 and 5, a temp file.
    let log = run.join("log.csv");
    let mut text = std::fs::read_to_string(&log).unwrap();
    let row3 = text.lines().last().unwrap().to_string();
    for step in [4, 5] {
        text.push_str(&row3.replacen("3,", &format!("{step},"), 1));
        text.push('\n');
    }
    std::fs::write(&log, text).unwrap();
    let orphan = run.join(".checkpoint.safetensors.tmp4000000000");
    std::fs::write(&orphan, b"half a checkpoint").unwrap();
    let r = dinonat(&["train", "--resume", s(&ck), "--no-eval"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(!orphan.exists(), "the orphan temp file is still there");
    assert!(
        r.stderr.contains("removed 1 temporary file(s)"),
        "{}",
        r.stderr
    );
    let steps: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect();
    assert_eq!(steps, ["0", "1", "2", "3", "4", "5"], "log rows");
    let stray = std::fs::read_dir(&run)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp")
        })
        .count();
    assert_eq!(stray, 0);
    assert!(run.join("curve_loss.png").is_file());
}

/// Case 8: the minor ones.
#[test]
fn case8_minor_checks() {
    let dir = temp_dir("case8");
    let images = dir.join("images");
    image_folder(&images, 4);
    let before = files_under(&images);
    let (maps, report) = (dir.join("maps"), dir.join("report"));
    fails_with(
        &dinonat(&["knn", "--builtin", "--pixels", "--size", "1"]),
        &["--size 1", "at least 8"],
    );
    let a = ["attention", "--images", s(&images), "--out", s(&maps)];
    let r = dinonat(&[&a[..], &EMBED, &["--pixel", "99,0"]].concat());
    fails_with(&r, &["--pixel 99,0", "outside"]);
    let f = ["filter", "--images", s(&images), "--out", s(&report)];
    let r = dinonat(&[&f[..], &EMBED, &["--outlier-k", "0"]].concat());
    fails_with(&r, &["--outlier-k 0"]);
    // an IDX label of 200 among 0..1: a warning that names the file and the class count
    let idx = dir.join("idx");
    std::fs::create_dir_all(&idx).unwrap();
    let mut images_idx = vec![0u8, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 8, 0, 0, 0, 8];
    images_idx.extend((0..128).map(|v| (v * 3) as u8));
    std::fs::write(idx.join("train-images-idx3-ubyte"), images_idx).unwrap();
    std::fs::write(
        idx.join("train-labels-idx1-ubyte"),
        [0u8, 0, 8, 1, 0, 0, 0, 2, 0, 200],
    )
    .unwrap();
    let idx_before = files_under(&idx);
    let r = dinonat(&[
        "train",
        "--data",
        s(&idx),
        "--out",
        s(&dir.join("run")),
        "--steps",
        "1",
        "--no-eval",
        "--batch-size",
        "2",
        "--global-size",
        "16",
        "--local-size",
        "8",
        "--local-crops",
        "1",
        "--out-dim",
        "16",
        "--head-hidden",
        "16",
        "--head-bottleneck",
        "8",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "train-labels-idx1-ubyte: labels go up to 200, so the set has 201 classes, but only 2"
        ),
        "{}",
        r.stderr
    );
    assert_eq!(files_under(&idx), idx_before, "an IDX input changed");
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let odd = images
            .join("c0")
            .join(std::ffi::OsStr::from_bytes(b"bad\xff.png"));
        std::fs::write(&odd, png(20, 20, 9)).unwrap();
        let r = embed(&images, &dir.join("e.safetensors"), &[]);
        fails_with(&r, &["not valid UTF-8"]);
        std::fs::remove_file(&odd).unwrap();
    }
    // a backbone file of another architecture: one clean list, no ":;"
    let weights = dir.join("pico.safetensors");
    let r = embed(&images, &dir.join("e.safetensors"), &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let ck = tiny_run(&dir, "2", "2");
    assert_eq!(
        dinonat(&["export", "--checkpoint", s(&ck), "--out", s(&weights)]).code,
        Some(0)
    );
    let w = [
        "embed",
        "--weights",
        s(&weights),
        "--arch",
        "nat_nano",
        "--images",
        s(&images),
    ];
    let r = dinonat(
        &[
            &w[..],
            &["--out", s(&dir.join("n.safetensors")), "--size", "16"],
        ]
        .concat(),
    );
    fails_with(&r, &["does not fit nat_nano: "]);
    assert!(!r.stderr.contains(":;"), "{}", r.stderr);
    assert_eq!(files_under(&images), before, "an input changed");
}
