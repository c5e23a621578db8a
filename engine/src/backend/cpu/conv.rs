//! conv2d on the CPU as im2col + GEMM over groups of images (docs/conv.md): the images of a
//! group become one column matrix cols [K = C kh kw, G P] (P = oh ow, image i in columns
//! i P .. (i + 1) P), so each GEMM is G P columns wide instead of P (4 at the last downsampler of
//! a 64 px NAT, where a GEMM per image spends its time packing). Groups are sized from the
//! shapes alone (cols of at most [`COLS_BUDGET`] elements), so results do not depend on the
//! thread count. Per group, with Y and dY as [O, G P]:
//!   Y = W cols + b;   dW += dY cols^T;   dcols = W^T dY, dx = col2im(dcols);   db = sum of dy.
//! y and dy are [N, O, P] in memory: each group is permuted to and from [O, G P].

use super::{storage, CpuKernels};
use crate::kernels::conv::Conv2dGeometry;
use crate::kernels::gemm::MatrixLayout as Mat;
use crate::storage::Storage;
use crate::{Result, Tensor};

/// Elements of one group's column matrix (16 MiB of f32); a group holds at least one image.
const COLS_BUDGET: usize = 1 << 22;

/// Images per group for this geometry.
pub(super) fn group_size(geom: &Conv2dGeometry) -> usize {
    (COLS_BUDGET / (geom.col_rows() * geom.col_cols()).max(1)).max(1)
}

/// [G, O, P] (images of a group) -> [O, G P].
fn to_channel_major<T: Copy>(src: &[T], (g, o, p): (usize, usize, usize), dst: &mut [T]) {
    for (i, image) in src.chunks(o * p).take(g).enumerate() {
        for (c, row) in image.chunks(p).enumerate() {
            dst[c * g * p + i * p..][..p].copy_from_slice(row);
        }
    }
}

/// [O, G P] -> [G, O, P].
fn to_image_major<T: Copy>(src: &[T], (g, o, p): (usize, usize, usize), dst: &mut [T]) {
    for (i, image) in dst.chunks_mut(o * p).take(g).enumerate() {
        for (c, row) in image.chunks_mut(p).enumerate() {
            row.copy_from_slice(&src[c * g * p + i * p..][..p]);
        }
    }
}

/// y [N, O, oh, ow] = W cols + b, a group of images per GEMM.
pub(crate) fn conv2d_forward<T: CpuKernels>(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    geom: Conv2dGeometry,
) -> Result<Storage> {
    forward_in_groups::<T>(x, weight, bias, geom, group_size(&geom))
}

/// [`conv2d_forward`] with `group` images per GEMM.
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
    let mut y = T::alloc(n * o * p);
    let mut cols = T::alloc(k * group * p);
    let mut y_cm = T::alloc(o * group * p);
    let bias_values = bias.map(|b| b.to_vec::<T>()).transpose()?;
    x.with_contiguous(|xs: &[T]| {
        weight.with_contiguous(|ws: &[T]| {
            let images = xs.chunks(image_len * group);
            for (imgs, yg) in images.zip(y.chunks_mut(o * p * group)) {
                let g = imgs.len() / image_len;
                let (cols, y_cm) = (&mut cols[..k * g * p], &mut y_cm[..o * g * p]);
                T::im2col(&geom, imgs, cols);
                let beta = match &bias_values {
                    Some(bv) => {
                        for (row, &b) in y_cm.chunks_mut(g * p).zip(bv) {
                            row.fill(b);
                        }
                        T::ONE
                    }
                    None => T::ZERO,
                };
                let (rm_k, rm_gp) = (Mat::row_major(k), Mat::row_major(g * p));
                T::gemm(
                    o,
                    k,
                    g * p,
                    T::ONE,
                    ws,
                    rm_k,
                    cols,
                    rm_gp,
                    beta,
                    y_cm,
                    rm_gp,
                );
                to_image_major(y_cm, (g, o, p), yg);
            }
        })
    });
    T::recycle(cols);
    T::recycle(y_cm);
    Ok(storage(y))
}

/// [dx, dW, db] (db only `with_bias`); the column matrix is recomputed per group instead of
/// kept (it is kh kw times larger than x).
pub(crate) fn conv2d_backward<T: CpuKernels>(
    x: &Tensor,
    weight: &Tensor,
    dy: &Tensor,
    geom: Conv2dGeometry,
    with_bias: bool,
) -> (Storage, Storage, Option<Storage>) {
    backward_in_groups::<T>(x, weight, dy, geom, with_bias, group_size(&geom))
}

