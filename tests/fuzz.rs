//! Mutation fuzzing on the stable toolchain, as ordinary tests (docs/data.md, "Hostile inputs").
//! Each target generates VALID files (PNG, JPEG, IDX plain and gzipped, CIFAR-10 records, a
//! training checkpoint's safetensors, a backbone file, the training config as JSON, PyTorch `.pth`
//! checkpoints of both containers), mutates them
//! (bit flips, truncation, extreme bytes, chunk insertion / deletion / duplication, and edits of
//! header fields: lengths, dims, shapes, offsets), and feeds each case to the loader. A case
//! counts as a crash when the loader panics; every target counts the cases that got past its
//! header (the mutation did not just break the magic). A counting global allocator fails the
//! run on any single allocation over 1 GB.
//!
//! Default test run: a bounded number of cases per target (seconds in all). The long run:
//!
//!   DINONAT_FUZZ_CASES=400000 nice -n 19 cargo test --release --test fuzz -- --ignored fuzz --nocapture --test-threads=1
//!
//! (2.4 million cases, 0 crashes on 2026-12-06: docs/data.md, "Fuzzing".)

use dinonat_engine::io::save_safetensors;
use dinonat_engine::{DType, Tensor};
use dinonat_model::{load_backbone, save_backbone, Nat, NatConfig};
use dinonat_train::data::{decode_image, parse_idx_file, read_image, Cifar10, Dataset};
use dinonat_train::trainer::checkpoint;
use dinonat_train::trainer::config::TrainConfig;
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Any single allocation above this fails the whole run.
const MAX_ALLOCATION: usize = 1_000_000_000;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, refusing (and reporting) any single allocation over [`MAX_ALLOCATION`]:
/// the refusal aborts the test binary, so no loader can pass by allocating a bomb's worth.
struct CountingAllocator;

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        if layout.size() > MAX_ALLOCATION {
            let _ = std::io::stderr().write_all(b"fuzz: an allocation over 1 GB was refused\n");
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        if new_size > MAX_ALLOCATION {
            let _ = std::io::stderr().write_all(b"fuzz: a reallocation over 1 GB was refused\n");
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// xorshift64*: the mutations of case i are a function of (target seed, i).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of `valid`; `fields` are offsets of header fields worth editing (lengths, dims,
/// shapes, offsets), edited as big- and little-endian u32s / u64s and as ASCII digits.
fn mutate(valid: &[u8], fields: &[usize], text: bool, rng: &mut Rng) -> Vec<u8> {
    let mut b = valid.to_vec();
    let rounds = 1 + rng.below(3);
    for _ in 0..rounds {
        if b.is_empty() {
            b.push(rng.next() as u8);
        }
        let at = rng.below(b.len());
        // text formats: mostly edits of the numbers, written as text
        let kind = if text && rng.below(4) > 0 {
            7
        } else {
            rng.below(8)
        };
        match kind {
            0 => {
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(b.len());
                    b[i] ^= 1 << rng.below(8);
                }
            }
            1 => b.truncate(rng.below(b.len() + 1)),
            2 => b[at] = [0x00, 0xFF, 0x7F, 0x80, b'9', b'-'][rng.below(6)],
            3 => {
                let n = rng.below(64).min(b.len() - at);
                b.drain(at..at + n);
            }
            4 => {
                let n = rng.below(64).min(b.len() - at);
                let chunk = b[at..at + n].to_vec();
                let to = rng.below(b.len() + 1);
                b.splice(to..to, chunk);
            }
            _ if !fields.is_empty() => {
                let f = fields[rng.below(fields.len())];
                let value: u64 = match rng.below(6) {
                    0 => 0,
                    1 => u32::MAX as u64,
                    2 => u64::MAX,
                    3 => 1 << rng.below(63),
                    4 => rng.next(),
                    _ => rng.below(1 << 16) as u64,
                };
                let f = f.min(b.len());
                // a number written in text (JSON) is replaced as text, whole
                let digits = b[f..].iter().take_while(|c| c.is_ascii_digit()).count();
                let textual = digits > 0 && (text || f >= 8);
                let bytes: Vec<u8> = match if textual {
                    4 + rng.below(4)
                } else {
                    rng.below(4)
                } {
                    4 => format!("-{value}").into_bytes(),
                    5 => ["1e400", "NaN", "0.0", "-0", "1.5"][rng.below(5)]
                        .as_bytes()
                        .to_vec(),
                    0 => (value as u32).to_be_bytes().to_vec(),
                    1 => (value as u32).to_le_bytes().to_vec(),
                    2 => value.to_le_bytes().to_vec(),
                    _ => value.to_string().into_bytes(),
                };
                let end = if textual {
                    f + digits
                } else {
                    (f + bytes.len()).min(b.len())
                };
                b.splice(f..end, bytes);
            }
            _ => {
                let i = rng.below(b.len());
                b[i] = rng.next() as u8;
            }
        }
    }
    b
}

thread_local! {
    static FUZZING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A panic inside a fuzz case is counted, not printed; any other panic prints as usual.
fn quiet_panics_while_fuzzing() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !FUZZING.with(|f| f.get()) {
                default(info);
            }
        }));
    });
}

