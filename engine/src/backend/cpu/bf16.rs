//! BF16 on the CPU (docs/autodiff.md, "Data types"): every op widens its BF16 operands to f32,
//! runs the f32 kernels (so every sum, dot product and softmax accumulates in f32) and rounds its
//! results to BF16, to nearest even. What a backward saves for itself (layer norm's mean and
//! rstd, attention's lse, neighborhood attention's weights, the L2 norms) stays f32; the values an
//! op returns, gradients included, are BF16.
//!
//! Widening keeps the layout: the whole storage is converted and the view reads it as before, so
//! strided operands, transposed GEMM inputs and fused q/k/v views need no special case. This is
//! the first version: the f32 copy costs memory and a pass; CPU BF16 kernels (GEMM packing
//! straight from BF16, then AVX512-BF16 dot products) will replace it op by op.

use crate::backend::qkv::{heads, Heads};
use crate::kernels::attention::{Attention, HeadsView};
use crate::kernels::conv::Conv2dGeometry;
use crate::kernels::cpu::bf16::{narrow_f32, widen_to_f32};
use crate::kernels::elementwise::{BinaryOp, MapOp};
use crate::kernels::neighborhood_attention::Na2d;
use crate::layout::Layout;
use crate::storage::{CpuStorage, Storage};
use crate::{bf16, DType, Element, Result, Tensor};

/// `t` over an f32 copy of its whole storage, same layout (a detached leaf); `t` itself unless
/// it is BF16.
fn widen(t: &Tensor) -> Tensor {
    if t.dtype() != DType::BF16 {
        return t.clone();
    }
    let wide = {
        let guard = t.read_storage();
        let s = bf16::slice(guard.cpu()).expect("dtype checked");
        let mut wide = f32::alloc(s.len());
        widen_to_f32(s, &mut wide);
        wide
    };
    t.over_storage(Storage::Cpu(CpuStorage::F32(wide)))
}

/// q, k, v widened; views of one storage (a fused QKV) share one widened copy.
fn widen_heads(qkv: Heads) -> [Tensor; 3] {
    let q = widen(qkv[0].0);
    let again = |t: &Tensor| {
        if t.shares_storage(qkv[0].0) {
            q.with_layout_of(t)
        } else {
            widen(t)
        }
    };
    let (k, v) = (again(qkv[1].0), again(qkv[2].0));
    [q, k, v]
}

fn views(qkv: Heads) -> [HeadsView; 3] {
    [qkv[0].1, qkv[1].1, qkv[2].1]
}

/// An f32 result rounded to BF16.
fn narrow(s: Storage) -> Storage {
    let wide = f32::slice(s.cpu()).expect("the f32 kernels return f32");
    let mut out = bf16::alloc(wide.len());
    narrow_f32(wide, &mut out);
    Storage::Cpu(CpuStorage::BF16(out))
}

type F = f32;

pub(crate) fn binary(op: BinaryOp, a: &Tensor, b: &Tensor, shape: &[usize]) -> Storage {
    narrow(super::binary::<F>(op, &widen(a), &widen(b), shape))
}
pub(crate) fn map(op: MapOp, x: &Tensor) -> Storage {
    narrow(super::map::<F>(op, &widen(x)))
}
pub(crate) fn gelu_forward(x: &Tensor) -> Storage {
    narrow(super::gelu_forward::<F>(&widen(x)))
}
pub(crate) fn gelu_backward(x: &Tensor, dy: &Tensor) -> Storage {
    narrow(super::gelu_backward::<F>(&widen(x), &widen(dy)))
}
pub(crate) fn softmax_forward(x: &Tensor, log: bool) -> Storage {
    narrow(super::softmax_forward::<F>(&widen(x), log))
}
pub(crate) fn softmax_backward(y: &Tensor, dy: &Tensor, log: bool) -> Storage {
    narrow(super::softmax_backward::<F>(&widen(y), &widen(dy), log))
}

