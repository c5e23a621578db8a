//! Round trips of every data source, error policies, cache.

use dinonat_train::data::*;
use dinonat_train::grid::write_image_grid;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(name: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("dinonat-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

/// A small image whose pixel (x, y) is (x*20 + seed, y*30, 100 + seed) so values are checkable.
fn pattern(w: u32, h: u32, seed: u8) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 20) as u8 + seed, (y * 30) as u8, 100 + seed])
    })
}

#[test]
fn procedural_is_deterministic_per_seed_and_differs_across_seeds() {
    let a = Procedural::new(1, 20, 48);
    let b = Procedural::new(1, 20, 48);
    let c = Procedural::new(2, 20, 48);
    for i in [0, 7, 19] {
        assert_eq!(a.get(i).unwrap(), b.get(i).unwrap());
        assert_ne!(a.get(i).unwrap().image, c.get(i).unwrap().image);
    }
    assert_ne!(
        a.get(3).unwrap().image,
        a.get(13).unwrap().image,
        "same class, different index must differ"
    );
}

#[test]
fn procedural_classes_balanced_and_images_not_constant() {
    let d = Procedural::new(5, 100, 32);
    let mut counts = [0usize; 10];
    for i in 0..d.len() {
        let s = d.get(i).unwrap();
        counts[s.label.unwrap()] += 1;
        assert_eq!((s.image.width, s.image.height), (32, 32));
        let px = &s.image.pixels;
        let mean = px.iter().map(|&v| v as f64).sum::<f64>() / px.len() as f64;
        let var = px.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / px.len() as f64;
        assert!(
            var.sqrt() > 10.0,
            "sample {i} nearly constant: std {:.2}",
            var.sqrt()
        );
    }
    assert_eq!(counts, [10; 10]);
    assert_eq!(d.class_names().unwrap().len(), 10);
}

#[test]
fn procedural_contact_sheet_png() {
    let d = Procedural::new(0, 40, 64);
    let images: Vec<RgbImage> = (0..40).map(|i| d.get(i).unwrap().image).collect();
    let dir = temp_dir("grid");
    let path = dir.join("procedural.png");
    write_image_grid(&path, &images, 10, 2).unwrap();
    let back = image::open(&path).unwrap().into_rgb8();
    assert_eq!(back.dimensions(), (10 * 66 + 2, 4 * 66 + 2));
    // The first cell holds the first image exactly.
    assert_eq!(back.get_pixel(2 + 5, 2 + 9).0, images[0].pixel(5, 9));
}

#[test]
fn image_folder_with_classes_round_trip() {
    let dir = temp_dir("folder-classes");
    for (class, seed) in [("b_dog", 1u8), ("a_cat", 2)] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        pattern(5, 4, seed)
            .save(dir.join(class).join("x1.png"))
            .unwrap();
        pattern(6, 3, seed)
            .save(dir.join(class).join("x0.PNG"))
            .unwrap();
    }
    std::fs::write(dir.join("readme.txt"), "not an image").unwrap();
    let f = ImageFolder::open(&dir).unwrap();
    assert_eq!(f.len(), 4);
    assert_eq!(f.class_names().unwrap(), ["a_cat", "b_dog"]);
    // Sorted by path: a_cat/x0.PNG, a_cat/x1.png, b_dog/x0.PNG, b_dog/x1.png.
    let s = f.get(1).unwrap();
    assert_eq!(s.label, Some(0));
    assert_eq!((s.image.width, s.image.height), (5, 4));
    assert_eq!(s.image.pixel(3, 2), [62, 60, 102]);
    let s = f.get(2).unwrap();
    assert_eq!(s.label, Some(1));
    assert_eq!((s.image.width, s.image.height), (6, 3));
    assert_eq!(s.image.pixel(0, 0), [1, 0, 101]);
}

#[test]
fn image_folder_flat_jpeg_gray_and_rgba() {
    let dir = temp_dir("folder-flat");
    pattern(16, 16, 0).save(dir.join("c.jpg")).unwrap();
    image::GrayImage::from_fn(4, 3, |x, y| image::Luma([(x * 10 + y) as u8]))
        .save(dir.join("a.png"))
        .unwrap();
    image::RgbaImage::from_fn(3, 2, |x, _| image::Rgba([10 * x as u8, 7, 200, 17]))
        .save(dir.join("b.png"))
        .unwrap();
    let f = ImageFolder::open(&dir).unwrap();
    assert_eq!(f.len(), 3);
    assert_eq!(f.class_names(), None);
    let gray = f.get(0).unwrap();
    assert_eq!(gray.label, None);
    assert_eq!(gray.image.pixel(2, 1), [21, 21, 21]);
    let rgba = f.get(1).unwrap();
    assert_eq!(
        rgba.image.pixel(2, 1),
        [20, 7, 200],
        "alpha dropped, colour kept"
    );
    let jpg = f.get(2).unwrap();
    assert_eq!((jpg.image.width, jpg.image.height), (16, 16));
    let want = pattern(16, 16, 0);
    let err: f64 = jpg
        .image
        .pixels
        .iter()
        .zip(want.as_raw())
        .map(|(&a, &b)| (a as f64 - b as f64).abs())
        .sum::<f64>()
        / want.as_raw().len() as f64;
    assert!(err < 8.0, "JPEG mean abs error {err}");
}

