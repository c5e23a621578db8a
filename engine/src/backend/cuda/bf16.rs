//! BF16 on the GPU, the twin of `backend::cpu::bf16` (docs/autodiff.md, "Data types";
//! docs/gpu-ops.md, "BF16 on CUDA"): every op widens its BF16 operands to f32 on the device, runs
//! the f32 kernels (every sum, dot product and softmax accumulates in f32) and rounds its results
//! to BF16 on the device, to nearest even with NaN quieted — the integer rule of
//! `kernels::cpu::bf16`, so the two devices narrow bit for bit alike. What a backward saves for
//! itself (layer norm's mean and rstd, attention's lse, neighborhood attention's weights, the L2
//! norms) stays f32, as on the CPU; the values an op returns, gradients included, are BF16.
//!
//! Widening keeps the layout (the whole storage is converted), so strided operands, transposed
//! GEMM inputs and fused q/k/v views need no special case. The GEMMs (matmul, linear, conv2d)
//! widen too: the production CUDA GEMM takes f32 operands (at `GemmPrecision::Bf16` it rounds them
//! to BF16 itself, so a BF16 tensor loses nothing more there); BF16 operands straight into the
//! tensor-core kernels would save the f32 copy.

use super::{alloc, buffer};
use crate::backend::argmax::Argmax;
use crate::backend::qkv::{heads, Heads};
use crate::kernels::attention::{Attention, HeadsView};
use crate::kernels::conv::Conv2dGeometry;
use crate::kernels::cuda::elementwise::{bf16_to_f32, f32_to_bf16};
use crate::kernels::elementwise::{BinaryOp, MapOp};
use crate::kernels::neighborhood_attention::Na2d;
use crate::layout::Layout;
use crate::storage::{cuda_err, CudaBuffer, CudaStorage, Storage};
use crate::{DType, EngineError, Result, Tensor};

/// `t` over an f32 device copy of its whole storage, same layout (a detached leaf); `t` itself
/// unless it is BF16.
fn widen(t: &Tensor) -> Result<Tensor> {
    const OP: &str = "bf16 widen";
    if t.dtype() != DType::BF16 {
        return Ok(t.clone());
    }
    let wide = {
        let guard = t.read_storage();
        let cs = buffer(OP, t, &guard)?;
        let CudaBuffer::BF16(narrow) = &cs.data else {
            return Err(EngineError::arg(
                OP,
                t.shape(),
                "engine bug: not a BF16 buffer",
            ));
        };
        let mut wide = alloc(cs.dev, OP, &[narrow.len()])?;
        bf16_to_f32(cs.dev, narrow.len(), narrow, &mut wide).map_err(cuda_err(OP, t.shape()))?;
        super::storage(cs.dev, wide)
    };
    Ok(t.over_storage(wide))
}

/// q, k, v widened; views of one storage (a fused QKV) share one widened copy.
fn widen_heads(qkv: Heads) -> Result<[Tensor; 3]> {
    let q = widen(qkv[0].0)?;
    let again = |t: &Tensor| match t.shares_storage(qkv[0].0) {
        true => Ok(q.with_layout_of(t)),
        false => widen(t),
    };
    let (k, v) = (again(qkv[1].0)?, again(qkv[2].0)?);
    Ok([q, k, v])
}

fn views(qkv: Heads) -> [HeadsView; 3] {
    [qkv[0].1, qkv[1].1, qkv[2].1]
}

/// An f32 device result rounded to BF16 on the device.
fn narrow(s: Storage) -> Result<Storage> {
    narrow_copy(&s)
}

/// A BF16 copy of the f32 device buffer `s`.
fn narrow_copy(s: &Storage) -> Result<Storage> {
    const OP: &str = "bf16 narrow";
    let cs = s
        .cuda()
        .ok_or_else(|| EngineError::arg(OP, &[], "engine bug: a host buffer"))?;
    let n = cs.len();
    let wide = cs.f32(OP, &[n])?;
    let mut out = cs.dev.uninit(n.max(1)).map_err(cuda_err(OP, &[n]))?;
    f32_to_bf16(cs.dev, n, wide, &mut out).map_err(cuda_err(OP, &[n]))?;
    Ok(Storage::Cuda(CudaStorage {
        data: CudaBuffer::BF16(out),
        dev: cs.dev,
    }))
}

