//! Where each maximum of `max_axis` sits along its axis, kept on the tensor's device (the backward
//! reads it there: no round trip). A leaf module: the seam and both backends name it.

pub(crate) enum Argmax {
    Host(Vec<usize>),
    Cuda(crate::kernels::cuda::CudaSlice<i32>),
}
