//! The DINO loss with centring and sharpening (docs/dino-loss.md), or with DINOv2's Sinkhorn-Knopp
//! centring of the teacher in place of the running centre ([`Centering::SinkhornKnopp`]).
//!
//! Shapes (B images, K prototypes, V student views of which the first 2 are the global ones,
//! view-major like the batch buffers):
//!   student logits s [V*B, K]  (with gradient),  teacher logits t [2*B, K]  (no gradient).
//!   Pt = softmax((t - c) / τt),  log Ps = log_softmax(s / τs),
//!   L  = 1 / (B * n_pairs) * sum over pairs (i teacher view, j student view, j != i) and images
//!        of  - sum_K Pt_i * log Ps_j,   n_pairs = 2 (V - 1).
//! The pair sum is computed as  sum_i Pt_i . (sum_j log Ps_j)  -  sum_i Pt_i . log Ps_i, which is the
//! same number with two products instead of 2 (V - 1); the autodiff of those ops gives the
//! gradient dL/ds_j = (softmax(s_j / τs) * n_j - sum_{i != j} Pt_i) / (τs B n_pairs), derived in the doc.

use dinonat_engine::{no_grad, DType, EngineError, Result, Tensor};
use serde::{Deserialize, Serialize};

/// How the teacher's logits become its targets Pt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Centering {
    /// DINO: Pt = softmax((t - c) / τt) with the running centre c.
    #[default]
    Center,
    /// DINOv2: exp(t / τt) scaled by 3 Sinkhorn-Knopp iterations so that, over the 2B teacher rows of
    /// the batch, every prototype gets the same total mass and every row sums to 1.
    SinkhornKnopp,
}

/// The loss, its centre c (length K) and the constants of the recipe.
#[derive(Clone, Debug)]
pub struct DinoLoss {
    pub out_dim: usize,
    /// Student views per image (2 global + the locals).
    pub ncrops: usize,
    /// τs (0.1).
    pub student_temp: f64,
    /// m of c <- m c + (1 - m) mean(t) (0.9).
    pub center_momentum: f64,
    /// c, kept in f64 (saved with checkpoints, so a resumed run sees the same centre). Unused by
    /// Sinkhorn-Knopp.
    pub center: Vec<f64>,
    pub centering: Centering,
    /// c on the GPU (f32 [K]) once the teacher runs there: updated in place by
    /// [`DinoLoss::update_center`], read by [`DinoLoss::center_values`]; `center` is then stale.
    pub(crate) device_center: Option<Tensor>,
}

/// The loss tensor (backward reaches the student) and the diagnostics of the paper.
#[derive(Clone, Debug)]
pub struct LossOutput {
    pub loss: Tensor,
    /// Mean over teacher rows of H(Pt) = - sum_K Pt log Pt (collapse: -> 0 or -> ln K).
    pub teacher_entropy: f64,
    /// Mean over pairs of KL(Pt_i || Ps_j) = loss - teacher_entropy.
    pub kl: f64,
}

impl DinoLoss {
    /// τs 0.1, centre momentum 0.9, c = 0.
    pub fn new(out_dim: usize, ncrops: usize) -> DinoLoss {
        DinoLoss {
            out_dim,
            ncrops,
            student_temp: 0.1,
            center_momentum: 0.9,
            center: vec![0.0; out_dim],
            centering: Centering::Center,
            device_center: None,
        }
    }

    /// Pt [2B, K] without gradient: softmax((t - c) / τt), or Sinkhorn-Knopp's targets.
    pub fn teacher_probs(&self, teacher: &Tensor, teacher_temp: f64) -> Result<Tensor> {
        let _guard = no_grad();
        if self.centering == Centering::SinkhornKnopp {
            let rows = teacher.shape()[0];
            let q = sinkhorn_knopp(&teacher.to_vec_f64(), rows, self.out_dim, teacher_temp, 3);
            return Ok(Tensor::from_slice(&q, &[rows, self.out_dim])?.to_dtype(teacher.dtype()));
        }
        let c = match &self.device_center {
            Some(c) if teacher.is_cuda() => c.reshape(&[1, self.out_dim])?,
            _ => self.center_tensor(teacher.dtype())?.to(teacher.device())?,
        };
        teacher
            .detach()
            .sub(&c)?
            .mul_scalar(1.0 / teacher_temp)?
            .softmax()
    }

