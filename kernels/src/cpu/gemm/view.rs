//! Raw matrix views shared by the GEMM driver and the packing routines (a leaf module, so
//! `driver` and `pack` both import it and neither imports the other).

/// A read-only strided matrix (raw, so tasks can share it across threads).
#[derive(Clone, Copy)]
pub(crate) struct View {
    pub ptr: *const f32,
    pub rs: usize,
    pub cs: usize,
}

/// A writable matrix with unit column stride; tasks write disjoint tiles.
#[derive(Clone, Copy)]
pub(crate) struct ViewMut {
    pub ptr: *mut f32,
    pub rs: usize,
}

impl View {
    /// The view moved by `off` elements (a method, so closures capture the whole Sync view).
    pub fn offset(self, off: usize) -> View {
        View {
            ptr: self.ptr.wrapping_add(off),
            ..self
        }
    }
}

impl ViewMut {
    pub fn offset(self, off: usize) -> *mut f32 {
        self.ptr.wrapping_add(off)
    }
}

// SAFETY: the driver hands each task a disjoint set of C tiles and only reads A and B.
unsafe impl Send for View {}
unsafe impl Sync for View {}
unsafe impl Send for ViewMut {}
unsafe impl Sync for ViewMut {}

/// A row vector added to every row of C once its product is complete (a linear layer's bias:
/// C = alpha * op(A) op(B) + beta * C + 1 bias^T), or nothing (null). Raw, so tasks share it.
#[derive(Clone, Copy)]
pub(crate) struct Bias(pub *const f32);

impl Bias {
    pub const NONE: Bias = Bias(std::ptr::null());

    pub fn of(bias: Option<&[f32]>) -> Bias {
        bias.map_or(Bias::NONE, |b| Bias(b.as_ptr()))
    }

    pub fn is_some(self) -> bool {
        !self.0.is_null()
    }

    /// C[rows, cols] += bias[cols], while the block is still in cache (a no-op for none).
    ///
    /// # Safety
    /// The rows and columns must lie inside C, `bias` must hold at least `cols.end` values, and
    /// no other thread may touch this block.
    pub unsafe fn add(
        self,
        c: ViewMut,
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
    ) {
        if !self.is_some() || cols.is_empty() {
            return;
        }
        let b = std::slice::from_raw_parts(self.0.add(cols.start), cols.len());
        for i in rows {
            let row = std::slice::from_raw_parts_mut(c.offset(i * c.rs + cols.start), cols.len());
            for (x, &v) in row.iter_mut().zip(b) {
                *x += v;
            }
        }
    }
}

// SAFETY: read only; the caller keeps the bias alive for the whole GEMM.
unsafe impl Send for Bias {}
unsafe impl Sync for Bias {}
