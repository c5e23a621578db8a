//! The flags reach the config: data-dependent defaults, flags over them, the precision.

use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    a: TrainArgs,
}

fn parse(args: &[&str]) -> TrainConfig {
    config(&Cli::parse_from(std::iter::once("train").chain(args.iter().copied())).a).unwrap()
}

type Knobs = (usize, usize, usize, f64, Option<f64>, f64, f64);

fn knobs(c: &TrainConfig) -> Knobs {
    let (b, s, n, k, l) = (c.batch_size, c.steps, c.n_local, c.koleo, c.lr_end);
    (b, s, n, k, l, c.momentum_teacher, c.momentum_teacher_end)
}

/// The built-in set gets the values of runs of minutes; --data gets DINO's; flags win over both.
#[test]
fn defaults_depend_on_the_data_and_flags_win() {
    assert_eq!(knobs(&parse(&[])), (64, 500, 4, 1.0, Some(1.0), 0.99, 0.99));
    assert_eq!(
        knobs(&parse(&["--data", "/nonexistent"])),
        (32, 600, 8, 0.0, None, 0.996, 1.0)
    );
    let flags = [
        "--batch-size",
        "16",
        "--steps",
        "7",
        "--local-crops",
        "2",
        "--koleo",
        "0.5",
        "--lr-end",
        "0.1",
        "--momentum-teacher",
        "0.98",
        "--momentum-teacher-end",
        "0.985",
    ];
    let want = (16, 7, 2, 0.5, Some(0.1), 0.98, 0.985);
    assert_eq!(knobs(&parse(&flags)), want);
    let with_data: Vec<&str> = ["--data", "/nonexistent"]
        .iter()
        .chain(&flags)
        .copied()
        .collect();
    assert_eq!(knobs(&parse(&with_data)), want);
}

/// --precision parses (default f32), reaches TrainConfig::precision, and a wrong value is
/// an error naming the flag.
#[test]
fn precision_flag_reaches_the_config() {
    use dinonat_train::trainer::config::Precision;
    assert_eq!(parse(&[]).precision, Precision::F32);
    assert_eq!(parse(&["--precision", "f32"]).precision, Precision::F32);
    assert_eq!(parse(&["--precision", "bf16"]).precision, Precision::Bf16);
    let wrong = Cli::try_parse_from(["train", "--precision", "fp8"]);
    let e = wrong.err().expect("fp8 is no precision").to_string();
    assert!(e.contains("--precision"), "{e}");
    let cpu = Cli::parse_from(["train", "--precision", "tf32"]);
    let e = config(&cpu.a).unwrap_err();
    assert!(
        e.contains("--precision tf32") && e.contains("--device cuda"),
        "{e}"
    );
}
