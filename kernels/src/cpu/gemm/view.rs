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
