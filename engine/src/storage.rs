//! Where a tensor's elements live. `Storage` is an enum over devices: `Cpu` (host vectors) and
//! `Cuda` (an f32 or BF16 device buffer from cudarc on the process's GPU); views share one
//! storage.
//! Copies between devices are explicit (`Tensor::to`); an op given CUDA tensors runs its CUDA
//! kernels or returns "op X is not available on CUDA", never a silent copy (docs/gpu-ops.md).

use crate::kernels::cuda::{CudaSlice, GemmPrecision, GpuDevice};
use crate::pool;
use crate::{DType, EngineError, Result};
use half::bf16;

/// The device a tensor lives on. `Cuda(ordinal)`: only ordinal 0 (the process's GPU) for now.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    Cpu,
    Cuda(usize),
}

/// A tensor's buffer, on some device.
#[derive(Debug)]
pub enum Storage {
    Cpu(CpuStorage),
    Cuda(CudaStorage),
}

/// A host buffer of one element type.
#[derive(Debug)]
pub enum CpuStorage {
    F32(Vec<f32>),
    F64(Vec<f64>),
    BF16(Vec<half::bf16>),
}

/// A buffer on the GPU: f32 (what the CUDA kernels compute in) or BF16 (storage only: the
/// backend widens it to f32 on the device for every op, `backend::cuda::bf16`). No f64 on CUDA.
pub enum CudaBuffer {
    F32(CudaSlice<f32>),
    BF16(CudaSlice<bf16>),
}

/// A device buffer and the GPU it lives on.
pub struct CudaStorage {
    pub data: CudaBuffer,
    pub dev: &'static GpuDevice,
}

impl std::fmt::Debug for CudaStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaStorage({:?} x {})", self.dtype(), self.len())
    }
}

impl CudaStorage {
    pub fn dtype(&self) -> DType {
        match self.data {
            CudaBuffer::F32(_) => DType::F32,
            CudaBuffer::BF16(_) => DType::BF16,
        }
    }
    pub fn len(&self) -> usize {
        match &self.data {
            CudaBuffer::F32(d) => d.len(),
            CudaBuffer::BF16(d) => d.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The f32 buffer an f32 kernel of op `op` reads; a BF16 one is an error (an engine bug: the
    /// backend widens BF16 operands before any f32 kernel).
    pub(crate) fn f32(&self, op: &'static str, shape: &[usize]) -> Result<&CudaSlice<f32>> {
        match &self.data {
            CudaBuffer::F32(d) => Ok(d),
            CudaBuffer::BF16(_) => Err(not_f32(op, shape)),
        }
    }
    pub(crate) fn f32_mut(
        &mut self,
        op: &'static str,
        shape: &[usize],
    ) -> Result<&mut CudaSlice<f32>> {
        match &mut self.data {
            CudaBuffer::F32(d) => Ok(d),
            CudaBuffer::BF16(_) => Err(not_f32(op, shape)),
        }
    }
}

fn not_f32(op: &'static str, shape: &[usize]) -> EngineError {
    EngineError::arg(
        op,
        shape,
        "this CUDA kernel takes f32 buffers and got a BF16 one (convert with .to_dtype(DType::F32))",
    )
}

impl Storage {
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Cuda(_) => Device::Cuda(0),
        }
    }
    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(CpuStorage::F32(_)) => DType::F32,
            Storage::Cpu(CpuStorage::F64(_)) => DType::F64,
            Storage::Cpu(CpuStorage::BF16(_)) => DType::BF16,
            Storage::Cuda(s) => s.dtype(),
        }
    }
    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(CpuStorage::F32(v)) => v.len(),
            Storage::Cpu(CpuStorage::F64(v)) => v.len(),
            Storage::Cpu(CpuStorage::BF16(v)) => v.len(),
            Storage::Cuda(s) => s.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The host buffer. The backend dispatches on the device first, so a CUDA storage here is an
    /// engine bug.
    pub fn cpu(&self) -> &CpuStorage {
        match self {
            Storage::Cpu(s) => s,
            Storage::Cuda(_) => panic!("engine bug: host access to a CUDA tensor"),
        }
    }
    pub fn cpu_mut(&mut self) -> &mut CpuStorage {
        match self {
            Storage::Cpu(s) => s,
            Storage::Cuda(_) => panic!("engine bug: host access to a CUDA tensor"),
        }
    }
    pub fn cuda(&self) -> Option<&CudaStorage> {
        match self {
            Storage::Cuda(s) => Some(s),
            Storage::Cpu(_) => None,
        }
    }
    pub fn cuda_mut(&mut self) -> Option<&mut CudaStorage> {
        match self {
            Storage::Cuda(s) => Some(s),
            Storage::Cpu(_) => None,
        }
    }
}

