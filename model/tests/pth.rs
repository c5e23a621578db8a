//! PyTorch checkpoints written by torch.save (model/tests/fixtures/pth/, made by
//! scripts/make-pth-fixtures.py): every naming scheme and both containers give the reference
//! forward; strided, offset, shared and narrow-typed views read as torch saved them.
//!
//! Error measure: max |got - want| / max |want| over the output. Tolerance 1e-5: DinoNAT's f32
//! forward (fast kernels) against PyTorch's float64 forward on the same f32 weights.

use dinonat_engine::io::{load_safetensors, load_tensor_file, TensorFile};
use dinonat_engine::{no_grad, Tensor};
use dinonat_model::checkpoint::load_network_weights;
use dinonat_model::weights::{read_weights, Network};
use dinonat_model::{load_weights, Nat};
use std::path::PathBuf;

const TOL: f64 = 1e-5;

fn fixture(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pth")
        .join(name);
    assert!(
        p.exists(),
        "{} is missing (committed; regenerate with scripts/make-pth-fixtures.py)",
        p.display()
    );
    p
}

fn forward() -> TensorFile {
    load_safetensors(&fixture("forward.safetensors")).unwrap()
}

fn relative_error(nat: &Nat, f: &TensorFile, output: &str) -> f64 {
    let _g = no_grad();
    let mut rng = dinonat_engine::Rng::new(0);
    let got = nat
        .forward_features(f.get("input").unwrap(), false, &mut rng)
        .unwrap()
        .to_vec_f64();
    let want = f.get(output).unwrap().to_vec_f64();
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    got.iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
        / scale
}

#[test]
fn every_scheme_and_container_gives_the_torch_forward() {
    let f = forward();
    for (file, scheme) in [
        ("official.pth", "under 'model.'"),
        ("official_legacy.pth", "under 'model.'"),
        ("dino.pth", "under 'teacher.'"),
        ("hf.pth", "Hugging Face NAT"),
    ] {
        // no --arch: the architecture comes from the shapes
        let (nat, notes) = load_weights(&fixture(file), None).unwrap();
        let all = notes.join("\n");
        assert!(all.contains(scheme), "{file}: {all}");
        assert!(all.contains("architecture inferred"), "{file}: {all}");
        assert!(
            all.contains("ignored 2 head tensor(s)") || file == "dino.pth",
            "{file}: {all}"
        );
        let err = relative_error(&nat, &f, "teacher_output");
        eprintln!("{file}: relative error {err:.2e} (tolerance {TOL:e})");
        assert!(err < TOL, "{file}: {err}");
    }
}

#[test]
fn a_dino_checkpoint_gives_the_teacher_or_the_student_and_names_what_it_left() {
    let f = forward();
    let path = fixture("dino.pth");
    let (student, notes) = load_network_weights(&path, None, Network::Student).unwrap();
    assert!(relative_error(&student, &f, "student_output") < TOL);
    assert!(
        relative_error(&student, &f, "teacher_output") > 1e-2,
        "the student differs"
    );
    let all = notes.join("\n");
    assert!(all.contains("unused: optimizer.* (2), teacher.*"), "{all}");
    assert!(all.contains("ignored 2 head tensor(s)"), "{all}");
}

#[test]
fn the_three_schemes_hold_the_same_weights_bit_for_bit() {
    let official = read_weights(&fixture("official.pth"), Network::Teacher).unwrap();
    for file in ["official_legacy.pth", "dino.pth", "hf.pth"] {
        let other = read_weights(&fixture(file), Network::Teacher).unwrap();
        for (name, t) in &official.tensors {
            if name.starts_with("head.") && file == "dino.pth" {
                continue;
            }
            let o = other
                .tensors
                .get(name)
                .unwrap_or_else(|| panic!("{file}: no {name}"));
            assert_eq!(o.shape(), t.shape(), "{file}: {name}");
            assert_eq!(o.to_vec_f64(), t.to_vec_f64(), "{file}: {name}");
        }
    }
}

fn values(f: &TensorFile, name: &str) -> (Vec<usize>, Vec<f64>) {
    let t: &Tensor = f.get(name).unwrap_or_else(|| panic!("no {name}"));
    (t.shape().to_vec(), t.to_vec_f64())
}

#[test]
fn strided_offset_shared_and_narrow_views_read_as_saved() {
    for file in ["views.pth", "views_legacy.pth"] {
        let f = load_tensor_file(&fixture(file)).unwrap();
        let (shape, base) = values(&f, "base");
        assert_eq!(shape, [3, 5]);
        let at = |i: usize, j: usize| base[i * 5 + j];
        let transposed: Vec<f64> = (0..5)
            .flat_map(|j| (0..3).map(move |i| (i, j)))
            .map(|(i, j)| at(i, j))
            .collect();
        assert_eq!(values(&f, "t"), (vec![5, 3], transposed), "{file}");
        let narrow: Vec<f64> = (1..3)
            .flat_map(|i| (2..5).map(move |j| (i, j)))
            .map(|(i, j)| at(i, j))
            .collect();
        assert_eq!(values(&f, "narrow"), (vec![2, 3], narrow), "{file}");
        assert_eq!(values(&f, "same").1, base, "{file}");
        assert_eq!(values(&f, "f64").1, base, "{file}");
        for (name, tol) in [("half", 1e-3), ("bf16", 1e-2)] {
            let (s, v) = values(&f, name);
            assert_eq!(s, [3, 5]);
            assert!(
                v.iter()
                    .zip(&base)
                    .all(|(a, b)| (a - b).abs() <= tol * (1.0 + b.abs())),
                "{file} {name}"
            );
        }
        assert!(f.get("long").is_none());
        assert_eq!(
            f.metadata.get("skipped").map(String::as_str),
            Some("long"),
            "{file}"
        );
    }
}

