//! Linear probe on cached features (docs/evaluation.md, "Linear probe"): multinomial logistic regression
//! z = W x + b, p = softmax(z), loss = mean cross-entropy, trained with mini-batch SGD (momentum 0.9, no weight
//! decay) under a cosine learning-rate schedule, as DINO's linear evaluation but on fixed, un-augmented features.
//!
//! One linear layer needs no autodiff: with P the softmax of a batch's logits [B, C] and Y its one-hot labels,
//! dL/dZ = (P - Y) / B, so dW = (P - Y)^T X / B ([C, F]) and db = the column sums of (P - Y) / B.

use super::metrics::ClassificationReport;
use super::{l2_normalized, rows_of, EvalError, Result};
use dinonat_engine::SplitMix64;
use dinonat_kernels::cpu::gemm::{sgemm, Layout};

/// How features are prepared before the linear layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preprocess {
    /// Each row divided by its l2 norm.
    L2Normalize,
    /// Each column shifted and scaled to zero mean and unit variance over the training set.
    Standardize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearProbeConfig {
    pub num_classes: usize,
    pub epochs: usize,
    pub batch_size: usize,
    /// Peak learning rate; the schedule is lr * (1 + cos(pi * step / steps)) / 2.
    pub learning_rate: f32,
    pub momentum: f32,
    pub seed: u64,
    pub preprocess: Preprocess,
}

impl LinearProbeConfig {
    pub fn new(num_classes: usize, seed: u64) -> Self {
        Self {
            num_classes,
            epochs: 100,
            batch_size: 256,
            learning_rate: 1.0,
            momentum: 0.9,
            seed,
            preprocess: Preprocess::L2Normalize,
        }
    }
}

/// A trained probe: the layer and the preprocessing it expects.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearProbe {
    pub dim: usize,
    pub num_classes: usize,
    /// `[num_classes, dim]`.
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
    pub preprocess: Preprocess,
    /// Per-column (mean, 1 / std) for [`Preprocess::Standardize`]; empty otherwise.
    pub standardize: Vec<(f32, f32)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LinearProbeReport {
    pub probe: LinearProbe,
    /// Top-1 accuracy (percent) of the final probe on the training features.
    pub train_top1: f64,
    /// Top-1 accuracy (percent) of the final probe on the validation features.
    pub val_top1: f64,
    /// Validation top-1 after each epoch, and the best of them (what DINO reports).
    pub val_top1_per_epoch: Vec<f64>,
    pub best_val_top1: f64,
    /// Mean training loss of each epoch.
    pub train_loss_per_epoch: Vec<f64>,
}

impl LinearProbe {
    fn prepare(&self, features: &[f32]) -> Vec<f32> {
        match self.preprocess {
            Preprocess::L2Normalize => l2_normalized(features, self.dim),
            Preprocess::Standardize => {
                let mut x = features.to_vec();
                for row in x.chunks_mut(self.dim) {
                    for (v, &(mean, inv_std)) in row.iter_mut().zip(&self.standardize) {
                        *v = (*v - mean) * inv_std;
                    }
                }
                x
            }
        }
    }

    /// Logits [rows, C] of already-prepared features.
    fn logits(&self, x: &[f32]) -> Vec<f32> {
        let (rows, c, f) = (x.len() / self.dim, self.num_classes, self.dim);
        let mut z = vec![0.0f32; rows * c];
        sgemm(
            rows,
            f,
            c,
            1.0,
            x,
            Layout::row_major(f),
            &self.weights,
            Layout::col_major(f),
            0.0,
            &mut z,
            Layout::row_major(c),
        );
        for row in z.chunks_mut(c) {
            row.iter_mut().zip(&self.bias).for_each(|(v, b)| *v += b);
        }
        z
    }

    /// The predicted class of each row of raw features `[rows, dim]` (ties: lower class).
    pub fn predict(&self, features: &[f32]) -> Result<Vec<usize>> {
        rows_of(features, self.dim, "linear probe input")?;
        Ok(self.predict_checked(features))
    }

    fn predict_checked(&self, features: &[f32]) -> Vec<usize> {
        let z = self.logits(&self.prepare(features));
        z.chunks(self.num_classes)
            .map(|row| (1..row.len()).fold(0, |b, j| if row[j] > row[b] { j } else { b }))
            .collect()
    }

    /// Logits `[rows, num_classes]` (in f64) of raw features `[rows, dim]`.
    pub fn scores(&self, features: &[f32]) -> Result<Vec<f64>> {
        rows_of(features, self.dim, "linear probe input")?;
        Ok(self
            .logits(&self.prepare(features))
            .into_iter()
            .map(f64::from)
            .collect())
    }

