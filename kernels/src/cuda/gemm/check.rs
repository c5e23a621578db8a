//! Argument checks shared by the GEMM host sides (production and the dev corner).

use crate::cuda::Result;

/// A batch of `count` matrices of `need` elements each, `stride` apart, fits a buffer of `len`.
pub(super) fn check_operand(
    name: &str,
    len: usize,
    count: usize,
    stride: usize,
    need: usize,
) -> Result<()> {
    let total = if need == 0 {
        0
    } else {
        (count - 1) * stride + need
    };
    if total > len {
        return Err(format!(
            "gemm operand {name}: needs {total} elements ({count} matrices, batch stride {stride}, \
             {need} per matrix), buffer has {len}"
        ));
    }
    Ok(())
}

pub(super) fn to_i32(what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| format!("gemm: {what} = {v} exceeds i32"))
}
