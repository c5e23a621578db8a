//! Helpers shared by the CLI tests (`mod common;` in each test file that uses them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every file under `dir` (recursively, symlinks not followed), keyed by its path relative to
/// `dir`, with its bytes.
#[allow(dead_code)] // not every test file that includes this module compares folders
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

/// Checks a JSON list of scored maps (a report's network and its controls): the `name_key` of each entry, in
/// order, is `names`, and each `value_key` lies in [0, 1] inside its `interval` {low, high}.
#[allow(dead_code)] // not every test file that includes this module checks scored maps
pub fn check_scored_maps(
    list: &serde_json::Value,
    name_key: &str,
    value_key: &str,
    names: &[&str],
) {
    let entries = list.as_array().expect("a list of scored maps");
    let found: Vec<&str> = entries
        .iter()
        .map(|m| m[name_key].as_str().unwrap())
        .collect();
    assert_eq!(found, names);
    for m in entries {
        let (v, lo, hi) = (
            m[value_key].as_f64().unwrap(),
            m["interval"]["low"].as_f64().unwrap(),
            m["interval"]["high"].as_f64().unwrap(),
        );
        assert!((0.0..=1.0).contains(&v) && lo <= v && v <= hi, "{m}");
    }
}

/// Runs the `dinonat` binary: (success, stdout, stderr).
#[allow(dead_code)] // not every test file that includes this module runs the binary
pub fn dinonat(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dinonat"))
        .args(args)
        .output()
        .expect("the dinonat binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
