//! The one backbone loader (eval/src/backbone.rs): its `arch` rule for training checkpoints and backbone files,
//! errors that name the parameter, and export of a real trainer checkpoint's teacher.

use dinonat_engine::io::save_safetensors;
use dinonat_engine::{DType, Tensor};
use dinonat_eval::backbone::{export_teacher_backbone, BackboneError, BackboneSource, Param};
use dinonat_model::{save_backbone, Nat, NatConfig};
use dinonat_train::trainer::config::TrainConfig;
use dinonat_train::trainer::{checkpoint_path, Trainer};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dinonat-backbone-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn values(nat: &Nat) -> Vec<Vec<f32>> {
    (nat.params.iter())
        .map(|(_, p)| p.tensor.to_vec::<f32>().unwrap())
        .collect()
}

/// A checkpoint in the trainer's format holding `teacher` as `teacher.backbone.*` (and another network as the
/// student), with `config` as its config JSON.
fn write_checkpoint(path: &Path, teacher: &Nat, config: &str) {
    let student = Nat::new(&teacher.config, DType::F32, 99).unwrap();
    let mut tensors = Vec::new();
    for (prefix, net) in [("teacher", teacher), ("student", &student)] {
        for (n, t) in net.params.named_tensors() {
            tensors.push((format!("{prefix}.backbone.{n}"), t));
        }
    }
    let meta = HashMap::from([
        ("format".to_string(), "dinonat-dino-checkpoint".to_string()),
        ("step".to_string(), "3".to_string()),
        ("config".to_string(), config.to_string()),
    ]);
    save_safetensors(path, &tensors, Some(&meta)).unwrap();
}

fn checkpoint(path: &Path, arch: Option<&str>) -> BackboneSource {
    BackboneSource::Checkpoint {
        path: path.to_path_buf(),
        arch: arch.map(str::to_string),
    }
}

fn weights(path: &Path, arch: Option<&str>) -> BackboneSource {
    BackboneSource::Weights {
        path: path.to_path_buf(),
        arch: arch.map(str::to_string),
    }
}

