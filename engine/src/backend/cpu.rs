//! The CPU backend: host buffers of f32 (the fast kernels) or f64 (their plain references, for
//! the gradient checks), chosen through [`CpuKernels`]; BF16 buffers are widened to f32 and the
//! results rounded back ([`bf16`]). One file per op family, forward and
//! backward side by side; every function returns a fresh row-major buffer.

mod attention;
pub(crate) mod bf16;
mod conv;
mod conv_channels_last;
mod elementwise;
mod kernels;
mod matmul;
mod reduce;
mod shape;

pub(crate) use attention::{attention_backward, attention_forward, na_backward, na_forward};
pub(crate) use conv::{conv2d_backward, conv2d_forward};
pub(crate) use conv_channels_last::{conv2d_channels_last_backward, conv2d_channels_last_forward};
pub(crate) use elementwise::{
    binary, gelu_backward, gelu_forward, l2_normalize_backward, l2_normalize_forward,
    layernorm_backward, layernorm_forward, map, softmax_backward, softmax_forward,
};
pub(crate) use kernels::CpuKernels;
pub(crate) use matmul::{linear, matmul};
pub(crate) use reduce::{max_axis, max_backward, sum_all, sum_axis};
pub(crate) use shape::{
    cat, contiguous, index_select, index_select_backward, scatter_into_zeros, to_dtype,
};

use crate::storage::Storage;
use crate::Element;

/// A host buffer as storage.
fn storage<T: Element>(v: Vec<T>) -> Storage {
    Storage::Cpu(T::wrap(v))
}