    /// Top-1 / top-5, balanced accuracy, the majority and uniform controls and bootstrap intervals on raw
    /// features and their labels (docs/evaluation.md, "Metrics and controls").
    pub fn classification(
        &self,
        features: &[f32],
        labels: &[usize],
    ) -> Result<ClassificationReport> {
        self.check_input(features, labels)?;
        ClassificationReport::from_scores(&self.scores(features)?, labels, self.num_classes)
    }

    /// Top-1 accuracy in percent on raw features and their labels.
    pub fn top1(&self, features: &[f32], labels: &[usize]) -> Result<f64> {
        self.check_input(features, labels)?;
        Ok(self.top1_checked(features, labels))
    }

    fn check_input(&self, features: &[f32], labels: &[usize]) -> Result<()> {
        check(
            features,
            labels,
            self.dim,
            self.num_classes,
            "linear probe input",
        )
    }

    fn top1_checked(&self, features: &[f32], labels: &[usize]) -> f64 {
        let hits = self
            .predict_checked(features)
            .iter()
            .zip(labels)
            .filter(|(p, l)| p == l)
            .count();
        100.0 * hits as f64 / labels.len().max(1) as f64
    }
}

fn check(features: &[f32], labels: &[usize], dim: usize, classes: usize, what: &str) -> Result<()> {
    let rows = rows_of(features, dim, what)?;
    if labels.len() != rows {
        return Err(EvalError::new(format!(
            "{what}: {} labels for {rows} rows",
            labels.len()
        )));
    }
    match labels.iter().find(|&&l| l >= classes) {
        Some(l) => Err(EvalError::new(format!(
            "{what}: label {l} is not below num_classes = {classes}"
        ))),
        None => Ok(()),
    }
}

/// Trains a linear probe on `train` (`[n, dim]` raw features, labels) and reports train and val top-1.
pub fn train_linear_probe(
    train: (&[f32], &[usize]),
    val: (&[f32], &[usize]),
    dim: usize,
    config: &LinearProbeConfig,
) -> Result<LinearProbeReport> {
    let (c, f) = (config.num_classes, dim);
    check(train.0, train.1, dim, c, "linear probe train features")?;
    check(val.0, val.1, dim, c, "linear probe val features")?;
    let n = train.1.len();
    if n == 0 || c == 0 || config.batch_size == 0 {
        return Err(EvalError::new(format!(
            "linear probe: {n} training rows, {c} classes, batch size {}; all must be positive",
            config.batch_size
        )));
    }
    let standardize = match config.preprocess {
        Preprocess::L2Normalize => Vec::new(),
        Preprocess::Standardize => (0..f)
            .map(|j| {
                let column = train.0.iter().skip(j).step_by(f).map(|&v| v as f64);
                let mean = column.clone().sum::<f64>() / n as f64;
                let var = column.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
                (mean as f32, (1.0 / var.sqrt().max(1e-6)) as f32)
            })
            .collect(),
    };
    let mut init = SplitMix64::keyed(&[config.seed, 0x6c69_6e65_6172]); // "linear"
    let mut probe = LinearProbe {
        dim,
        num_classes: c,
        weights: (0..c * f).map(|_| (0.01 * init.normal()) as f32).collect(),
        bias: vec![0.0; c],
        preprocess: config.preprocess,
        standardize,
    };
    let x = probe.prepare(train.0);
    let (mut velocity_w, mut velocity_b) = (vec![0.0f32; c * f], vec![0.0f32; c]);
    let batches_per_epoch = n.div_ceil(config.batch_size);
    let total_steps = (config.epochs * batches_per_epoch).max(1);
    let mut step = 0usize;
    let (mut val_top1_per_epoch, mut train_loss_per_epoch) = (Vec::new(), Vec::new());
    let mut xb = vec![0.0f32; config.batch_size.min(n) * f];
    let (mut grad_w, mut grad_b) = (vec![0.0f32; c * f], vec![0.0f32; c]);
    for epoch in 0..config.epochs {
        let order = SplitMix64::keyed(&[config.seed, epoch as u64, 0x7368_7566]).permutation(n);
        let mut loss_sum = 0.0f64;
        for batch in order.chunks(config.batch_size) {
            let b = batch.len();
            for (dst, &i) in xb.chunks_mut(f).zip(batch) {
                dst.copy_from_slice(&x[i * f..(i + 1) * f]);
            }
            // Forward: Z = Xb W^T + b, then dZ = (softmax(Z) - Y) / B in place.
            let mut dz = probe.logits(&xb[..b * f]);
            cross_entropy_backward(&mut dz, batch, train.1, c, &mut loss_sum);
            linear_backward(&dz, &xb[..b * f], (c, f), &mut grad_w, &mut grad_b);
            let lr = config.learning_rate
                * 0.5
                * (1.0 + (std::f64::consts::PI * step as f64 / total_steps as f64).cos()) as f32;
            let mu = config.momentum;
            sgd_momentum_step(&mut probe.weights, &mut velocity_w, &grad_w, lr, mu);
            sgd_momentum_step(&mut probe.bias, &mut velocity_b, &grad_b, lr, mu);
            step += 1;
        }
        train_loss_per_epoch.push(loss_sum / n as f64);
        val_top1_per_epoch.push(probe.top1_checked(val.0, val.1));
    }
    let best_val_top1 = val_top1_per_epoch.iter().fold(0.0f64, |m, &v| m.max(v));
    Ok(LinearProbeReport {
        train_top1: probe.top1_checked(train.0, train.1),
        val_top1: probe.top1_checked(val.0, val.1),
        probe,
        val_top1_per_epoch,
        best_val_top1,
        train_loss_per_epoch,
    })
}

