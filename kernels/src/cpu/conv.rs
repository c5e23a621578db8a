//! im2col / col2im for 2-D convolution as a GEMM: the image [C, H, W] becomes a matrix
//! [C * kh * kw, out_h * out_w] whose column p holds the receptive field of output pixel p
//! (zero where the window falls on padding). Math: docs/conv.md.
//!
//! The fast versions (version 2; version 1 was the reference, with a bounds test per element)
//! work on whole output rows: for each (c, ki, kj, oy) the valid range of ox is computed once,
//! the padding is zero-filled, and the inside is a contiguous copy (stride 1) or a strided gather.
//! Channels run in parallel: channel c owns rows c*kh*kw .. (c+1)*kh*kw of the column matrix and
//! plane c of the image, so col2im needs no atomics, and since each image element receives its
//! terms in the reference's order (ki, kj, oy, ox), col2im is bitwise equal to the reference.

use crate::cpu::elementwise::PAR_MIN_ELEMS;
use crate::Float;
use rayon::prelude::*;

pub use crate::conv::Conv2dGeometry;

/// image [C, H, W] -> cols [C * kh * kw, out_h * out_w] (every element written).
pub fn im2col_reference<T: Float>(g: &Conv2dGeometry, image: &[T], cols: &mut [T]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    for c in 0..g.channels {
        for ki in 0..g.kernel_h {
            for kj in 0..g.kernel_w {
                let row = (c * g.kernel_h + ki) * g.kernel_w + kj;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let y = (oy * g.stride_h + ki) as isize - g.pad_h as isize;
                        let x = (ox * g.stride_w + kj) as isize - g.pad_w as isize;
                        let inside =
                            y >= 0 && x >= 0 && (y as usize) < g.height && (x as usize) < g.width;
                        cols[row * oh * ow + oy * ow + ox] = if inside {
                            image[(c * g.height + y as usize) * g.width + x as usize]
                        } else {
                            T::ZERO
                        };
                    }
                }
            }
        }
    }
}

/// cols [C * kh * kw, out_h * out_w] -> image [C, H, W]: the adjoint of im2col (overlapping
/// windows are summed; every image element is written).
pub fn col2im_reference<T: Float>(g: &Conv2dGeometry, cols: &[T], image: &mut [T]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    image.iter_mut().for_each(|v| *v = T::ZERO);
    for c in 0..g.channels {
        for ki in 0..g.kernel_h {
            for kj in 0..g.kernel_w {
                let row = (c * g.kernel_h + ki) * g.kernel_w + kj;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let y = (oy * g.stride_h + ki) as isize - g.pad_h as isize;
                        let x = (ox * g.stride_w + kj) as isize - g.pad_w as isize;
                        if y >= 0 && x >= 0 && (y as usize) < g.height && (x as usize) < g.width {
                            image[(c * g.height + y as usize) * g.width + x as usize] +=
                                cols[row * oh * ow + oy * ow + ox];
                        }
                    }
                }
            }
        }
    }
}

/// Fast f32 im2col (exact: the same values as the reference).
pub fn im2col(g: &Conv2dGeometry, image: &[f32], cols: &mut [f32]) {
    let (plane, per_channel) = check(g, image.len(), cols.len(), "im2col");
    if cols.len() < PAR_MIN_ELEMS {
        for (img, col) in image.chunks(plane).zip(cols.chunks_mut(per_channel)) {
            im2col_channel(g, img, col);
        }
    } else {
        image
            .par_chunks(plane)
            .zip(cols.par_chunks_mut(per_channel))
            .for_each(|(img, col)| im2col_channel(g, img, col));
    }
}

/// Fast f32 col2im (bitwise equal to the reference, any thread count).
pub fn col2im(g: &Conv2dGeometry, cols: &[f32], image: &mut [f32]) {
    let (plane, per_channel) = check(g, image.len(), cols.len(), "col2im");
    if cols.len() < PAR_MIN_ELEMS {
        for (img, col) in image.chunks_mut(plane).zip(cols.chunks(per_channel)) {
            col2im_channel(g, col, img);
        }
    } else {
        image
            .par_chunks_mut(plane)
            .zip(cols.par_chunks(per_channel))
            .for_each(|(img, col)| col2im_channel(g, col, img));
    }
}

/// Checks the buffer sizes; returns (image plane size, column elements per channel).
fn check(g: &Conv2dGeometry, image: usize, cols: usize, what: &str) -> (usize, usize) {
    assert!(
        g.stride_h > 0
            && g.stride_w > 0
            && g.height + 2 * g.pad_h >= g.kernel_h
            && g.width + 2 * g.pad_w >= g.kernel_w,
        "{what}: invalid geometry {g:?}"
    );
    let plane = g.height * g.width;
    let per_channel = g.kernel_h * g.kernel_w * g.col_cols();
    assert_eq!(image, g.channels * plane, "{what}: image length for {g:?}");
    assert_eq!(
        cols,
        g.channels * per_channel,
        "{what}: column matrix length for {g:?}"
    );
    (plane, per_channel)
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

/// One channel: img [H, W] -> col [kh * kw, oh * ow].
fn im2col_channel(g: &Conv2dGeometry, img: &[f32], col: &mut [f32]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let mut rows = col.chunks_mut(oh * ow);
    for ki in 0..g.kernel_h {
        let (y_lo, y_hi) = valid_range(oh, g.stride_h, ki, g.pad_h, g.height);
        for kj in 0..g.kernel_w {
            let (x_lo, x_hi) = valid_range(ow, g.stride_w, kj, g.pad_w, g.width);
            let row = rows.next().expect("kernel_h * kernel_w rows");
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

/// One channel: col [kh * kw, oh * ow] -> img [H, W], terms added in the reference's order.
fn col2im_channel(g: &Conv2dGeometry, col: &[f32], img: &mut [f32]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    img.fill(0.0);
    let mut rows = col.chunks(oh * ow);
    for ki in 0..g.kernel_h {
        let (y_lo, y_hi) = valid_range(oh, g.stride_h, ki, g.pad_h, g.height);
        for kj in 0..g.kernel_w {
            let (x_lo, x_hi) = valid_range(ow, g.stride_w, kj, g.pad_w, g.width);
            let row = rows.next().expect("kernel_h * kernel_w rows");
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

    fn geometries() -> Vec<Conv2dGeometry> {
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
            let n_img = g.channels * g.height * g.width;
            let n_col = g.col_rows() * g.col_cols();
            let image = rng.vec(n_img, -1.0, 1.0);
            let (mut got, mut want) = (poisoned(n_col), poisoned(n_col));
            im2col(&g, &image, &mut got);
            im2col_reference(&g, &image, &mut want);
            assert_bitwise(&format!("im2col {g:?}"), &got, &want);
            let cols = rng.vec(n_col, -1.0, 1.0);
            let (mut got, mut want) = (poisoned(n_img), poisoned(n_img));
            col2im(&g, &cols, &mut got);
            col2im_reference(&g, &cols, &mut want);
            // Same terms in the same order: tolerance 0.
            assert_bitwise(&format!("col2im {g:?}"), &got, &want);
            let two = with_threads(2, || {
                let mut img = poisoned(n_img);
                col2im(&g, &cols, &mut img);
                img
            });
            assert_bitwise(&format!("col2im 2 threads {g:?}"), &two, &want);
        }
    }
}
