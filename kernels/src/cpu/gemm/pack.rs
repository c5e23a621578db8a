//! Packing: copy a block of an operand into the order the microkernel reads it, so its inner loop
//! walks memory contiguously whatever the operand's strides (transposed or general views).
//!
//! - A block (mc x kc) -> MR-row panels, panel after panel; inside a panel column p holds the MR
//!   values A[i.., p] side by side: `dst[panel * MR * kc + p * MR + i]`.
//! - B panel (kc x nr) -> `dst[p * NR + j]`, one row of NR values per p.
//!
//! Rows or columns past the matrix edge are written as zeros, so the microkernel always computes a
//! full tile; the padding never reaches C (only the valid corner is stored).

use super::driver::View;

/// Packs rows i0..i0+mc, columns p0..p0+kc of A into MR-row panels.
pub(crate) fn pack_a(
    a: View,
    i0: usize,
    mc: usize,
    p0: usize,
    kc: usize,
    mr: usize,
    dst: &mut [f32],
) {
    for (panel, out) in dst.chunks_mut(mr * kc).take(mc.div_ceil(mr)).enumerate() {
        let i = i0 + panel * mr;
        let rows = mr.min(i0 + mc - i);
        // SAFETY: rows i..i+rows and columns p0..p0+kc lie inside A (checked by the caller).
        unsafe {
            if a.cs == 1 {
                // Row-major A: a transpose. Walk p outer so the panel is written contiguously
                // while the rows are read as `rows` parallel streams (each stays in L1).
                let row = |r: usize| a.ptr.add((i + r) * a.rs + p0);
                match (mr, rows) {
                    (14, 14) => transpose_rows::<14>(std::array::from_fn(row), kc, out),
                    (6, 6) => transpose_rows::<6>(std::array::from_fn(row), kc, out),
                    (4, 4) => transpose_rows::<4>(std::array::from_fn(row), kc, out),
                    _ => {
                        for p in 0..kc {
                            for r in 0..mr {
                                out[p * mr + r] = if r < rows { *row(r).add(p) } else { 0.0 };
                            }
                        }
                    }
                }
            } else if a.rs == 1 {
                // Column-major A (a transposed operand): each panel column is contiguous.
                for p in 0..kc {
                    let src = std::slice::from_raw_parts(a.ptr.add((p0 + p) * a.cs + i), rows);
                    let o = &mut out[p * mr..p * mr + mr];
                    o[..rows].copy_from_slice(src);
                    o[rows..].fill(0.0);
                }
            } else {
                for p in 0..kc {
                    for r in 0..mr {
                        out[p * mr + r] = if r < rows {
                            *a.ptr.add((i + r) * a.rs + (p0 + p) * a.cs)
                        } else {
                            0.0
                        };
                    }
                }
            }
        }
    }
}

/// `out[p * R + r] = rows[r][p]` for p < kc: one full MR-row panel of a row-major A.
///
/// # Safety
/// Each `rows[r]` must point at `kc` readable floats; `out` holds at least `R * kc`.
#[inline(always)]
unsafe fn transpose_rows<const R: usize>(rows: [*const f32; R], kc: usize, out: &mut [f32]) {
    for (p, o) in out.chunks_exact_mut(R).take(kc).enumerate() {
        for (r, x) in o.iter_mut().enumerate() {
            *x = *rows[r].add(p);
        }
    }
}

/// Packs rows p0..p0+kc, columns j0..j0+nr of B (nr <= NR) into `dst[p * NR + j]`.
pub(crate) fn pack_b_panel(
    b: View,
    p0: usize,
    kc: usize,
    j0: usize,
    nr: usize,
    nr_full: usize,
    dst: &mut [f32],
) {
    // SAFETY: rows p0..p0+kc and columns j0..j0+nr lie inside B (checked by the caller).
    unsafe {
        if b.cs == 1 {
            for (p, o) in dst.chunks_exact_mut(nr_full).take(kc).enumerate() {
                let src = std::slice::from_raw_parts(b.ptr.add((p0 + p) * b.rs + j0), nr);
                o[..nr].copy_from_slice(src);
                o[nr..].fill(0.0);
            }
        } else if b.rs == 1 {
            // Column-major B (a transposed operand): read each column contiguously.
            for j in 0..nr {
                let src = std::slice::from_raw_parts(b.ptr.add((j0 + j) * b.cs + p0), kc);
                for (p, &v) in src.iter().enumerate() {
                    *dst.get_unchecked_mut(p * nr_full + j) = v;
                }
            }
            if nr < nr_full {
                for p in 0..kc {
                    dst[p * nr_full + nr..p * nr_full + nr_full].fill(0.0);
                }
            }
        } else {
            for p in 0..kc {
                for j in 0..nr_full {
                    dst[p * nr_full + j] = if j < nr {
                        *b.ptr.add((p0 + p) * b.rs + (j0 + j) * b.cs)
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}
