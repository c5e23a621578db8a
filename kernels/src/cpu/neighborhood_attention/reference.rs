//! The plain 2-D neighborhood attention every fast kernel is tested against: loops over
//! (batch, head, query, window slot), one query at a time, generic over [`Float`] so f64 gradient
//! checks run through the same definition. Math: docs/neighborhood-attention.md.
//!
//! Backward scatters into dK, dV and d(rpb) query by query (the fast backward gathers instead, over
//! the inverse neighbourhood), so the two are independent derivations of the same sums.

#![allow(clippy::needless_range_loop)] // plain index loops read like the equations
use super::{scale_as, HeadsGradsMut, HeadsRef, Na2d};
use crate::Float;

/// O = softmax(s * Q K^T + rpb) V over each query's window; writes `out` `[B, H, W, heads, d]` and
/// the probabilities `attn` `[B, heads, H, W, kh*kw]` (unused slots 0).
pub fn neighborhood_attention_2d_forward_reference<T: Float>(
    p: &Na2d,
    q: HeadsRef<T>,
    k: HeadsRef<T>,
    v: HeadsRef<T>,
    rpb: Option<&[T]>,
    out: &mut [T],
    attn: &mut [T],
) {
    p.assert_inputs(&q, &k, &v, rpb);
    assert_eq!(
        out.len(),
        p.out_len(),
        "neighborhood attention: out length, {p:?}"
    );
    assert_eq!(
        attn.len(),
        p.attn_len(),
        "neighborhood attention: attn length, {p:?}"
    );
    let (d, kw, slots) = (p.head_dim, p.kernel_size[1], p.window_slots());
    let [_, bias_cols] = p.rpb_dims();
    let s = scale_as::<T>(p);
    let out_view = super::HeadsView::contiguous(p.height, p.width, p.heads, d);
    let mut logits = vec![T::ZERO; slots];
    let mut arow = vec![T::ZERO; slots];
    for b in 0..p.batch {
        for h in 0..p.heads {
            for i in 0..p.height {
                let rw = p.row_window(i);
                for j in 0..p.width {
                    let cw = p.col_window(j);
                    let qi = q.view.at(b, i, j, h);
                    let mut m = T::NEG_INFINITY;
                    for tr in 0..rw.size {
                        let a = rw.first + tr * rw.step;
                        for tc in 0..cw.size {
                            let c = cw.first + tc * cw.step;
                            let ki = k.view.at(b, a, c, h);
                            let mut dot = T::ZERO;
                            for e in 0..d {
                                dot += q.data[qi + e] * k.data[ki + e];
                            }
                            let mut x = s * dot;
                            if let Some(t) = rpb {
                                let r = (h * (2 * p.kernel_size[0] - 1) + rw.bias_first + tr)
                                    * bias_cols
                                    + cw.bias_first
                                    + tc;
                                x += t[r];
                            }
                            logits[tr * kw + tc] = x;
                            m = m.max(x);
                        }
                    }
                    let mut sum = T::ZERO;
                    for tr in 0..rw.size {
                        for tc in 0..cw.size {
                            let e = (logits[tr * kw + tc] - m).exp();
                            logits[tr * kw + tc] = e;
                            sum += e;
                        }
                    }
                    arow.fill(T::ZERO);
                    let o = &mut out[out_view.at(b, i, j, h)..][..d];
                    o.fill(T::ZERO);
                    for tr in 0..rw.size {
                        let a = rw.first + tr * rw.step;
                        for tc in 0..cw.size {
                            let c = cw.first + tc * cw.step;
                            let w = logits[tr * kw + tc] / sum;
                            arow[tr * kw + tc] = w;
                            let vi = v.view.at(b, a, c, h);
                            for e in 0..d {
                                o[e] += w * v.data[vi + e];
                            }
                        }
                    }
                    for (n, &x) in arow.iter().enumerate() {
                        attn[p.attn_index(b, h, n, i, j)] = x;
                    }
                }
            }
        }
    }
}

