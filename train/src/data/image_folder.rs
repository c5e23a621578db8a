//! A folder of JPEG/PNG files, labelled by class sub-folders (torchvision's ImageFolder layout) or flat (no labels).

use super::{decode_image, DataError, Dataset, Result, Sample};
use std::path::{Path, PathBuf};

const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// All image files under `dir`, recursively, sorted by path.
fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d)
            .map_err(|e| DataError::new(d.display().to_string(), format!("cannot list: {e}")))?;
        for entry in entries {
            let p = entry
                .map_err(|e| DataError::new(d.display().to_string(), format!("cannot list: {e}")))?
                .path();
            if p.is_dir() {
                stack.push(p);
            } else if is_image(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

pub struct ImageFolder {
    root: PathBuf,
    files: Vec<PathBuf>,
    labels: Option<Vec<usize>>,
    classes: Vec<String>,
}

impl ImageFolder {
    /// Open `root`. If it has sub-folders holding images, each such sub-folder is a class (ids = sorted names) and
    /// files directly in `root` are ignored; otherwise the images in `root` form an unlabelled set.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let name = root.display().to_string();
        if !root.is_dir() {
            return Err(DataError::new(name, "is not a directory"));
        }
        let mut subdirs: Vec<PathBuf> = std::fs::read_dir(&root)
            .map_err(|e| DataError::new(&name, format!("cannot list: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        subdirs.sort();
        let mut classes = Vec::new();
        let mut files = Vec::new();
        let mut labels = Vec::new();
        for d in &subdirs {
            let class_files = image_files(d)?;
            if class_files.is_empty() {
                continue;
            }
            let class = d
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            labels.extend(std::iter::repeat_n(classes.len(), class_files.len()));
            files.extend(class_files);
            classes.push(class);
        }
        if classes.is_empty() {
            files = std::fs::read_dir(&root)
                .map_err(|e| DataError::new(&name, format!("cannot list: {e}")))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_image(p))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(DataError::new(
                    name,
                    "holds no .jpg/.jpeg/.png files (directly or in class sub-folders)",
                ));
            }
            return Ok(Self {
                root,
                files,
                labels: None,
                classes,
            });
        }
        Ok(Self {
            root,
            files,
            labels: Some(labels),
            classes,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, i: usize) -> &Path {
        &self.files[i]
    }

    pub fn labels(&self) -> Option<&[usize]> {
        self.labels.as_deref()
    }
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.files.len()
    }

    fn get(&self, i: usize) -> Result<Sample> {
        let path = &self.files[i];
        let name = path.display().to_string();
        let bytes =
            std::fs::read(path).map_err(|e| DataError::new(&name, format!("cannot read: {e}")))?;
        let image = decode_image(&bytes, &name)?;
        Ok(Sample {
            image,
            label: self.labels.as_ref().map(|l| l[i]),
        })
    }

    fn class_names(&self) -> Option<Vec<String>> {
        self.labels.as_ref().map(|_| self.classes.clone())
    }

    fn describe(&self, i: usize) -> String {
        self.files[i].display().to_string()
    }
}