#[test]
fn a_checkpoints_config_wins_and_a_conflicting_arch_is_an_error_naming_both() {
    let dir = tmp_dir("rule");
    let teacher = Nat::new(&NatConfig::nat_pico(), DType::F32, 11).unwrap();
    let ck = dir.join("ck.safetensors");
    write_checkpoint(&ck, &teacher, r#"{"arch":"nat_pico"}"#);
    for arch in [None, Some("nat_pico")] {
        let nat = checkpoint(&ck, arch).load(&mut Vec::new()).unwrap();
        assert_eq!(nat.config.name, "nat_pico");
        assert_eq!(values(&nat), values(&teacher));
    }
    let e = checkpoint(&ck, Some("nat_nano"))
        .load(&mut Vec::new())
        .unwrap_err();
    assert!(matches!(e, BackboneError::ArchConflict { .. }), "{e:?}");
    let plain = e.to_string();
    assert!(
        plain.contains("nat_pico") && plain.contains("arch nat_nano"),
        "{plain}"
    );
    assert!(
        !plain.contains("--"),
        "library messages name parameters: {plain}"
    );
    let flags = e.describe(|p| match p {
        Param::Weights => "--weights",
        Param::Checkpoint => "--checkpoint",
        Param::Arch => "--arch",
    });
    assert!(
        flags.starts_with("--checkpoint ") && flags.contains("--arch nat_nano"),
        "{flags}"
    );
    // A config without an architecture takes the requested one, and needs it.
    let bare = dir.join("bare.safetensors");
    write_checkpoint(&bare, &teacher, r#"{"steps":4}"#);
    let nat = checkpoint(&bare, Some("nat_pico"))
        .load(&mut Vec::new())
        .unwrap();
    assert_eq!(values(&nat), values(&teacher));
    let e = checkpoint(&bare, None).load(&mut Vec::new()).unwrap_err();
    assert!(
        matches!(
            e,
            BackboneError::NoArch {
                param: Param::Checkpoint,
                ..
            }
        ),
        "{e:?}"
    );
    // The wrong architecture in the config: every misfit named.
    let nano = dir.join("nano.safetensors");
    write_checkpoint(&nano, &teacher, r#"{"arch":"nat_nano"}"#);
    let e = checkpoint(&nano, None)
        .load(&mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("does not fit nat_nano") && e.contains("has shape"),
        "{e}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_backbone_file_uses_its_metadata_or_the_requested_arch() {
    let dir = tmp_dir("weights");
    let nat = Nat::new(&NatConfig::nat_pico(), DType::F32, 5).unwrap();
    let file = dir.join("pico.safetensors");
    save_backbone(&nat, &file).unwrap();
    let loaded = weights(&file, None).load(&mut Vec::new()).unwrap();
    assert_eq!(loaded.config.name, "nat_pico");
    assert_eq!(values(&loaded), values(&nat));
    // A requested architecture is used as given; a misfit also names the recorded one.
    let e = weights(&file, Some("nat_nano"))
        .load(&mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("does not fit nat_nano: ") && e.contains("metadata says nat_pico"),
        "{e}"
    );
    assert!(!e.contains(":;"), "{e}");
    // Without metadata the architecture is inferred from the shapes (docs/pth.md), with a note.
    let bare = dir.join("bare.safetensors");
    save_safetensors(&bare, &nat.params.named_tensors(), None).unwrap();
    let mut notes = Vec::new();
    let inferred = weights(&bare, None).load(&mut notes).unwrap();
    assert_eq!(inferred.config.name, "nat_pico");
    assert_eq!(values(&inferred), values(&nat));
    assert!(
        notes
            .iter()
            .any(|n| n.contains("shapes are exactly its own")),
        "{notes:?}"
    );
    let loaded = weights(&bare, Some("nat_pico"))
        .load(&mut Vec::new())
        .unwrap();
    assert_eq!(values(&loaded), values(&nat));
    // A backbone file is not a training checkpoint; a missing file is named.
    let e = checkpoint(&file, None).load(&mut Vec::new()).unwrap_err();
    assert!(matches!(e, BackboneError::NotACheckpoint { .. }), "{e:?}");
    let e = weights(&dir.join("absent"), None)
        .load(&mut Vec::new())
        .unwrap_err();
    assert!(e.to_string().contains("absent: no such file"), "{e}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn weights_that_are_not_finite_and_unknown_architectures_are_refused() {
    let dir = tmp_dir("nan");
    let nat = Nat::new(&NatConfig::nat_pico(), DType::F32, 5).unwrap();
    let mut tensors = nat.params.named_tensors();
    let (name, t) = &mut tensors[1];
    let mut v = t.to_vec::<f32>().unwrap();
    v[0] = f32::INFINITY;
    *t = Tensor::from_vec(v, t.shape()).unwrap();
    let name = name.clone();
    let file = dir.join("inf.safetensors");
    save_safetensors(&file, &tensors, None).unwrap();
    let e = weights(&file, Some("nat_pico"))
        .load(&mut Vec::new())
        .unwrap_err();
    assert!(
        matches!(
            e,
            BackboneError::NotFinite {
                param: Param::Weights,
                ..
            }
        ),
        "{e:?}"
    );
    let e = e.to_string();
    assert!(
        e.contains(&name) && e.contains("inf") && e.contains("finite"),
        "{e}"
    );
    let random = BackboneSource::RandomInit {
        arch: "nat_huge".into(),
        seed: 0,
    };
    let e = random.load(&mut Vec::new()).unwrap_err();
    assert!(
        matches!(e, BackboneError::UnknownArch { .. }) && e.to_string().contains("arch nat_huge")
    );
    std::fs::remove_dir_all(dir).ok();
}

/// The default nat_pico run cut to one step of two images, then the export.
#[test]
fn export_writes_the_teacher_backbone_of_a_trainer_checkpoint() {
    let dir = tmp_dir("export");
    let config = TrainConfig {
        procedural_len: 8,
        batch_size: 2,
        n_local: 2,
        steps: 1,
        checkpoint_every: 0,
        out_dir: dir.clone(),
        ..TrainConfig::default()
    };
    let mut t = Trainer::new(config).unwrap();
    t.run(Some(1), |_| {}).unwrap();
    let out = dir.join("backbone.safetensors");
    export_teacher_backbone(&checkpoint_path(&dir), &out).unwrap();
    let (nat, _) = dinonat_model::load_backbone(&out, &t.config.backbone().unwrap()).unwrap();
    for (name, p) in nat.params.iter() {
        let want = t.teacher.backbone.params.get(name).unwrap();
        assert_eq!(
            p.tensor.to_vec::<f32>().unwrap(),
            want.to_vec::<f32>().unwrap(),
            "{name}"
        );
    }
    std::fs::remove_dir_all(dir).ok();
}
