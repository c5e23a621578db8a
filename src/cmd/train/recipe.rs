//! `dinonat train --recipe NAME`: a named recipe is a list of flags inserted into the command line
//! before clap reads it, each unless the command line gives that flag itself (so flags on the command
//! line win, and a repeated flag is still an error). docs/training.md, "Recipes", lists them.

use clap::ValueEnum;
use std::ffi::OsString;
use std::path::Path;

/// The named recipes of `--recipe`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Recipe {
    /// Issue 22's 2-hour Imagenette recipe on a 2-core CPU (docs/notebook/2026-12-07-imagenette-2h-run.md):
    /// nat_nano, 2 x 64 + 6 x 32 crops, batch 32, 10 400 steps (332 800 images), lr 0.002, K 4096,
    /// teacher temperature 0.01 (chosen on the tuning split, 2026-12-08).
    #[value(name = "imagenette-2h")]
    Imagenette2h,
}

impl Recipe {
    /// The recipe's flags and their values, as `dinonat train` reads them.
    pub fn flags(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Recipe::Imagenette2h => &[
                ("--arch", "nat_nano"),
                ("--crops", "small"),
                ("--local-crops", "6"),
                ("--batch-size", "32"),
                ("--steps", "10400"),
                ("--lr", "0.002"),
                ("--lr-end", "0.002"),
                ("--out-dim", "4096"),
                ("--head-hidden", "1024"),
                ("--head-bottleneck", "256"),
                ("--koleo", "0"),
                ("--momentum-teacher", "0.996"),
                ("--momentum-teacher-end", "1"),
                ("--teacher-temp", "0.01"),
                ("--checkpoint-every", "200"),
                ("--eval-every", "2600"),
                ("--eval-size", "64"),
            ],
        }
    }
}

fn gives(args: &[OsString], flag: &str) -> bool {
    let prefix = format!("{flag}=");
    args.iter()
        .filter_map(|a| a.to_str())
        .any(|s| s == flag || s.starts_with(&prefix))
}

/// The value of `flag` in `args` (`--flag V` or `--flag=V`), if given.
fn flag_value(args: &[OsString], flag: &str) -> Option<OsString> {
    let prefix = format!("{flag}=");
    args.iter().enumerate().find_map(|(i, a)| match a.to_str() {
        Some(s) if s == flag => args.get(i + 1).cloned(),
        Some(s) => s.strip_prefix(&prefix).map(OsString::from),
        None => None,
    })
}

/// Index of the `train` subcommand in a `dinonat` command line: the first argument that is not the
/// global `--max-megapixels` or its value.
fn train_position(argv: &[OsString]) -> Option<usize> {
    let mut i = 1;
    while i < argv.len() {
        match argv[i].to_str() {
            Some("--max-megapixels") => i += 2,
            Some(s) if s.starts_with("--max-megapixels=") => i += 1,
            Some("train") => return Some(i),
            _ => return None,
        }
    }
    None
}

/// `argv` with the flags of its `train --recipe NAME` inserted after `train`, each unless given (with
/// `--no-eval`, none of the k-NN flags). With `--data DIR` where DIR holds `train/` and `val/`
/// (Imagenette's layout) and no k-NN flags, the k-NN runs on DIR's splits (`--eval-train DIR
/// --eval-val DIR`). Any other command line, and an unknown recipe name (clap then names the values),
/// come back unchanged.
pub fn expand(argv: Vec<OsString>) -> Vec<OsString> {
    let Some(at) = train_position(&argv) else {
        return argv;
    };
    let own = &argv[at + 1..];
    let Some(name) = flag_value(own, "--recipe") else {
        return argv;
    };
    let Some(recipe) = name.to_str().and_then(|n| Recipe::from_str(n, false).ok()) else {
        return argv;
    };
    let no_eval = gives(own, "--no-eval");
    let mut inserted: Vec<OsString> = Vec::new();
    for (flag, value) in recipe.flags() {
        let skipped = no_eval && flag.starts_with("--eval");
        if !skipped && !gives(own, flag) {
            inserted.extend([OsString::from(*flag), OsString::from(*value)]);
        }
    }
    let eval_given = ["--eval-train", "--eval-val", "--no-eval"]
        .iter()
        .any(|f| gives(own, f));
    if let Some(data) = flag_value(own, "--data").filter(|_| !eval_given) {
        let dir = Path::new(&data);
        if dir.join("train").is_dir() && dir.join("val").is_dir() {
            inserted.extend([
                "--eval-train".into(),
                data.clone(),
                "--eval-val".into(),
                data,
            ]);
        }
    }
    let mut out = argv[..=at].to_vec();
    out.extend(inserted);
    out.extend_from_slice(own);
    out
}

#[cfg(test)]
#[path = "recipe_tests.rs"]
mod tests;