/// A valid file, the offsets of its header fields, and how many leading bytes some cases keep.
type Valid = (Vec<u8>, Vec<usize>, usize);

/// What a target did.
#[derive(Debug, Default)]
struct Tally {
    cases: usize,
    past_header: usize,
    crashes: Vec<String>,
}

/// Runs `cases` mutations of each of `valid` through `load`, which says whether the case got
/// past the header (Ok(true)), stopped at it (Ok(false)); a panic is a crash.
fn fuzz(
    name: &str,
    seed: u64,
    cases: usize,
    valid: &[Valid],
    text: bool,
    mut load: impl FnMut(&[u8]) -> bool,
) -> Tally {
    let mut tally = Tally::default();
    let start = std::time::Instant::now();
    quiet_panics_while_fuzzing();
    FUZZING.with(|f| f.set(true));
    for i in 0..cases {
        let mut rng = Rng::new(seed ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
        let (bytes, fields, keep) = &valid[i % valid.len()];
        // the first `keep` bytes stay intact (e.g. a safetensors header, to reach the data)
        let mut case = bytes[..*keep].to_vec();
        case.extend(mutate(&bytes[*keep..], fields, text, &mut rng));
        match catch_unwind(AssertUnwindSafe(|| load(&case))) {
            Ok(past) => tally.past_header += past as usize,
            Err(p) => {
                let what = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                tally
                    .crashes
                    .push(format!("case {i} (seed {seed}): {what}"));
            }
        }
        tally.cases += 1;
    }
    FUZZING.with(|f| f.set(false));
    println!(
        "fuzz {name}: {} cases, {} past the header, {} crashes, largest allocation {} bytes, {:.1} s",
        tally.cases,
        tally.past_header,
        tally.crashes.len(),
        LARGEST.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64()
    );
    tally
}

fn check(t: Tally, cases: usize) {
    assert!(t.crashes.is_empty(), "crashes: {:#?}", t.crashes);
    assert_eq!(t.cases, cases);
    assert!(
        t.past_header * 10 >= t.cases,
        "only {} of {} cases got past the header: the mutations are too blunt",
        t.past_header,
        t.cases
    );
}

/// Cases per target: `default` in the normal test run, DINONAT_FUZZ_CASES in the long run.
fn cases(default: usize, long: bool) -> usize {
    match std::env::var("DINONAT_FUZZ_CASES") {
        Ok(v) if long => v.parse().expect("DINONAT_FUZZ_CASES is a number"),
        _ if long => 200_000,
        _ => default,
    }
}

/// Writes a case to `path` as a new file. Rewriting an existing file in place would make ext4
/// flush it on close (its `auto_da_alloc` guard for truncate-and-rewrite): 1.6 ms a case instead
/// of 0.07 ms, which made the file-based targets the slow ones.
fn write_case(path: &Path, bytes: &[u8]) {
    let _ = std::fs::remove_file(path);
    std::fs::write(path, bytes).unwrap();
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dinonat-fuzz-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), format)
        .unwrap();
    out
}

