//! `--device cpu|cuda` of `dinonat embed`: the default and `cpu` agree; `cuda` either matches the
//! CPU's embeddings (with a GPU) or fails with "no CUDA device: use --device cpu", never a panic.

use dinonat_train::data::RgbImage;
use dinonat_train::grid::write_png;
use std::path::{Path, PathBuf};
use std::process::Command;

fn dinonat(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dinonat"))
        .args(args)
        .output()
        .expect("the dinonat binary runs");
    (
        out.status.success(),
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
    dinonat(&args)
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
        println!("skipped the GPU comparison: {}", err.trim());
    }

    let (ok, err) = embed(&images, &cuda_out, Some("tpu"));
    assert!(!ok && err.contains("--device"), "{err}");
    let _ = std::fs::remove_dir_all(&t);
}