    fn center_tensor(&self, dtype: DType) -> Result<Tensor> {
        Ok(Tensor::from_slice(&self.center, &[1, self.out_dim])?.to_dtype(dtype))
    }

    fn check(&self, student: &Tensor, teacher: &Tensor) -> Result<usize> {
        let k = self.out_dim;
        let bad = |what: String| EngineError::InvalidArgument {
            op: "DinoLoss::forward",
            shape: student.shape().to_vec(),
            message: what,
        };
        if self.ncrops < 2 {
            return Err(bad(format!("needs at least 2 views, got {}", self.ncrops)));
        }
        if teacher.rank() != 2 || teacher.shape()[1] != k || !teacher.shape()[0].is_multiple_of(2) {
            return Err(bad(format!(
                "teacher logits must be [2*B, {k}], got {:?}",
                teacher.shape()
            )));
        }
        let b = teacher.shape()[0] / 2;
        if student.shape() != [self.ncrops * b, k] {
            return Err(bad(format!(
                "student logits must be [{} views * {b}, {k}]",
                self.ncrops
            )));
        }
        Ok(b)
    }

    /// The loss for one batch and its diagnostics. The centre is not changed (see
    /// [`DinoLoss::update_center`]).
    pub fn forward(
        &self,
        student: &Tensor,
        teacher: &Tensor,
        teacher_temp: f64,
    ) -> Result<LossOutput> {
        self.check(student, teacher)?;
        let pt = self.teacher_probs(teacher, teacher_temp)?; // [2B, K]
        self.forward_with_targets(student, &pt)
    }

    /// The loss against given teacher targets Pt [2B, K] (rows sum to 1), e.g. Sinkhorn-Knopp's over
    /// the global batch of a data-parallel run.
    pub fn forward_with_targets(&self, student: &Tensor, pt: &Tensor) -> Result<LossOutput> {
        let b = self.check(student, pt)?;
        let k = self.out_dim;
        let pairs = 2 * (self.ncrops - 1);
        let log_ps = student.mul_scalar(1.0 / self.student_temp)?.log_softmax()?; // [V B, K]
                                                                                  // sum_j log Ps_j per image: [B, K]
        let sum_views = log_ps.reshape(&[self.ncrops, b, k])?.sum(0, false)?;
        let pt_sum = {
            let _guard = no_grad();
            pt.reshape(&[2, b, k])?.sum(0, false)?
        };
        let all_pairs = pt_sum.mul(&sum_views)?.sum_all()?;
        let same_view = pt.mul(&log_ps.narrow(0, 0, 2 * b)?)?.sum_all()?;
        let loss = same_view
            .sub(&all_pairs)?
            .mul_scalar(1.0 / (b * pairs) as f64)?;
        let teacher_entropy = mean_entropy(&pt.to_vec_f64(), k);
        let kl = loss.item()? - teacher_entropy;
        Ok(LossOutput {
            loss,
            teacher_entropy,
            kl,
        })
    }

    /// c <- m c + (1 - m) * (mean over the rows of the teacher's raw logits t [2B, K]). Sinkhorn-Knopp
    /// keeps no centre: c stays as it is (and the logits are not read back).
    pub fn update_center(&mut self, teacher: &Tensor) -> Result<()> {
        let k = self.out_dim;
        if teacher.rank() != 2 || teacher.shape()[1] != k || teacher.shape()[0] == 0 {
            return Err(EngineError::InvalidArgument {
                op: "DinoLoss::update_center",
                shape: teacher.shape().to_vec(),
                message: format!("teacher logits must be [rows, {k}]"),
            });
        }
        if self.centering == Centering::SinkhornKnopp {
            return Ok(());
        }
        if teacher.is_cuda() {
            // on the GPU: column sums, scale and EMA on the device, nothing read back
            if self.device_center.is_none() {
                let c = Tensor::from_slice(&self.center, &[k])?.try_to_dtype(DType::F32)?;
                self.device_center = Some(c.to(teacher.device())?);
            }
            let c = self.device_center.as_ref().expect("set above");
            return c.cuda_center_update(&teacher.detach(), self.center_momentum);
        }
        let rows = teacher.shape()[0];
        self.update_center_from_sums(&row_sums(teacher, k), rows);
        Ok(())
    }

