//! The reference pages (docs/*.md, README.md) name files that exist: every relative markdown link
//! and every repository path (`engine/src/...`, `kernels/cuda/...`, `train/tests/...`, ...) must
//! resolve. Notebook entries (docs/notebook/) are dated records and may name files of their day.

use std::path::{Path, PathBuf};

const ROOTS: [&str; 11] = [
    "engine/", "kernels/", "model/", "train/", "eval/", "report/", "bench/", "src/", "tests/",
    "scripts/", "docs/",
];

/// Targets of `[text](target)` links that are not URLs or anchors.
fn links(text: &str) -> Vec<&str> {
    text.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &text[at + 2..];
            let end = rest.find(')')?;
            let target = rest[..end].split('#').next()?;
            let local = !target.is_empty() && !target.contains("://") && !target.contains(' ');
            local.then_some(target)
        })
        .collect()
}

/// Words that start with a repository root and name a file or folder (`engine/src/rng.rs`,
/// `kernels/src/cpu/gemm/`), cut at the first character that cannot be part of a path.
fn repo_paths(text: &str) -> Vec<&str> {
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || "_./-".contains(c);
    let mut out = Vec::new();
    for (start, _) in text.char_indices() {
        let before = text[..start].chars().next_back();
        if before.is_some_and(is_path_char) || !ROOTS.iter().any(|r| text[start..].starts_with(r)) {
            continue;
        }
        let len = text[start..]
            .find(|c: char| !is_path_char(c))
            .unwrap_or(text.len() - start);
        let path = text[start..start + len].trim_end_matches('.');
        // a glob like `src/cmd_*.rs` is cut at the `*`: only complete names are checked
        if text[start + len..].starts_with('*') {
            continue;
        }
        out.push(path);
    }
    out
}

#[test]
fn reference_pages_name_files_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ is readable")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.push(root.join("README.md"));
    pages.sort();
    assert!(pages.len() > 10, "found only {} pages", pages.len());
    let mut missing = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).expect("page is readable");
        let dir = page.parent().expect("page has a folder");
        for target in links(&text) {
            if !dir.join(target).exists() {
                missing.push(format!("{}: link {target}", page.display()));
            }
        }
        for path in repo_paths(&text) {
            if !root.join(path).exists() {
                missing.push(format!("{}: path {path}", page.display()));
            }
        }
    }
    assert!(missing.is_empty(), "missing files:\n{}", missing.join("\n"));
}

#[test]
fn the_scanners_find_links_and_paths() {
    let text = "see [a](gemm.md#x), [b](https://x.y), `engine/src/rng.rs`, src/cmd_*.rs, \
                ../kernels/cuda/reduce.cu and train/tests/dino.rs.";
    assert_eq!(links(text), vec!["gemm.md"]);
    assert_eq!(
        repo_paths(text),
        vec!["engine/src/rng.rs", "train/tests/dino.rs"]
    );
}
