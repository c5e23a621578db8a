//! Helpers shared by the CLI tests (`mod common;` in each test file that uses them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every file under `dir` (recursively, symlinks not followed), keyed by its path relative to
/// `dir`, with its bytes.
pub fn files_under(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut m = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let kind = std::fs::symlink_metadata(&p).unwrap().file_type();
            if kind.is_symlink() {
                // a link is its target's name (links are never followed: they may form cycles)
                let target = std::fs::read_link(&p).unwrap();
                let bytes = target.to_string_lossy().as_bytes().to_vec();
                m.insert(p.strip_prefix(dir).unwrap().to_path_buf(), bytes);
            } else if kind.is_dir() {
                stack.push(p);
            } else if kind.is_file() {
                let bytes = std::fs::read(&p).unwrap();
                m.insert(p.strip_prefix(dir).unwrap().to_path_buf(), bytes);
            }
        }
    }
    m
}
