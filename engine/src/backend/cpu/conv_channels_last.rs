//! conv2d on channels-last images (docs/conv.md, "Channels last"): x [N, H, W, C] and y
//! [N, oh, ow, O], the weight in PyTorch's [O, C, kh, kw] (permuted here to Wp [O, kh kw C], the
//! tap-major order of the column matrix). Per group of G images, with cols [G P, K] the rows of
//! the group's output pixels (kernels::cpu::conv::channels_last) and Y, dY the group's [G P, O]
//! slices of y and dy, as they lie in memory:
//!   Y = cols Wp^T + b;   dWp += dY^T cols;   dcols = dY Wp, dx = col2im(dcols);   db = sum dY.
//! No permute of x, y or dy: the GEMMs read and write them in place. Groups are sized from the
//! shapes alone, as for NCHW (backend/cpu/conv.rs), so results do not depend on the thread count.

use super::conv::group_size;
use super::{storage, CpuKernels};
use crate::kernels::conv::Conv2dGeometry;
use crate::kernels::cpu::conv::channels_last::{col2im, im2col};
use crate::kernels::gemm::MatrixLayout as Mat;
use crate::storage::Storage;
use crate::{Result, Tensor};

/// [O, C, kh, kw] -> [O, kh, kw, C] (`back`: the inverse).
fn permute_weight<T: Copy>(w: &[T], g: &Conv2dGeometry, back: bool) -> Vec<T> {
    let (c, taps) = (g.channels, g.kernel_h * g.kernel_w);
    let mut out = w.to_vec();
    for (src, dst) in w.chunks(c * taps).zip(out.chunks_mut(c * taps)) {
        for ch in 0..c {
            for t in 0..taps {
                let (nchw, nhwc) = (ch * taps + t, t * c + ch);
                if back {
                    dst[nchw] = src[nhwc];
                } else {
                    dst[nhwc] = src[nchw];
                }
            }
        }
    }
    out
}

/// y [N, oh, ow, O] = cols Wp^T + b, a group of images per GEMM.
pub(crate) fn conv2d_channels_last_forward<T: CpuKernels>(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    geom: Conv2dGeometry,
) -> Result<Storage> {
    forward_in_groups::<T>(x, weight, bias, geom, group_size(&geom))
}

/// [`conv2d_channels_last_forward`] with `group` images per GEMM.
fn forward_in_groups<T: CpuKernels>(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    geom: Conv2dGeometry,
    group: usize,
) -> Result<Storage> {
    let (n, o) = (x.shape()[0], weight.shape()[0]);
    let (k, p) = (geom.col_rows(), geom.col_cols());
    let image_len = geom.channels * geom.height * geom.width;
    let group = group.min(n).max(1);
    let wp = weight.with_contiguous(|ws: &[T]| permute_weight(ws, &geom, false));
    let bias_values = bias.map(|b| b.to_vec::<T>()).transpose()?;
    let mut y = T::alloc(n * p * o);
    let mut cols = T::alloc(group * p * k);
    x.with_contiguous(|xs: &[T]| {
        for (imgs, yg) in xs
            .chunks(image_len * group)
            .zip(y.chunks_mut(p * o * group))
        {
            let gp = imgs.len() / image_len * p;
            let cols = &mut cols[..gp * k];
            im2col(&geom, imgs, cols);
            let (rm_k, rm_o, cm_k) = (Mat::row_major(k), Mat::row_major(o), Mat::col_major(k));
            let bias = bias_values.as_deref();
            T::gemm_bias((gp, k, o), (cols, rm_k), (&wp, cm_k), (yg, rm_o), bias);
        }
    });
    T::recycle(cols);
    Ok(storage(y))
}

/// [dx (only `need_x`), dW, db (only `with_bias`)]; the column matrix is recomputed per group.
pub(crate) fn conv2d_channels_last_backward<T: CpuKernels>(
    x: &Tensor,
    weight: &Tensor,
    dy: &Tensor,
    geom: Conv2dGeometry,
    needs: (bool, bool),
) -> (Option<Storage>, Storage, Option<Storage>) {
    backward_in_groups::<T>(x, weight, dy, geom, needs, group_size(&geom))
}

