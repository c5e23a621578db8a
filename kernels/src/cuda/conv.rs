//! im2col / col2im on device buffers, batched (kernels/cuda/conv.cu; docs/conv.md). Same layout
//! as `cpu::conv::{im2col,col2im}_reference`: image [N, C, H, W] <-> cols [N, C*kh*kw, oh*ow].
//! col2im gathers per image element in the reference's (ki, kj) order: no atomics, deterministic.

use super::device::GpuDevice;
use super::nvrtc::CONV;
use super::reduce::{check_len, grid_1d, to_i32};
use super::signature::{Entry, Param::*};
use super::Result;
use crate::conv::Conv2dGeometry;
use cudarc::driver::{CudaSlice, DeviceRepr, PushKernelArg};

/// The kernel's `Geometry` struct (passed by value).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct GeometryC {
    channels: i32,
    height: i32,
    width: i32,
    kernel_h: i32,
    kernel_w: i32,
    stride_h: i32,
    stride_w: i32,
    pad_h: i32,
    pad_w: i32,
    out_h: i32,
    out_w: i32,
}

// SAFETY: a plain #[repr(C)] struct of i32, the same layout as the kernel's `Geometry`.
unsafe impl DeviceRepr for GeometryC {}

const GEOMETRY: crate::cuda::signature::Param = Struct(std::mem::size_of::<GeometryC>());

/// The PTX entry of each kernel as the launches below pass its arguments (checked against the
/// compiled PTX by `kernels/tests/cuda_ops.rs`).
pub const ENTRIES: &[Entry] = &[
    Entry::new("im2col_f32", &[Ptr, Ptr, I32, GEOMETRY]),
    Entry::new("col2im_f32", &[Ptr, Ptr, I32, GEOMETRY]),
];

fn geometry(g: &Conv2dGeometry) -> Result<GeometryC> {
    if g.kernel_h == 0 || g.kernel_w == 0 || g.stride_h == 0 || g.stride_w == 0 {
        return Err(format!(
            "conv geometry {g:?}: kernel and stride must be positive"
        ));
    }
    if g.height + 2 * g.pad_h < g.kernel_h || g.width + 2 * g.pad_w < g.kernel_w {
        return Err(format!(
            "conv geometry {g:?}: kernel larger than the padded image"
        ));
    }
    Ok(GeometryC {
        channels: to_i32("channels", g.channels)?,
        height: to_i32("height", g.height)?,
        width: to_i32("width", g.width)?,
        kernel_h: to_i32("kernel_h", g.kernel_h)?,
        kernel_w: to_i32("kernel_w", g.kernel_w)?,
        stride_h: to_i32("stride_h", g.stride_h)?,
        stride_w: to_i32("stride_w", g.stride_w)?,
        pad_h: to_i32("pad_h", g.pad_h)?,
        pad_w: to_i32("pad_w", g.pad_w)?,
        out_h: to_i32("out_h", g.out_h())?,
        out_w: to_i32("out_w", g.out_w())?,
    })
}

/// image [batch, C, H, W] -> cols [batch, C*kh*kw, oh*ow] (every element written).
pub fn im2col(
    dev: &GpuDevice,
    g: &Conv2dGeometry,
    batch: usize,
    image: &CudaSlice<f32>,
    cols: &mut CudaSlice<f32>,
) -> Result<()> {
    let gc = geometry(g)?;
    let n_img = batch * g.channels * g.height * g.width;
    let n_cols = batch * g.col_rows() * g.col_cols();
    check_len("im2col image", n_img, image.len())?;
    check_len("im2col cols", n_cols, cols.len())?;
    if n_cols == 0 {
        return Ok(());
    }
    let f = dev.function(CONV, "im2col_f32")?;
    let b_i = to_i32("batch", batch)?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(image).arg(cols).arg(&b_i).arg(&gc);
    unsafe { b.launch(grid_1d(n_cols)) }
        .map_err(|e| format!("launch im2col_f32 (batch {batch}, {g:?}): {e}"))?;
    Ok(())
}

/// cols [batch, C*kh*kw, oh*ow] -> image [batch, C, H, W], the adjoint of im2col (overlapping
/// windows summed; every image element written).
pub fn col2im(
    dev: &GpuDevice,
    g: &Conv2dGeometry,
    batch: usize,
    cols: &CudaSlice<f32>,
    image: &mut CudaSlice<f32>,
) -> Result<()> {
    let gc = geometry(g)?;
    let n_img = batch * g.channels * g.height * g.width;
    let n_cols = batch * g.col_rows() * g.col_cols();
    check_len("col2im cols", n_cols, cols.len())?;
    check_len("col2im image", n_img, image.len())?;
    if n_img == 0 {
        return Ok(());
    }
    let f = dev.function(CONV, "col2im_f32")?;
    let b_i = to_i32("batch", batch)?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(cols).arg(image).arg(&b_i).arg(&gc);
    unsafe { b.launch(grid_1d(n_img)) }
        .map_err(|e| format!("launch col2im_f32 (batch {batch}, {g:?}): {e}"))?;
    Ok(())
}
