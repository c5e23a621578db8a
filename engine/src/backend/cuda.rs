//! The CUDA backend (docs/gpu-ops.md): f32 device buffers and the kernels of
//! `dinonat_kernels::cuda`; BF16 buffers are widened to f32 on the device and the results
//! rounded back ([`bf16`], the twin of `backend::cpu::bf16`). Every function returns a fresh row-major device buffer; inputs that are
//! strided views are read in place where the kernel takes strides, else copied row-major first
//! (`Tensor::with_cuda`). Errors of the driver come back as `EngineError`s naming the op.

mod attention;
pub(crate) mod bf16;
mod elementwise;
mod matmul;
mod optim;
mod select;
mod transfer;

pub(crate) use attention::{attention_backward, attention_forward, na_backward, na_forward};
pub(crate) use elementwise::{
    assign, binary, cat, contiguous, gelu_backward, gelu_forward, l2_normalize_backward,
    l2_normalize_forward, layernorm_backward, layernorm_forward, map, scatter_into_zeros,
    softmax_backward, softmax_forward, sum_all, sum_axis,
};
pub(crate) use matmul::{conv2d_backward, conv2d_forward, linear, matmul};
pub(crate) use select::{index_select, index_select_backward, max_axis, max_backward};
pub(crate) use transfer::{download, update_in_place, upload};

use crate::kernels::cuda::{CudaSlice, GpuDevice};
use crate::storage::{cuda_err, CudaBuffer, CudaStorage, Storage};
use crate::{EngineError, Result, Tensor};

/// A device buffer for `shape` (at least one element) that the op's kernel writes completely:
/// not zero-filled.
fn alloc(dev: &GpuDevice, op: &'static str, shape: &[usize]) -> Result<CudaSlice<f32>> {
    let n: usize = shape.iter().product();
    dev.uninit::<f32>(n.max(1)).map_err(cuda_err(op, shape))
}

/// A zero-filled device buffer for `shape`, for kernels that write only part of it.
fn zeros(dev: &GpuDevice, op: &'static str, shape: &[usize]) -> Result<CudaSlice<f32>> {
    let n: usize = shape.iter().product();
    dev.zeros::<f32>(n.max(1)).map_err(cuda_err(op, shape))
}

/// A device buffer as storage.
fn storage(dev: &'static GpuDevice, data: CudaSlice<f32>) -> Storage {
    Storage::Cuda(CudaStorage {
        data: CudaBuffer::F32(data),
        dev,
    })
}

/// The device buffer under a CUDA tensor's storage guard (an engine bug otherwise: the backend
/// dispatches on the device first).
fn buffer<'a>(op: &'static str, t: &Tensor, guard: &'a Storage) -> Result<&'a CudaStorage> {
    guard.cuda().ok_or_else(|| {
        EngineError::arg(
            op,
            t.shape(),
            "expected a CUDA tensor, got a CPU one (use .to)",
        )
    })
}