/// [`conv2d_channels_last_backward`] with `group` images per GEMM.
fn backward_in_groups<T: CpuKernels>(
    x: &Tensor,
    weight: &Tensor,
    dy: &Tensor,
    geom: Conv2dGeometry,
    (need_x, with_bias): (bool, bool),
    group: usize,
) -> (Option<Storage>, Storage, Option<Storage>) {
    let (n, o) = (x.shape()[0], weight.shape()[0]);
    let (k, p) = (geom.col_rows(), geom.col_cols());
    let image_len = geom.channels * geom.height * geom.width;
    let group = group.min(n).max(1);
    // Wp is needed only for dcols.
    let wp = need_x.then(|| weight.with_contiguous(|ws: &[T]| permute_weight(ws, &geom, false)));
    let mut dx = need_x.then(|| T::alloc(n * image_len));
    let mut dwp = T::alloc_zeroed(o * k);
    let mut db = vec![T::ZERO; o];
    let mut cols = T::alloc(group * p * k);
    let mut dcols = T::alloc(if need_x { group * p * k } else { 0 });
    x.with_contiguous(|xs: &[T]| {
        dy.with_contiguous(|gs: &[T]| {
            let groups = xs.chunks(image_len * group).zip(gs.chunks(p * o * group));
            for (i, (imgs, dyg)) in groups.enumerate() {
                let gp = imgs.len() / image_len * p;
                let cols = &mut cols[..gp * k];
                im2col(&geom, imgs, cols);
                let (rm_k, rm_o) = (Mat::row_major(k), Mat::row_major(o));
                // dWp [O, K] += dY^T [O, G P] cols [G P, K]
                let dyt = Mat::col_major(o);
                T::gemm(
                    o,
                    gp,
                    k,
                    T::ONE,
                    dyg,
                    dyt,
                    cols,
                    rm_k,
                    T::ONE,
                    &mut dwp,
                    rm_k,
                );
                if let (Some(dx), Some(wp)) = (dx.as_mut(), wp.as_ref()) {
                    // dcols [G P, K] = dY [G P, O] Wp [O, K]
                    let dcols = &mut dcols[..gp * k];
                    T::gemm(gp, o, k, T::ONE, dyg, rm_o, wp, rm_k, T::ZERO, dcols, rm_k);
                    let start = i * group * image_len;
                    col2im(&geom, dcols, &mut dx[start..start + imgs.len()]);
                }
                // db in image order, as for NCHW: the pixels' rows of dY, in order
                if with_bias {
                    for row in dyg.chunks(o) {
                        db.iter_mut().zip(row).for_each(|(d, &v)| *d += v);
                    }
                }
            }
        })
    });
    T::recycle(cols);
    T::recycle(dcols);
    let dw = permute_weight(&dwp, &geom, true);
    T::recycle(dwp);
    (dx.map(storage), storage(dw), with_bias.then(|| storage(db)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::{conv2d_backward, conv2d_forward};
    use crate::{DType, Rng};

    fn values(s: Storage) -> Vec<f32> {
        let n = s.len();
        Tensor::from_storage(s, &[n]).to_vec::<f32>().unwrap()
    }

    /// The channels-last conv equals the NCHW one on permuted tensors, with any grouping of the
    /// images: y, dx and dW to f32 rounding (y's dot products run over K in tap-major instead of
    /// channel-major order, dx inherits it through dcols, dW's sums are associated by group), db
    /// bit for bit (the same terms in the same order). Without `need_x`, no dx and the same dW.
    /// Awkward sizes; groups of 1, 4 (the last one cut short) and all 6 images.
    #[test]
    fn equals_the_nchw_conv_on_permuted_tensors() {
        let mut rng = Rng::new(9);
        for (c, h, w, o, stride, pad, bias) in [
            (3, 9, 7, 5, 2, 1, true),
            (7, 5, 6, 4, 1, 1, false),
            (2, 4, 4, 3, 2, 0, true),
        ] {
            let geom = Conv2dGeometry {
                channels: c,
                height: h,
                width: w,
                kernel_h: 3,
                kernel_w: 3,
                stride_h: stride,
                stride_w: stride,
                pad_h: pad,
                pad_w: pad,
            };
            let n = 6;
            let (oh, ow) = (geom.out_h(), geom.out_w());
            let x = rng.uniform(&[n, c, h, w], -1.0, 1.0, DType::F32);
            let wt = rng.uniform(&[o, c, 3, 3], -1.0, 1.0, DType::F32);
            let b = rng.uniform(&[o], -1.0, 1.0, DType::F32);
            let dy = rng.uniform(&[n, o, oh, ow], -1.0, 1.0, DType::F32);
            let bias = bias.then_some(&b);
            let want_y = values(conv2d_forward::<f32>(&x, &wt, bias, geom).unwrap());
            let (want_dx, want_dw, want_db) =
                conv2d_backward::<f32>(&x, &wt, &dy, geom, bias.is_some());
            let (want_dx, want_dw) = (values(want_dx), values(want_dw));
            let want_db = want_db.map(values);
            let last = |t: &Tensor| t.permute(&[0, 2, 3, 1]).unwrap().contiguous();
            let first = |v: Vec<f32>, s: [usize; 4]| {
                let t = Tensor::from_vec(v, &[s[0], s[2], s[3], s[1]]).unwrap();
                t.permute(&[0, 3, 1, 2]).unwrap().to_vec::<f32>().unwrap()
            };
            let close = |what: &str, got: &[f32], want: &[f32]| {
                assert_eq!(got.len(), want.len(), "{what}");
                for (a, e) in got.iter().zip(want) {
                    assert!(
                        (a - e).abs() <= 1e-5 * (1.0 + e.abs()),
                        "{what}: {a} vs {e}"
                    );
                }
            };
            let (xl, dyl) = (last(&x), last(&dy));
            for group in [1, 4, n] {
                let y = forward_in_groups::<f32>(&xl, &wt, bias, geom, group).unwrap();
                close("y", &first(values(y), [n, o, oh, ow]), &want_y);
                let needs = (true, bias.is_some());
                let (dx, dw, db) = backward_in_groups::<f32>(&xl, &wt, &dyl, geom, needs, group);
                close("dx", &first(values(dx.unwrap()), [n, c, h, w]), &want_dx);
                close("dW", &values(dw), &want_dw);
                assert_eq!(db.map(values), want_db, "db bitwise, group {group}");
                let needs = (false, bias.is_some());
                let (dx, dw2, _) = backward_in_groups::<f32>(&xl, &wt, &dyl, geom, needs, group);
                assert!(dx.is_none(), "dx without need_x");
                close("dW without dx", &values(dw2), &want_dw);
            }
        }
    }
}
