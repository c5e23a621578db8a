//! Selections along one axis on the GPU (kernels::cuda::select): max with the positions of the
//! maxima kept on the device for the backward, index_select and its backward.

use super::{alloc, storage};
use crate::backend::argmax::Argmax;
use crate::kernels::cuda::select as ksel;
use crate::layout::split_dims;
use crate::storage::{cuda_err, Storage};
use crate::{EngineError, Result, Tensor};

/// y = max over `dim` and the position of each max (an i32 device buffer).
pub(crate) fn max_axis(x: &Tensor, dim: usize) -> Result<(Storage, Argmax)> {
    const OP: &str = "max";
    let dims = split_dims(x.shape(), dim);
    x.with_cuda(OP, |dev, xs| {
        let mut y = alloc(dev, OP, &[dims.0 * dims.2])?;
        let mut at = dev
            .uninit::<i32>((dims.0 * dims.2).max(1))
            .map_err(cuda_err(OP, x.shape()))?;
        ksel::max_axis(dev, dims, xs, &mut y, &mut at).map_err(cuda_err(OP, x.shape()))?;
        Ok((storage(dev, y), Argmax::Cuda(at)))
    })
}

/// dx = dy at the saved positions, 0 elsewhere; `dims` = (outer, n, inner) of x.
pub(crate) fn max_backward(
    dy: &Tensor,
    argmax: &Argmax,
    dims: (usize, usize, usize),
) -> Result<Storage> {
    const OP: &str = "max backward";
    let Argmax::Cuda(at) = argmax else {
        return Err(EngineError::arg(
            OP,
            dy.shape(),
            "the positions of the maxima are on the host, the gradient on CUDA",
        ));
    };
    let shape = [dims.0, dims.1, dims.2];
    dy.with_cuda(OP, |dev, gs| {
        let mut dx = alloc(dev, OP, &shape)?;
        ksel::max_backward(dev, dims, gs, at, &mut dx).map_err(cuda_err(OP, &shape))?;
        Ok(storage(dev, dx))
    })
}

/// `indices` picked along `dim` (the indices uploaded per call).
pub(crate) fn index_select(x: &Tensor, dim: usize, indices: &[usize]) -> Result<Storage> {
    const OP: &str = "index_select";
    let dims = split_dims(x.shape(), dim);
    x.with_cuda(OP, |dev, xs| {
        let mut y = alloc(dev, OP, &[dims.0, indices.len(), dims.2])?;
        ksel::index_select(dev, dims, indices, xs, &mut y).map_err(cuda_err(OP, x.shape()))?;
        Ok(storage(dev, y))
    })
}

/// dx of index_select: each element of dx the sum of the dy rows that picked it, in the CPU's
/// order.
pub(crate) fn index_select_backward(
    dy: &Tensor,
    dim: usize,
    indices: &[usize],
    in_shape: &[usize],
) -> Result<Storage> {
    const OP: &str = "index_select backward";
    let dims = split_dims(in_shape, dim);
    dy.with_cuda(OP, |dev, gs| {
        let mut dx = alloc(dev, OP, in_shape)?;
        ksel::index_select_backward(dev, dims, indices, gs, &mut dx)
            .map_err(cuda_err(OP, in_shape))?;
        Ok(storage(dev, dx))
    })
}
