//! Element types. `DType` is the run-time tag; [`Element`] is the compile-time side that ops are
//! written against once and instantiated for f32 (fast kernels) and f64 (the kernels' plain
//! references, for gradient checks).

use crate::kernels::cpu::{conv, elementwise, gelu, gemm, layernorm, softmax};
use crate::kernels::cpu::{conv::Conv2dGeometry, gemm::BatchStrides, gemm::Layout};
use crate::kernels::Float;
use crate::pool;
use crate::storage::CpuStorage;

/// The element type of a tensor. Open for growth: BF16 / F16 (via `half`) arrive with the CUDA
/// storage, so code outside this crate must not match it exhaustively.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
}

impl DType {
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
        }
    }
}

/// Runs `$body` with the type alias `$T` bound to the Rust type of `$dtype`.
#[macro_export]
#[doc(hidden)]
macro_rules! with_dtype {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            $crate::DType::F32 => {
                #[allow(dead_code)]
                type $T = f32;
                $body
            }
            $crate::DType::F64 => {
                #[allow(dead_code)]
                type $T = f64;
                $body
            }
        }
    };
}

/// A scalar type a CPU tensor can hold, with the kernel each op calls for it.
pub trait Element: Float {
    const DTYPE: DType;
    fn wrap(v: Vec<Self>) -> CpuStorage;
    fn slice(s: &CpuStorage) -> Option<&[Self]>;
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]>;
    /// A buffer of `len` elements with unspecified contents (from the pool for f32).
    fn alloc(len: usize) -> Vec<Self>;
    fn alloc_zeroed(len: usize) -> Vec<Self>;
    /// Returns a scratch buffer to the pool.
    fn recycle(v: Vec<Self>);

    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: &[Self],
        la: Layout,
        b: &[Self],
        lb: Layout,
        beta: Self,
        c: &mut [Self],
        lc: Layout,
    );
    #[allow(clippy::too_many_arguments)]
    fn gemm_batched(
        batch: BatchStrides,
        m: usize,
        k: usize,
        n: usize,
        a: &[Self],
        la: Layout,
        b: &[Self],
        lb: Layout,
        c: &mut [Self],
        lc: Layout,
    );
    fn softmax_forward(x: &[Self], y: &mut [Self], cols: usize);
    fn softmax_backward(y: &[Self], dy: &[Self], dx: &mut [Self], cols: usize);
    fn log_softmax_forward(x: &[Self], y: &mut [Self], cols: usize);
    fn log_softmax_backward(y: &[Self], dy: &[Self], dx: &mut [Self], cols: usize);
    #[allow(clippy::too_many_arguments)]
    fn layernorm_forward(
        x: &[Self],
        gamma: &[Self],
        beta: &[Self],
        eps: Self,
        y: &mut [Self],
        mean: &mut [Self],
        rstd: &mut [Self],
        cols: usize,
    );
    #[allow(clippy::too_many_arguments)]
    fn layernorm_backward(
        x: &[Self],
        gamma: &[Self],
        mean: &[Self],
        rstd: &[Self],
        dy: &[Self],
        dx: &mut [Self],
        dgamma: &mut [Self],
        dbeta: &mut [Self],
        cols: usize,
    );
    fn gelu_forward(x: &[Self], y: &mut [Self]);
    fn gelu_backward(x: &[Self], dy: &[Self], dx: &mut [Self]);
    fn im2col(g: &Conv2dGeometry, image: &[Self], cols: &mut [Self]);
    fn col2im(g: &Conv2dGeometry, cols: &[Self], image: &mut [Self]);
    /// Sum of all elements, the same for any thread count.
    fn sum(x: &[Self]) -> Self;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn wrap(v: Vec<f32>) -> CpuStorage {
        CpuStorage::F32(v)
    }
    fn slice(s: &CpuStorage) -> Option<&[f32]> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [f32]> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn alloc(len: usize) -> Vec<f32> {
        pool::take_f32(len)
    }
    fn alloc_zeroed(len: usize) -> Vec<f32> {
        pool::take_f32_zeroed(len)
    }
    fn recycle(v: Vec<f32>) {
        pool::give_f32(v)
    }
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: f32,
        a: &[f32],
        la: Layout,
        b: &[f32],
        lb: Layout,
        beta: f32,
        c: &mut [f32],
        lc: Layout,
    ) {
        gemm::sgemm(m, k, n, alpha, a, la, b, lb, beta, c, lc)
    }
    fn gemm_batched(
        batch: BatchStrides,
        m: usize,
        k: usize,
        n: usize,
        a: &[f32],
        la: Layout,
        b: &[f32],
        lb: Layout,
        c: &mut [f32],
        lc: Layout,
    ) {
        gemm::sgemm_batched(batch, m, k, n, 1.0, a, la, b, lb, 0.0, c, lc)
    }
    fn softmax_forward(x: &[f32], y: &mut [f32], cols: usize) {
        softmax::softmax_forward(x, y, cols)
    }
    fn softmax_backward(y: &[f32], dy: &[f32], dx: &mut [f32], cols: usize) {
        softmax::softmax_backward(y, dy, dx, cols)
    }
    fn log_softmax_forward(x: &[f32], y: &mut [f32], cols: usize) {
        softmax::log_softmax_forward(x, y, cols)
    }
    fn log_softmax_backward(y: &[f32], dy: &[f32], dx: &mut [f32], cols: usize) {
        softmax::log_softmax_backward(y, dy, dx, cols)
    }
    fn layernorm_forward(
        x: &[f32],
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
        y: &mut [f32],
        mean: &mut [f32],
        rstd: &mut [f32],
        cols: usize,
    ) {
        layernorm::layernorm_forward(x, gamma, beta, eps, y, mean, rstd, cols)
    }
    fn layernorm_backward(
        x: &[f32],
        gamma: &[f32],
        mean: &[f32],
        rstd: &[f32],
        dy: &[f32],
        dx: &mut [f32],
        dgamma: &mut [f32],
        dbeta: &mut [f32],
        cols: usize,
    ) {
        layernorm::layernorm_backward(x, gamma, mean, rstd, dy, dx, dgamma, dbeta, cols)
    }
    fn gelu_forward(x: &[f32], y: &mut [f32]) {
        gelu::gelu_forward(x, y)
    }
    fn gelu_backward(x: &[f32], dy: &[f32], dx: &mut [f32]) {
        gelu::gelu_backward(x, dy, dx)
    }
    fn im2col(g: &Conv2dGeometry, image: &[f32], cols: &mut [f32]) {
        conv::im2col(g, image, cols)
    }
    fn col2im(g: &Conv2dGeometry, cols: &[f32], image: &mut [f32]) {
        conv::col2im(g, cols, image)
    }
    fn sum(x: &[f32]) -> f32 {
        elementwise::sum(x)
    }
}

