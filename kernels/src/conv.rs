//! Problem descriptor of the convolution family, shared by the CPU (`cpu::conv`) and CUDA
//! (`cuda::conv`) im2col / col2im kernels. Math: docs/conv.md.

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
