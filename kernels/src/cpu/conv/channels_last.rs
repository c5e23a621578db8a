//! im2col / col2im for 2-D convolution on channels-last images [N, H, W, C] (docs/conv.md,
//! "Channels last"): the column matrix is [N * out_h * out_w, kh * kw * C], row n P + p holding
//! output pixel p's receptive field in tap-major order (ki, kj, c), zero where the window falls on
//! padding. Each tap is then C contiguous values of the image, so both kernels are copies (or
//! adds) of whole channel vectors, and the GEMM's output rows are the output pixels: the result
//! is channels-last too, with no permute on either side.
//!
//! Generic over the element type (they only move and add values): the same code serves f32 and
//! the f64 of the gradient checks. im2col splits the output rows between threads (pure copies, so
//! any split gives the same values); col2im gives each image to one thread and adds each image
//! element's terms in the NCHW reference's order (ki, kj, oy, ox), so it is bitwise equal to
//! [`super::col2im_reference`] on the permuted layout, with any thread count.

use super::Conv2dGeometry;
use crate::cpu::elementwise::PAR_MIN_ELEMS;
use crate::Float;
use rayon::prelude::*;

/// images [N, H, W, C] -> cols [N oh ow, kh kw C] (every element written).
pub fn im2col<T: Float>(g: &Conv2dGeometry, images: &[T], cols: &mut [T]) {
    let n = check(g, images.len(), cols.len(), "im2col (channels last)");
    let (ow, k) = (g.out_w(), g.col_rows());
    let image_len = g.height * g.width * g.channels;
    // One chunk per output row (n, oy): ow pixels of k values.
    let row = |(r, out): (usize, &mut [T])| {
        let (i, oy) = (r / g.out_h(), r % g.out_h());
        im2col_row(g, &images[i * image_len..][..image_len], oy, out);
    };
    if n == 0 || ow * k == 0 {
        return;
    }
    if cols.len() < PAR_MIN_ELEMS {
        cols.chunks_mut(ow * k).enumerate().for_each(row);
    } else {
        cols.par_chunks_mut(ow * k).enumerate().for_each(row);
    }
}

/// cols [N oh ow, kh kw C] -> images [N, H, W, C]: the adjoint of [`im2col`] (overlapping windows
/// are summed; every image element is written).
pub fn col2im<T: Float>(g: &Conv2dGeometry, cols: &[T], images: &mut [T]) {
    let n = check(g, images.len(), cols.len(), "col2im (channels last)");
    let image_len = g.height * g.width * g.channels;
    let per_image = g.col_cols() * g.col_rows();
    if n == 0 {
        return;
    }
    let image = |(img, col): (&mut [T], &[T])| col2im_image(g, col, img);
    if cols.len() < PAR_MIN_ELEMS {
        images
            .chunks_mut(image_len)
            .zip(cols.chunks(per_image))
            .for_each(image);
    } else {
        images
            .par_chunks_mut(image_len)
            .zip(cols.par_chunks(per_image))
            .for_each(image);
    }
}

/// Checks the geometry and buffer sizes (the NCHW check: the same lengths); returns the number of
/// images N.
fn check(g: &Conv2dGeometry, images: usize, cols: usize, what: &str) -> usize {
    super::check(g, images, cols, what).0
}

/// The input coordinate under tap `k` of output coordinate `o`, if inside [0, len).
fn tap(o: usize, k: usize, stride: usize, pad: usize, len: usize) -> Option<usize> {
    (o * stride + k).checked_sub(pad).filter(|&v| v < len)
}

/// Output row `oy` of one image [H, W, C]: `out` holds its ow pixels of kh kw C values each.
fn im2col_row<T: Float>(g: &Conv2dGeometry, img: &[T], oy: usize, out: &mut [T]) {
    let c = g.channels;
    for (ox, pixel) in out.chunks_mut(g.col_rows()).enumerate() {
        for ki in 0..g.kernel_h {
            let y = tap(oy, ki, g.stride_h, g.pad_h, g.height);
            for kj in 0..g.kernel_w {
                let dst = &mut pixel[(ki * g.kernel_w + kj) * c..][..c];
                match (y, tap(ox, kj, g.stride_w, g.pad_w, g.width)) {
                    (Some(y), Some(x)) => dst.copy_from_slice(&img[(y * g.width + x) * c..][..c]),
                    _ => dst.fill(T::ZERO),
                }
            }
        }
    }
}