/// The values of CUDA tensor `x` in `dtype` (row-major): F32 <-> BF16 on the device; CUDA holds
/// no f64.
pub(crate) fn to_dtype(x: &Tensor, dtype: DType) -> Result<Storage> {
    match dtype {
        DType::F32 => super::contiguous(&widen(x)?),
        DType::BF16 if x.dtype() == DType::BF16 => contiguous(x),
        DType::BF16 => narrow(super::contiguous(x)?),
        other => Err(EngineError::arg(
            "to_dtype",
            x.shape(),
            format!(
                "{other:?} is not available on CUDA (it holds F32 and BF16; \
                 move the tensor with .to(Device::Cpu) first)"
            ),
        )),
    }
}

pub(crate) fn binary(op: BinaryOp, a: &Tensor, b: &Tensor, shape: &[usize]) -> Result<Storage> {
    narrow(super::binary(op, &widen(a)?, &widen(b)?, shape)?)
}
pub(crate) fn map(op: MapOp, name: &'static str, x: &Tensor) -> Result<Storage> {
    narrow(super::map(op, name, &widen(x)?)?)
}
pub(crate) fn gelu_forward(x: &Tensor) -> Result<Storage> {
    narrow(super::gelu_forward(&widen(x)?)?)
}
pub(crate) fn gelu_backward(x: &Tensor, dy: &Tensor) -> Result<Storage> {
    narrow(super::gelu_backward(&widen(x)?, &widen(dy)?)?)
}
pub(crate) fn softmax_forward(x: &Tensor, log: bool) -> Result<Storage> {
    narrow(super::softmax_forward(&widen(x)?, log)?)
}
pub(crate) fn softmax_backward(y: &Tensor, dy: &Tensor, log: bool) -> Result<Storage> {
    narrow(super::softmax_backward(&widen(y)?, &widen(dy)?, log)?)
}

