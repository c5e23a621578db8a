//! im2col / col2im for 2-D convolution as a GEMM: the images [N, C, H, W] become one matrix
//! [C * kh * kw, N * out_h * out_w] whose column n * P + p (P = out_h * out_w) holds the receptive
//! field of output pixel p of image n (zero where the window falls on padding), so that one GEMM
//! W [O, C kh kw] x cols serves a whole batch of images (a GEMM per image is only P columns
//! wide: 4 at the last downsampler of a 64 px NAT). Math: docs/conv.md.
//!
//! The fast versions (version 2; version 1 was the reference, with a bounds test per element)
//! work on whole output rows: for each (c, ki, kj, oy) the valid range of ox is computed once,
//! the padding is zero-filled, and the inside is a contiguous copy (stride 1) or a strided gather.
//! Channels run in parallel: channel c owns rows c*kh*kw .. (c+1)*kh*kw of the column matrix and
//! plane c of every image, so col2im needs no atomics, and since each image element receives its
//! terms in the reference's order (ki, kj, oy, ox), col2im is bitwise equal to the reference.

pub mod channels_last;

use crate::cpu::elementwise::PAR_MIN_ELEMS;
use crate::Float;
use rayon::prelude::*;

pub use crate::conv::Conv2dGeometry;

/// The receptive-field element of column matrix row (c, ki, kj) at output (oy, ox), if inside.
fn source(
    g: &Conv2dGeometry,
    c: usize,
    (ki, kj): (usize, usize),
    (oy, ox): (usize, usize),
) -> Option<usize> {
    let y = (oy * g.stride_h + ki) as isize - g.pad_h as isize;
    let x = (ox * g.stride_w + kj) as isize - g.pad_w as isize;
    let inside = y >= 0 && x >= 0 && (y as usize) < g.height && (x as usize) < g.width;
    inside.then(|| (c * g.height + y as usize) * g.width + x as usize)
}

/// images [N, C, H, W] -> cols [C * kh * kw, N * out_h * out_w] (every element written).
pub fn im2col_reference<T: Float>(g: &Conv2dGeometry, images: &[T], cols: &mut [T]) {
    let (n, plane, ld) = check(g, images.len(), cols.len(), "im2col");
    let (oh, ow) = (g.out_h(), g.out_w());
    for (i, image) in images.chunks(plane * g.channels).take(n).enumerate() {
        for c in 0..g.channels {
            for ki in 0..g.kernel_h {
                for kj in 0..g.kernel_w {
                    let row = (c * g.kernel_h + ki) * g.kernel_w + kj;
                    for oy in 0..oh {
                        for ox in 0..ow {
                            cols[row * ld + (i * oh + oy) * ow + ox] =
                                match source(g, c, (ki, kj), (oy, ox)) {
                                    Some(at) => image[at],
                                    None => T::ZERO,
                                };
                        }
                    }
                }
            }
        }
    }
}

