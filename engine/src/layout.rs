//! Shape, element strides and offset of a tensor inside its storage. Views (reshape of a
//! contiguous tensor, permute, narrow, broadcast) are new layouts over the same storage.

/// Element (i0, i1, ...) lives at `offset + sum(ik * strides[k])` in the storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
    pub offset: usize,
}

/// Row-major strides of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        strides[k] = strides[k + 1] * shape[k + 1];
    }
    strides
}

impl Layout {
    pub fn contiguous(shape: &[usize]) -> Layout {
        Layout {
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            offset: 0,
        }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Row-major with no gaps (dims of size 1 may have any stride).
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1;
        for (&n, &s) in self.shape.iter().zip(&self.strides).rev() {
            if n != 1 && s != expected {
                return false;
            }
            expected *= n;
        }
        true
    }

    pub fn permute(&self, perm: &[usize]) -> Layout {
        Layout {
            shape: perm.iter().map(|&p| self.shape[p]).collect(),
            strides: perm.iter().map(|&p| self.strides[p]).collect(),
            offset: self.offset,
        }
    }

    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Layout {
        let mut l = self.clone();
        l.offset += start * self.strides[dim];
        l.shape[dim] = len;
        l
    }

    /// The same elements under `shape`, without a copy, when the layout is contiguous.
    pub fn reshape(&self, shape: &[usize]) -> Option<Layout> {
        if !self.is_contiguous() {
            return None;
        }
        let mut l = Layout::contiguous(shape);
        l.offset = self.offset;
        Some(l)
    }

    /// A stride-0 view repeating size-1 (or missing leading) dims up to `shape`; numpy rules.
    pub fn broadcast_to(&self, shape: &[usize]) -> Option<Layout> {
        if shape.len() < self.shape.len() {
            return None;
        }
        let lead = shape.len() - self.shape.len();
        let mut strides = vec![0; shape.len()];
        for k in 0..self.shape.len() {
            let (from, to) = (self.shape[k], shape[lead + k]);
            if from == to {
                strides[lead + k] = self.strides[k];
            } else if from != 1 {
                return None;
            }
        }
        Some(Layout {
            shape: shape.to_vec(),
            strides,
            offset: self.offset,
        })
    }

    /// Whether dims `lo..hi` can be merged into one dim with a single stride (that of dim hi-1).
    pub fn dims_merge(&self, lo: usize, hi: usize) -> bool {
        (lo..hi.saturating_sub(1)).all(|k| {
            self.shape[k] == 1 || self.strides[k] == self.strides[k + 1] * self.shape[k + 1]
        })
    }

    /// Calls `f` with the storage index of every element, in row-major order of the shape.
    pub fn for_each_offset(&self, mut f: impl FnMut(usize)) {
        let rank = self.shape.len();
        if self.numel() == 0 {
            return;
        }
        if rank == 0 {
            f(self.offset);
            return;
        }
        let (inner_n, inner_s) = (self.shape[rank - 1], self.strides[rank - 1]);
        let mut index = vec![0usize; rank - 1];
        let mut base = self.offset;
        loop {
            for j in 0..inner_n {
                f(base + j * inner_s);
            }
            // odometer over the outer dims
            let mut k = rank - 1;
            loop {
                if k == 0 {
                    return;
                }
                k -= 1;
                index[k] += 1;
                base += self.strides[k];
                if index[k] < self.shape[k] {
                    break;
                }
                base -= self.strides[k] * self.shape[k];
                index[k] = 0;
            }
        }
    }
}

/// Decomposes `shape` around `dim` as (outer, size of dim, inner).
pub(crate) fn split_dims(shape: &[usize], dim: usize) -> (usize, usize, usize) {
    let outer = shape[..dim].iter().product();
    let inner = shape[dim + 1..].iter().product();
    (outer, shape[dim], inner)
}