impl Drop for CpuStorage {
    /// f32 buffers go back to the pool for the next op of the same size.
    fn drop(&mut self) {
        if let CpuStorage::F32(v) = self {
            pool::give_f32(std::mem::take(v));
        }
    }
}

/// The GPU for `Device::Cuda(ordinal)`: guarded creation, an error value without a GPU.
pub fn cuda_device(ordinal: usize) -> Result<&'static GpuDevice> {
    if ordinal != 0 {
        return Err(EngineError::arg(
            "to",
            &[],
            format!("CUDA device {ordinal} requested; only device 0 is supported"),
        ));
    }
    GpuDevice::get().map_err(|e| EngineError::arg("to", &[], e))
}

/// Waits for the work queued on `device` (nothing to wait for on the CPU); an asynchronous
/// kernel error surfaces here as an error value. Timings of GPU work call it before reading a clock.
pub fn synchronize(device: Device) -> Result<()> {
    match device {
        Device::Cpu => Ok(()),
        Device::Cuda(ordinal) => cuda_device(ordinal)?
            .synchronize()
            .map_err(|e| EngineError::arg("synchronize", &[], e)),
    }
}

/// Device memory (in use, total) in bytes on `device` (`GpuDevice::memory`: every process's
/// allocations and the allocator's cache); None on the CPU.
pub fn device_memory(device: Device) -> Result<Option<(usize, usize)>> {
    match device {
        Device::Cpu => Ok(None),
        Device::Cuda(ordinal) => cuda_device(ordinal)?
            .memory()
            .map(Some)
            .map_err(|e| EngineError::arg("device_memory", &[], e)),
    }
}

/// An error of a CUDA call inside op `op`, with the kernel's message.
pub(crate) fn cuda_err(op: &'static str, shape: &[usize]) -> impl Fn(String) -> EngineError {
    let shape = shape.to_vec();
    move |e| EngineError::arg(op, &shape, format!("CUDA: {e}"))
}

/// "op X is not available on CUDA".
pub(crate) fn not_on_cuda(op: &'static str, shape: &[usize]) -> EngineError {
    EngineError::arg(
        op,
        shape,
        format!("op {op} is not available on CUDA (move the tensor with .to(Device::Cpu))"),
    )
}

thread_local! {
    static SCOPED_PRECISION: std::cell::Cell<Option<GemmPrecision>> = const { std::cell::Cell::new(None) };
}

/// The precision the next GEMM of this thread (matmul, linear, conv2d; CPU or CUDA) runs at: the
/// innermost [`gemm_precision_scope`]'s, else `Fp32Simt` (f32 multiply-adds).
pub fn gemm_precision() -> GemmPrecision {
    SCOPED_PRECISION
        .with(|s| s.get())
        .unwrap_or(GemmPrecision::Fp32Simt)
}

/// The old name of [`gemm_precision`] (from when only CUDA read it).
pub fn cuda_gemm_precision() -> GemmPrecision {
    gemm_precision()
}

/// Restores the previous precision when dropped.
#[must_use = "the precision holds only while the guard lives: `let _p = gemm_precision_scope(..);`"]
pub struct GemmPrecisionScope {
    previous: Option<GemmPrecision>,
}

/// `let _p = gemm_precision_scope(GemmPrecision::Bf16);`: the GEMMs of this thread (matmul,
/// linear, conv2d, forward and the backward run inside the scope: the precision is read when a
/// GEMM runs) use `p` until the guard drops; scopes nest (drop them in reverse order, as blocks
/// do). CUDA: `Tf32` / `Bf16` on tensor cores, f32 accumulation. CPU: `Bf16` rounds both operands
/// to BF16 (to nearest even) and sums the products in f32 (`sgemm_bf16`, docs/gemm.md "BF16");
/// `Tf32` runs the f32 GEMM (the CPU has no TF32). Only f32 tensors are affected on the CPU (f64
/// GEMMs stay f64; BF16 tensors already hold BF16 values).
pub fn gemm_precision_scope(p: GemmPrecision) -> GemmPrecisionScope {
    let previous = SCOPED_PRECISION.with(|s| s.replace(Some(p)));
    GemmPrecisionScope { previous }
}

impl Drop for GemmPrecisionScope {
    fn drop(&mut self) {
        SCOPED_PRECISION.with(|s| s.set(self.previous));
    }
}