/// One image: its rows of the column matrix [oh ow, kh kw C] -> img [H, W, C], the terms of each
/// element added in the order (ki, kj, oy, ox).
fn col2im_image<T: Float>(g: &Conv2dGeometry, col: &[T], img: &mut [T]) {
    let (c, k, ow) = (g.channels, g.col_rows(), g.out_w());
    img.fill(T::ZERO);
    for ki in 0..g.kernel_h {
        for kj in 0..g.kernel_w {
            let t = (ki * g.kernel_w + kj) * c;
            for oy in 0..g.out_h() {
                let Some(y) = tap(oy, ki, g.stride_h, g.pad_h, g.height) else {
                    continue;
                };
                for ox in 0..ow {
                    let Some(x) = tap(ox, kj, g.stride_w, g.pad_w, g.width) else {
                        continue;
                    };
                    let src = &col[(oy * ow + ox) * k + t..][..c];
                    let dst = &mut img[(y * g.width + x) * c..][..c];
                    dst.iter_mut().zip(src).for_each(|(d, &v)| *d += v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{col2im_reference, im2col_reference, tests::geometries};
    use super::*;
    use crate::cpu::elementwise::testutil::*;

    /// [N, A, B] -> [N, B, A] (A, B: the two inner extents).
    fn swap_inner(x: &[f32], n: usize, a: usize, b: usize) -> Vec<f32> {
        let mut y = vec![f32::NAN; x.len()];
        for i in 0..n {
            for r in 0..a {
                for s in 0..b {
                    y[(i * b + s) * a + r] = x[(i * a + r) * b + s];
                }
            }
        }
        y
    }

    /// Reference cols [C kh kw, N P] -> channels-last cols [N P, kh kw C].
    fn reference_to_channels_last(g: &Conv2dGeometry, cols: &[f32], n: usize) -> Vec<f32> {
        let (c, taps, np) = (g.channels, g.kernel_h * g.kernel_w, n * g.col_cols());
        let mut y = vec![f32::NAN; cols.len()];
        for ch in 0..c {
            for t in 0..taps {
                for q in 0..np {
                    y[q * taps * c + t * c + ch] = cols[(ch * taps + t) * np + q];
                }
            }
        }
        y
    }

    /// Against the NCHW reference on permuted inputs: im2col equal, col2im bitwise equal (same
    /// terms in the same order), at 1 and 2 threads; awkward sizes, poisoned outputs.
    #[test]
    fn equal_the_nchw_reference_permuted_bitwise() {
        let mut rng = Rng::new(43);
        for g in geometries() {
            for n in [1, 3] {
                let plane = g.height * g.width;
                let (n_img, n_col) = (n * g.channels * plane, g.col_rows() * n * g.col_cols());
                let nchw = rng.vec(n_img, -1.0, 1.0);
                let nhwc = swap_inner(&nchw, n, g.channels, plane);
                let mut want = poisoned(n_col);
                im2col_reference(&g, &nchw, &mut want);
                let want = reference_to_channels_last(&g, &want, n);
                for threads in [1, 2] {
                    let got = with_threads(threads, || {
                        let mut got = poisoned(n_col);
                        im2col(&g, &nhwc, &mut got);
                        got
                    });
                    assert_bitwise(&format!("im2col {n} x {g:?}, {threads} t"), &got, &want);
                }
                let cols = rng.vec(n_col, -1.0, 1.0);
                let mut want = poisoned(n_img);
                // The reference's layout of these cols: invert reference_to_channels_last.
                let (taps, np) = (g.kernel_h * g.kernel_w, n * g.col_cols());
                let mut ref_cols = vec![f32::NAN; n_col];
                for ch in 0..g.channels {
                    for t in 0..taps {
                        for q in 0..np {
                            ref_cols[(ch * taps + t) * np + q] =
                                cols[q * taps * g.channels + t * g.channels + ch];
                        }
                    }
                }
                col2im_reference(&g, &ref_cols, &mut want);
                let want = swap_inner(&want, n, g.channels, plane);
                for threads in [1, 2] {
                    let got = with_threads(threads, || {
                        let mut got = poisoned(n_img);
                        col2im(&g, &cols, &mut got);
                        got
                    });
                    assert_bitwise(&format!("col2im {n} x {g:?}, {threads} t"), &got, &want);
                }
            }
        }
    }

    /// Large enough for the parallel paths (over PAR_MIN_ELEMS), 5 images.
    #[test]
    fn parallel_paths_equal_the_sequential_ones() {
        let mut rng = Rng::new(44);
        let g = Conv2dGeometry {
            channels: 19,
            height: 21,
            width: 17,
            kernel_h: 3,
            kernel_w: 3,
            stride_h: 2,
            stride_w: 2,
            pad_h: 1,
            pad_w: 1,
        };
        let n = 5;
        let (n_img, n_col) = (n * 19 * 21 * 17, n * g.col_rows() * g.col_cols());
        assert!(n_col >= PAR_MIN_ELEMS);
        let images = rng.vec(n_img, -1.0, 1.0);
        let cols = rng.vec(n_col, -1.0, 1.0);
        let run = |threads| {
            with_threads(threads, || {
                let (mut c, mut i) = (poisoned(n_col), poisoned(n_img));
                im2col(&g, &images, &mut c);
                col2im(&g, &cols, &mut i);
                (c, i)
            })
        };
        let (one, two) = (run(1), run(2));
        assert_bitwise("im2col 1 vs 2 threads", &one.0, &two.0);
        assert_bitwise("col2im 1 vs 2 threads", &one.1, &two.1);
        // Per image: image i's rows of the column matrix are im2col of image i alone.
        let (len, rows) = (19 * 21 * 17, g.col_rows() * g.col_cols());
        for i in 0..n {
            let mut c = poisoned(rows);
            im2col(&g, &images[i * len..][..len], &mut c);
            assert_bitwise(&format!("image {i}"), &c, &one.0[i * rows..][..rows]);
        }
    }
}