/// PNGs (RGB8, RGBA16, gray) and a JPEG; the PNG IHDR fields (width, height, depth, colour type)
/// and the JPEG SOF are the fields edited.
fn images() -> Vec<Valid> {
    let rgb = image::RgbImage::from_fn(23, 17, |x, y| image::Rgb([x as u8 * 11, y as u8 * 13, 5]));
    let rgba16 = image::ImageBuffer::<image::Rgba<u16>, _>::from_fn(9, 12, |x, y| {
        image::Rgba([x as u16 * 4000, y as u16 * 3000, 7, 65535])
    });
    let gray = image::GrayImage::from_fn(31, 7, |x, y| image::Luma([(x * y) as u8]));
    let png = image::ImageFormat::Png;
    let ihdr = vec![8, 12, 16, 20, 24, 25, 33];
    let jpeg = encode(rgb.clone().into(), image::ImageFormat::Jpeg);
    let sof = (0..jpeg.len() - 1)
        .find(|&i| jpeg[i] == 0xFF && jpeg[i + 1] == 0xC0)
        .unwrap();
    vec![
        (encode(rgb.into(), png), ihdr.clone(), 0),
        (encode(rgba16.into(), png), ihdr.clone(), 0),
        (encode(gray.into(), png), ihdr, 0),
        (jpeg, vec![2, sof + 2, sof + 5, sof + 7, sof + 9], 0),
    ]
}

fn image_target(cases: usize) -> Tally {
    let dir = temp_dir("image");
    let file = dir.join("case.png");
    let mut n = 0usize;
    let t = fuzz("image-folder loader", 1, cases, &images(), false, |b| {
        n += 1;
        // one case in 32 goes through the file path (regular-file check, read cap) as well
        let decoded = if n.is_multiple_of(32) {
            write_case(&file, b);
            read_image(&file)
        } else {
            decode_image(b, "case")
        };
        if let Ok(img) = &decoded {
            assert_eq!(img.pixels.len(), img.width * img.height * 3);
        }
        image::ImageReader::new(std::io::Cursor::new(b))
            .with_guessed_format()
            .ok()
            .and_then(|r| r.into_dimensions().ok())
            .is_some()
    });
    std::fs::remove_dir_all(&dir).unwrap();
    t
}

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, dims.len() as u8];
    dims.iter().for_each(|d| v.extend(d.to_be_bytes()));
    v.extend_from_slice(data);
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn idx_target(cases: usize) -> Tally {
    let pixels: Vec<u8> = (0..5 * 6 * 7).map(|v| (v * 37 % 251) as u8).collect();
    let images = idx_bytes(&[5, 6, 7], &pixels);
    let labels = idx_bytes(&[5], &[3, 1, 4, 1, 5]);
    let dims = vec![3, 4, 6, 8, 10, 12];
    let valid = vec![
        (images.clone(), dims.clone(), 0),
        (labels.clone(), vec![3, 4, 6], 0),
        (gzip(&images), vec![3, 4, 8], 0),
        (gzip(&labels), vec![3, 4, 8], 0),
    ];
    fuzz(
        "IDX reader",
        2,
        cases,
        &valid,
        false,
        |b| match parse_idx_file(b, "case") {
            Ok((dims, data)) => {
                assert_eq!(dims.iter().product::<usize>(), data.len());
                true
            }
            Err(e) => e.message.contains("dims") || e.message.contains("cap"),
        },
    )
}

fn cifar_target(cases: usize) -> Tally {
    let record = |label: u8, k: u8| {
        let mut r = vec![label];
        r.extend((0..3072).map(|v| (v as u8).wrapping_mul(k)));
        r
    };
    let batch: Vec<u8> = (0..3).flat_map(|i| record(i * 3, i + 1)).collect();
    let valid = vec![
        (batch.clone(), vec![0, 3073, 6146], 0),
        (gzip(&batch), vec![4, 8], 0),
    ];
    fuzz("CIFAR-10 reader", 3, cases, &valid, false, |b| {
        let bytes = if b.starts_with(&[0x1f, 0x8b]) {
            let dir = std::env::temp_dir();
            let f = dir.join(format!("dinonat-fuzz-cifar-{}.bin", std::process::id()));
            std::fs::write(&f, b).unwrap();
            let r = Cifar10::open(std::slice::from_ref(&f));
            let _ = std::fs::remove_file(&f);
            return r.is_ok();
        } else {
            b.to_vec()
        };
        match Cifar10::from_batches(vec![("case".into(), bytes)]) {
            Ok(c) => {
                let last = c.len() - 1;
                assert_eq!(c.get(last).unwrap().image.width, 32);
                let _ = c.describe(last);
                true
            }
            Err(e) => e.message.contains("label"),
        }
    })
}