/// [y (BF16), mean, rstd (f32)].
pub(crate) fn layernorm_forward(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<[Storage; 3]> {
    let (g, b) = (widen(gamma)?, widen(beta)?);
    let [y, mean, rstd] = super::layernorm_forward(&widen(x)?, &g, &b, eps)?;
    Ok([narrow(y)?, mean, rstd])
}
pub(crate) fn layernorm_backward(
    x: &Tensor,
    gamma: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    dy: &Tensor,
) -> Result<[Storage; 3]> {
    let (m, r, g) = (widen(mean)?, widen(rstd)?, widen(gamma)?);
    let [dx, dg, db] = super::layernorm_backward(&widen(x)?, &g, &m, &r, &widen(dy)?)?;
    Ok([narrow(dx)?, narrow(dg)?, narrow(db)?])
}

/// [y (BF16), norms (f32)].
pub(crate) fn l2_normalize_forward(x: &Tensor, eps: f64) -> Result<[Storage; 2]> {
    let [y, norms] = super::l2_normalize_forward(&widen(x)?, eps)?;
    Ok([narrow(y)?, norms])
}
pub(crate) fn l2_normalize_backward(
    y: &Tensor,
    norms: &Tensor,
    dy: &Tensor,
    eps: f64,
) -> Result<Storage> {
    let (y, n, g) = (widen(y)?, widen(norms)?, widen(dy)?);
    narrow(super::l2_normalize_backward(&y, &n, &g, eps)?)
}

pub(crate) fn sum_axis(x: &Tensor, dim: usize) -> Result<Storage> {
    narrow(super::sum_axis(&widen(x)?, dim)?)
}
pub(crate) fn sum_all(x: &Tensor) -> Result<Storage> {
    narrow(super::sum_all(&widen(x)?)?)
}
pub(crate) fn max_axis(x: &Tensor, dim: usize) -> Result<(Storage, Argmax)> {
    let (y, argmax) = super::max_axis(&widen(x)?, dim)?;
    Ok((narrow(y)?, argmax))
}
pub(crate) fn max_backward(
    dy: &Tensor,
    argmax: &Argmax,
    dims: (usize, usize, usize),
) -> Result<Storage> {
    narrow(super::max_backward(&widen(dy)?, argmax, dims)?)
}

pub(crate) fn matmul(
    a: &Tensor,
    b: &Tensor,
    batch: &[usize],
    mkn: (usize, usize, usize),
) -> Result<Storage> {
    narrow(super::matmul(&widen(a)?, &widen(b)?, batch, mkn)?)
}
pub(crate) fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Storage> {
    let bias = bias.map(widen).transpose()?;
    narrow(super::linear(&widen(x)?, &widen(weight)?, bias.as_ref())?)
}
pub(crate) fn conv2d_forward(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    geom: Conv2dGeometry,
) -> Result<Storage> {
    let bias = bias.map(widen).transpose()?;
    narrow(super::conv2d_forward(
        &widen(x)?,
        &widen(weight)?,
        bias.as_ref(),
        geom,
    )?)
}
pub(crate) fn conv2d_backward(
    x: &Tensor,
    weight: &Tensor,
    dy: &Tensor,
    geom: Conv2dGeometry,
    with_bias: bool,
) -> Result<(Storage, Storage, Option<Storage>)> {
    let (x, w, g) = (widen(x)?, widen(weight)?, widen(dy)?);
    let (dx, dw, db) = super::conv2d_backward(&x, &w, &g, geom, with_bias)?;
    Ok((narrow(dx)?, narrow(dw)?, db.map(narrow).transpose()?))
}

/// [out (BF16), lse (f32)].
pub(crate) fn attention_forward(p: &Attention, qkv: Heads) -> Result<[Storage; 2]> {
    let wide = widen_heads(qkv)?;
    let [out, lse] = super::attention_forward(p, heads(&wide, views(qkv)))?;
    Ok([narrow(out)?, lse])
}
pub(crate) fn attention_backward(
    p: &Attention,
    qkv: Heads,
    [out, lse]: [&Tensor; 2],
    dy: &Tensor,
    grads: (usize, [HeadsView; 3]),
) -> Result<Storage> {
    let wide = widen_heads(qkv)?;
    let saved = [&widen(out)?, &widen(lse)?];
    let qkv_wide = heads(&wide, views(qkv));
    narrow(super::attention_backward(
        p,
        qkv_wide,
        saved,
        &widen(dy)?,
        grads,
    )?)
}

/// [out (BF16), attn (f32)].
pub(crate) fn na_forward(p: &Na2d, qkv: Heads, rpb: Option<&Tensor>) -> Result<[Storage; 2]> {
    let wide = widen_heads(qkv)?;
    let rpb = rpb.map(widen).transpose()?;
    let [out, attn] = super::na_forward(p, heads(&wide, views(qkv)), rpb.as_ref())?;
    Ok([narrow(out)?, attn])
}
pub(crate) fn na_backward(
    p: &Na2d,
    qkv: Heads,
    attn: &Tensor,
    dy: &Tensor,
    grads: (usize, [HeadsView; 3]),
    with_rpb: bool,
) -> Result<(Storage, Option<Storage>)> {
    let wide = widen_heads(qkv)?;
    let qkv_wide = heads(&wide, views(qkv));
    let (a, g) = (widen(attn)?, widen(dy)?);
    let (d, d_rpb) = super::na_backward(p, qkv_wide, &a, &g, grads, with_rpb)?;
    Ok((narrow(d)?, d_rpb.map(narrow).transpose()?))
}

pub(crate) fn contiguous(x: &Tensor) -> Result<Storage> {
    narrow(super::contiguous(&widen(x)?)?)
}
pub(crate) fn scatter_into_zeros(g: &Tensor, full: &[usize], region: &Layout) -> Result<Storage> {
    narrow(super::scatter_into_zeros(&widen(g)?, full, region)?)
}
pub(crate) fn cat(tensors: &[Tensor], dim: usize, shape: &[usize]) -> Result<Storage> {
    let wide: Vec<Tensor> = tensors.iter().map(widen).collect::<Result<_>>()?;
    narrow(super::cat(&wide, dim, shape)?)
}
pub(crate) fn index_select(x: &Tensor, dim: usize, indices: &[usize]) -> Result<Storage> {
    narrow(super::index_select(&widen(x)?, dim, indices)?)
}
pub(crate) fn index_select_backward(
    dy: &Tensor,
    dim: usize,
    indices: &[usize],
    in_shape: &[usize],
) -> Result<Storage> {
    narrow(super::index_select_backward(
        &widen(dy)?,
        dim,
        indices,
        in_shape,
    )?)
}

/// Copies `src`'s values into `dst`'s place in its BF16 storage: the storage is widened, written
/// by the f32 assign and rounded back (exact: every value it held is a BF16 value already).
pub(crate) fn assign(dst: &Tensor, src: &Tensor) -> Result<()> {
    let wide_dst = widen(dst)?;
    super::assign(&wide_dst, &widen(src)?)?;
    let back = narrow_copy(&wide_dst.read_storage())?;
    *dst.write_storage() = back;
    Ok(())
}
