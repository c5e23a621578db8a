//! `--recipe`'s expansion of the command line.

use super::*;

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn strings(v: Vec<OsString>) -> Vec<String> {
    v.into_iter().map(|s| s.into_string().unwrap()).collect()
}

#[test]
fn recipe_flags_come_first_and_given_flags_win() {
    let argv = os(&[
        "dinonat",
        "train",
        "--recipe",
        "imagenette-2h",
        "--lr=0.001",
        "--steps",
        "5",
    ]);
    let out = strings(expand(argv));
    assert_eq!(&out[..4], ["dinonat", "train", "--arch", "nat_nano"]);
    // the command line's own flags are last and not repeated by the recipe
    assert_eq!(
        &out[out.len() - 5..],
        ["--recipe", "imagenette-2h", "--lr=0.001", "--steps", "5"]
    );
    assert_eq!(out.iter().filter(|a| a.starts_with("--lr")).count(), 2); // --lr=0.001, --lr-end
    assert_eq!(out.iter().filter(|a| *a == "--steps").count(), 1);
    let n = Recipe::Imagenette2h.flags().len();
    assert_eq!(out.len(), 2 + 2 * (n - 2) + 5);
}

#[test]
fn data_with_splits_gets_the_knn_and_others_come_back_unchanged() {
    let dir = std::env::temp_dir().join(format!("dinonat-recipe-{}", std::process::id()));
    for s in ["train", "val"] {
        std::fs::create_dir_all(dir.join(s)).unwrap();
    }
    let d = dir.to_str().unwrap();
    let out = strings(expand(os(&[
        "dinonat",
        "--max-megapixels",
        "8",
        "train",
        "--data",
        d,
        "--recipe=imagenette-2h",
    ])));
    assert_eq!(&out[..4], ["dinonat", "--max-megapixels", "8", "train"]);
    let at = out.iter().position(|a| a == "--eval-train").unwrap();
    assert_eq!(&out[at..at + 4], ["--eval-train", d, "--eval-val", d]);
    let with_eval = os(&[
        "dinonat",
        "train",
        "--recipe",
        "imagenette-2h",
        "--data",
        d,
        "--no-eval",
    ]);
    let out = strings(expand(with_eval));
    assert!(!out.iter().any(|a| a.starts_with("--eval")), "{out:?}");
    std::fs::remove_dir_all(&dir).unwrap();
    for unchanged in [
        os(&["dinonat", "knn", "--recipe", "imagenette-2h"]),
        os(&["dinonat", "train", "--recipe", "no-such-recipe"]),
        os(&["dinonat", "train", "--steps", "3"]),
    ] {
        assert_eq!(expand(unchanged.clone()), unchanged);
    }
}