    /// c <- m c + (1 - m) * sums / rows: the centre update from the column sums of `rows` teacher
    /// rows (a data-parallel run adds up every rank's sums first, so the mean is the global batch's).
    pub fn update_center_from_sums(&mut self, sums: &[f64], rows: usize) {
        if self.centering == Centering::SinkhornKnopp {
            return;
        }
        let m = self.center_momentum;
        for (c, s) in self.center.iter_mut().zip(sums) {
            *c = m * *c + (1.0 - m) * (s / rows as f64);
        }
    }
}

/// The sum over rows of the teacher's logits t [rows, k], per prototype (f64).
pub fn row_sums(teacher: &Tensor, k: usize) -> Vec<f64> {
    let t = teacher.to_vec_f64();
    let mut sums = vec![0.0; k];
    for row in t.chunks_exact(k) {
        for (m, x) in sums.iter_mut().zip(row) {
            *m += x;
        }
    }
    sums
}

impl DinoLoss {
    /// c as f64 values: `center`, or the GPU's copy read back when the teacher runs there (for
    /// checkpoints).
    pub fn center_values(&self) -> Result<Vec<f64>> {
        match &self.device_center {
            Some(c) => Ok(c.to(dinonat_engine::Device::Cpu)?.to_vec_f64()),
            None => Ok(self.center.clone()),
        }
    }
}

/// DINOv2's `sinkhorn_knopp_teacher` on logits t [rows, k] (f64): Q = exp(t / τt), normalised to
/// total mass 1, then `iters` times: every column (prototype) scaled to mass 1/k, every row to mass
/// 1/rows; finally scaled by rows, so each row is a distribution. The largest logit is subtracted
/// first (Q is scale-free before the first normalisation), so exp cannot overflow.
pub fn sinkhorn_knopp(
    t: &[f64],
    rows: usize,
    k: usize,
    teacher_temp: f64,
    iters: usize,
) -> Vec<f64> {
    let max = t.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut q: Vec<f64> = t
        .iter()
        .map(|&x| ((x - max) / teacher_temp).exp())
        .collect();
    let total: f64 = q.iter().sum();
    q.iter_mut().for_each(|x| *x /= total);
    for _ in 0..iters {
        let mut cols = vec![0.0; k];
        for row in q.chunks_exact(k) {
            for (c, x) in cols.iter_mut().zip(row) {
                *c += x;
            }
        }
        for row in q.chunks_exact_mut(k) {
            for (x, c) in row.iter_mut().zip(&cols) {
                // a prototype no row gives any mass keeps none (0 / 0 would be NaN)
                *x = if *c > 0.0 { *x / (c * k as f64) } else { 0.0 };
            }
        }
        for row in q.chunks_exact_mut(k) {
            let s: f64 = row.iter().sum();
            if s > 0.0 {
                row.iter_mut().for_each(|x| *x /= s * rows as f64);
            } else {
                // every logit of the row underflowed: no preference, the uniform row
                row.iter_mut().for_each(|x| *x = 1.0 / (k * rows) as f64);
            }
        }
    }
    q.iter_mut().for_each(|x| *x *= rows as f64);
    q
}

/// Mean over rows of - sum p log p (0 log 0 = 0).
pub fn mean_entropy(p: &[f64], k: usize) -> f64 {
    let rows = p.len() / k.max(1);
    let total: f64 = p
        .chunks_exact(k)
        .map(|row| {
            -row.iter()
                .filter(|&&x| x > 0.0)
                .map(|&x| x * x.ln())
                .sum::<f64>()
        })
        .sum();
    total / rows.max(1) as f64
}
