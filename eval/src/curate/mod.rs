//! Curation pipelines on folders of images (docs/curation.md): embeddings ([`embed`]), filtering
//! a folder (near-duplicates, outliers, clusters, exemplars: [`filter`]) and the RGB <-> IR
//! cross-modal evaluation ([`crossmodal`]), near-duplicate detection against the clips of video
//! frames ([`duplicates`]) and the filter's exemplar rule scored as a retrieval ([`exemplars`]). Each reads images, runs a NAT backbone (loaded by
//! [`crate::backbone`]) under the eval transform, and hands the features to the evaluations of this crate.

pub mod crossmodal;
pub mod descriptors;
pub mod duplicates;
pub mod embed;
pub mod exemplars;
pub mod filter;

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
    dinonat_train::data::DataError,
    crate::EvalError,
    std::io::Error
);

pub type Result<T> = std::result::Result<T, CurateError>;

pub fn err<T>(message: impl Into<String>) -> Result<T> {
    Err(CurateError(message.into()))
}

/// The images of `dir` (flat, or in class sub-folders), sorted by path; `flag` names the
/// parameter in errors (a library caller passes its parameter, the command line its flag).
pub fn list_images(dir: &Path, flag: &str) -> Result<Vec<PathBuf>> {
    if !dir.exists() {
        return err(format!("{flag} {}: no such folder", dir.display()));
    }
    if !dir.is_dir() {
        return err(format!("{flag} {}: not a folder", dir.display()));
    }
    let folder = dinonat_train::data::ImageFolder::open(dir)
        .map_err(|e| CurateError(format!("{flag} {e}")))?;
    let paths: Vec<PathBuf> = (0..dinonat_train::data::Dataset::len(&folder))
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

/// Fails when `out` is `input` or lies inside it ([`dinonat_train::guard::check_outputs`]).
pub fn refuse_inside(out: &Path, input: &Path, out_flag: &str, in_flag: &str) -> Result<()> {
    dinonat_train::guard::check_outputs(&[(out_flag, out)], &[(in_flag, input)])
        .map_err(CurateError)
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
