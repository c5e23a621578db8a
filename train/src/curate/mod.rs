//! Curation pipelines on folders of images (docs/curation.md): embeddings ([`embed`]), filtering
//! a folder (near-duplicates, outliers, clusters, exemplars: [`filter`]) and the RGB <-> IR
//! cross-modal evaluation ([`crossmodal`]). Each reads images, runs a NAT backbone under the eval
//! transform, and hands the features to [`crate::eval`].

pub mod crossmodal;
pub mod descriptors;
pub mod embed;
pub mod filter;

use dinonat_engine::DType;
use dinonat_model::{Nat, NatConfig};
use std::fmt;
use std::path::{Path, PathBuf};

/// A pipeline failure, with a message naming the folder, file or flag at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurateError(pub String);

impl fmt::Display for CurateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CurateError {}

macro_rules! from_error {
    ($($t:ty),*) => {$(
        impl From<$t> for CurateError {
            fn from(e: $t) -> Self {
                CurateError(e.to_string())
            }
        }
    )*};
}
from_error!(
    dinonat_model::ModelError,
    dinonat_engine::EngineError,
    crate::data::DataError,
    crate::eval::EvalError,
    std::io::Error
);

pub type Result<T> = std::result::Result<T, CurateError>;

pub fn err<T>(message: impl Into<String>) -> Result<T> {
    Err(CurateError(message.into()))
}

/// Where the backbone's weights come from.
#[derive(Clone, Debug, PartialEq)]
pub enum BackboneSource {
    /// A backbone file (safetensors or a PyTorch `.pth`; docs/pth.md); `arch` None = the `arch`
    /// in its metadata, else inferred from its shapes.
    Weights { path: PathBuf, arch: Option<String> },
    /// Fresh NAT init from `seed` (a baseline: features of an untrained network).
    RandomInit { arch: String, seed: u64 },
    /// A DINO training checkpoint (format `dinonat-dino-checkpoint`): its teacher backbone
    /// (`teacher.backbone.*`), the network DINO evaluates; `arch` None = the checkpoint's config.
    Checkpoint { path: PathBuf, arch: Option<String> },
}

/// The `format` metadata of the trainer's checkpoints.
pub const CHECKPOINT_FORMAT: &str = "dinonat-dino-checkpoint";

/// The teacher backbone of a training checkpoint.
fn load_checkpoint_teacher(path: &Path, arch: Option<&str>) -> Result<Nat> {
    let shown = path.display();
    if !path.is_file() {
        return err(format!("--checkpoint {shown}: no such file"));
    }
    let file =
        dinonat_engine::io::load_safetensors(path).map_err(|e| CurateError(e.to_string()))?;
    if file.metadata.get("format").map(String::as_str) != Some(CHECKPOINT_FORMAT) {
        return err(format!(
            "--checkpoint {shown}: not a DinoNAT training checkpoint (format is not '{CHECKPOINT_FORMAT}'); a backbone file goes to --weights"
        ));
    }
    let arch = match arch {
        Some(a) => a.to_string(),
        None => file
            .metadata
            .get("config")
            .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
            .and_then(|c| c.get("arch").and_then(|a| a.as_str().map(str::to_string)))
            .ok_or_else(|| {
                CurateError(format!(
                    "--checkpoint {shown}: no arch in its config; pass --arch"
                ))
            })?,
    };
    let nat = Nat::new(&NatConfig::from_name(&arch)?, DType::F32, 0)?;
    let mut missing = Vec::new();
    for (name, param) in nat.params.iter() {
        let key = format!("teacher.backbone.{name}");
        match file.get(&key) {
            Some(t) if t.shape() == param.tensor.shape() => nat.params.assign(name, t)?,
            Some(t) => missing.push(format!(
                "{key} (shape {:?}, {arch} needs {:?})",
                t.shape(),
                param.tensor.shape()
            )),
            None => missing.push(key),
        }
    }
    if !missing.is_empty() {
        return err(format!(
            "--checkpoint {shown}: {} teacher backbone tensor(s) missing or mis-shaped for {arch}: {}",
            missing.len(),
            missing.join(", ")
        ));
    }
    Ok(nat)
}

