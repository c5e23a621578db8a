//! Copies between the host and the GPU that keep the dtype (f32 and BF16: CUDA holds no f64), and
//! the host-side in-place update of a device buffer (one download, one upload). Driver failures
//! come back as errors naming the op.

use super::buffer;
use crate::storage::{cuda_device, cuda_err, CpuStorage, CudaBuffer, CudaStorage, Storage};
use crate::{bf16, DType, Element, EngineError, Result, Tensor};

/// `x` (a host tensor, any layout) copied row-major to the GPU `ordinal`.
pub(crate) fn upload(x: &Tensor, ordinal: usize, op: &'static str) -> Result<Storage> {
    if !matches!(x.dtype(), DType::F32 | DType::BF16) {
        // (checked before the device, so the message is the same with or without a GPU)
        return Err(EngineError::arg(
            op,
            x.shape(),
            format!(
                "{:?} tensors cannot go to CUDA (it holds F32 and BF16: convert with \
                 .to_dtype first)",
                x.dtype()
            ),
        ));
    }
    let dev = cuda_device(ordinal)?;
    let err = cuda_err(op, x.shape());
    // an empty tensor gets a one-element buffer (the driver allocates no zero-length one)
    let data = match x.dtype() {
        DType::BF16 => CudaBuffer::BF16(
            x.with_contiguous(|s: &[bf16]| {
                dev.upload(if s.is_empty() { &[bf16::ZERO] } else { s })
            })
            .map_err(err)?,
        ),
        _ => CudaBuffer::F32(
            x.with_contiguous(|s: &[f32]| dev.upload(if s.is_empty() { &[0.0] } else { s }))
                .map_err(err)?,
        ),
    };
    Ok(Storage::Cuda(CudaStorage { data, dev }))
}

/// The elements of CUDA tensor `x` in row-major order, in a host buffer of its dtype.
pub(crate) fn download(x: &Tensor, op: &'static str) -> Result<Storage> {
    let x = match x.is_contiguous() && x.layout().offset == 0 {
        true => x.clone(),
        false => Tensor::from_storage(crate::backend::contiguous(x)?, x.shape()),
    };
    let n = x.numel();
    let guard = x.read_storage();
    let cs = buffer(op, &x, &guard)?;
    let err = cuda_err(op, x.shape());
    let host = match &cs.data {
        CudaBuffer::F32(d) => {
            let mut v = cs.dev.download(d).map_err(err)?;
            v.truncate(n);
            CpuStorage::F32(v)
        }
        CudaBuffer::BF16(d) => {
            let mut v = cs.dev.download(d).map_err(err)?;
            v.truncate(n);
            CpuStorage::BF16(v)
        }
    };
    Ok(Storage::Cpu(host))
}

/// `f` applied on the host to the elements of a contiguous CUDA tensor of dtype `T` (checked by
/// the caller): one download and one upload of its storage (optimiser code written for host
/// slices; the device updates are `cuda_adamw_step`, `cuda_ema_update`).
pub(crate) fn update_in_place<T: Element, R>(
    t: &Tensor,
    f: impl FnOnce(&mut [T]) -> R,
) -> Result<R> {
    const OP: &str = "update_in_place";
    let mut guard = t.write_storage();
    let s = guard
        .cuda_mut()
        .ok_or_else(|| crate::storage::not_on_cuda(OP, t.shape()))?;
    let err = cuda_err(OP, t.shape());
    let l = t.layout();
    let apply = |host: &mut CpuStorage| -> Result<R> {
        let values = T::slice_mut(host).ok_or_else(|| {
            EngineError::arg(
                OP,
                t.shape(),
                "engine bug: the dtype was checked by the caller",
            )
        })?;
        Ok(f(&mut values[l.offset..l.offset + l.numel()]))
    };
    let (data, r) = match &s.data {
        CudaBuffer::F32(d) => {
            let mut host = CpuStorage::F32(s.dev.download(d).map_err(&err)?);
            let r = apply(&mut host)?;
            let v = f32::slice(&host).expect("an f32 buffer");
            (CudaBuffer::F32(s.dev.upload(v).map_err(&err)?), r)
        }
        CudaBuffer::BF16(d) => {
            let mut host = CpuStorage::BF16(s.dev.download(d).map_err(&err)?);
            let r = apply(&mut host)?;
            let v = bf16::slice(&host).expect("a BF16 buffer");
            (CudaBuffer::BF16(s.dev.upload(v).map_err(&err)?), r)
        }
    };
    s.data = data;
    Ok(r)
}
