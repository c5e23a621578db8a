//! The kernels each element type runs on the CPU: the fast f32 kernels of `dinonat_kernels::cpu`,
//! and for f64 their plain `*_reference` twins (the gradient checks run through these).

use crate::kernels::attention::{Attention, HeadsGradsMut, HeadsRef};
use crate::kernels::conv::Conv2dGeometry;
use crate::kernels::cpu::attention as full;
use crate::kernels::cpu::neighborhood_attention as na;
use crate::kernels::cpu::{conv, elementwise, gelu, gemm, layernorm, softmax};
use crate::kernels::gemm::{BatchStrides, MatrixLayout as Layout};
use crate::kernels::neighborhood_attention::Na2d;
use crate::Element;

/// An element type with its CPU kernels.
pub(crate) trait CpuKernels: Element {
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
    /// C = op(A) op(B) (+ 1 bias^T), C not read. The default writes the bias into C and adds the
    /// product to it; f32 adds the bias inside the GEMM, to each block of C as it completes.
    fn gemm_bias(
        (m, k, n): (usize, usize, usize),
        (a, la): (&[Self], Layout),
        (b, lb): (&[Self], Layout),
        (c, lc): (&mut [Self], Layout),
        bias: Option<&[Self]>,
    ) {
        let Some(bias) = bias else {
            return Self::gemm(m, k, n, Self::ONE, a, la, b, lb, Self::ZERO, c, lc);
        };
        for i in 0..m {
            for (j, &v) in bias[..n].iter().enumerate() {
                c[i * lc.row_stride + j * lc.col_stride] = v;
            }
        }
        Self::gemm(m, k, n, Self::ONE, a, la, b, lb, Self::ONE, c, lc)
    }
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

    fn na_forward(
        p: &Na2d,
        q: HeadsRef<Self>,
        k: HeadsRef<Self>,
        v: HeadsRef<Self>,
        rpb: Option<&[Self]>,
        out: &mut [Self],
        attn: &mut [Self],
    );
    fn na_backward(
        p: &Na2d,
        q: HeadsRef<Self>,
        k: HeadsRef<Self>,
        v: HeadsRef<Self>,
        attn: &[Self],
        d_out: &[Self],
        grads: HeadsGradsMut<Self>,
        d_rpb: Option<&mut [Self]>,
    );
    fn attention_forward(
        p: &Attention,
        q: HeadsRef<Self>,
        k: HeadsRef<Self>,
        v: HeadsRef<Self>,
        out: &mut [Self],
        lse: &mut [Self],
    );
    fn attention_backward(
        p: &Attention,
        q: HeadsRef<Self>,
        k: HeadsRef<Self>,
        v: HeadsRef<Self>,
        out: &[Self],
        lse: &[Self],
        d_out: &[Self],
        grads: HeadsGradsMut<Self>,
    );
}

/// Whether this thread's f32 GEMMs run in BF16 (inside `gemm_precision_scope(Bf16)`).
fn bf16_gemm() -> bool {
    crate::storage::gemm_precision() == crate::GemmPrecision::Bf16
}

impl CpuKernels for f32 {
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
        if bf16_gemm() {
            gemm::sgemm_bf16(m, k, n, alpha, a, la, b, lb, beta, c, lc)
        } else {
            gemm::sgemm(m, k, n, alpha, a, la, b, lb, beta, c, lc)
        }
    }
    fn gemm_bias(
        (m, k, n): (usize, usize, usize),
        (a, la): (&[f32], Layout),
        (b, lb): (&[f32], Layout),
        (c, lc): (&mut [f32], Layout),
        bias: Option<&[f32]>,
    ) {
        match (bias, bf16_gemm()) {
            (None, _) => Self::gemm(m, k, n, 1.0, a, la, b, lb, 0.0, c, lc),
            (Some(v), true) => gemm::sgemm_bf16_bias(m, k, n, 1.0, a, la, b, lb, 0.0, c, lc, v),
            (Some(v), false) => gemm::sgemm_bias(m, k, n, 1.0, a, la, b, lb, 0.0, c, lc, v),
        }
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
        if bf16_gemm() {
            gemm::sgemm_bf16_batched(batch, m, k, n, 1.0, a, la, b, lb, 0.0, c, lc)
        } else {
            gemm::sgemm_batched(batch, m, k, n, 1.0, a, la, b, lb, 0.0, c, lc)
        }
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

    fn na_forward(
        p: &Na2d,
        q: HeadsRef<f32>,
        k: HeadsRef<f32>,
        v: HeadsRef<f32>,
        rpb: Option<&[f32]>,
        out: &mut [f32],
        attn: &mut [f32],
    ) {
        na::neighborhood_attention_2d_forward(p, q, k, v, rpb, out, attn)
    }
    fn na_backward(
        p: &Na2d,
        q: HeadsRef<f32>,
        k: HeadsRef<f32>,
        v: HeadsRef<f32>,
        attn: &[f32],
        d_out: &[f32],
        grads: HeadsGradsMut<f32>,
        d_rpb: Option<&mut [f32]>,
    ) {
        na::neighborhood_attention_2d_backward(p, q, k, v, attn, d_out, grads, d_rpb)
    }
    fn attention_forward(
        p: &Attention,
        q: HeadsRef<f32>,
        k: HeadsRef<f32>,
        v: HeadsRef<f32>,
        out: &mut [f32],
        lse: &mut [f32],
    ) {
        full::attention_forward(p, q, k, v, out, lse)
    }
    fn attention_backward(
        p: &Attention,
        q: HeadsRef<f32>,
        k: HeadsRef<f32>,
        v: HeadsRef<f32>,
        out: &[f32],
        lse: &[f32],
        d_out: &[f32],
        grads: HeadsGradsMut<f32>,
    ) {
        full::attention_backward(p, q, k, v, out, lse, d_out, grads)
    }
}

impl CpuKernels for f64 {
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

    fn na_forward(
        p: &Na2d,
        q: HeadsRef<f64>,
        k: HeadsRef<f64>,
        v: HeadsRef<f64>,
        rpb: Option<&[f64]>,
        out: &mut [f64],
        attn: &mut [f64],
    ) {
        na::neighborhood_attention_2d_forward_reference(p, q, k, v, rpb, out, attn)
    }
    fn na_backward(
        p: &Na2d,
        q: HeadsRef<f64>,
        k: HeadsRef<f64>,
        v: HeadsRef<f64>,
        attn: &[f64],
        d_out: &[f64],
        grads: HeadsGradsMut<f64>,
        d_rpb: Option<&mut [f64]>,
    ) {
        na::neighborhood_attention_2d_backward_reference(p, q, k, v, attn, d_out, grads, d_rpb)
    }
    fn attention_forward(
        p: &Attention,
        q: HeadsRef<f64>,
        k: HeadsRef<f64>,
        v: HeadsRef<f64>,
        out: &mut [f64],
        lse: &mut [f64],
    ) {
        full::attention_forward_reference(p, q, k, v, out, lse)
    }
    fn attention_backward(
        p: &Attention,
        q: HeadsRef<f64>,
        k: HeadsRef<f64>,
        v: HeadsRef<f64>,
        out: &[f64],
        lse: &[f64],
        d_out: &[f64],
        grads: HeadsGradsMut<f64>,
    ) {
        full::attention_backward_reference(p, q, k, v, out, lse, d_out, grads)
    }
}