/// Offsets worth editing in a safetensors file: the header length, and every number in the
/// JSON header (dtypes' neighbours, shapes, data offsets).
fn safetensors_fields(bytes: &[u8]) -> Vec<usize> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut fields = vec![0, 4];
    fields.extend(
        (8..8 + n).filter(|&i| bytes[i].is_ascii_digit() && !bytes[i - 1].is_ascii_digit()),
    );
    fields
}

/// A safetensors file mutated whole (header fields edited), and with its header kept (data edited).
fn safetensors_cases(valid: Vec<u8>) -> Vec<Valid> {
    let header = 8 + u64::from_le_bytes(valid[..8].try_into().unwrap()) as usize;
    let fields = safetensors_fields(&valid);
    vec![
        (valid.clone(), fields.clone(), 0),
        (valid.clone(), fields, 0),
        (valid, vec![], header),
    ]
}

/// A small file in the checkpoint format: format / step / config metadata and tensors of
/// awkward shapes in f32 and f64 (a real checkpoint is megabytes; the loader's rules are the same).
fn checkpoint_bytes(dir: &Path) -> Vec<u8> {
    let config = TrainConfig {
        steps: 10,
        ..TrainConfig::default()
    };
    let meta = HashMap::from([
        ("format".to_string(), checkpoint::FORMAT.to_string()),
        ("step".to_string(), "3".to_string()),
        (
            "config".to_string(),
            serde_json::to_string(&config).unwrap(),
        ),
    ]);
    let f32s: Vec<f32> = (0..3 * 5 * 7).map(|v| v as f32 * 0.25 - 3.0).collect();
    let f64s: Vec<f64> = (0..11).map(|v| v as f64 / 7.0).collect();
    let tensors = vec![
        (
            "student.backbone.w".to_string(),
            Tensor::from_vec(f32s, &[3, 5, 7]).unwrap(),
        ),
        ("center".to_string(), Tensor::from_vec(f64s, &[11]).unwrap()),
        (
            "adamw.step.w".to_string(),
            Tensor::from_vec(vec![3.0f64], &[1]).unwrap(),
        ),
    ];
    let p = dir.join("valid.safetensors");
    save_safetensors(&p, &tensors, Some(&meta)).unwrap();
    std::fs::read(&p).unwrap()
}

fn checkpoint_target(cases: usize) -> Tally {
    let dir = temp_dir("checkpoint");
    let valid = checkpoint_bytes(&dir);
    let file = dir.join("case.ckpt");
    let t = fuzz(
        "checkpoint loader",
        4,
        cases,
        &safetensors_cases(valid),
        true,
        |b| {
            write_case(&file, b);
            match checkpoint::load(&file) {
                Ok(ck) => {
                    for (_, t) in &ck.file.tensors {
                        assert_eq!(t.to_vec_f64().len(), t.shape().iter().product::<usize>());
                    }
                    let _ = ck.config.validate();
                    true
                }
                Err(e) => !e.0.contains("safetensors"),
            }
        },
    );
    std::fs::remove_dir_all(&dir).unwrap();
    t
}

/// The smallest network with every kind of backbone tensor (tokenizer, blocks, a downsampler, the
/// final norm): its file is 0.1 % of nat_pico's, and building it (random init, which
/// `load_backbone` does before reading the file) takes microseconds instead of the 80 ms a case
/// that nat_pico's truncated-normal draws took. The loader's rules do not depend on the widths.
fn fuzz_architecture() -> NatConfig {
    NatConfig {
        name: "nat_fuzz".into(),
        embed_dim: 4,
        depths: vec![1, 1],
        heads: vec![1, 2],
        ..NatConfig::nat_pico()
    }
}

fn backbone_target(cases: usize) -> Tally {
    let dir = temp_dir("backbone");
    let config = fuzz_architecture();
    let nat = Nat::new(&config, DType::F32, 3).unwrap();
    let p = dir.join("valid.safetensors");
    save_backbone(&nat, &p).unwrap();
    let valid = std::fs::read(&p).unwrap();
    let file = dir.join("case.safetensors");
    let t = fuzz(
        "backbone loader",
        5,
        cases,
        &safetensors_cases(valid),
        true,
        |b| {
            write_case(&file, b);
            match load_backbone(&file, &config) {
                Ok(_) => true,
                Err(e) => e.to_string().contains("does not fit"),
            }
        },
    );
    std::fs::remove_dir_all(&dir).unwrap();
    t
}

