//! The KoLeo regulariser (Sablayrolles et al., ICLR 2019; DINOv2 adds it to the DINO loss): a
//! differential-entropy estimate that spreads the features of a batch over the sphere, against the
//! collapse of short DINO runs (docs/dino-loss.md, "KoLeo").
//!
//! For n rows x_i, l2-normalised to y_i, with j(i) the nearest other row (largest y_i . y_j, chosen
//! without gradient, as DINOv2 does):
//!   d_i = sqrt(|y_i - y_j(i)|^2 + eps_sqrt),   L = - 1/n sum_i log(d_i + eps_log).
//! Gradient: dL/dy_i = - (1/n) (y_i - y_j(i)) / ((d_i + eps_log) d_i), and y_j(i) receives the negative
//! of it; the normalisation then projects each onto the tangent space of its row (l2_normalize's
//! backward). Minimising L pushes every row away from its nearest neighbour.

use dinonat_engine::{no_grad, EngineError, Result, Tensor};

/// Added under the square root, so that two identical rows give a finite gradient.
const EPS_SQRT: f64 = 1e-12;
/// Added to the distance inside the log (DINOv2's eps).
const EPS_LOG: f64 = 1e-8;

/// The nearest other row of each row of the unit rows `y` [n, F] (by largest dot product; the
/// first on ties).
pub fn nearest_rows(y: &Tensor) -> Result<Vec<usize>> {
    let _guard = no_grad();
    let (n, f) = (y.shape()[0], y.shape()[1]);
    let v = y.detach().to_vec_f64();
    Ok((0..n)
        .map(|i| {
            let row = &v[i * f..(i + 1) * f];
            let mut best = (f64::NEG_INFINITY, if i == 0 { 1 } else { 0 });
            for j in (0..n).filter(|&j| j != i) {
                let dot: f64 = row
                    .iter()
                    .zip(&v[j * f..(j + 1) * f])
                    .map(|(a, b)| a * b)
                    .sum();
                if dot > best.0 {
                    best = (dot, j);
                }
            }
            best.1
        })
        .collect())
}

/// L of the rows of `x` [n, F]: a scalar tensor with gradient to `x`. Needs n >= 2 (one row has
/// no neighbour).
pub fn koleo_loss(x: &Tensor) -> Result<Tensor> {
    let shape = x.shape().to_vec();
    if shape.len() != 2 || shape[0] < 2 || shape[1] == 0 {
        return Err(EngineError::InvalidArgument {
            op: "koleo_loss",
            shape,
            message: "needs [n >= 2, features >= 1]".into(),
        });
    }
    let y = x.l2_normalize(1e-12)?;
    let nearest = nearest_rows(&y)?;
    let diff = y.sub(&y.index_select(0, &nearest)?)?;
    let d = diff
        .mul(&diff)?
        .sum(1, false)?
        .add_scalar(EPS_SQRT)?
        .sqrt()?;
    d.add_scalar(EPS_LOG)?.log()?.mean_all()?.neg()
}