#[test]
fn corrupt_file_is_skipped_and_counted_or_stops_with_path() {
    let dir = temp_dir("corrupt");
    pattern(4, 4, 0).save(dir.join("a.png")).unwrap();
    std::fs::write(dir.join("b.png"), b"\x89PNG\r\n\x1a\n truncated garbage").unwrap();
    pattern(4, 4, 9).save(dir.join("c.png")).unwrap();
    let f = ImageFolder::open(&dir).unwrap();
    let bad = BadSamples::default();
    let (used, s) = get_with_policy(&f, 1, ErrorPolicy::Skip, &bad).unwrap();
    assert_eq!(used, 2);
    assert_eq!(s.image.pixel(0, 0), [9, 0, 109]);
    assert_eq!(bad.count(), 1);
    assert!(bad.errors()[0].source_name.ends_with("b.png"));
    let err = get_with_policy(&f, 1, ErrorPolicy::Stop, &bad).unwrap_err();
    assert!(
        err.to_string().contains("b.png"),
        "error must name the file: {err}"
    );
    assert_eq!(ErrorPolicy::default(), ErrorPolicy::Skip);
    // a file that failed is not decoded again (issue 15, case 3: a bomb cost its decode every
    // epoch): even once it is readable, the next epoch skips it from memory
    pattern(4, 4, 5)
        .save_with_format(dir.join("b.png"), image::ImageFormat::Png)
        .unwrap();
    let (used, _) = get_with_policy(&f, 1, ErrorPolicy::Skip, &bad).unwrap();
    assert_eq!((used, bad.count(), bad.errors().len()), (2, 2, 1));
}

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 0x08, dims.len() as u8];
    dims.iter()
        .for_each(|d| v.extend_from_slice(&d.to_be_bytes()));
    v.extend_from_slice(data);
    v
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn idx_plain_and_gz_round_trip() {
    let dir = temp_dir("idx");
    let pixels: Vec<u8> = (0..3 * 2 * 4).map(|v| (v * 7) as u8).collect(); // 3 images of 2 rows x 4 cols
    std::fs::write(
        dir.join("train-images-idx3-ubyte"),
        idx_bytes(&[3, 2, 4], &pixels),
    )
    .unwrap();
    std::fs::write(
        dir.join("train-labels-idx1-ubyte.gz"),
        gzip(&idx_bytes(&[3], &[4, 0, 9])),
    )
    .unwrap();
    let d = IdxDataset::open_split(&dir, "train").unwrap();
    assert_eq!(d.len(), 3);
    let s = d.get(1).unwrap();
    assert_eq!(s.label, Some(0));
    assert_eq!((s.image.width, s.image.height), (4, 2));
    let v = pixels[8 + 4 + 3]; // image 1, row 1, col 3
    assert_eq!(s.image.pixel(3, 1), [v, v, v]);
    // Wrong label count is an error naming the file.
    std::fs::write(dir.join("bad-labels"), idx_bytes(&[2], &[1, 2])).unwrap();
    let e = IdxDataset::open(
        dir.join("train-images-idx3-ubyte"),
        Some(&dir.join("bad-labels")),
    )
    .err()
    .unwrap();
    assert!(e.source_name.ends_with("bad-labels"), "{e}");
}

#[test]
fn cifar10_round_trip() {
    let dir = temp_dir("cifar");
    let mut bytes = Vec::new();
    for (label, base) in [(3u8, 10u8), (7, 50)] {
        bytes.push(label);
        for c in 0..3u8 {
            bytes.extend((0..1024).map(|p| base.wrapping_add(c * 60).wrapping_add((p % 32) as u8)));
        }
    }
    std::fs::write(dir.join("data_batch_1.bin"), &bytes).unwrap();
    std::fs::write(dir.join("test_batch.bin"), &bytes[..3073]).unwrap();
    let train = Cifar10::open_dir(&dir, true).unwrap();
    assert_eq!(train.len(), 2);
    let s = train.get(1).unwrap();
    assert_eq!(s.label, Some(7));
    assert_eq!((s.image.width, s.image.height), (32, 32));
    assert_eq!(s.image.pixel(5, 9), [55, 115, 175]);
    assert_eq!(Cifar10::open_dir(&dir, false).unwrap().len(), 1);
    std::fs::write(dir.join("data_batch_2.bin"), &bytes[..100]).unwrap();
    let e = Cifar10::open_dir(&dir, true).err().unwrap();
    assert!(e.source_name.ends_with("data_batch_2.bin"), "{e}");
}

