//! The one check every command runs on its paths before any work (docs/data.md, "Hostile
//! inputs"): no output is an input (the same file, also through a symlink or hard link), no
//! output lies inside an input folder, and no two outputs are the same file; and the caps on flag
//! values that size allocations, so a huge value is an error naming its flag, never an abort.

use std::path::{Path, PathBuf};

/// A path named by a flag (`("--out", path)`).
pub type Named<'a> = (&'a str, &'a Path);

/// `p` made absolute with symlinks resolved; a path that does not exist yet is resolved through
/// its nearest existing ancestor.
fn resolve(p: &Path) -> PathBuf {
    let mut base = p.to_path_buf();
    let mut rest = Vec::new();
    while std::fs::symlink_metadata(&base).is_err() {
        match (base.file_name(), base.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_os_string());
                base = if parent.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    parent.to_path_buf()
                };
            }
            _ => break,
        }
    }
    let mut r = base.canonicalize().unwrap_or(base);
    for name in rest.iter().rev() {
        r.push(name);
    }
    r
}

/// The same existing file (device and inode), e.g. through a hard link.
#[cfg(unix)]
fn same_inode(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_inode(_: &Path, _: &Path) -> bool {
    false
}

/// Fails, naming both flags, when an output is an input, lies inside an input folder, or is
/// another output.
pub fn check_outputs(outputs: &[Named<'_>], inputs: &[Named<'_>]) -> Result<(), String> {
    for (k, &(out_flag, out)) in outputs.iter().enumerate() {
        let o = resolve(out);
        for &(in_flag, input) in inputs {
            let i = resolve(input);
            if o == i || same_inode(out, input) {
                return Err(format!(
                    "{out_flag} {} is the same file as {in_flag} {}: a command never overwrites its inputs",
                    out.display(),
                    input.display()
                ));
            }
            if o.starts_with(&i) {
                return Err(format!(
                    "{out_flag} {} lies inside {in_flag} {}: outputs never go into an input folder",
                    out.display(),
                    input.display()
                ));
            }
        }
        for &(other_flag, other) in &outputs[..k] {
            if resolve(other) == o || same_inode(out, other) {
                return Err(format!(
                    "{out_flag} {} and {other_flag} {} are the same file: each output needs its own path",
                    out.display(),
                    other.display()
                ));
            }
        }
    }
    Ok(())
}

/// Largest image side any size flag accepts (pixels): DINO trains at 224, our sets are 160-640 px.
pub const MAX_IMAGE_SIDE: usize = 2048;

/// Most images of the built-in procedural set a flag may ask for.
pub const MAX_BUILTIN_IMAGES: usize = 1_000_000;

/// Fails, naming the flag, when `value` exceeds `max` (`what` says what is counted).
pub fn at_most(flag: &str, value: usize, max: usize, what: &str) -> Result<(), String> {
    if value > max {
        return Err(format!("{flag} {value}: at most {max} {what}"));
    }
    Ok(())
}

/// An image-side flag: at least `min`, at most [`MAX_IMAGE_SIDE`] pixels.
pub fn image_side(flag: &str, value: usize, min: usize) -> Result<(), String> {
    if value < min {
        return Err(format!("{flag} {value}: must be at least {min} pixels"));
    }
    at_most(flag, value, MAX_IMAGE_SIDE, "pixels")
}

#[cfg(test)]
mod tests {
    use super::check_outputs;
    use std::path::Path;

    #[test]
    fn outputs_never_hit_inputs_or_each_other() {
        let dir = std::env::temp_dir().join(format!("dinonat-guard-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("images")).unwrap();
        let (images, weights) = (dir.join("images"), dir.join("w.safetensors"));
        std::fs::write(&weights, b"w").unwrap();
        let inputs = [
            ("--images", images.as_path()),
            ("--weights", weights.as_path()),
        ];
        let ok = dir.join("out.safetensors");
        assert!(check_outputs(&[("--out", &ok)], &inputs).is_ok());
        let e = check_outputs(&[("--out", &dir.join("./w.safetensors"))], &inputs).unwrap_err();
        assert!(e.contains("--out") && e.contains("--weights"), "{e}");
        let inside = images.join("a/b.csv");
        let e = check_outputs(&[("--csv", &inside)], &inputs).unwrap_err();
        assert!(e.contains("inside --images"), "{e}");
        let e = check_outputs(&[("--out", &images.join("../x/../images"))], &inputs).unwrap_err();
        assert!(e.contains("--images"), "{e}");
        let e = check_outputs(&[("--out", &ok), ("--csv", &ok)], &inputs).unwrap_err();
        assert!(e.contains("--csv") && e.contains("--out"), "{e}");
        #[cfg(unix)]
        {
            let link = dir.join("link.safetensors");
            let _ = std::fs::remove_file(&link);
            std::fs::hard_link(&weights, &link).unwrap();
            assert!(check_outputs(&[("--out", &link)], &inputs).is_err());
        }
        let outside = Path::new("/dinonat-nonexistent-root/out");
        assert!(check_outputs(&[("--out", outside)], &inputs).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
