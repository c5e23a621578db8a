//! A folder of JPEG/PNG files, labelled by class sub-folders (torchvision's ImageFolder layout) or flat (no labels).

use super::{read_image, warn, DataError, Dataset, Result, Sample};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// What a listing has visited: folders and files by canonical path, so that a symlink cycle is
/// walked once and a file reached through two links is listed once (each with a warning).
#[derive(Default)]
struct Visited {
    dirs: HashSet<PathBuf>,
    files: HashSet<PathBuf>,
    repeated_dirs: Vec<PathBuf>,
    repeated_files: usize,
}

impl Visited {
    /// False (and noted) when `dir`'s canonical path was walked already.
    fn enter(&mut self, dir: &Path) -> Result<bool> {
        let canonical = canonical(dir)?;
        if self.dirs.insert(canonical) {
            return Ok(true);
        }
        self.repeated_dirs.push(dir.to_path_buf());
        Ok(false)
    }

    /// The image files of one listing; a non-regular file with an image's name is an error.
    fn accept(&mut self, file: &Path) -> Result<bool> {
        if !is_image(file) {
            return Ok(false);
        }
        let meta = std::fs::metadata(file)
            .map_err(|e| DataError::new(file.display().to_string(), format!("cannot read: {e}")))?;
        if !meta.is_file() {
            return Err(DataError::new(
                file.display().to_string(),
                "is not a regular file (a FIFO, device or socket, or a symlink to one): refused",
            ));
        }
        if self.files.insert(canonical(file)?) {
            return Ok(true);
        }
        self.repeated_files += 1;
        Ok(false)
    }

    fn warn(&self, root: &Path) {
        if let Some(first) = self.repeated_dirs.first() {
            warn(format!(
                "{}: {} folder(s) reached twice through symlinks (a cycle or a second link, first {}): each walked once",
                root.display(),
                self.repeated_dirs.len(),
                first.display()
            ));
        }
        if self.repeated_files > 0 {
            warn(format!(
                "{}: {} file(s) are links to files listed already: each listed once",
                root.display(),
                self.repeated_files
            ));
        }
    }
}

fn canonical(p: &Path) -> Result<PathBuf> {
    p.canonicalize()
        .map_err(|e| DataError::new(p.display().to_string(), format!("cannot resolve: {e}")))
}

/// The entries of `dir`, sorted.
fn entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let listing_error =
        |e: std::io::Error| DataError::new(dir.display().to_string(), format!("cannot list: {e}"));
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(listing_error)? {
        out.push(entry.map_err(listing_error)?.path());
    }
    out.sort();
    Ok(out)
}

/// All image files under `dir`, recursively, sorted by path.
fn image_files(dir: &Path, visited: &mut Visited) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if !visited.enter(&d)? {
            continue;
        }
        for p in entries(&d)? {
            if p.is_dir() {
                stack.push(p);
            } else if visited.accept(&p)? {
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
        let mut visited = Visited::default();
        visited.enter(&root)?;
        let subdirs: Vec<PathBuf> = entries(&root)?.into_iter().filter(|p| p.is_dir()).collect();
        let mut classes = Vec::new();
        let mut files = Vec::new();
        let mut labels = Vec::new();
        for d in &subdirs {
            let class_files = image_files(d, &mut visited)?;
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
            for p in entries(&root)? {
                if !p.is_dir() && visited.accept(&p)? {
                    files.push(p);
                }
            }
            if files.is_empty() {
                return Err(DataError::new(
                    name,
                    "holds no .jpg/.jpeg/.png files (directly or in class sub-folders)",
                ));
            }
            visited.warn(&root);
            return Ok(Self {
                root,
                files,
                labels: None,
                classes,
            });
        }
        visited.warn(&root);
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
        let image = read_image(path)?;
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