#[test]
fn cache_returns_the_same_samples_within_budget() {
    let d = Procedural::new(3, 10, 16);
    let budget = 4 * 16 * 16 * 3;
    let c = CachedDataset::new(d.clone(), budget);
    for round in 0..2 {
        for i in 0..10 {
            assert_eq!(
                c.get(i).unwrap(),
                d.get(i).unwrap(),
                "round {round} sample {i}"
            );
        }
    }
    assert_eq!(c.cached_bytes(), budget);
}

/// `../shared/data` from the workspace root, if this machine has it.
fn shared_data() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    p.is_dir().then_some(p)
}

#[test]
fn shared_imagenette_and_roadscene_decode() {
    let Some(root) = shared_data() else {
        println!("skipped: ../shared/data not found (real data sets are optional)");
        return;
    };
    let val = root.join("imagenette/val");
    if val.is_dir() {
        let f = ImageFolder::open(&val).unwrap();
        assert_eq!(f.class_names().unwrap().len(), 10);
        for i in [0, f.len() / 2, f.len() - 1] {
            let s = f.get(i).unwrap();
            assert!(
                s.image.width >= 100 && s.image.height >= 100,
                "{}",
                f.describe(i)
            );
        }
    } else {
        println!("skipped Imagenette: {} not found", val.display());
    }
    let ir = root.join("roadscene/ir");
    if ir.is_dir() {
        let f = ImageFolder::open(&ir).unwrap();
        assert_eq!(f.class_names(), None);
        let s = f.get(0).unwrap();
        assert!(
            s.image
                .pixels
                .chunks(3)
                .all(|p| p[0] == p[1] && p[1] == p[2]),
            "gray IR replicated to RGB"
        );
    } else {
        println!("skipped RoadScene: {} not found", ir.display());
    }
}

#[test]
fn open_dataset_recognises_layouts() {
    let dir = temp_dir("open");
    let idx = dir.join("fashion");
    std::fs::create_dir_all(&idx).unwrap();
    std::fs::write(
        idx.join("t10k-images-idx3-ubyte.gz"),
        gzip(&idx_bytes(&[2, 3, 3], &[7; 18])),
    )
    .unwrap();
    std::fs::write(idx.join("t10k-labels-idx1-ubyte"), idx_bytes(&[2], &[1, 2])).unwrap();
    assert_eq!(open_dataset(&idx, false).unwrap().len(), 2);
    assert!(open_dataset(&idx, true)
        .err()
        .unwrap()
        .source_name
        .contains("train-images-idx3-ubyte"));
    let cifar = dir.join("cifar");
    std::fs::create_dir_all(&cifar).unwrap();
    std::fs::write(cifar.join("test_batch.bin"), vec![1u8; 3073 * 3]).unwrap();
    assert_eq!(open_dataset(&cifar, false).unwrap().len(), 3);
    let folders = dir.join("imagenette");
    for (split, n) in [("train", 2), ("val", 1)] {
        std::fs::create_dir_all(folders.join(split).join("n01")).unwrap();
        for k in 0..n {
            pattern(3, 3, k)
                .save(folders.join(split).join("n01").join(format!("{k}.png")))
                .unwrap();
        }
    }
    assert_eq!(open_dataset(&folders, true).unwrap().len(), 2);
    assert_eq!(open_dataset(&folders, false).unwrap().len(), 1);
    assert_eq!(
        open_dataset(folders.join("val"), false)
            .unwrap()
            .class_names()
            .unwrap(),
        ["n01"]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn debian_fashion_mnist_test_split() {
    let dir = Path::new("/usr/share/datasets/fashion-mnist");
    if !dir.join("t10k-images-idx3-ubyte.gz").is_file() {
        println!(
            "skipped: {} not found (apt-get install dataset-fashion-mnist)",
            dir.display()
        );
        return;
    }
    let d = IdxDataset::open_split(dir, "t10k").unwrap();
    assert_eq!(d.len(), 10_000);
    let mut counts = [0usize; 10];
    for i in 0..d.len() {
        counts[d.get(i).unwrap().label.unwrap()] += 1;
    }
    assert_eq!(counts, [1000; 10]);
    let s = d.get(0).unwrap();
    assert_eq!((s.image.width, s.image.height), (28, 28));
    assert!(s.image.pixels.iter().any(|&v| v > 0));
}