fn config_target(cases: usize) -> Tally {
    let json = serde_json::to_string_pretty(&TrainConfig {
        data: Some("/nonexistent".into()),
        lr_end: Some(0.5),
        ..TrainConfig::default()
    })
    .unwrap()
    .into_bytes();
    let fields: Vec<usize> = (1..json.len())
        .filter(|&i| json[i].is_ascii_digit() && !json[i - 1].is_ascii_digit())
        .collect();
    fuzz("config JSON", 6, cases, &[(json, fields, 0)], true, |b| {
        let Ok(text) = std::str::from_utf8(b) else {
            return false;
        };
        match serde_json::from_str::<TrainConfig>(text) {
            Ok(c) => {
                if c.validate().is_ok() {
                    let _ = (
                        c.schedules(),
                        c.multi_crop(),
                        c.backbone().map(|b| c.head(b.num_features())),
                    );
                }
                true
            }
            Err(_) => serde_json::from_str::<serde_json::Value>(text).is_ok(),
        }
    })
}

/// torch.save's files (model/tests/fixtures/pth, zip and legacy) through the `.pth` reader, in
/// memory. A case is past the header when it got beyond the container (zip directory, CRC, magic).
fn pth_target(cases: usize) -> Tally {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("model/tests/fixtures/pth");
    let valid: Vec<Valid> = [
        "official_legacy.pth",
        "views_legacy.pth",
        "official.pth",
        "views.pth",
    ]
    .iter()
    .map(|f| (std::fs::read(dir.join(f)).unwrap(), vec![], 4))
    .collect();
    fuzz(
        "pth reader",
        7,
        cases,
        &valid,
        false,
        |b| match dinonat_engine::io::pth::parse_pth(b) {
            Ok(_) => true,
            Err(e) => !["zip", "CRC", "magic", "legacy stream", "neither"]
                .iter()
                .any(|w| e.contains(w)),
        },
    )
}

// Bounded runs (the default test run; seconds in all).

#[test]
fn fuzz_image_folder_loader() {
    check(image_target(cases(3000, false)), cases(3000, false));
}

#[test]
fn fuzz_idx_reader() {
    check(idx_target(cases(20000, false)), cases(20000, false));
}

#[test]
fn fuzz_cifar_reader() {
    check(cifar_target(cases(5000, false)), cases(5000, false));
}

#[test]
fn fuzz_checkpoint_loader() {
    check(checkpoint_target(cases(5000, false)), cases(5000, false));
}

#[test]
fn fuzz_backbone_loader() {
    check(backbone_target(cases(2000, false)), cases(2000, false));
}

#[test]
fn fuzz_config_json() {
    check(config_target(cases(5000, false)), cases(5000, false));
}

#[test]
fn fuzz_pth_reader() {
    check(pth_target(cases(5000, false)), cases(5000, false));
}

// The long run: DINONAT_FUZZ_CASES per target (default 200000).

#[test]
#[ignore]
fn fuzz_long_image_folder_loader() {
    check(image_target(cases(0, true)), cases(0, true));
}

#[test]
#[ignore]
fn fuzz_long_idx_reader() {
    check(idx_target(cases(0, true)), cases(0, true));
}

#[test]
#[ignore]
fn fuzz_long_cifar_reader() {
    check(cifar_target(cases(0, true)), cases(0, true));
}

#[test]
#[ignore]
fn fuzz_long_checkpoint_loader() {
    check(checkpoint_target(cases(0, true)), cases(0, true));
}

#[test]
#[ignore]
fn fuzz_long_backbone_loader() {
    check(backbone_target(cases(0, true)), cases(0, true));
}

#[test]
#[ignore]
fn fuzz_long_config_json() {
    check(config_target(cases(0, true)), cases(0, true));
}

#[test]
#[ignore]
fn fuzz_long_pth_reader() {
    check(pth_target(cases(0, true)), cases(0, true));
}
