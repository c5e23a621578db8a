//! `dinonat linear`: a linear probe (dinonat_eval::linear) trained on cached frozen features of a
//! train split, evaluated on a val split (docs/evaluation-commands.md).

use crate::args::frozen::{run_seeds, DataArgs, FeatureArgs};
use clap::{Args, ValueEnum};
use dinonat_eval::linear::{train_linear_probe, LinearProbeConfig, Preprocess};
use serde_json::json;

#[derive(Args, Debug)]
pub struct LinearArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub features: FeatureArgs,
    /// Probe training epochs (cosine learning-rate schedule over all of them).
    #[arg(long, default_value_t = 100)]
    pub epochs: usize,
    /// Peak learning rate of the probe (SGD, momentum 0.9, no weight decay).
    #[arg(long, default_value_t = 1.0)]
    pub lr: f32,
    /// Probe mini-batch size.
    #[arg(long, default_value_t = 256)]
    pub probe_batch_size: usize,
    /// Feature preprocessing before the linear layer.
    #[arg(long, value_enum, default_value_t = PreprocessArg::L2)]
    pub preprocess: PreprocessArg,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PreprocessArg {
    /// Divide each row by its l2 norm.
    L2,
    /// Zero mean, unit variance per column (training-set statistics).
    Standardize,
}

pub fn run(args: LinearArgs) -> Result<(), String> {
    if args.epochs == 0 || args.probe_batch_size == 0 || !(args.lr > 0.0 && args.lr.is_finite()) {
        return Err(format!(
            "--epochs {}, --probe-batch-size {} and --lr {} must all be positive",
            args.epochs, args.probe_batch_size, args.lr
        ));
    }
    run_seeds(&args.data, &args.features, "linear", |ex, seed| {
        let mut config = LinearProbeConfig::new(ex.classes.len(), seed);
        config.epochs = args.epochs;
        config.learning_rate = args.lr;
        config.batch_size = args.probe_batch_size;
        config.preprocess = match args.preprocess {
            PreprocessArg::L2 => Preprocess::L2Normalize,
            PreprocessArg::Standardize => Preprocess::Standardize,
        };
        let report = train_linear_probe(
            (&ex.train.values, &ex.train.labels),
            (&ex.val.values, &ex.val.labels),
            ex.train.dim,
            &config,
        )
        .map_err(|e| e.to_string())?;
        let classification = report
            .probe
            .classification(&ex.val.values, &ex.val.labels)
            .map_err(|e| e.to_string())?;
        let mut fields = serde_json::Map::new();
        fields.insert("best_top1".into(), json!(report.best_val_top1));
        fields.insert("train_top1".into(), json!(report.train_top1));
        fields.insert("epochs".into(), json!(args.epochs));
        fields.insert("lr".into(), json!(args.lr));
        fields.insert("probe_batch_size".into(), json!(args.probe_batch_size));
        fields.insert(
            "preprocess".into(),
            json!(match args.preprocess {
                PreprocessArg::L2 => "l2",
                PreprocessArg::Standardize => "standardize",
            }),
        );
        fields.insert(
            "final_loss".into(),
            json!(report.train_loss_per_epoch.last().copied()),
        );
        Ok((classification, fields))
    })
}
