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
                // Row-major A: read each row contiguously, write it strided into the panel.
                for r in 0..rows {
                    let src = std::slice::from_raw_parts(a.ptr.add((i + r) * a.rs + p0), kc);
                    for (p, &v) in src.iter().enumerate() {
                        *out.get_unchecked_mut(p * mr + r) = v;
                    }
                }
                if rows < mr {
                    for p in 0..kc {
                        out[p * mr + rows..p * mr + mr].fill(0.0);
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
