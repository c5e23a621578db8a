//! Where a tensor's elements live. `Storage` is an enum over devices so a `Cuda` variant (device
//! buffers from cudarc) slots in beside `Cpu` without changing `Tensor`; views share one storage.

use crate::pool;
use crate::DType;

/// The device a tensor lives on.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    Cpu,
}

/// A tensor's buffer, on some device.
#[derive(Debug)]
pub enum Storage {
    Cpu(CpuStorage),
}

/// A host buffer of one element type.
#[derive(Debug)]
pub enum CpuStorage {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Storage {
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
        }
    }
    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(CpuStorage::F32(_)) => DType::F32,
            Storage::Cpu(CpuStorage::F64(_)) => DType::F64,
        }
    }
    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(CpuStorage::F32(v)) => v.len(),
            Storage::Cpu(CpuStorage::F64(v)) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn cpu(&self) -> &CpuStorage {
        match self {
            Storage::Cpu(s) => s,
        }
    }
    pub fn cpu_mut(&mut self) -> &mut CpuStorage {
        match self {
            Storage::Cpu(s) => s,
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