/// Gradients of [`neighborhood_attention_2d_forward_reference`] from the saved `attn` and `d_out`
/// (layout of `out`): dQ, dK, dV written through `grads`' views, d(rpb) written if given.
pub fn neighborhood_attention_2d_backward_reference<T: Float>(
    p: &Na2d,
    q: HeadsRef<T>,
    k: HeadsRef<T>,
    v: HeadsRef<T>,
    attn: &[T],
    d_out: &[T],
    grads: HeadsGradsMut<T>,
    d_rpb: Option<&mut [T]>,
) {
    p.assert_inputs(&q, &k, &v, None);
    assert_eq!(
        attn.len(),
        p.attn_len(),
        "neighborhood attention: attn length, {p:?}"
    );
    assert_eq!(
        d_out.len(),
        p.out_len(),
        "neighborhood attention: d_out length, {p:?}"
    );
    let dims = p.dims();
    grads.assert_disjoint(dims);
    let (d, kw, slots) = (p.head_dim, p.kernel_size[1], p.window_slots());
    let [bias_rows, bias_cols] = p.rpb_dims();
    let s = scale_as::<T>(p);
    let out_view = super::HeadsView::contiguous(p.height, p.width, p.heads, d);
    let HeadsGradsMut {
        data: g,
        dq,
        dk,
        dv,
    } = grads;
    for b in 0..p.batch {
        for i in 0..p.height {
            for j in 0..p.width {
                for h in 0..p.heads {
                    for view in [dq, dk, dv] {
                        g[view.at(b, i, j, h)..][..d].fill(T::ZERO);
                    }
                }
            }
        }
    }
    let mut d_rpb = d_rpb;
    if let Some(t) = d_rpb.as_deref_mut() {
        assert_eq!(
            t.len(),
            p.rpb_len(),
            "neighborhood attention: d_rpb length, {p:?}"
        );
        t.fill(T::ZERO);
    }
    let mut ds = vec![T::ZERO; slots];
    let mut arow = vec![T::ZERO; slots];
    for b in 0..p.batch {
        for h in 0..p.heads {
            for i in 0..p.height {
                let rw = p.row_window(i);
                for j in 0..p.width {
                    let cw = p.col_window(j);
                    for (n, x) in arow.iter_mut().enumerate() {
                        *x = attn[p.attn_index(b, h, n, i, j)];
                    }
                    let go = &d_out[out_view.at(b, i, j, h)..][..d];
                    // dA[n] = <dO, V[n]>;  D = sum_n A[n] dA[n];  dS = A (dA - D).
                    let mut big_d = T::ZERO;
                    for tr in 0..rw.size {
                        for tc in 0..cw.size {
                            let vi =
                                v.view
                                    .at(b, rw.first + tr * rw.step, cw.first + tc * cw.step, h);
                            let mut da = T::ZERO;
                            for e in 0..d {
                                da += go[e] * v.data[vi + e];
                            }
                            ds[tr * kw + tc] = da;
                            big_d += arow[tr * kw + tc] * da;
                        }
                    }
                    let qi = q.view.at(b, i, j, h);
                    let dqi = dq.at(b, i, j, h);
                    for tr in 0..rw.size {
                        let a = rw.first + tr * rw.step;
                        for tc in 0..cw.size {
                            let c = cw.first + tc * cw.step;
                            let n = tr * kw + tc;
                            let dsn = arow[n] * (ds[n] - big_d);
                            let (ki, dki, dvi) =
                                (k.view.at(b, a, c, h), dk.at(b, a, c, h), dv.at(b, a, c, h));
                            for e in 0..d {
                                g[dqi + e] += s * dsn * k.data[ki + e];
                                g[dki + e] += s * dsn * q.data[qi + e];
                                g[dvi + e] += arow[n] * go[e];
                            }
                            if let Some(t) = d_rpb.as_deref_mut() {
                                t[(h * bias_rows + rw.bias_first + tr) * bias_cols
                                    + cw.bias_first
                                    + tc] += dsn;
                            }
                        }
                    }
                }
            }
        }
    }
}