/// [y (BF16), mean, rstd (f32)].
pub(crate) fn layernorm_forward(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> [Storage; 3] {
    let [y, mean, rstd] =
        super::layernorm_forward::<F>(&widen(x), &widen(gamma), &widen(beta), eps);
    [narrow(y), mean, rstd]
}
pub(crate) fn layernorm_backward(
    x: &Tensor,
    gamma: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    dy: &Tensor,
) -> [Storage; 3] {
    let (m, r) = (widen(mean), widen(rstd));
    super::layernorm_backward::<F>(&widen(x), &widen(gamma), &m, &r, &widen(dy)).map(narrow)
}

/// [y (BF16), norms (f32)].
pub(crate) fn l2_normalize_forward(x: &Tensor, eps: f64) -> [Storage; 2] {
    let [y, norms] = super::l2_normalize_forward::<F>(&widen(x), eps);
    [narrow(y), norms]
}
pub(crate) fn l2_normalize_backward(y: &Tensor, norms: &Tensor, dy: &Tensor, eps: f64) -> Storage {
    narrow(super::l2_normalize_backward::<F>(
        &widen(y),
        &widen(norms),
        &widen(dy),
        eps,
    ))
}

pub(crate) fn sum_axis(x: &Tensor, dim: usize) -> Storage {
    narrow(super::sum_axis::<F>(&widen(x), dim))
}
pub(crate) fn sum_all(x: &Tensor) -> Storage {
    narrow(super::sum_all::<F>(&widen(x)))
}
pub(crate) fn max_axis(x: &Tensor, dim: usize) -> (Storage, Vec<usize>) {
    let (y, argmax) = super::max_axis::<F>(&widen(x), dim);
    (narrow(y), argmax)
}
pub(crate) fn max_backward(dy: &Tensor, argmax: &[usize], dims: (usize, usize, usize)) -> Storage {
    narrow(super::max_backward::<F>(&widen(dy), argmax, dims))
}

pub(crate) fn matmul(
    a: &Tensor,
    b: &Tensor,
    batch: &[usize],
    mkn: (usize, usize, usize),
) -> Storage {
    narrow(super::matmul::<F>(&widen(a), &widen(b), batch, mkn))
}
pub(crate) fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Storage {
    let bias = bias.map(widen);
    narrow(super::linear::<F>(&widen(x), &widen(weight), bias.as_ref()))
}
pub(crate) fn conv2d_forward(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    geom: Conv2dGeometry,
) -> Result<Storage> {
    let bias = bias.map(widen);
    super::conv2d_forward::<F>(&widen(x), &widen(weight), bias.as_ref(), geom).map(narrow)
}
pub(crate) fn conv2d_backward(
    x: &Tensor,
    weight: &Tensor,
    dy: &Tensor,
    geom: Conv2dGeometry,
    with_bias: bool,
) -> (Storage, Storage, Option<Storage>) {
    let (dx, dw, db) =
        super::conv2d_backward::<F>(&widen(x), &widen(weight), &widen(dy), geom, with_bias);
    (narrow(dx), narrow(dw), db.map(narrow))
}

pub(crate) fn conv2d_channels_last_forward(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    geom: Conv2dGeometry,
) -> Result<Storage> {
    let bias = bias.map(widen);
    super::conv2d_channels_last_forward::<F>(&widen(x), &widen(weight), bias.as_ref(), geom)
        .map(narrow)
}
pub(crate) fn conv2d_channels_last_backward(
    x: &Tensor,
    weight: &Tensor,
    dy: &Tensor,
    geom: Conv2dGeometry,
    needs: (bool, bool),
) -> (Option<Storage>, Storage, Option<Storage>) {
    let (x, w, dy) = (widen(x), widen(weight), widen(dy));
    let (dx, dw, db) = super::conv2d_channels_last_backward::<F>(&x, &w, &dy, geom, needs);
    (dx.map(narrow), narrow(dw), db.map(narrow))
}

/// [out (BF16), lse (f32)].
pub(crate) fn attention_forward(p: &Attention, qkv: Heads) -> [Storage; 2] {
    let wide = widen_heads(qkv);
    let [out, lse] = super::attention_forward::<F>(p, heads(&wide, views(qkv)));
    [narrow(out), lse]
}
pub(crate) fn attention_backward(
    p: &Attention,
    qkv: Heads,
    [out, lse]: [&Tensor; 2],
    dy: &Tensor,
    grads: (usize, [HeadsView; 3]),
) -> Storage {
    let wide = widen_heads(qkv);
    let saved = [&widen(out), &widen(lse)];
    narrow(super::attention_backward::<F>(
        p,
        heads(&wide, views(qkv)),
        saved,
        &widen(dy),
        grads,
    ))
}

/// [out (BF16), attn (f32)].
pub(crate) fn na_forward(p: &Na2d, qkv: Heads, rpb: Option<&Tensor>) -> [Storage; 2] {
    let wide = widen_heads(qkv);
    let rpb = rpb.map(widen);
    let [out, attn] = super::na_forward::<F>(p, heads(&wide, views(qkv)), rpb.as_ref());
    [narrow(out), attn]
}
pub(crate) fn na_backward(
    p: &Na2d,
    qkv: Heads,
    attn: &Tensor,
    dy: &Tensor,
    grads: (usize, [HeadsView; 3]),
    with_rpb: bool,
) -> (Storage, Option<Storage>) {
    let wide = widen_heads(qkv);
    let qkv_wide = heads(&wide, views(qkv));
    let (d, d_rpb) =
        super::na_backward::<F>(p, qkv_wide, &widen(attn), &widen(dy), grads, with_rpb);
    (narrow(d), d_rpb.map(narrow))
}

pub(crate) fn contiguous(x: &Tensor) -> Storage {
    narrow(super::contiguous::<F>(&widen(x)))
}
pub(crate) fn scatter_into_zeros(g: &Tensor, full: &[usize], region: &Layout) -> Storage {
    narrow(super::scatter_into_zeros::<F>(&widen(g), full, region))
}
pub(crate) fn cat(tensors: &[Tensor], dim: usize, shape: &[usize]) -> Storage {
    let wide: Vec<Tensor> = tensors.iter().map(widen).collect();
    narrow(super::cat::<F>(&wide, dim, shape))
}
pub(crate) fn index_select(x: &Tensor, dim: usize, indices: &[usize]) -> Storage {
    narrow(super::index_select::<F>(&widen(x), dim, indices))
}
pub(crate) fn index_select_backward(
    dy: &Tensor,
    dim: usize,
    indices: &[usize],
    in_shape: &[usize],
) -> Storage {
    narrow(super::index_select_backward::<F>(
        &widen(dy),
        dim,
        indices,
        in_shape,
    ))
}
