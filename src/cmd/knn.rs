//! `dinonat knn`: the weighted k-NN classifier (dinonat_eval::knn) on frozen features of a train
//! and a val split (docs/evaluation-commands.md).

use crate::args::frozen::{run_seeds, DataArgs, FeatureArgs};
use clap::Args;
use dinonat_eval::knn::{knn_classify_with_progress, KnnConfig};
use serde_json::json;

#[derive(Args, Debug)]
pub struct KnnArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub features: FeatureArgs,
    /// Number of neighbours that vote.
    #[arg(long, default_value_t = 20)]
    pub k: usize,
    /// Temperature T of the vote weight exp(sim / T).
    #[arg(long, default_value_t = 0.07)]
    pub temperature: f32,
}

pub fn run(args: KnnArgs) -> Result<(), String> {
    run_seeds(&args.data, &args.features, "knn", |ex, _| {
        let config = KnnConfig {
            k: args.k,
            temperature: args.temperature,
            num_classes: ex.classes.len(),
        };
        let report = knn_classify_with_progress(
            &ex.train.values,
            &ex.train.labels,
            &ex.val.values,
            &ex.val.labels,
            ex.train.dim,
            &config,
            &mut crate::progress::progress("k-NN search (queries)"),
        )
        .map_err(|e| e.to_string())?;
        let mut fields = serde_json::Map::new();
        fields.insert("k".into(), json!(args.k));
        fields.insert("temperature".into(), json!(args.temperature));
        Ok((report.classification, fields))
    })
}