/// Logits `z` (`[B, C]`, rows of the training images `batch`) become dL/dZ = (softmax(z) - Y) / B
/// in place; each row's cross-entropy is added to `loss_sum`.
fn cross_entropy_backward(
    z: &mut [f32],
    batch: &[usize],
    labels: &[usize],
    c: usize,
    loss_sum: &mut f64,
) {
    let b = batch.len();
    for (row, &i) in z.chunks_mut(c).zip(batch) {
        let label = labels[i];
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let sum: f64 = row.iter().map(|&v| ((v - max) as f64).exp()).sum();
        *loss_sum += sum.ln() - (row[label] - max) as f64;
        for (j, v) in row.iter_mut().enumerate() {
            let p = ((*v - max) as f64).exp() / sum;
            *v = ((p - (j == label) as u8 as f64) / b as f64) as f32;
        }
    }
}

/// dW = dZ^T Xb (`[C, B] x [B, F]`, one SGEMM with dZ read transposed) and db = the column sums
/// of dZ.
fn linear_backward(
    dz: &[f32],
    xb: &[f32],
    (c, f): (usize, usize),
    grad_w: &mut [f32],
    grad_b: &mut [f32],
) {
    let b = xb.len() / f;
    sgemm(
        c,
        b,
        f,
        1.0,
        dz,
        Layout::col_major(c),
        xb,
        Layout::row_major(f),
        0.0,
        grad_w,
        Layout::row_major(f),
    );
    for (j, g) in grad_b.iter_mut().enumerate() {
        *g = dz.chunks(c).map(|row| row[j]).sum();
    }
}

/// The project's SGD with momentum, in PyTorch's form (no weight decay): v <- mu v + g, w <- w - lr v,
/// with v = 0 before the first step (so v = g then). The linear probe is its only user.
pub fn sgd_momentum_step(w: &mut [f32], v: &mut [f32], g: &[f32], lr: f32, mu: f32) {
    for ((w, v), g) in w.iter_mut().zip(v.iter_mut()).zip(g) {
        *v = mu * *v + g;
        *w -= lr * *v;
    }
}

#[cfg(test)]
mod tests {
    use super::sgd_momentum_step;

    #[test]
    fn sgd_momentum_matches_pytorch() {
        // torch.optim.SGD([w], lr=0.1, momentum=0.9) on w = (1, 1), gradients (1, 2) then (1, 0).
        let (mut w, mut v) = (vec![1.0f32, 1.0], vec![0.0f32; 2]);
        sgd_momentum_step(&mut w, &mut v, &[1.0, 2.0], 0.1, 0.9);
        assert_eq!(w, vec![0.9, 0.8]); // v = g
        sgd_momentum_step(&mut w, &mut v, &[1.0, 0.0], 0.1, 0.9);
        // v = 0.9 v + g = (1.9, 1.8); w = (0.71, 0.62) to f32 rounding
        assert_eq!(v, vec![1.9, 1.8]);
        assert!(
            (w[0] - 0.71).abs() < 1e-6 && (w[1] - 0.62).abs() < 1e-6,
            "{w:?}"
        );
    }
}