/// [`conv2d_backward`] with `group` images per GEMM.
fn backward_in_groups<T: CpuKernels>(
    x: &Tensor,
    weight: &Tensor,
    dy: &Tensor,
    geom: Conv2dGeometry,
    with_bias: bool,
    group: usize,
) -> (Storage, Storage, Option<Storage>) {
    let (n, o) = (x.shape()[0], weight.shape()[0]);
    let (k, p) = (geom.col_rows(), geom.col_cols());
    let image_len = geom.channels * geom.height * geom.width;
    let group = group.min(n).max(1);
    let mut dx = T::alloc(n * image_len);
    let mut dw = T::alloc_zeroed(o * k);
    let mut db = vec![T::ZERO; o];
    let mut cols = T::alloc(k * group * p);
    let mut dcols = T::alloc(k * group * p);
    let mut dy_cm = T::alloc(o * group * p);
    x.with_contiguous(|xs: &[T]| {
        weight.with_contiguous(|ws: &[T]| {
            dy.with_contiguous(|gs: &[T]| {
                let images = xs
                    .chunks(image_len * group)
                    .zip(dx.chunks_mut(image_len * group));
                for ((imgs, dimgs), gg) in images.zip(gs.chunks(o * p * group)) {
                    let g = imgs.len() / image_len;
                    let cols = &mut cols[..k * g * p];
                    let (dcols, dy_cm) = (&mut dcols[..k * g * p], &mut dy_cm[..o * g * p]);
                    T::im2col(&geom, imgs, cols);
                    to_channel_major(gg, (g, o, p), dy_cm);
                    let gp = g * p;
                    // dW += dY [O, G P] cols^T [G P, K]
                    let (rm_gp, rm_k) = (Mat::row_major(gp), Mat::row_major(k));
                    T::gemm(
                        o,
                        gp,
                        k,
                        T::ONE,
                        dy_cm,
                        rm_gp,
                        cols,
                        Mat::col_major(gp),
                        T::ONE,
                        &mut dw,
                        rm_k,
                    );
                    // dcols [K, G P] = W^T [K, O] dY [O, G P]
                    T::gemm(
                        k,
                        o,
                        gp,
                        T::ONE,
                        ws,
                        Mat::col_major(k),
                        dy_cm,
                        rm_gp,
                        T::ZERO,
                        dcols,
                        rm_gp,
                    );
                    T::col2im(&geom, dcols, dimgs);
                    // db in image order, as the sum over dy's rows
                    for gn in gg.chunks(o * p) {
                        for (d, row) in db.iter_mut().zip(gn.chunks(p)) {
                            for &v in row {
                                *d += v;
                            }
                        }
                    }
                }
            })
        })
    });
    T::recycle(cols);
    T::recycle(dcols);
    T::recycle(dy_cm);
    (storage(dx), storage(dw), with_bias.then(|| storage(db)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, Rng};

    fn values(s: Storage) -> Vec<f32> {
        let n = s.len();
        Tensor::from_storage(s, &[n]).to_vec::<f32>().unwrap()
    }

    /// Any grouping gives the per-image results: y, dx and db bit for bit (each element is the
    /// same dot product in the same order), dW to f32 rounding (its sum over images and pixels
    /// is associated by group). Awkward sizes, several groups, a last group cut short.
    #[test]
    fn grouping_images_changes_only_the_rounding_of_dw() {
        let mut rng = Rng::new(7);
        let geom = Conv2dGeometry {
            channels: 3,
            height: 9,
            width: 7,
            kernel_h: 3,
            kernel_w: 3,
            stride_h: 2,
            stride_w: 2,
            pad_h: 1,
            pad_w: 1,
        };
        let (n, o) = (5, 6);
        let x = rng.uniform(&[n, 3, 9, 7], -1.0, 1.0, DType::F32);
        let w = rng.uniform(&[o, 3, 3, 3], -1.0, 1.0, DType::F32);
        let b = rng.uniform(&[o], -1.0, 1.0, DType::F32);
        let dy_shape = [n, o, geom.out_h(), geom.out_w()];
        let dy = rng.uniform(&dy_shape, -1.0, 1.0, DType::F32);
        let run = |group| {
            let y = forward_in_groups::<f32>(&x, &w, Some(&b), geom, group).unwrap();
            let (dx, dw, db) = backward_in_groups::<f32>(&x, &w, &dy, geom, true, group);
            [y, dx, dw, db.unwrap()].map(values)
        };
        let one = run(1);
        for group in [2, 3, n, 64] {
            let [y, dx, dw, db] = run(group);
            assert_eq!(y, one[0], "y, group {group}");
            assert_eq!(dx, one[1], "dx, group {group}");
            assert_eq!(db, one[3], "db, group {group}");
            for (a, e) in dw.iter().zip(&one[2]) {
                assert!(
                    (a - e).abs() <= 1e-5 * (1.0 + e.abs()),
                    "dW, group {group}: {a} vs {e}"
                );
            }
        }
    }
}
