//! Shape ops. Views (reshape of a contiguous tensor, permute/transpose, narrow/split, broadcast)
//! share storage and copy nothing; `contiguous`, `cat` and `index_select` copy.
//! Backward of a view maps the gradient back to the input's shape (inverse permute, zero-padding
//! for narrow, sum over broadcast dims).

use crate::backend;
use crate::layout::Layout;
use crate::{EngineError, Result, Tensor};

pub(crate) fn check_dim(op: &'static str, t: &Tensor, dim: usize) -> Result<()> {
    if dim >= t.rank() {
        return Err(EngineError::arg(
            op,
            t.shape(),
            format!("axis {dim} out of range for rank {}", t.rank()),
        ));
    }
    Ok(())
}

impl Tensor {
    /// A row-major copy (or `self` when already contiguous). Backward: identity. Panics where
    /// [`Tensor::try_contiguous`] returns an error (only a CUDA driver failure: a host copy
    /// cannot fail).
    pub fn contiguous(&self) -> Tensor {
        self.try_contiguous()
            .unwrap_or_else(|e| panic!("contiguous: {e} (try_contiguous returns this error)"))
    }

    /// [`Tensor::contiguous`], with a CUDA driver failure as an error (the layout is valid by
    /// construction, so nothing else can fail).
    pub fn try_contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous() {
            return Ok(self.clone());
        }
        let data = backend::contiguous(self)?;
        Ok(Tensor::from_storage_op(
            data,
            self.shape(),
            "contiguous",
            &[self],
            Box::new(|g| Ok(vec![Some(g.clone())])),
        ))
    }

    /// The same elements under a new shape; a view when contiguous, else a copy.
    /// x [..] -> y [shape];  dx = dy reshaped back.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if shape.iter().product::<usize>() != self.numel() {
            return Err(EngineError::shape("reshape", self.shape(), shape));
        }
        let src = self.try_contiguous()?;
        let layout = src.layout().reshape(shape).expect("contiguous after copy");
        let in_shape = self.shape().to_vec();
        Ok(Tensor::view_op(
            &src,
            layout,
            "reshape",
            Box::new(move |g| Ok(vec![Some(g.reshape(&in_shape)?)])),
        ))
    }

    /// Merges all dims into one.
    pub fn flatten_all(&self) -> Result<Tensor> {
        self.reshape(&[self.numel()])
    }

    /// Inserts a dim of size 1 at `dim` (view).
    pub fn unsqueeze(&self, dim: usize) -> Result<Tensor> {
        if dim > self.rank() {
            return Err(EngineError::arg(
                "unsqueeze",
                self.shape(),
                format!("axis {dim} out of range"),
            ));
        }
        let mut shape = self.shape().to_vec();
        shape.insert(dim, 1);
        let mut layout = self.layout().clone();
        layout.shape = shape;
        let stride = if dim < self.rank() {
            self.strides()[dim] * self.shape()[dim]
        } else {
            1
        };
        layout.strides.insert(dim, stride);
        let in_shape = self.shape().to_vec();
        Ok(Tensor::view_op(
            self,
            layout,
            "unsqueeze",
            Box::new(move |g| Ok(vec![Some(g.reshape(&in_shape)?)])),
        ))
    }

    /// Removes the size-1 dim `dim` (view).
    pub fn squeeze(&self, dim: usize) -> Result<Tensor> {
        check_dim("squeeze", self, dim)?;
        if self.shape()[dim] != 1 {
            return Err(EngineError::arg(
                "squeeze",
                self.shape(),
                format!("axis {dim} has size {}", self.shape()[dim]),
            ));
        }
        let mut layout = self.layout().clone();
        layout.shape.remove(dim);
        layout.strides.remove(dim);
        let in_shape = self.shape().to_vec();
        Ok(Tensor::view_op(
            self,
            layout,
            "squeeze",
            Box::new(move |g| Ok(vec![Some(g.reshape(&in_shape)?)])),
        ))
    }

    /// Reorders dims: y.shape[i] = x.shape[perm[i]] (view).  dx = dy permuted by the inverse.
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let mut seen = vec![false; self.rank()];
        let valid = perm.len() == self.rank()
            && perm
                .iter()
                .all(|&p| p < seen.len() && !std::mem::replace(&mut seen[p], true));
        if !valid {
            return Err(EngineError::arg(
                "permute",
                self.shape(),
                format!("{perm:?} is not a permutation of the axes"),
            ));
        }
        let mut inverse = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        Ok(Tensor::view_op(
            self,
            self.layout().permute(perm),
            "permute",
            Box::new(move |g| Ok(vec![Some(g.permute(&inverse)?)])),
        ))
    }

    /// Swaps two dims (view).
    pub fn transpose(&self, d0: usize, d1: usize) -> Result<Tensor> {
        check_dim("transpose", self, d0.max(d1))?;
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(d0, d1);
        self.permute(&perm)
    }

    /// Swaps the last two dims (view), the transpose of a matrix or of each matrix in a batch.
    pub fn t(&self) -> Result<Tensor> {
        if self.rank() < 2 {
            return Err(EngineError::arg("t", self.shape(), "needs rank >= 2"));
        }
        self.transpose(self.rank() - 2, self.rank() - 1)
    }

    /// Elements `start..start+len` of `dim` (view).  dx = dy placed in zeros.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Tensor> {
        check_dim("narrow", self, dim)?;
        if start + len > self.shape()[dim] {
            return Err(EngineError::arg(
                "narrow",
                self.shape(),
                format!("range {start}..{} exceeds axis {dim}", start + len),
            ));
        }
        let full = self.shape().to_vec();
        Ok(Tensor::view_op(
            self,
            self.layout().narrow(dim, start, len),
            "narrow",
            Box::new(move |g| {
                let region = Layout::contiguous(&full).narrow(dim, start, len);
                let dx = backend::scatter_into_zeros(g, &full, &region)?;
                Ok(vec![Some(Tensor::from_storage(dx, &full))])
            }),
        ))
    }

    /// Views of consecutive pieces of `dim` with the given sizes (e.g. q, k, v of a fused QKV).
    pub fn split(&self, dim: usize, sizes: &[usize]) -> Result<Vec<Tensor>> {
        check_dim("split", self, dim)?;
        if sizes.iter().sum::<usize>() != self.shape()[dim] {
            return Err(EngineError::arg(
                "split",
                self.shape(),
                format!("sizes {sizes:?} do not add up to axis {dim}"),
            ));
        }
        let mut start = 0;
        sizes
            .iter()
            .map(|&n| {
                let piece = self.narrow(dim, start, n);
                start += n;
                piece
            })
            .collect()
    }

    /// `n` equal views along `dim`.
    pub fn chunk(&self, n: usize, dim: usize) -> Result<Vec<Tensor>> {
        check_dim("chunk", self, dim)?;
        if n == 0 || !self.shape()[dim].is_multiple_of(n) {
            return Err(EngineError::arg(
                "chunk",
                self.shape(),
                format!("axis {dim} does not split into {n} equal parts"),
            ));
        }
        self.split(dim, &vec![self.shape()[dim] / n; n])
    }

    /// A stride-0 view repeating size-1 or missing leading dims (numpy rules).  dx = sum of dy
    /// over the repeated dims.
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        let layout = self
            .layout()
            .broadcast_to(shape)
            .ok_or_else(|| EngineError::shape("broadcast_to", self.shape(), shape))?;
        let in_shape = self.shape().to_vec();
        Ok(Tensor::view_op(
            self,
            layout,
            "broadcast_to",
            Box::new(move |g| Ok(vec![Some(g.sum_to(&in_shape)?)])),
        ))
    }

    /// Sums a gradient of a broadcast result back to `shape` (the inverse of `broadcast_to`).
    pub fn sum_to(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        if Layout::contiguous(shape)
            .broadcast_to(self.shape())
            .is_none()
        {
            return Err(EngineError::shape("sum_to", self.shape(), shape));
        }
        let lead = self.rank() - shape.len();
        // leading dims first, as one axis-0 sum over a [lead, rest] view
        let mut t = if lead > 0 {
            let rest: usize = self.shape()[lead..].iter().product();
            let outer: usize = self.shape()[..lead].iter().product();
            self.reshape(&[outer, rest])?
                .sum(0, false)?
                .reshape(&self.shape()[lead..])?
        } else {
            self.clone()
        };
        for (k, &n) in shape.iter().enumerate() {
            if n == 1 && t.shape()[k] != 1 {
                t = t.sum(k, true)?;
            } else if n != t.shape()[k] {
                return Err(EngineError::shape("sum_to", self.shape(), shape));
            }
        }
        Ok(t)
    }

    /// Joins tensors of equal shape except along `dim` (copy).  Each dx is a narrow of dy.
    pub fn cat(tensors: &[Tensor], dim: usize) -> Result<Tensor> {
        let first = tensors
            .first()
            .ok_or_else(|| EngineError::arg("cat", &[], "needs at least one tensor"))?;
        check_dim("cat", first, dim)?;
        for t in tensors {
            first.check_dtype("cat", t)?;
            let same = t.rank() == first.rank()
                && (0..t.rank()).all(|k| k == dim || t.shape()[k] == first.shape()[k]);
            if !same {
                return Err(EngineError::shape("cat", first.shape(), t.shape()));
            }
        }
        let sizes: Vec<usize> = tensors.iter().map(|t| t.shape()[dim]).collect();
        let mut shape = first.shape().to_vec();
        shape[dim] = sizes.iter().sum();
        let inputs: Vec<&Tensor> = tensors.iter().collect();
        let data = backend::cat(tensors, dim, &shape)?;
        Ok(Tensor::from_storage_op(
            data,
            &shape,
            "cat",
            &inputs,
            Box::new(move |g: &Tensor| Ok(g.split(dim, &sizes)?.into_iter().map(Some).collect())),
        ))
    }

    /// Picks `indices` along `dim` (copy; indices may repeat).  dx: dy scatter-added back.
    pub fn index_select(&self, dim: usize, indices: &[usize]) -> Result<Tensor> {
        check_dim("index_select", self, dim)?;
        let n = self.shape()[dim];
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err(EngineError::arg(
                "index_select",
                self.shape(),
                format!("index {bad} out of range on axis {dim}"),
            ));
        }
        let mut shape = self.shape().to_vec();
        shape[dim] = indices.len();
        let data = backend::index_select(self, dim, indices)?;
        let indices = indices.to_vec();
        let in_shape = self.shape().to_vec();
        Ok(Tensor::from_storage_op(
            data,
            &shape,
            "index_select",
            &[self],
            Box::new(move |g| {
                let dx = backend::index_select_backward(g, dim, &indices, &in_shape)?;
                Ok(vec![Some(Tensor::from_storage(dx, &in_shape))])
            }),
        ))
    }

    /// A copy in another dtype.  dx = dy converted back. Panics where [`Tensor::try_to_dtype`]
    /// returns an error (on CUDA: F64, which it cannot hold, or a driver failure; a host
    /// conversion cannot fail).
    pub fn to_dtype(&self, dtype: crate::DType) -> Tensor {
        self.try_to_dtype(dtype)
            .unwrap_or_else(|e| panic!("to_dtype: {e} (try_to_dtype returns this error)"))
    }

    /// A copy in another dtype, or the error naming the dtype the device cannot hold.
    pub fn try_to_dtype(&self, dtype: crate::DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        let data = backend::to_dtype(self, dtype)?;
        let back = self.dtype();
        Ok(Tensor::from_storage_op(
            data,
            self.shape(),
            "to_dtype",
            &[self],
            Box::new(move |g| Ok(vec![Some(g.try_to_dtype(back)?)])),
        ))
    }
}
