//! The seam between ops and kernels (docs/autodiff.md, "The backend seam"): the only place in
//! the engine that matches on device x dtype.
//!
//! Each function here takes tensors (storage and layout) and returns a fresh row-major
//! [`Storage`] on their device: [`cpu`] runs `dinonat_kernels::cpu` (the fast f32 kernels, the
//! plain references for f64, chosen by [`cpu::CpuKernels`]; BF16 widened to f32 and the results
//! rounded back, `cpu::bf16`), [`cuda`] runs `dinonat_kernels::cuda` (f32; BF16 widened and
//! narrowed on the device, `cuda::bf16`). An op (`ops/`) validates shapes, calls a forward here
//! and records ONE backward closure that calls the backward here or other ops, so the same
//! backward runs on every device. Adding a dtype or a device touches this layer and the kernels,
//! not the ops.
//!
//! A function whose kernel a device lacks returns "op X is not available on CUDA", never a
//! silent copy.

mod argmax;
pub(crate) mod cpu;
pub(crate) mod cuda;
mod qkv;

pub(crate) use crate::kernels::attention::{Attention, HeadsView};
pub(crate) use crate::kernels::conv::Conv2dGeometry;
pub(crate) use crate::kernels::elementwise::{BinaryOp, MapOp};
pub(crate) use crate::kernels::neighborhood_attention::Na2d;
use crate::layout::Layout;
use crate::profile::{self, Kind};
use crate::storage::{Device, Storage};
use crate::{with_dtype, DType, Element, EngineError, Result, Tensor};
pub(crate) use argmax::Argmax;
pub(crate) use qkv::{heads, Heads};

/// Runs `$cpu` with `$T` bound to the element type of a host f32 / f64 tensor, `$bf16` for a host
/// BF16 one (computed in f32: `cpu::bf16`), `$cuda` for an f32 one on the GPU, `$cuda_bf16` for a
/// BF16 one there (computed in f32 on the device: `cuda::bf16`).
macro_rules! on_device {
    ($t:expr, $T:ident => $cpu:expr, bf16 => $bf16:expr, cuda => $cuda:expr,
     cuda_bf16 => $cuda_bf16:expr) => {
        match ($t.device(), $t.dtype()) {
            (Device::Cuda(_), DType::BF16) => $cuda_bf16,
            (Device::Cuda(_), _) => $cuda,
            (Device::Cpu, DType::F32) => {
                type $T = f32;
                $cpu
            }
            (Device::Cpu, DType::F64) => {
                type $T = f64;
                $cpu
            }
            (Device::Cpu, DType::BF16) => $bf16,
        }
    };
}

/// The device all of `ts` live on, or the error "operands on different devices".
pub(crate) fn device_of(op: &'static str, ts: &[&Tensor]) -> Result<Device> {
    let first = ts[0];
    match ts.iter().find(|t| t.device() != first.device()) {
        Some(t) => Err(EngineError::arg(
            op,
            first.shape(),
            format!(
                "operands on different devices ({:?} and {:?}; copy one with .to)",
                first.device(),
                t.device()
            ),
        )),
        None => Ok(first.device()),
    }
}

// ---- elementwise ------------------------------------------------------------------------------

/// a op b at the broadcast `shape`.
pub(crate) fn binary(op: BinaryOp, a: &Tensor, b: &Tensor, shape: &[usize]) -> Result<Storage> {
    let _profile = profile::kernel(Kind::Elementwise);
    device_of(op.name(), &[a, b])?;
    on_device!(a, T => Ok(cpu::binary::<T>(op, a, b, shape)),
        bf16 => Ok(cpu::bf16::binary(op, a, b, shape)),
        cuda => cuda::binary(op, a, b, shape),
        cuda_bf16 => cuda::bf16::binary(op, a, b, shape))
}

