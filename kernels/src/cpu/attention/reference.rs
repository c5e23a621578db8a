//! Plain full self-attention: materialises the N x N probabilities of one (batch, head) at a time.
//! Generic over [`Float`] (f64 gradient checks). Math: docs/attention.md.

#![allow(clippy::needless_range_loop)] // plain index loops read like the equations

use super::{Attention, HeadsGradsMut, HeadsRef};
use crate::Float;

/// P = softmax(s Q K^T) per (batch, head), `[N][N]`.
fn probabilities<T: Float>(
    p: &Attention,
    q: &HeadsRef<T>,
    k: &HeadsRef<T>,
    b: usize,
    h: usize,
) -> (Vec<T>, Vec<T>) {
    let (n, d) = (p.tokens, p.head_dim);
    let s = T::from_f64(p.scale);
    let mut pr = vec![T::ZERO; n * n];
    let mut lse = vec![T::ZERO; n];
    for i in 0..n {
        let qi = q.view.at(b, 0, i, h);
        let row = &mut pr[i * n..][..n];
        let mut m = T::NEG_INFINITY;
        for j in 0..n {
            let kj = k.view.at(b, 0, j, h);
            let mut dot = T::ZERO;
            for e in 0..d {
                dot += q.data[qi + e] * k.data[kj + e];
            }
            row[j] = s * dot;
            m = m.max(row[j]);
        }
        let mut sum = T::ZERO;
        for x in row.iter_mut() {
            *x = (*x - m).exp();
            sum += *x;
        }
        for x in row.iter_mut() {
            *x /= sum;
        }
        lse[i] = m + sum.ln();
    }
    (pr, lse)
}

/// O = softmax(s Q K^T) V; writes `out` `[B, N, heads, d]` and `lse` `[B, heads, N]`.
pub fn attention_forward_reference<T: Float>(
    p: &Attention,
    q: HeadsRef<T>,
    k: HeadsRef<T>,
    v: HeadsRef<T>,
    out: &mut [T],
    lse: &mut [T],
) {
    p.assert_inputs(&q, &k, &v);
    assert_eq!(out.len(), p.out_len(), "attention: out length, {p:?}");
    assert_eq!(lse.len(), p.lse_len(), "attention: lse length, {p:?}");
    let (n, d) = (p.tokens, p.head_dim);
    let ov = p.out_view();
    for b in 0..p.batch {
        for h in 0..p.heads {
            let (pr, l) = probabilities(p, &q, &k, b, h);
            lse[(b * p.heads + h) * n..][..n].copy_from_slice(&l);
            for i in 0..n {
                let o = &mut out[ov.at(b, 0, i, h)..][..d];
                o.fill(T::ZERO);
                for j in 0..n {
                    let vj = v.view.at(b, 0, j, h);
                    for e in 0..d {
                        o[e] += pr[i * n + j] * v.data[vj + e];
                    }
                }
            }
        }
    }
}

/// Gradients of [`attention_forward_reference`]: dP = dO V^T, dS = P (dP - rowsum(dO * O)),
/// dQ = s dS K, dK = s dS^T Q, dV = P^T dO. `out` and `lse` are accepted for the same signature as
/// the fast version; P is recomputed exactly here.
pub fn attention_backward_reference<T: Float>(
    p: &Attention,
    q: HeadsRef<T>,
    k: HeadsRef<T>,
    v: HeadsRef<T>,
    out: &[T],
    lse: &[T],
    d_out: &[T],
    grads: HeadsGradsMut<T>,
) {
    p.assert_inputs(&q, &k, &v);
    assert_eq!(out.len(), p.out_len(), "attention: out length, {p:?}");
    assert_eq!(lse.len(), p.lse_len(), "attention: lse length, {p:?}");
    assert_eq!(d_out.len(), p.out_len(), "attention: d_out length, {p:?}");
    grads.assert_disjoint(p.dims());
    let (n, d) = (p.tokens, p.head_dim);
    let s = T::from_f64(p.scale);
    let ov = p.out_view();
    let HeadsGradsMut {
        data: g,
        dq,
        dk,
        dv,
    } = grads;
    for b in 0..p.batch {
        for h in 0..p.heads {
            let (pr, _) = probabilities(p, &q, &k, b, h);
            for t in 0..n {
                for view in [dq, dk, dv] {
                    g[view.at(b, 0, t, h)..][..d].fill(T::ZERO);
                }
            }
            for i in 0..n {
                let go = &d_out[ov.at(b, 0, i, h)..][..d];
                let o = &out[ov.at(b, 0, i, h)..][..d];
                let mut big_d = T::ZERO;
                for e in 0..d {
                    big_d += go[e] * o[e];
                }
                let qi = q.view.at(b, 0, i, h);
                let dqi = dq.at(b, 0, i, h);
                for j in 0..n {
                    let (kj, vj) = (k.view.at(b, 0, j, h), v.view.at(b, 0, j, h));
                    let mut dp = T::ZERO;
                    for e in 0..d {
                        dp += go[e] * v.data[vj + e];
                    }
                    let pij = pr[i * n + j];
                    let ds = pij * (dp - big_d);
                    let (dkj, dvj) = (dk.at(b, 0, j, h), dv.at(b, 0, j, h));
                    for e in 0..d {
                        g[dqi + e] += s * ds * k.data[kj + e];
                        g[dkj + e] += s * ds * q.data[qi + e];
                        g[dvj + e] += pij * go[e];
                    }
                }
            }
        }
    }
}
