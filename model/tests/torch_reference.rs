//! NAT forward = the PyTorch reference (shared/bench-ref/dino_step_torch.py, min(k, L) window
//! rule) on a tiny config, through the committed fixture tests/fixtures/nat_tiny_fixture.safetensors
//! (made by scripts/make-nat-fixture.py; its docstring lists the tensors).
//!
//! The fixture holds random non-trivial weights under the reference names (F32), two input batches
//! (F32: 2x3x32x32 and 2x3x40x24) and the reference's float64 outputs: pooled features and the
//! token maps after the tokenizer and after the blocks of every level. Kernel 5 on maps of
//! 8x8 / 10x6 (window inside, clamped at the borders), 5x3 (window = side on one axis) and
//! 4x4, 2x2, 3x2, 2x1, 1x1 (k > L: min(k, L) window).
//!
//! Error measure: max |got - want| / (1 + |want|) over the tensor.
//! Tolerances: f64 forward 1e-10 (reached: ~1e-15); f32 forward (fast kernels) 1e-4.

use dinonat_engine::io::{load_safetensors, save_safetensors, TensorFile};
use dinonat_engine::{no_grad, DType, Rng, Tensor};
use dinonat_model::{load_backbone, AttentionKind, DilationSchedule, Nat, NatConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

const F64_TOL: f64 = 1e-10;
const F32_TOL: f64 = 1e-4;

/// The config of the fixture (the script's CONFIG; the metadata is checked against it).
fn config() -> NatConfig {
    NatConfig {
        name: "nat_fixture_tiny".into(),
        in_channels: 3,
        embed_dim: 8,
        depths: vec![1, 1, 2, 1],
        heads: vec![1, 2, 2, 2],
        mlp_ratio: 2.0,
        attention: AttentionKind::Neighborhood {
            kernel: 5,
            dilation: DilationSchedule::Constant(1),
        },
        drop_path: 0.0,
        layer_scale: None,
        patch_stride: 4,
        num_classes: 0,
        layer_norm_eps: 1e-5,
    }
}

const CONFIG_JSON: &str = r#"{"dim": 8, "depths": [1, 1, 2, 1], "heads": [1, 2, 2, 2], "ks": 5, "r": 2.0, "cin": 3, "patch_stride": 4, "layer_norm_eps": 1e-05, "layer_scale": null, "dilation": 1}"#;

/// (tag, input name, output name) of the two batches.
const CASES: [(&str, &str, &str); 2] = [
    ("32x32", "input", "output"),
    ("40x24", "input_40x24", "output_40x24"),
];

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nat_tiny_fixture.safetensors")
}

fn fixture() -> TensorFile {
    let path = fixture_path();
    assert!(
        path.exists(),
        "fixture {} is missing (it is committed; regenerate with scripts/make-nat-fixture.py)",
        path.display()
    );
    let f = load_safetensors(&path).unwrap();
    assert_eq!(
        f.metadata.get("config").map(String::as_str),
        Some(CONFIG_JSON),
        "fixture config changed: update config() and CONFIG_JSON"
    );
    f
}

fn is_weight(name: &str) -> bool {
    !(name.starts_with("input") || name.starts_with("output") || name.starts_with("trace."))
}

fn get<'a>(f: &'a TensorFile, name: &str) -> &'a Tensor {
    f.get(name)
        .unwrap_or_else(|| panic!("fixture has no tensor '{name}'"))
}

/// max |got - want| / (1 + |want|); shapes must agree and `got` must be finite.
fn err(got: &Tensor, want: &Tensor, what: &str) -> f64 {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let (g, w) = (got.to_vec_f64(), want.to_vec_f64());
    g.iter().zip(&w).fold(0.0, |m, (a, b)| {
        assert!(a.is_finite(), "{what}: non-finite output {a}");
        m.max((a - b).abs() / (1.0 + b.abs()))
    })
}

/// Builds the network in `dtype` and copies the fixture's weights in by name.
fn nat_from_fixture(f: &TensorFile, dtype: DType) -> Nat {
    let nat = Nat::new(&config(), dtype, 0).unwrap();
    for (name, t) in f.tensors.iter().filter(|(n, _)| is_weight(n)) {
        nat.params.assign(name, t).unwrap();
    }
    nat
}

/// Features and every traced stage of `nat` against the fixture; returns the largest error.
fn compare(nat: &Nat, f: &TensorFile, tol: f64) -> f64 {
    let _g = no_grad();
    let mut rng = Rng::new(0);
    let dtype = nat.params.dtype();
    let mut worst = 0.0f64;
    let mut check = |got: &Tensor, name: &str| {
        let e = err(got, get(f, name), name);
        eprintln!("{dtype:?} {name}: max err {e:.2e}");
        assert!(e < tol, "{dtype:?} {name}: error {e:e} above {tol:e}");
        worst = worst.max(e);
    };
    for (tag, input, output) in CASES {
        let x = get(f, input).to_dtype(dtype);
        check(&nat.forward_features(&x, false, &mut rng).unwrap(), output);
        let mut t = nat.patch_embed.forward(&x).unwrap();
        check(&t, &format!("trace.{tag}.patch_embed"));
        for (i, level) in nat.levels.iter().enumerate() {
            for block in &level.blocks {
                t = block.forward(&t, false, &mut rng).unwrap();
            }
            check(&t, &format!("trace.{tag}.level{i}.blocks"));
            if let Some(down) = &level.downsample {
                t = down.forward(&t).unwrap();
            }
        }
    }
    worst
}

