//! `dinonat convert` and `--weights X.pth` end to end, on the torch.save fixtures of
//! model/tests/fixtures/pth (scripts/make-pth-fixtures.py): every scheme and container embeds
//! a folder exactly as the converted safetensors file does; bad uses are refused and leave no
//! file. (Parity with PyTorch's forward: model/tests/pth.rs.)

use dinonat_train::data::RgbImage;
use dinonat_train::grid::write_png;
use std::path::{Path, PathBuf};
mod common;

use common::dinonat;

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dinonat-convert-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("model/tests/fixtures/pth")
        .join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn embeddings(weights: &Path, images: &Path, out: &Path) -> Vec<f32> {
    let (ok, _, err) = dinonat(&[
        "embed",
        "--weights",
        s(weights),
        "--images",
        s(images),
        "--size",
        "32",
        "--out",
        s(out),
    ]);
    assert!(ok, "embed --weights {}: {err}", weights.display());
    let f = dinonat_engine::io::load_safetensors(out).unwrap();
    f.get("embeddings").unwrap().to_vec::<f32>().unwrap()
}

#[test]
fn every_pth_embeds_as_its_converted_file() {
    let t = temp("embed");
    let images = t.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for i in 0..3u8 {
        let px: Vec<u8> = (0..40 * 30 * 3)
            .map(|k| ((k as u32 * (7 + i as u32)) % 251) as u8)
            .collect();
        write_png(&images.join(format!("{i}.png")), &RgbImage::new(40, 30, px)).unwrap();
    }
    let converted = t.join("official.safetensors");
    let (ok, out, err) = dinonat(&["convert", s(&fixture("official.pth")), s(&converted)]);
    assert!(ok, "convert: {err}");
    assert!(
        out.contains("wrote") && err.contains("architecture inferred"),
        "{out}\n{err}"
    );
    let want = embeddings(&converted, &images, &t.join("e0.safetensors"));
    assert_eq!(want.len(), 3 * 16);
    for (i, file) in ["official.pth", "official_legacy.pth", "dino.pth", "hf.pth"]
        .iter()
        .enumerate()
    {
        let got = embeddings(
            &fixture(file),
            &images,
            &t.join(format!("e{}.safetensors", i + 1)),
        );
        assert_eq!(got, want, "{file}");
    }
    // the student of the DINO checkpoint is another network
    let student = t.join("student.safetensors");
    let (ok, _, err) = dinonat(&[
        "convert",
        s(&fixture("dino.pth")),
        s(&student),
        "--which",
        "student",
    ]);
    assert!(ok, "{err}");
    assert_ne!(
        embeddings(&student, &images, &t.join("es.safetensors")),
        want
    );
    std::fs::remove_dir_all(&t).unwrap();
}

#[test]
fn convert_refuses_its_input_hostile_files_and_other_outputs() {
    let t = temp("refuse");
    let input = t.join("official.pth");
    std::fs::copy(fixture("official.pth"), &input).unwrap();
    let before = std::fs::read(&input).unwrap();
    let (ok, _, err) = dinonat(&["convert", s(&input), s(&input)]);
    assert!(!ok && err.contains("never overwrites its inputs"), "{err}");
    let (ok, _, err) = dinonat(&["convert", s(&input), s(&t.join("out.pth"))]);
    assert!(!ok && err.contains("*.safetensors"), "{err}");
    assert_eq!(std::fs::read(&input).unwrap(), before);
    // a truncated checkpoint: an error naming the file, no output
    let cut = t.join("cut.pth");
    std::fs::write(&cut, &before[..before.len() / 2]).unwrap();
    let out = t.join("cut.safetensors");
    let (ok, _, err) = dinonat(&["convert", s(&cut), s(&out)]);
    assert!(
        !ok && err.contains("cut.pth") && err.contains("end-of-central-directory"),
        "{err}"
    );
    assert!(!out.exists());
    // the architecture given must fit
    let (ok, _, err) = dinonat(&["convert", s(&input), s(&out), "--arch", "nat_pico"]);
    assert!(!ok && err.contains("does not fit nat_pico"), "{err}");
    assert!(!out.exists());
    std::fs::remove_dir_all(&t).unwrap();
}
