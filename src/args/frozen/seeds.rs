//! The loop over seeds that `knn` and `linear` share.

use super::features::extract;
use super::flags::{DataArgs, FeatureArgs};
use dinonat_eval::frozen::{self, Extracted, SeedRun};
use serde_json::json;
use std::time::Instant;

/// Extracts features for each seed (one, or `--seeds N` random-init backbones from --seed on), runs
/// `evaluate` on them and prints the report (`dinonat_eval::frozen::report`).
pub fn run_seeds(
    data: &DataArgs,
    features: &FeatureArgs,
    command: &str,
    evaluate: impl Fn(&Extracted, u64) -> Result<SeedRun, String>,
) -> Result<(), String> {
    if features.seeds == 0 {
        return Err("--seeds must be at least 1".into());
    }
    if features.seeds > 1 && !features.random_init {
        return Err(format!(
            "--seeds {} repeats --random-init backbones; the other feature sources do not depend on a seed",
            features.seeds
        ));
    }
    let mut runs = Vec::new();
    let mut config = serde_json::Map::new();
    let mut class_names = Vec::new();
    let seeds: Vec<u64> = (0..features.seeds as u64)
        .map(|k| features.seed + k)
        .collect();
    for &seed in &seeds {
        let mut args = features.clone();
        args.seed = seed;
        let ex = extract(data, &args)?;
        let start = Instant::now();
        let (report, extra) = evaluate(&ex, args.seed)?;
        let mut fields = ex.config.clone();
        if let serde_json::Value::Object(m) = report.to_json() {
            fields.extend(m);
        }
        fields.extend(extra);
        fields.insert("extract_seconds".into(), json!(ex.extract_seconds));
        fields.insert("eval_seconds".into(), json!(start.elapsed().as_secs_f64()));
        config = ex.config;
        class_names = ex.classes;
        runs.push((report, fields));
    }
    let text = frozen::report(command, runs, config, &class_names, &seeds, features.json);
    println!("{text}");
    Ok(())
}
