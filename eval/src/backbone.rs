//! The one loader of a frozen backbone, for every command that runs one: a backbone file (reference NAT names,
//! model::checkpoint), the teacher of a DINO training checkpoint (`teacher.backbone.*`, the network DINO
//! evaluates; train::trainer::checkpoint), or a fresh init (the untrained baseline).
//!
//! One rule for the architecture:
//! - a training checkpoint records it in its config: that wins, and a requested `arch` that differs is an error
//!   naming both (a config without one takes the requested `arch`);
//! - a backbone file records it in its `arch` metadata when DinoNAT wrote it: used when no `arch` is requested; a
//!   requested `arch` is used as given (converted files carry none), the tensor shapes decide whether it fits, and
//!   a misfit names the recorded one too; a file without metadata needs `arch`;
//! - a fresh init needs `arch`.
//!
//! Weights that are not all finite are refused: they would give NaN features without a word. Errors name the
//! parameter at fault ([`Param`]); [`BackboneError::describe`] lets a command line name its flags instead.

use dinonat_engine::io::{load_tensor_file, TensorFile};
use dinonat_engine::DType;
use dinonat_model::{load_backbone, save_backbone, Nat, NatConfig};
use dinonat_train::trainer::checkpoint::FORMAT as CHECKPOINT_FORMAT;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where the backbone's weights come from.
#[derive(Clone, Debug, PartialEq)]
pub enum BackboneSource {
    /// A backbone file (safetensors, reference names); `arch` None = the `arch` in its metadata.
    Weights { path: PathBuf, arch: Option<String> },
    /// Fresh NAT init from `seed` (a baseline: features of an untrained network).
    RandomInit { arch: String, seed: u64 },
    /// A DINO training checkpoint: its teacher backbone; `arch` None = the checkpoint's config.
    Checkpoint { path: PathBuf, arch: Option<String> },
}

/// The parameters of [`BackboneSource`] an error can be about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    Weights,
    Checkpoint,
    Arch,
}

impl Param {
    /// The parameter's plain name (what the library's messages say).
    pub fn name(self) -> &'static str {
        match self {
            Param::Weights => "weights",
            Param::Checkpoint => "checkpoint",
            Param::Arch => "arch",
        }
    }
}

/// Why a backbone could not be loaded.
#[derive(Clone, Debug, PartialEq)]
pub enum BackboneError {
    /// The file is absent or unreadable.
    Read {
        param: Param,
        path: PathBuf,
        error: String,
    },
    /// A file given as a training checkpoint that is not one (a backbone file, say).
    NotACheckpoint { path: PathBuf },
    /// Nothing says which architecture the file holds.
    NoArch { param: Param, path: PathBuf },
    /// A requested architecture that differs from the checkpoint's.
    ArchConflict {
        path: PathBuf,
        recorded: String,
        requested: String,
    },
    /// An architecture name that no config has.
    UnknownArch { name: String, error: String },
    /// The file's tensors do not fit the architecture (every problem listed); `message` starts with the path.
    Misfit { param: Param, message: String },
    /// The backbone file could not be written.
    Write { path: PathBuf, error: String },
    /// A weight that is NaN or infinite; `path` None for a fresh init.
    NotFinite {
        param: Param,
        path: Option<PathBuf>,
        tensor: String,
        value: f64,
    },
}

impl BackboneError {
    /// The message, each parameter named by `name`: [`Param::name`] in the library, a flag on a command line.
    pub fn describe(&self, name: impl Fn(Param) -> &'static str) -> String {
        let (weights, checkpoint, arch) = (
            name(Param::Weights),
            name(Param::Checkpoint),
            name(Param::Arch),
        );
        match self {
            BackboneError::Read { param, path, error } => {
                format!("{} {}: {error}", name(*param), path.display())
            }
            BackboneError::NotACheckpoint { path } => format!(
                "{checkpoint} {}: not a DinoNAT training checkpoint (format is not '{CHECKPOINT_FORMAT}'); a backbone file goes to {weights}",
                path.display()
            ),
            BackboneError::NoArch { param, path } => format!(
                "{} {}: the file names no architecture; pass {arch}",
                name(*param),
                path.display()
            ),
            BackboneError::ArchConflict {
                path,
                recorded,
                requested,
            } => format!(
                "{checkpoint} {}: holds a {recorded} backbone (its config), not {arch} {requested}",
                path.display()
            ),
            BackboneError::UnknownArch { name: n, error } => format!("{arch} {n}: {error}"),
            BackboneError::Misfit { param, message } => format!("{} {message}", name(*param)),
            BackboneError::Write { path, error } => format!("cannot write {}: {error}", path.display()),
            BackboneError::NotFinite {
                param,
                path: Some(path),
                tensor,
                value,
            } => format!(
                "{} {}: tensor '{tensor}' holds {value}: weights must be finite",
                name(*param),
                path.display()
            ),
            BackboneError::NotFinite {
                path: None,
                tensor,
                value,
                ..
            } => format!("random init: '{tensor}' holds {value}"),
        }
    }
}

impl fmt::Display for BackboneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe(Param::name))
    }
}

impl std::error::Error for BackboneError {}

pub type Result<T> = std::result::Result<T, BackboneError>;

/// The config of a named architecture.
fn config_of(arch: &str) -> Result<NatConfig> {
    NatConfig::from_name(arch).map_err(|e| BackboneError::UnknownArch {
        name: arch.to_string(),
        error: e.to_string(),
    })
}

