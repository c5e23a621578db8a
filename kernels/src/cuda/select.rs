//! Selections along one axis on device buffers (kernels/cuda/select.cu; docs/gpu-ops.md): max with
//! the position of each max, its backward, index_select and its backward. A tensor is viewed as
//! x [outer, n, inner] around the axis. Every kernel writes each output element once (no zero
//! fill, no atomics): deterministic, and bitwise equal to the CPU's loops (the same comparisons,
//! the same summation order).

use super::device::GpuDevice;
use super::nvrtc::SELECT;
use super::reduce::{check_len, grid_1d, to_i32};
use super::signature::{Entry, Param::*};
use super::Result;
use cudarc::driver::{CudaSlice, PushKernelArg};

/// The PTX entry of each kernel as the launches below pass its arguments (checked against the
/// compiled PTX by `kernels/tests/cuda_ops.rs`).
pub const ENTRIES: &[Entry] = &[
    Entry::new("max_axis_f32", &[Ptr, Ptr, Ptr, I64, I32, I64]),
    Entry::new("max_backward_f32", &[Ptr, Ptr, Ptr, I64, I32, I64]),
    Entry::new("index_select_f32", &[Ptr, Ptr, Ptr, I64, I32, I32, I64]),
    Entry::new(
        "index_select_backward_f32",
        &[Ptr, Ptr, Ptr, Ptr, I64, I32, I32, I64],
    ),
];

/// (outer, n, inner) of a tensor viewed around one axis.
pub type AxisDims = (usize, usize, usize);

/// y[o, i] = max_j x[o, j, i] and at[o, i] = the first j holding it (NaN never wins: the CPU's
/// `v > best` rule). `n` must be at least 1.
pub fn max_axis(
    dev: &GpuDevice,
    (outer, n, inner): AxisDims,
    x: &CudaSlice<f32>,
    y: &mut CudaSlice<f32>,
    at: &mut CudaSlice<i32>,
) -> Result<()> {
    let total = outer * inner;
    check_len("max x", outer * n * inner, x.len())?;
    check_len("max y", total, y.len())?;
    check_len("max positions", total, at.len())?;
    if total == 0 {
        return Ok(());
    }
    if n == 0 {
        return Err(format!("max over an empty axis ({outer} x 0 x {inner})"));
    }
    let f = dev.function(SELECT, "max_axis_f32")?;
    let (o, n_i, i) = (outer as i64, to_i32("axis length", n)?, inner as i64);
    let mut b = dev.stream().launch_builder(&f);
    b.arg(x).arg(y).arg(at).arg(&o).arg(&n_i).arg(&i);
    unsafe { b.launch(grid_1d(total)) }
        .map_err(|e| format!("launch max_axis_f32 ({outer} x {n} x {inner}): {e}"))?;
    Ok(())
}

/// dx[o, j, i] = dy[o, i] where j = at[o, i], else 0 (every element of dx written).
pub fn max_backward(
    dev: &GpuDevice,
    (outer, n, inner): AxisDims,
    dy: &CudaSlice<f32>,
    at: &CudaSlice<i32>,
    dx: &mut CudaSlice<f32>,
) -> Result<()> {
    let total = outer * n * inner;
    check_len("max backward dy", outer * inner, dy.len())?;
    check_len("max backward positions", outer * inner, at.len())?;
    check_len("max backward dx", total, dx.len())?;
    if total == 0 {
        return Ok(());
    }
    let f = dev.function(SELECT, "max_backward_f32")?;
    let (o, n_i, i) = (outer as i64, to_i32("axis length", n)?, inner as i64);
    let mut b = dev.stream().launch_builder(&f);
    b.arg(dy).arg(at).arg(dx).arg(&o).arg(&n_i).arg(&i);
    unsafe { b.launch(grid_1d(total)) }
        .map_err(|e| format!("launch max_backward_f32 ({outer} x {n} x {inner}): {e}"))?;
    Ok(())
}

/// The kernels' (outer, n, m, inner) arguments, after checking every index is below n.
fn index_args((outer, n, inner): AxisDims, indices: &[usize]) -> Result<(i64, i32, i32, i64)> {
    if let Some(bad) = indices.iter().find(|&&i| i >= n) {
        return Err(format!("index {bad} out of range for an axis of {n}"));
    }
    Ok((
        outer as i64,
        to_i32("axis length", n)?,
        to_i32("indices", indices.len())?,
        inner as i64,
    ))
}