#[test]
fn fixture_weights_are_the_config_weights_under_the_reference_names() {
    let f = fixture();
    let want: BTreeMap<String, Vec<usize>> = config().parameter_shapes().into_iter().collect();
    let got: BTreeMap<String, Vec<usize>> = f
        .tensors
        .iter()
        .filter(|(n, _)| is_weight(n))
        .map(|(n, t)| (n.clone(), t.shape().to_vec()))
        .collect();
    let (a, b): (BTreeSet<_>, BTreeSet<_>) = (want.keys().collect(), got.keys().collect());
    assert_eq!(
        a.difference(&b).collect::<Vec<_>>(),
        Vec::<&&String>::new(),
        "missing in the fixture"
    );
    assert_eq!(
        b.difference(&a).collect::<Vec<_>>(),
        Vec::<&&String>::new(),
        "unexpected in the fixture"
    );
    assert_eq!(got, want);
    for (name, t) in f.tensors.iter().filter(|(n, _)| is_weight(n)) {
        assert_eq!(t.dtype(), DType::F32, "{name}");
    }
    // the traces visit every case the window rule distinguishes
    let maps: Vec<Vec<usize>> = CASES
        .iter()
        .flat_map(|(tag, ..)| (0..4).map(move |i| format!("trace.{tag}.level{i}.blocks")))
        .map(|n| get(&f, &n).shape()[1..3].to_vec())
        .collect();
    assert_eq!(
        maps,
        [
            [8, 8],
            [4, 4],
            [2, 2],
            [1, 1],
            [10, 6],
            [5, 3],
            [3, 2],
            [2, 1]
        ]
    );
}

#[test]
fn f64_forward_equals_the_torch_reference() {
    let f = fixture();
    let nat = nat_from_fixture(&f, DType::F64);
    let worst = compare(&nat, &f, F64_TOL);
    eprintln!("f64: worst error {worst:.2e} (tolerance {F64_TOL:e})");
}

/// f32 through the public loader: the fixture's weights (only) go to a backbone file, which
/// `load_backbone` reads as it would a converted official checkpoint.
#[test]
fn f32_forward_through_load_backbone_equals_the_torch_reference() {
    let f = fixture();
    let dir = std::env::temp_dir().join(format!("dinonat-torch-ref-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("nat_tiny_weights.safetensors");
    let weights: Vec<(String, Tensor)> = f
        .tensors
        .iter()
        .filter(|(n, _)| is_weight(n))
        .cloned()
        .collect();
    save_safetensors(&path, &weights, None).unwrap();
    let (nat, notes) = load_backbone(&path, &config()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    // the loaded values are the fixture's, bit for bit
    for (name, t) in &weights {
        assert_eq!(
            nat.params.get(name).unwrap().to_vec_f64(),
            t.to_vec_f64(),
            "{name}"
        );
    }
    let worst = compare(&nat, &f, F32_TOL);
    eprintln!("f32: worst error {worst:.2e} (tolerance {F32_TOL:e})");
}

/// The comparison sees the bias table where k > L: on level 1's 4x4 map (kernel 5) the centre
/// entry of the rpb is used by every query, the corner entry (offset -4, -4) by none.
#[test]
fn rpb_entries_used_by_the_min_k_l_window_move_the_output() {
    let f = fixture();
    let name = "levels.1.blocks.0.attn.rpb";
    let trace = get(&f, "trace.32x32.level1.blocks");
    let run = |entry: usize| -> f64 {
        let nat = nat_from_fixture(&f, DType::F64);
        let rpb = get(&f, name);
        let mut v = rpb.to_vec_f64();
        v[entry] += 0.5;
        nat.params
            .assign(name, &Tensor::from_vec(v, rpb.shape()).unwrap())
            .unwrap();
        let _g = no_grad();
        let mut rng = Rng::new(0);
        let mut t = nat
            .patch_embed
            .forward(&get(&f, "input").to_dtype(DType::F64))
            .unwrap();
        for (i, level) in nat.levels.iter().take(2).enumerate() {
            for block in &level.blocks {
                t = block.forward(&t, false, &mut rng).unwrap();
            }
            if i == 0 {
                t = level.downsample.as_ref().unwrap().forward(&t).unwrap();
            }
        }
        err(&t, trace, "level1 with a perturbed rpb")
    };
    let (table, centre) = (9, 4);
    assert!(run(centre * table + centre) > 1e-3, "centre entry unused?");
    assert!(run(0) < F64_TOL, "corner entry used?");
}