fn read(param: Param, path: &Path) -> Result<TensorFile> {
    let error = |error: String| BackboneError::Read {
        param,
        path: path.to_path_buf(),
        error,
    };
    if !path.is_file() {
        return Err(error("no such file".into()));
    }
    load_tensor_file(path).map_err(|e| error(e.to_string()))
}

/// The architecture a training checkpoint's config records, checked against a requested one.
fn checkpoint_arch(file: &TensorFile, path: &Path, requested: Option<&str>) -> Result<String> {
    if file.metadata.get("format").map(String::as_str) != Some(CHECKPOINT_FORMAT) {
        return Err(BackboneError::NotACheckpoint {
            path: path.to_path_buf(),
        });
    }
    let recorded = file
        .metadata
        .get("config")
        .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
        .and_then(|c| c.get("arch").and_then(|a| a.as_str().map(str::to_string)));
    match (recorded, requested) {
        (Some(recorded), Some(a)) if a != recorded => Err(BackboneError::ArchConflict {
            path: path.to_path_buf(),
            recorded,
            requested: a.to_string(),
        }),
        (Some(recorded), _) => Ok(recorded),
        (None, Some(a)) => Ok(a.to_string()),
        (None, None) => Err(BackboneError::NoArch {
            param: Param::Checkpoint,
            path: path.to_path_buf(),
        }),
    }
}

/// The teacher backbone of a training checkpoint; every missing or mis-shaped tensor is named.
fn checkpoint_teacher(path: &Path, requested: Option<&str>) -> Result<Nat> {
    let file = read(Param::Checkpoint, path)?;
    let arch = checkpoint_arch(&file, path, requested)?;
    let nat = Nat::new(&config_of(&arch)?, DType::F32, 0).map_err(|e| misfit(path, e))?;
    let mut problems = Vec::new();
    for (name, param) in nat.params.iter() {
        let key = format!("teacher.backbone.{name}");
        match file.get(&key) {
            None => problems.push(format!("'{key}' missing")),
            Some(t) if t.shape() != param.tensor.shape() => problems.push(format!(
                "'{key}' has shape {:?}, expected {:?}",
                t.shape(),
                param.tensor.shape()
            )),
            Some(t) => nat.params.assign(name, t).map_err(|e| misfit(path, e))?,
        }
    }
    if !problems.is_empty() {
        let problems = problems.join("; ");
        return Err(misfit(path, format!("does not fit {arch}: {problems}")));
    }
    Ok(nat)
}

fn misfit(path: &Path, message: impl fmt::Display) -> BackboneError {
    BackboneError::Misfit {
        param: Param::Checkpoint,
        message: format!("{}: {message}", path.display()),
    }
}

/// A backbone file under `requested` or its recorded architecture; notes (ignored head tensors) go to `notes`.
fn weights(path: &Path, requested: Option<&str>, notes: &mut Vec<String>) -> Result<Nat> {
    let recorded = read(Param::Weights, path)?.metadata.get("arch").cloned();
    let arch = match (requested, &recorded) {
        (Some(a), _) => a.to_string(),
        (None, Some(r)) => r.clone(),
        (None, None) => {
            // no arch recorded (a PyTorch .pth, a converted file): inferred from the shapes
            let (nat, n) =
                dinonat_model::load_weights(path, None).map_err(|e| BackboneError::Misfit {
                    param: Param::Weights,
                    message: e.to_string(),
                })?;
            notes.extend(n);
            return Ok(nat);
        }
    };
    let (nat, n) = load_backbone(path, &config_of(&arch)?).map_err(|e| {
        let mut message = e.to_string();
        if let Some(r) = recorded.as_ref().filter(|r| **r != arch) {
            message.push_str(&format!(" (the file's metadata says {r})"));
        }
        BackboneError::Misfit {
            param: Param::Weights,
            message,
        }
    })?;
    notes.extend(n);
    Ok(nat)
}

impl BackboneSource {
    /// Builds the network (f32, on the CPU); notes (e.g. ignored head tensors) go to `notes`.
    pub fn load(&self, notes: &mut Vec<String>) -> Result<Nat> {
        let (nat, param, path) = match self {
            BackboneSource::RandomInit { arch, seed } => {
                let nat = Nat::new(&config_of(arch)?, DType::F32, *seed).map_err(|e| {
                    BackboneError::UnknownArch {
                        name: arch.clone(),
                        error: e.to_string(),
                    }
                })?;
                (nat, Param::Arch, None)
            }
            BackboneSource::Checkpoint { path, arch } => (
                checkpoint_teacher(path, arch.as_deref())?,
                Param::Checkpoint,
                Some(path),
            ),
            BackboneSource::Weights { path, arch } => (
                weights(path, arch.as_deref(), notes)?,
                Param::Weights,
                Some(path),
            ),
        };
        for (name, p) in nat.params.iter() {
            if let Some(x) = p.tensor.to_vec_f64().iter().find(|x| !x.is_finite()) {
                return Err(BackboneError::NotFinite {
                    param,
                    path: path.cloned(),
                    tensor: name.to_string(),
                    value: *x,
                });
            }
        }
        Ok(nat)
    }
}

/// Writes the teacher backbone of training checkpoint `checkpoint` as a backbone file (reference names, `arch`
/// in the metadata).
pub fn export_teacher_backbone(checkpoint: &Path, out: &Path) -> Result<()> {
    let source = BackboneSource::Checkpoint {
        path: checkpoint.to_path_buf(),
        arch: None,
    };
    let nat = source.load(&mut Vec::new())?;
    save_backbone(&nat, out).map_err(|e| BackboneError::Write {
        path: out.to_path_buf(),
        error: e.to_string(),
    })
}
