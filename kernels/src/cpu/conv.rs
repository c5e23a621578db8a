//! im2col / col2im for 2-D convolution as a GEMM: the image [C, H, W] becomes a matrix
//! [C * kh * kw, out_h * out_w] whose column p holds the receptive field of output pixel p
//! (zero where the window falls on padding). Math: docs/conv.md.

use crate::Float;

/// The geometry of one 2-D convolution over a single image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeometry {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_h: usize,
    pub pad_w: usize,
}

impl Conv2dGeometry {
    pub fn out_h(&self) -> usize {
        (self.height + 2 * self.pad_h - self.kernel_h) / self.stride_h + 1
    }
    pub fn out_w(&self) -> usize {
        (self.width + 2 * self.pad_w - self.kernel_w) / self.stride_w + 1
    }
    /// Rows of the column matrix: channels * kernel_h * kernel_w.
    pub fn col_rows(&self) -> usize {
        self.channels * self.kernel_h * self.kernel_w
    }
    /// Columns of the column matrix: out_h * out_w.
    pub fn col_cols(&self) -> usize {
        self.out_h() * self.out_w()
    }
}

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

/// Fast f32 im2col (placeholder: the reference).
pub fn im2col(g: &Conv2dGeometry, image: &[f32], cols: &mut [f32]) {
    im2col_reference(g, image, cols)
}
/// Fast f32 col2im (placeholder: the reference).
pub fn col2im(g: &Conv2dGeometry, cols: &[f32], image: &mut [f32]) {
    col2im_reference(g, cols, image)
}