impl BackboneSource {
    /// Builds the network; notes (e.g. ignored head tensors) go to `notes`. Weights that are not
    /// all finite are refused (they would give NaN features without a word).
    pub fn load(&self, notes: &mut Vec<String>) -> Result<Nat> {
        let nat = self.load_unchecked(notes)?;
        for (name, param) in nat.params.iter() {
            if let Some(x) = param.tensor.to_vec_f64().iter().find(|x| !x.is_finite()) {
                let (flag, path) = match self {
                    BackboneSource::Weights { path, .. } => ("--weights", path.display()),
                    BackboneSource::Checkpoint { path, .. } => ("--checkpoint", path.display()),
                    BackboneSource::RandomInit { .. } => {
                        return err(format!("random init: '{name}' holds {x}"))
                    }
                };
                return err(format!(
                    "{flag} {path}: tensor '{name}' holds {x}: weights must be finite"
                ));
            }
        }
        Ok(nat)
    }

    fn load_unchecked(&self, notes: &mut Vec<String>) -> Result<Nat> {
        match self {
            BackboneSource::RandomInit { arch, seed } => {
                Ok(Nat::new(&NatConfig::from_name(arch)?, DType::F32, *seed)?)
            }
            BackboneSource::Checkpoint { path, arch } => {
                load_checkpoint_teacher(path, arch.as_deref())
            }
            BackboneSource::Weights { path, arch } => {
                if !path.is_file() {
                    return err(format!("--weights {}: no such file", path.display()));
                }
                let (nat, n) = dinonat_model::load_weights(path, arch.as_deref())?;
                notes.extend(n);
                Ok(nat)
            }
        }
    }
}

/// The images of `dir` (flat, or in class sub-folders), sorted by path; `flag` names the
/// option in errors.
pub fn list_images(dir: &Path, flag: &str) -> Result<Vec<PathBuf>> {
    if !dir.exists() {
        return err(format!("{flag} {}: no such folder", dir.display()));
    }
    if !dir.is_dir() {
        return err(format!("{flag} {}: not a folder", dir.display()));
    }
    let folder =
        crate::data::ImageFolder::open(dir).map_err(|e| CurateError(format!("{flag} {e}")))?;
    let paths: Vec<PathBuf> = (0..crate::data::Dataset::len(&folder))
        .map(|i| folder.path(i).to_path_buf())
        .collect();
    // CSVs and keep-lists name files in UTF-8: a lossy name would list a path that does not exist.
    if let Some(p) = paths.iter().find(|p| p.to_str().is_none()) {
        return err(format!(
            "{flag} {}: the file name is not valid UTF-8 (reports could not name it); rename it",
            p.display()
        ));
    }
    Ok(paths)
}

/// Fails when `out` is `input` or lies inside it ([`crate::guard::check_outputs`]).
pub fn refuse_inside(out: &Path, input: &Path, out_flag: &str, in_flag: &str) -> Result<()> {
    crate::guard::check_outputs(&[(out_flag, out)], &[(in_flag, input)]).map_err(CurateError)
}

#[cfg(test)]
mod tests {
    use super::refuse_inside;
    use std::path::Path;

    #[test]
    fn outputs_inside_the_input_are_refused() {
        let input = std::env::temp_dir();
        assert!(refuse_inside(&input.join("a/b/report"), &input, "--out", "--images").is_err());
        assert!(refuse_inside(&input, &input, "--out", "--images").is_err());
        let e = refuse_inside(&input.join("x/../y"), &input, "--out", "--images").unwrap_err();
        assert!(e.0.contains("--out") && e.0.contains("--images"), "{e}");
        let outside = Path::new("/dinonat-nonexistent-root/out");
        assert!(refuse_inside(outside, &input, "--out", "--images").is_ok());
    }
}