/// f(x) elementwise.
pub(crate) fn map(op: MapOp, name: &'static str, x: &Tensor) -> Result<Storage> {
    let _profile = profile::kernel(Kind::Elementwise);
    on_device!(x, T => Ok(cpu::map::<T>(op, x)),
        bf16 => Ok(cpu::bf16::map(op, x)),
        cuda => cuda::map(op, name, x),
        cuda_bf16 => cuda::bf16::map(op, name, x))
}

/// GELU (erf form) and its backward dx = dy * (Phi(x) + x phi(x)).
pub(crate) fn gelu_forward(x: &Tensor) -> Result<Storage> {
    let _profile = profile::kernel(Kind::Gelu);
    on_device!(x, T => Ok(cpu::gelu_forward::<T>(x)),
        bf16 => Ok(cpu::bf16::gelu_forward(x)),
        cuda => cuda::gelu_forward(x),
        cuda_bf16 => cuda::bf16::gelu_forward(x))
}
pub(crate) fn gelu_backward(x: &Tensor, dy: &Tensor) -> Result<Storage> {
    let _profile = profile::kernel(Kind::Gelu);
    device_of("gelu backward", &[x, dy])?;
    on_device!(x, T => Ok(cpu::gelu_backward::<T>(x, dy)),
        bf16 => Ok(cpu::bf16::gelu_backward(x, dy)),
        cuda => cuda::gelu_backward(x, dy),
        cuda_bf16 => cuda::bf16::gelu_backward(x, dy))
}

// ---- rows: softmax, layer norm, L2 normalisation ------------------------------------------------

/// softmax (or log-softmax when `log`) over the last axis.
pub(crate) fn softmax_forward(x: &Tensor, log: bool) -> Result<Storage> {
    let _profile = profile::kernel(Kind::Softmax);
    on_device!(x, T => Ok(cpu::softmax_forward::<T>(x, log)),
        bf16 => Ok(cpu::bf16::softmax_forward(x, log)),
        cuda => cuda::softmax_forward(x, log),
        cuda_bf16 => cuda::bf16::softmax_forward(x, log))
}
/// dx from the saved output y and dy.
pub(crate) fn softmax_backward(y: &Tensor, dy: &Tensor, log: bool) -> Result<Storage> {
    let _profile = profile::kernel(Kind::Softmax);
    device_of("softmax backward", &[y, dy])?;
    on_device!(y, T => Ok(cpu::softmax_backward::<T>(y, dy, log)),
        bf16 => Ok(cpu::bf16::softmax_backward(y, dy, log)),
        cuda => cuda::softmax_backward(y, dy, log),
        cuda_bf16 => cuda::bf16::softmax_backward(y, dy, log))
}