/// y[o, j, i] = x[o, indices[j], i]; x is [outer, n, inner], y [outer, indices.len(), inner].
pub fn index_select(
    dev: &GpuDevice,
    (outer, n, inner): AxisDims,
    indices: &[usize],
    x: &CudaSlice<f32>,
    y: &mut CudaSlice<f32>,
) -> Result<()> {
    let m = indices.len();
    let (o, n_i, m_i, i) = index_args((outer, n, inner), indices)?;
    check_len("index_select x", outer * n * inner, x.len())?;
    check_len("index_select y", outer * m * inner, y.len())?;
    if outer * m * inner == 0 {
        return Ok(());
    }
    let idx = dev.upload(&indices.iter().map(|&i| i as i64).collect::<Vec<_>>())?;
    let f = dev.function(SELECT, "index_select_f32")?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(x)
        .arg(&idx)
        .arg(y)
        .arg(&o)
        .arg(&n_i)
        .arg(&m_i)
        .arg(&i);
    unsafe { b.launch(grid_1d(outer * m * inner)) }.map_err(|e| {
        format!("launch index_select_f32 ({outer} x {n} x {inner}, {m} indices): {e}")
    })?;
    Ok(())
}

/// The inverse of `indices` over an axis of `n`: (starts [n + 1], js) with
/// js[starts[s] .. starts[s + 1]] = the positions j where indices[j] == s, increasing.
pub fn inverse_index(indices: &[usize], n: usize) -> (Vec<i64>, Vec<i64>) {
    let mut starts = vec![0i64; n + 1];
    for &s in indices {
        starts[s + 1] += 1;
    }
    for s in 0..n {
        starts[s + 1] += starts[s];
    }
    let mut fill: Vec<i64> = starts[..n].to_vec();
    let mut js = vec![0i64; indices.len()];
    for (j, &s) in indices.iter().enumerate() {
        js[fill[s] as usize] = j as i64;
        fill[s] += 1;
    }
    (starts, js)
}

/// dx[o, s, i] = sum of dy[o, j, i] over the j with indices[j] == s, in increasing j (0 where no
/// index points): the CPU's scatter-add as a gather, every element of dx written once.
pub fn index_select_backward(
    dev: &GpuDevice,
    (outer, n, inner): AxisDims,
    indices: &[usize],
    dy: &CudaSlice<f32>,
    dx: &mut CudaSlice<f32>,
) -> Result<()> {
    let m = indices.len();
    let (o, n_i, m_i, i) = index_args((outer, n, inner), indices)?;
    check_len("index_select backward dy", outer * m * inner, dy.len())?;
    check_len("index_select backward dx", outer * n * inner, dx.len())?;
    if outer * n * inner == 0 {
        return Ok(());
    }
    let (starts, js) = inverse_index(indices, n);
    let starts = dev.upload(&starts)?;
    // at least one element: a device buffer of zero length cannot be passed
    let js = dev.upload(if js.is_empty() { &[0i64][..] } else { &js[..] })?;
    let f = dev.function(SELECT, "index_select_backward_f32")?;
    let mut b = dev.stream().launch_builder(&f);
    b.arg(dy)
        .arg(&starts)
        .arg(&js)
        .arg(dx)
        .arg(&o)
        .arg(&n_i)
        .arg(&m_i)
        .arg(&i);
    unsafe { b.launch(grid_1d(outer * n * inner)) }.map_err(|e| {
        format!("launch index_select_backward_f32 ({outer} x {n} x {inner}, {m} indices): {e}")
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::inverse_index;

    #[test]
    fn inverse_index_lists_each_position_in_order() {
        // repeats, a gap (2 never picked), unsorted
        let (starts, js) = inverse_index(&[3, 0, 3, 1, 0, 3], 4);
        assert_eq!(starts, vec![0, 2, 3, 3, 6]);
        assert_eq!(js, vec![1, 4, 3, 0, 2, 5]);
        let (starts, js) = inverse_index(&[], 2);
        assert_eq!((starts, js), (vec![0, 0, 0], vec![]));
    }
}