/// cols [C * kh * kw, N * out_h * out_w] -> images [N, C, H, W]: the adjoint of im2col
/// (overlapping windows are summed; every image element is written).
pub fn col2im_reference<T: Float>(g: &Conv2dGeometry, cols: &[T], images: &mut [T]) {
    let (n, plane, ld) = check(g, images.len(), cols.len(), "col2im");
    let (oh, ow) = (g.out_h(), g.out_w());
    images.iter_mut().for_each(|v| *v = T::ZERO);
    for (i, image) in images.chunks_mut(plane * g.channels).take(n).enumerate() {
        for c in 0..g.channels {
            for ki in 0..g.kernel_h {
                for kj in 0..g.kernel_w {
                    let row = (c * g.kernel_h + ki) * g.kernel_w + kj;
                    for oy in 0..oh {
                        for ox in 0..ow {
                            if let Some(at) = source(g, c, (ki, kj), (oy, ox)) {
                                image[at] += cols[row * ld + (i * oh + oy) * ow + ox];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Fast f32 im2col of a batch of images (exact: the same values as the reference).
pub fn im2col(g: &Conv2dGeometry, images: &[f32], cols: &mut [f32]) {
    let (n, plane, ld) = check(g, images.len(), cols.len(), "im2col");
    let band = g.kernel_h * g.kernel_w * ld;
    let channel = |(c, col): (usize, &mut [f32])| {
        for i in 0..n {
            let img = &images[(i * g.channels + c) * plane..][..plane];
            im2col_channel(g, img, &mut col[i * g.col_cols()..], ld);
        }
    };
    if cols.len() < PAR_MIN_ELEMS {
        cols.chunks_mut(band).enumerate().for_each(channel);
    } else {
        cols.par_chunks_mut(band).enumerate().for_each(channel);
    }
}

/// Fast f32 col2im of a batch of images (bitwise equal to the reference, any thread count).
pub fn col2im(g: &Conv2dGeometry, cols: &[f32], images: &mut [f32]) {
    let (n, plane, ld) = check(g, images.len(), cols.len(), "col2im");
    let band = g.kernel_h * g.kernel_w * ld;
    // plane c of every image, as one mutable slice per (image, channel)
    let mut planes: Vec<Vec<&mut [f32]>> = (0..g.channels).map(|_| Vec::with_capacity(n)).collect();
    for (j, p) in images
        .chunks_mut(plane.max(1))
        .enumerate()
        .take(n * g.channels)
    {
        planes[j % g.channels].push(p);
    }
    let channel = |(col, imgs): (&[f32], &mut Vec<&mut [f32]>)| {
        for (i, img) in imgs.iter_mut().enumerate() {
            col2im_channel(g, &col[i * g.col_cols()..], img, ld);
        }
    };
    if cols.len() < PAR_MIN_ELEMS {
        cols.chunks(band).zip(planes.iter_mut()).for_each(channel);
    } else {
        cols.par_chunks(band)
            .zip(planes.par_iter_mut())
            .for_each(channel);
    }
}

/// Checks the geometry and buffer sizes; returns (images N, image plane size H W, the column
/// matrix's row length N P).
fn check(g: &Conv2dGeometry, images: usize, cols: usize, what: &str) -> (usize, usize, usize) {
    assert!(
        g.stride_h > 0
            && g.stride_w > 0
            && g.channels > 0
            && g.height * g.width > 0
            && g.height + 2 * g.pad_h >= g.kernel_h
            && g.width + 2 * g.pad_w >= g.kernel_w,
        "{what}: invalid geometry {g:?}"
    );
    let plane = g.height * g.width;
    let n = images / (g.channels * plane);
    assert_eq!(
        images,
        n * g.channels * plane,
        "{what}: image length for {g:?}"
    );
    assert_eq!(
        cols,
        g.col_rows() * n * g.col_cols(),
        "{what}: column matrix length for {n} images of {g:?}"
    );
    (n, plane, n * g.col_cols())
}

/// The output columns ox whose input column x = ox * stride + k - pad lies in [0, width).
fn valid_range(out: usize, stride: usize, k: usize, pad: usize, width: usize) -> (usize, usize) {
    // ox >= ceil((pad - k) / stride) and ox * stride + k - pad <= width - 1.
    let lo = pad.saturating_sub(k).div_ceil(stride).min(out);
    let hi = if width + pad > k {
        ((width + pad - k - 1) / stride + 1).min(out)
    } else {
        0
    };
    (lo, hi.max(lo))
}

/// One channel of one image: img [H, W] -> the kh * kw rows of its band, row r at
/// `col[r * ld..][..oh * ow]`.
fn im2col_channel(g: &Conv2dGeometry, img: &[f32], col: &mut [f32], ld: usize) {
    let (oh, ow) = (g.out_h(), g.out_w());
    for ki in 0..g.kernel_h {
        let (y_lo, y_hi) = valid_range(oh, g.stride_h, ki, g.pad_h, g.height);
        for kj in 0..g.kernel_w {
            let (x_lo, x_hi) = valid_range(ow, g.stride_w, kj, g.pad_w, g.width);
            let row = &mut col[(ki * g.kernel_w + kj) * ld..][..oh * ow];
            for (oy, out) in row.chunks_mut(ow).enumerate() {
                if oy < y_lo || oy >= y_hi {
                    out.fill(0.0);
                    continue;
                }
                let y = oy * g.stride_h + ki - g.pad_h;
                let x0 = x_lo * g.stride_w + kj - g.pad_w;
                let src = &img[y * g.width..(y + 1) * g.width];
                out[..x_lo].fill(0.0);
                out[x_hi..].fill(0.0);
                if g.stride_w == 1 {
                    out[x_lo..x_hi].copy_from_slice(&src[x0..x0 + (x_hi - x_lo)]);
                } else {
                    let strided = src[x0..].iter().step_by(g.stride_w);
                    out[x_lo..x_hi]
                        .iter_mut()
                        .zip(strided)
                        .for_each(|(o, &v)| *o = v);
                }
            }
        }
    }
}

/// One channel of one image: the kh * kw rows of its band (as [`im2col_channel`]) -> img [H, W],
/// terms added in the reference's order.
fn col2im_channel(g: &Conv2dGeometry, col: &[f32], img: &mut [f32], ld: usize) {
    let (oh, ow) = (g.out_h(), g.out_w());
    img.fill(0.0);
    for ki in 0..g.kernel_h {
        let (y_lo, y_hi) = valid_range(oh, g.stride_h, ki, g.pad_h, g.height);
        for kj in 0..g.kernel_w {
            let (x_lo, x_hi) = valid_range(ow, g.stride_w, kj, g.pad_w, g.width);
            let row = &col[(ki * g.kernel_w + kj) * ld..][..oh * ow];
            for oy in y_lo..y_hi {
                let y = oy * g.stride_h + ki - g.pad_h;
                let x0 = x_lo * g.stride_w + kj - g.pad_w;
                let dst = &mut img[y * g.width..(y + 1) * g.width];
                let src = &row[oy * ow + x_lo..oy * ow + x_hi];
                if g.stride_w == 1 {
                    dst[x0..x0 + src.len()]
                        .iter_mut()
                        .zip(src)
                        .for_each(|(d, &v)| *d += v);
                } else {
                    let strided = dst[x0..].iter_mut().step_by(g.stride_w);
                    strided.zip(src).for_each(|(d, &v)| *d += v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::elementwise::testutil::*;

    pub(super) fn geometries() -> Vec<Conv2dGeometry> {
        let mut v = Vec::new();
        // (channels, h, w, kernel, stride, pad): patch embeddings, 3x3 convs, odd sizes, k > h.
        for &(c, h, w, k, s, p) in &[
            (1, 1, 1, 1, 1, 0),
            (3, 7, 7, 3, 1, 1),
            (3, 33, 7, 4, 4, 0),
            (7, 33, 33, 3, 2, 1),
            (2, 3, 257, 3, 1, 2),
            (3, 5, 6, 7, 1, 3),
            (33, 16, 16, 2, 2, 0),
            (64, 40, 40, 3, 1, 1),
        ] {
            v.push(Conv2dGeometry {
                channels: c,
                height: h,
                width: w,
                kernel_h: k,
                kernel_w: k,
                stride_h: s,
                stride_w: s,
                pad_h: p,
                pad_w: p,
            });
        }
        // Non-square kernel, strides and padding.
        v.push(Conv2dGeometry {
            channels: 3,
            height: 9,
            width: 11,
            kernel_h: 2,
            kernel_w: 5,
            stride_h: 3,
            stride_w: 2,
            pad_h: 1,
            pad_w: 2,
        });
        v
    }

    #[test]
    fn im2col_col2im_equal_reference_bitwise() {
        let mut rng = Rng::new(41);
        for g in geometries() {
            for n in [1, 3] {
                let n_img = n * g.channels * g.height * g.width;
                let n_col = g.col_rows() * n * g.col_cols();
                let image = rng.vec(n_img, -1.0, 1.0);
                let (mut got, mut want) = (poisoned(n_col), poisoned(n_col));
                im2col(&g, &image, &mut got);
                im2col_reference(&g, &image, &mut want);
                assert_bitwise(&format!("im2col {n} x {g:?}"), &got, &want);
                let cols = rng.vec(n_col, -1.0, 1.0);
                let (mut got, mut want) = (poisoned(n_img), poisoned(n_img));
                col2im(&g, &cols, &mut got);
                col2im_reference(&g, &cols, &mut want);
                // Same terms in the same order: tolerance 0.
                assert_bitwise(&format!("col2im {n} x {g:?}"), &got, &want);
                let two = with_threads(2, || {
                    let mut img = poisoned(n_img);
                    col2im(&g, &cols, &mut img);
                    img
                });
                assert_bitwise(&format!("col2im 2 threads {n} x {g:?}"), &two, &want);
            }
        }
    }

    /// The batch layout: image i's columns are block i of each row, and col2im of a batch is
    /// col2im of each image's blocks.
    #[test]
    fn a_batch_is_its_images_side_by_side() {
        let mut rng = Rng::new(42);
        for g in geometries() {
            let (n, p, k) = (3, g.col_cols(), g.col_rows());
            let len = g.channels * g.height * g.width;
            let images = rng.vec(n * len, -1.0, 1.0);
            let mut batch = poisoned(k * n * p);
            im2col(&g, &images, &mut batch);
            let cols = rng.vec(k * n * p, -1.0, 1.0);
            let mut back = poisoned(n * len);
            col2im(&g, &cols, &mut back);
            for i in 0..n {
                let mut one = poisoned(k * p);
                im2col(&g, &images[i * len..][..len], &mut one);
                let block: Vec<f32> = (0..k)
                    .flat_map(|r| batch[r * n * p + i * p..][..p].to_vec())
                    .collect();
                assert_bitwise(&format!("im2col image {i} of {g:?}"), &block, &one);
                let mine: Vec<f32> = (0..k)
                    .flat_map(|r| cols[r * n * p + i * p..][..p].to_vec())
                    .collect();
                let mut img = poisoned(len);
                col2im(&g, &mine, &mut img);
                assert_bitwise(
                    &format!("col2im image {i} of {g:?}"),
                    &back[i * len..][..len],
                    &img,
                );
            }
        }
    }
}
