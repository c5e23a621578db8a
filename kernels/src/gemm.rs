//! Problem descriptors of the GEMM family, shared by the CPU (`cpu::gemm`) and CUDA
//! (`cuda::gemm`) kernels: how a matrix operand lies in its buffer and how a batch is strided.

/// Element strides of a matrix view: element (i, j) lives at `i * row_stride + j * col_stride`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatrixLayout {
    pub row_stride: usize,
    pub col_stride: usize,
}

impl MatrixLayout {
    /// A row-major matrix with `cols` columns (leading dimension = cols).
    pub fn row_major(cols: usize) -> MatrixLayout {
        MatrixLayout {
            row_stride: cols,
            col_stride: 1,
        }
    }
    /// A column-major matrix with `rows` rows; a row-major matrix read transposed.
    pub fn col_major(rows: usize) -> MatrixLayout {
        MatrixLayout {
            row_stride: 1,
            col_stride: rows,
        }
    }
    /// The layout of the transposed matrix (the same elements, rows and columns swapped).
    pub fn transposed(self) -> MatrixLayout {
        MatrixLayout {
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }
    /// The smallest buffer length that holds a `rows x cols` matrix with this layout.
    pub fn min_len(self, rows: usize, cols: usize) -> usize {
        if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * self.row_stride + (cols - 1) * self.col_stride + 1
        }
    }
}

/// Strides between consecutive matrices of a batch (in elements).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchStrides {
    pub count: usize,
    pub a: usize,
    pub b: usize,
    pub c: usize,
}