/// The Hugging Face map on a layer-scale network (the torch fixtures have none): split q / k / v
/// and stacked `layer_scale_parameters` map back to the reference tensors bit for bit, and the
/// architecture is recognised by its shapes.
#[test]
fn hugging_face_names_with_layer_scale_map_back_exactly() {
    use dinonat_engine::DType;
    use dinonat_model::weights::{infer_config, map_names};
    use dinonat_model::NatConfig;
    let config = NatConfig {
        embed_dim: 16,
        depths: vec![1, 2],
        heads: vec![1, 2],
        layer_scale: Some(0.5),
        ..NatConfig::nat_pico()
    };
    let nat = Nat::new(&config, DType::F32, 9).unwrap();
    let mut hf = Vec::new();
    let mut gammas = std::collections::BTreeMap::new();
    for (name, t) in nat.params.named_tensors() {
        let hf_name = |tail: &str| {
            let p: Vec<&str> = name.splitn(5, '.').collect();
            format!("dinat.encoder.levels.{}.layers.{}.{tail}", p[1], p[3])
        };
        let kind = name.rsplit('.').next().unwrap().to_string();
        if name.contains(".attn.qkv.") {
            let d = t.shape()[0] / 3;
            for (i, part) in ["query", "key", "value"].iter().enumerate() {
                hf.push((
                    hf_name(&format!("attention.self.{part}.{kind}")),
                    t.narrow(0, i * d, d).unwrap().contiguous(),
                ));
            }
        } else if name.ends_with(".gamma1") || name.ends_with(".gamma2") {
            gammas
                .entry(hf_name("layer_scale_parameters"))
                .or_insert_with(Vec::new)
                .push(t.reshape(&[1, t.shape()[0]]).unwrap());
        } else {
            let renamed = [
                (
                    "patch_embed.proj.",
                    "dinat.embeddings.patch_embeddings.projection.",
                ),
                ("patch_embed.norm.", "dinat.embeddings.norm."),
                ("norm.", "dinat.layernorm."),
            ]
            .iter()
            .find(|(from, _)| name.starts_with(from))
            .map(|(from, to)| format!("{to}{}", &name[from.len()..]));
            let renamed = renamed.unwrap_or_else(|| {
                if name.contains(".downsample.") {
                    format!("dinat.encoder.{name}")
                } else {
                    let tail = name.splitn(5, '.').nth(4).unwrap();
                    let tail = tail
                        .replace("norm1.", "layernorm_before.")
                        .replace("norm2.", "layernorm_after.")
                        .replace("attn.rpb", "attention.self.rpb")
                        .replace("attn.proj.", "attention.output.dense.")
                        .replace("mlp.fc1.", "intermediate.dense.")
                        .replace("mlp.fc2.", "output.dense.");
                    hf_name(&tail)
                }
            });
            hf.push((renamed, t));
        }
    }
    for (name, pair) in gammas {
        hf.push((name, Tensor::cat(&pair, 0).unwrap()));
    }
    let file = TensorFile {
        tensors: hf,
        metadata: Default::default(),
    };
    let w = map_names(file, Network::Teacher).unwrap();
    assert!(w.dinat);
    for (name, t) in nat.params.named_tensors() {
        let got = w.tensors.get(&name).unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(got.shape(), t.shape(), "{name}");
        assert_eq!(got.to_vec_f64(), t.to_vec_f64(), "{name}");
    }
    assert_eq!(w.tensors.len(), nat.params.named_tensors().len());
    let (inferred, note) = infer_config(&w.tensors, w.dinat).unwrap();
    assert_eq!(
        (
            inferred.embed_dim,
            inferred.depths.clone(),
            inferred.heads.clone()
        ),
        (16, vec![1, 2], vec![1, 2])
    );
    assert!(
        inferred.layer_scale.is_some() && note.contains("DiNAT"),
        "{note}"
    );
    assert!(matches!(
        inferred.attention,
        dinonat_model::AttentionKind::Neighborhood {
            dilation: dinonat_model::DilationSchedule::DiNat,
            ..
        }
    ));
}

/// nat_mini saved by PyTorch (78 MB, not committed):
///   python3 scripts/make-pth-fixtures.py --nat-mini /tmp/pth-nat-mini
///   DINONAT_PTH_NAT_MINI=/tmp/pth-nat-mini cargo test --release -p dinonat-model --test pth -- --ignored
#[test]
#[ignore]
fn nat_mini_saved_by_torch_gives_the_torch_forward() {
    let Some(dir) = std::env::var_os("DINONAT_PTH_NAT_MINI").map(PathBuf::from) else {
        eprintln!("skipped: set DINONAT_PTH_NAT_MINI to the folder of scripts/make-pth-fixtures.py --nat-mini");
        return;
    };
    let f = load_safetensors(&dir.join("nat_mini_forward.safetensors")).unwrap();
    let path = dir.join("nat_mini.pth");
    let (given, _) = load_weights(&path, Some("nat_mini")).unwrap();
    let (inferred, notes) = load_weights(&path, None).unwrap();
    assert_eq!(inferred.config.name, "nat_mini", "{notes:?}");
    for nat in [given, inferred] {
        let err = relative_error(&nat, &f, "output");
        eprintln!("nat_mini.pth: relative error {err:.2e} (tolerance {TOL:e})");
        assert!(err < TOL, "{err}");
    }
}