impl Element for f64 {
    const DTYPE: DType = DType::F64;
    fn wrap(v: Vec<f64>) -> CpuStorage {
        CpuStorage::F64(v)
    }
    fn slice(s: &CpuStorage) -> Option<&[f64]> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [f64]> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn alloc(len: usize) -> Vec<f64> {
        vec![0.0; len]
    }
    fn alloc_zeroed(len: usize) -> Vec<f64> {
        vec![0.0; len]
    }
    fn recycle(_v: Vec<f64>) {}
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: f64,
        a: &[f64],
        la: Layout,
        b: &[f64],
        lb: Layout,
        beta: f64,
        c: &mut [f64],
        lc: Layout,
    ) {
        gemm::gemm_reference(m, k, n, alpha, a, la, b, lb, beta, c, lc)
    }
    fn gemm_batched(
        batch: BatchStrides,
        m: usize,
        k: usize,
        n: usize,
        a: &[f64],
        la: Layout,
        b: &[f64],
        lb: Layout,
        c: &mut [f64],
        lc: Layout,
    ) {
        for t in 0..batch.count {
            gemm::gemm_reference(
                m,
                k,
                n,
                1.0,
                &a[t * batch.a..],
                la,
                &b[t * batch.b..],
                lb,
                0.0,
                &mut c[t * batch.c..],
                lc,
            );
        }
    }
    fn softmax_forward(x: &[f64], y: &mut [f64], cols: usize) {
        softmax::softmax_forward_reference(x, y, cols)
    }
    fn softmax_backward(y: &[f64], dy: &[f64], dx: &mut [f64], cols: usize) {
        softmax::softmax_backward_reference(y, dy, dx, cols)
    }
    fn log_softmax_forward(x: &[f64], y: &mut [f64], cols: usize) {
        softmax::log_softmax_forward_reference(x, y, cols)
    }
    fn log_softmax_backward(y: &[f64], dy: &[f64], dx: &mut [f64], cols: usize) {
        softmax::log_softmax_backward_reference(y, dy, dx, cols)
    }
    fn layernorm_forward(
        x: &[f64],
        gamma: &[f64],
        beta: &[f64],
        eps: f64,
        y: &mut [f64],
        mean: &mut [f64],
        rstd: &mut [f64],
        cols: usize,
    ) {
        layernorm::layernorm_forward_reference(x, gamma, beta, eps, y, mean, rstd, cols)
    }
    fn layernorm_backward(
        x: &[f64],
        gamma: &[f64],
        mean: &[f64],
        rstd: &[f64],
        dy: &[f64],
        dx: &mut [f64],
        dgamma: &mut [f64],
        dbeta: &mut [f64],
        cols: usize,
    ) {
        layernorm::layernorm_backward_reference(x, gamma, mean, rstd, dy, dx, dgamma, dbeta, cols)
    }
    fn gelu_forward(x: &[f64], y: &mut [f64]) {
        gelu::gelu_forward_reference(x, y)
    }
    fn gelu_backward(x: &[f64], dy: &[f64], dx: &mut [f64]) {
        gelu::gelu_backward_reference(x, dy, dx)
    }
    fn im2col(g: &Conv2dGeometry, image: &[f64], cols: &mut [f64]) {
        conv::im2col_reference(g, image, cols)
    }
    fn col2im(g: &Conv2dGeometry, cols: &[f64], image: &mut [f64]) {
        conv::col2im_reference(g, cols, image)
    }
    fn sum(x: &[f64]) -> f64 {
        elementwise::sum_reference(x)
    }
}