/// [y, mean, rstd] of layer norm over the last axis.
pub(crate) fn layernorm_forward(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<[Storage; 3]> {
    let _profile = profile::kernel(Kind::LayerNorm);
    device_of("layer_norm", &[x, gamma, beta])?;
    on_device!(x, T => Ok(cpu::layernorm_forward::<T>(x, gamma, beta, eps)),
        bf16 => Ok(cpu::bf16::layernorm_forward(x, gamma, beta, eps)),
        cuda => cuda::layernorm_forward(x, gamma, beta, eps),
        cuda_bf16 => cuda::bf16::layernorm_forward(x, gamma, beta, eps))
}
/// [dx, dgamma, dbeta] from x, gamma, the saved mean and rstd, and dy.
pub(crate) fn layernorm_backward(
    x: &Tensor,
    gamma: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    dy: &Tensor,
) -> Result<[Storage; 3]> {
    let _profile = profile::kernel(Kind::LayerNorm);
    device_of("layer_norm backward", &[x, gamma, mean, rstd, dy])?;
    on_device!(x, T => Ok(cpu::layernorm_backward::<T>(x, gamma, mean, rstd, dy)),
        bf16 => Ok(cpu::bf16::layernorm_backward(x, gamma, mean, rstd, dy)),
        cuda => cuda::layernorm_backward(x, gamma, mean, rstd, dy),
        cuda_bf16 => cuda::bf16::layernorm_backward(x, gamma, mean, rstd, dy))
}

/// [y, norms]: y = x / max(||x||, eps) per row of the last axis, and the norms ||x|| [rows].
pub(crate) fn l2_normalize_forward(x: &Tensor, eps: f64) -> Result<[Storage; 2]> {
    let _profile = profile::kernel(Kind::Elementwise);
    on_device!(x, T => Ok(cpu::l2_normalize_forward::<T>(x, eps)),
        bf16 => Ok(cpu::bf16::l2_normalize_forward(x, eps)),
        cuda => cuda::l2_normalize_forward(x, eps),
        cuda_bf16 => cuda::bf16::l2_normalize_forward(x, eps))
}
/// dx = (dy - y <dy, y>) / r where r > eps, else dy / eps.
pub(crate) fn l2_normalize_backward(
    y: &Tensor,
    norms: &Tensor,
    dy: &Tensor,
    eps: f64,
) -> Result<Storage> {
    let _profile = profile::kernel(Kind::Elementwise);
    device_of("l2_normalize backward", &[y, norms, dy])?;
    on_device!(y, T => Ok(cpu::l2_normalize_backward::<T>(y, norms, dy, eps)),
        bf16 => Ok(cpu::bf16::l2_normalize_backward(y, norms, dy, eps)),
        cuda => cuda::l2_normalize_backward(y, norms, dy, eps),
        cuda_bf16 => cuda::bf16::l2_normalize_backward(y, norms, dy, eps))
}

// ---- reductions -------------------------------------------------------------------------------

/// Sum over axis `dim` (the result has the other axes in order).
pub(crate) fn sum_axis(x: &Tensor, dim: usize) -> Result<Storage> {
    let _profile = profile::kernel(Kind::Reduction);
    on_device!(x, T => Ok(cpu::sum_axis::<T>(x, dim)),
        bf16 => Ok(cpu::bf16::sum_axis(x, dim)),
        cuda => cuda::sum_axis(x, dim),
        cuda_bf16 => cuda::bf16::sum_axis(x, dim))
}
/// Sum of all elements (one element), the same for any thread count.
pub(crate) fn sum_all(x: &Tensor) -> Result<Storage> {
    let _profile = profile::kernel(Kind::Reduction);
    on_device!(x, T => Ok(cpu::sum_all::<T>(x)),
        bf16 => Ok(cpu::bf16::sum_all(x)),
        cuda => cuda::sum_all(x),
        cuda_bf16 => cuda::bf16::sum_all(x))
}

/// Max over axis `dim` and the (first) position of each max along it.
pub(crate) fn max_axis(x: &Tensor, dim: usize) -> Result<(Storage, Argmax)> {
    let _profile = profile::kernel(Kind::Reduction);
    on_device!(x, T => {
        let (y, at) = cpu::max_axis::<T>(x, dim);
        Ok((y, Argmax::Host(at)))
    }, bf16 => {
        let (y, at) = cpu::bf16::max_axis(x, dim);
        Ok((y, Argmax::Host(at)))
    }, cuda => cuda::max_axis(x, dim),
    cuda_bf16 => cuda::bf16::max_axis(x, dim))
}
/// dx of max: dy at the saved positions, 0 elsewhere; `dims` = (outer, n, inner) of x.
pub(crate) fn max_backward(
    dy: &Tensor,
    argmax: &Argmax,
    dims: (usize, usize, usize),
) -> Result<Storage> {
    let _profile = profile::kernel(Kind::Reduction);
    match argmax {
        Argmax::Host(at) => on_device!(dy, T => Ok(cpu::max_backward::<T>(dy, at, dims)),
            bf16 => Ok(cpu::bf16::max_backward(dy, at, dims)),
            cuda => cuda::max_backward(dy, argmax, dims),
            cuda_bf16 => cuda::bf16::max_backward(dy, argmax, dims)),
        Argmax::Cuda(_) => match dy.dtype() {
            DType::BF16 => cuda::bf16::max_backward(dy, argmax, dims),
            _ => cuda::max_backward(dy, argmax, dims),
        },
    }
}

// ---- products ---------------------------------------------------------------------------------

/// C = A B over the broadcast `batch` dims, (m, k, n) the matrix sizes.
pub(crate) fn matmul(
    a: &Tensor,
    b: &Tensor,
    batch: &[usize],
    mkn: (usize, usize, usize),
) -> Result<Storage> {
    let flops = 2.0 * (batch.iter().product::<usize>() * mkn.0 * mkn.1 * mkn.2) as f64;
    let _profile = profile::kernel(Kind::Gemm).flops(flops);
    device_of("matmul", &[a, b])?;
    on_device!(a, T => Ok(cpu::matmul::<T>(a, b, batch, mkn)),
        bf16 => Ok(cpu::bf16::matmul(a, b, batch, mkn)),
        cuda => cuda::matmul(a, b, batch, mkn),
        cuda_bf16 => cuda::bf16::matmul(a, b, batch, mkn))
}

/// y = x W^T + b as [rows, out] (x read as [rows, in]).
pub(crate) fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Storage> {
    let (out_f, in_f) = (weight.shape()[0], weight.shape()[1]);
    let flops = 2.0 * (x.numel() / in_f.max(1) * in_f * out_f) as f64;
    let _profile = profile::kernel(Kind::Gemm).flops(flops);
    let mut all = vec![x, weight];
    all.extend(bias);
    device_of("linear", &all)?;
    on_device!(x, T => Ok(cpu::linear::<T>(x, weight, bias)),
        bf16 => Ok(cpu::bf16::linear(x, weight, bias)),
        cuda => cuda::linear(x, weight, bias),
        cuda_bf16 => cuda::bf16::linear(x, weight, bias))
}

/// y [N, O, oh, ow] of conv2d (im2col + GEMM per image).
pub(crate) fn conv2d_forward(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    geom: Conv2dGeometry,
) -> Result<Storage> {
    let macs = x.shape()[0] * geom.col_cols() * geom.col_rows() * weight.shape()[0];
    let _profile = profile::kernel(Kind::Conv).flops(2.0 * macs as f64);
    let mut all = vec![x, weight];
    all.extend(bias);
    device_of("conv2d", &all)?;
    on_device!(x, T => cpu::conv2d_forward::<T>(x, weight, bias, geom),
        bf16 => cpu::bf16::conv2d_forward(x, weight, bias, geom),
        cuda => cuda::conv2d_forward(x, weight, bias, geom),
        cuda_bf16 => cuda::bf16::conv2d_forward(x, weight, bias, geom))
}
/// [dx, dW, db] of conv2d (db only `with_bias`).
pub(crate) fn conv2d_backward(
    x: &Tensor,
    weight: &Tensor,
    dy: &Tensor,
    geom: Conv2dGeometry,
    with_bias: bool,
) -> Result<(Storage, Storage, Option<Storage>)> {
    let macs = x.shape()[0] * geom.col_cols() * geom.col_rows() * weight.shape()[0];
    let _profile = profile::kernel(Kind::Conv).flops(4.0 * macs as f64);
    device_of("conv2d backward", &[x, weight, dy])?;
    on_device!(x, T => Ok(cpu::conv2d_backward::<T>(x, weight, dy, geom, with_bias)),
        bf16 => Ok(cpu::bf16::conv2d_backward(x, weight, dy, geom, with_bias)),
        cuda => cuda::conv2d_backward(x, weight, dy, geom, with_bias),
        cuda_bf16 => cuda::bf16::conv2d_backward(x, weight, dy, geom, with_bias))
}

/// y [N, oh, ow, O] of conv2d on channels-last x [N, H, W, C] (CPU only: on CUDA the op
/// composes permutes and the NCHW conv2d).
pub(crate) fn conv2d_channels_last_forward(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    geom: Conv2dGeometry,
) -> Result<Storage> {
    let macs = x.shape()[0] * geom.col_cols() * geom.col_rows() * weight.shape()[0];
    let _profile = profile::kernel(Kind::Conv).flops(2.0 * macs as f64);
    let mut all = vec![x, weight];
    all.extend(bias);
    device_of("conv2d (channels last)", &all)?;
    on_device!(x, T => cpu::conv2d_channels_last_forward::<T>(x, weight, bias, geom),
        bf16 => cpu::bf16::conv2d_channels_last_forward(x, weight, bias, geom),
        cuda => Err(no_cuda_channels_last(x)),
        cuda_bf16 => Err(no_cuda_channels_last(x)))
}
/// [dx (only `need_x`), dW, db (only `with_bias`)] of the channels-last conv2d.
pub(crate) fn conv2d_channels_last_backward(
    x: &Tensor,
    weight: &Tensor,
    dy: &Tensor,
    geom: Conv2dGeometry,
    (need_x, with_bias): (bool, bool),
) -> Result<(Option<Storage>, Storage, Option<Storage>)> {
    let macs = x.shape()[0] * geom.col_cols() * geom.col_rows() * weight.shape()[0];
    let passes = if need_x { 4.0 } else { 2.0 };
    let _profile = profile::kernel(Kind::Conv).flops(passes * macs as f64);
    device_of("conv2d (channels last) backward", &[x, weight, dy])?;
    let needs = (need_x, with_bias);
    on_device!(x, T => Ok(cpu::conv2d_channels_last_backward::<T>(x, weight, dy, geom, needs)),
        bf16 => Ok(cpu::bf16::conv2d_channels_last_backward(x, weight, dy, geom, needs)),
        cuda => Err(no_cuda_channels_last(x)),
        cuda_bf16 => Err(no_cuda_channels_last(x)))
}
fn no_cuda_channels_last(x: &Tensor) -> EngineError {
    EngineError::arg(
        "conv2d (channels last)",
        x.shape(),
        "no CUDA kernel (Tensor::conv2d_channels_last composes the NCHW conv2d there)",
    )
}

// ---- attention --------------------------------------------------------------------------------

/// [out, lse] of full attention (flash style).
pub(crate) fn attention_forward(p: &Attention, qkv: Heads) -> Result<[Storage; 2]> {
    let _profile = profile::kernel(Kind::Attention);
    let x = qkv[0].0;
    device_of("attention", &[x, qkv[1].0, qkv[2].0])?;
    on_device!(x, T => Ok(cpu::attention_forward::<T>(p, qkv)),
        bf16 => Ok(cpu::bf16::attention_forward(p, qkv)),
        cuda => cuda::attention_forward(p, qkv),
        cuda_bf16 => cuda::bf16::attention_forward(p, qkv))
}
/// dQ, dK, dV in one buffer of `len` elements through `grads` (fused dQKV or three blocks).
pub(crate) fn attention_backward(
    p: &Attention,
    qkv: Heads,
    saved: [&Tensor; 2],
    dy: &Tensor,
    (len, grads): (usize, [HeadsView; 3]),
) -> Result<Storage> {
    let _profile = profile::kernel(Kind::Attention);
    let x = qkv[0].0;
    device_of("attention backward", &[x, saved[0], saved[1], dy])?;
    on_device!(x, T => Ok(cpu::attention_backward::<T>(p, qkv, saved, dy, (len, grads))),
        bf16 => Ok(cpu::bf16::attention_backward(p, qkv, saved, dy, (len, grads))),
        cuda => cuda::attention_backward(p, qkv, saved, dy, (len, grads)),
        cuda_bf16 => cuda::bf16::attention_backward(p, qkv, saved, dy, (len, grads)))
}

/// [out, attn] of 2-D neighborhood attention.
pub(crate) fn na_forward(p: &Na2d, qkv: Heads, rpb: Option<&Tensor>) -> Result<[Storage; 2]> {
    let _profile = profile::kernel(Kind::NeighborhoodAttention);
    let x = qkv[0].0;
    let mut all = vec![x, qkv[1].0, qkv[2].0];
    all.extend(rpb);
    device_of("neighborhood_attention_2d", &all)?;
    on_device!(x, T => Ok(cpu::na_forward::<T>(p, qkv, rpb)),
        bf16 => Ok(cpu::bf16::na_forward(p, qkv, rpb)),
        cuda => cuda::na_forward(p, qkv, rpb),
        cuda_bf16 => cuda::bf16::na_forward(p, qkv, rpb))
}
/// dQ, dK, dV in one buffer (as [`attention_backward`]) and d(rpb) when `with_rpb`.
pub(crate) fn na_backward(
    p: &Na2d,
    qkv: Heads,
    attn: &Tensor,
    dy: &Tensor,
    (len, grads): (usize, [HeadsView; 3]),
    with_rpb: bool,
) -> Result<(Storage, Option<Storage>)> {
    let _profile = profile::kernel(Kind::NeighborhoodAttention);
    let x = qkv[0].0;
    device_of("neighborhood_attention_2d backward", &[x, attn, dy])?;
    on_device!(x, T => Ok(cpu::na_backward::<T>(p, qkv, attn, dy, (len, grads), with_rpb)),
        bf16 => Ok(cpu::bf16::na_backward(p, qkv, attn, dy, (len, grads), with_rpb)),
        cuda => cuda::na_backward(p, qkv, attn, dy, (len, grads), with_rpb),
        cuda_bf16 => cuda::bf16::na_backward(p, qkv, attn, dy, (len, grads), with_rpb))
}

// ---- copies and layouts -----------------------------------------------------------------------

/// The elements of `x` in row-major order, copied.
pub(crate) fn contiguous(x: &Tensor) -> Result<Storage> {
    let _profile = profile::kernel(Kind::Copy);
    on_device!(x, T => Ok(cpu::contiguous::<T>(x)),
        bf16 => Ok(cpu::bf16::contiguous(x)),
        cuda => cuda::contiguous(x),
        cuda_bf16 => cuda::bf16::contiguous(x))
}
/// `g` (row-major, the shape of `region`) written into zeros of shape `full` at `region`.
pub(crate) fn scatter_into_zeros(g: &Tensor, full: &[usize], region: &Layout) -> Result<Storage> {
    let _profile = profile::kernel(Kind::Copy);
    on_device!(g, T => Ok(cpu::scatter_into_zeros::<T>(g, full, region)),
        bf16 => Ok(cpu::bf16::scatter_into_zeros(g, full, region)),
        cuda => cuda::scatter_into_zeros(g, full, region),
        cuda_bf16 => cuda::bf16::scatter_into_zeros(g, full, region))
}
/// `tensors` joined along `dim` (shapes checked by the op).
pub(crate) fn cat(tensors: &[Tensor], dim: usize, shape: &[usize]) -> Result<Storage> {
    let _profile = profile::kernel(Kind::Copy);
    let all: Vec<&Tensor> = tensors.iter().collect();
    device_of("cat", &all)?;
    let x = &tensors[0];
    on_device!(x, T => Ok(cpu::cat::<T>(tensors, dim, shape)),
        bf16 => Ok(cpu::bf16::cat(tensors, dim, shape)),
        cuda => cuda::cat(tensors, dim, shape),
        cuda_bf16 => cuda::bf16::cat(tensors, dim, shape))
}
/// `indices` picked along `dim`.
pub(crate) fn index_select(x: &Tensor, dim: usize, indices: &[usize]) -> Result<Storage> {
    let _profile = profile::kernel(Kind::Copy);
    on_device!(x, T => Ok(cpu::index_select::<T>(x, dim, indices)),
        bf16 => Ok(cpu::bf16::index_select(x, dim, indices)),
        cuda => cuda::index_select(x, dim, indices),
        cuda_bf16 => cuda::bf16::index_select(x, dim, indices))
}
/// dx of index_select: dy scatter-added into zeros of `in_shape`.
pub(crate) fn index_select_backward(
    dy: &Tensor,
    dim: usize,
    indices: &[usize],
    in_shape: &[usize],
) -> Result<Storage> {
    let _profile = profile::kernel(Kind::Copy);
    on_device!(dy, T => Ok(cpu::index_select_backward::<T>(dy, dim, indices, in_shape)),
        bf16 => Ok(cpu::bf16::index_select_backward(dy, dim, indices, in_shape)),
        cuda => cuda::index_select_backward(dy, dim, indices, in_shape),
        cuda_bf16 => cuda::bf16::index_select_backward(dy, dim, indices, in_shape))
}
/// The values of `x` in `dtype` (on the GPU: F32 <-> BF16, with the CPU's rounding rule).
pub(crate) fn to_dtype(x: &Tensor, dtype: DType) -> Result<Storage> {
    let _profile = profile::kernel(Kind::Copy);
    match x.device() {
        Device::Cpu => Ok(with_dtype!(dtype, T => cpu::to_dtype::<T>(x))),
        Device::Cuda(_) => cuda::bf16::to_dtype(x, dtype),
    }
}

/// `x` copied row-major to `device`, same dtype (the caller handles `device == x.device()`).
pub(crate) fn to_device(x: &Tensor, device: Device, op: &'static str) -> Result<Storage> {
    let _profile = profile::kernel(Kind::Copy);
    match (x.device(), device) {
        (Device::Cpu, Device::Cuda(ordinal)) => cuda::upload(x, ordinal, op),
        (Device::Cuda(_), Device::Cpu) => cuda::download(x, op),
        (from, to) => Err(EngineError::arg(
            op,
            x.shape(),
            format!("no copy from {from:?} to {to:?}"),
        )),
    }
}

// ---- in-place updates (not recorded in the graph) ----------------------------------------------

/// Copies `src`'s values into `dst`'s storage (same shape and dtype, `dst` contiguous).
pub(crate) fn assign(dst: &Tensor, src: &Tensor) -> Result<()> {
    let _profile = profile::kernel(Kind::Copy);
    device_of("assign", &[dst, src])?;
    match dst.device() {
        Device::Cpu => with_dtype!(dst.dtype(), T => {
            let values = src.to_vec::<T>()?;
            dst.update_in_place(|d: &mut [T]| d.copy_from_slice(&values))
        }),
        Device::Cuda(_) if dst.dtype() == DType::BF16 => cuda::bf16::assign(dst, src),
        Device::Cuda(_) => cuda::assign(dst, src),
    }
}

/// `f` on the elements of a contiguous tensor of dtype `T` (checked by the caller): in place on
/// the host, through one download and one upload on the GPU.
pub(crate) fn update_in_place<T: Element, R>(
    t: &Tensor,
    f: impl FnOnce(&mut [T]) -> R,
) -> Result<R> {
    let _profile = profile::kernel(Kind::InPlace);
    match t.device() {
        Device::Cpu => {
            let mut guard = t.write_storage();
            let s = T::slice_mut(guard.cpu_mut())
                .expect("engine bug: update_in_place's caller checks the dtype");
            let l = t.layout();
            Ok(f(&mut s[l.offset..l.offset + l.numel()]))
        }
        Device::Cuda(_) => cuda::update_in_place(t, f),
    }
}
