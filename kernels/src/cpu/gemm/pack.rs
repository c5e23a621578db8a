//! Packing: copy a block of an operand into the order the microkernel reads it, so its inner loop
//! walks memory contiguously whatever the operand's strides (transposed or general views).
//!
//! - A block (mc x kc) -> MR-row panels, panel after panel; inside a panel column p holds the MR
//!   values A[i.., p] side by side: `dst[panel * MR * kc + p * MR + i]`.
//! - B panel (kc x nr) -> `dst[p * NR + j]`, one row of NR values per p.
//!
//! Rows or columns past the matrix edge are written as zeros, so the microkernel always computes a
//! full tile; the padding never reaches C (only the valid corner is stored).

use super::view::View;

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
                let col = |p: usize| a.ptr.add((p0 + p) * a.cs + i);
                match (mr, rows) {
                    // Fixed-size copies: a memcpy call per 56 bytes cost 11 % of 64 x 25088 x 192.
                    (14, 14) => copy_rows::<14>(col, kc, out),
                    (6, 6) => copy_rows::<6>(col, kc, out),
                    (4, 4) => copy_rows::<4>(col, kc, out),
                    _ => {
                        for p in 0..kc {
                            let o = &mut out[p * mr..p * mr + mr];
                            o[..rows].copy_from_slice(std::slice::from_raw_parts(col(p), rows));
                            o[rows..].fill(0.0);
                        }
                    }
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

/// Packs rows p0..p0+kc, columns j0..j0+nc of B as consecutive NR-column panels (`nc` need not be
/// a multiple of NR; the last panel is padded).
///
/// A row-major B is read row by row across all panels (one sequential stream per row) rather than
/// panel by panel, which would walk kc rows `row_stride` apart for every 128 bytes and miss the TLB
/// and the prefetcher on long rows.
pub(crate) fn pack_b_block(
    b: View,
    p0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    nr_full: usize,
    dst: &mut [f32],
) {
    let full = nc / nr_full;
    if b.cs == 1 && full > 0 {
        // SAFETY: rows p0..p0+kc, columns j0..j0+nc lie inside B (checked by the caller).
        unsafe {
            let row = |p: usize| b.ptr.add((p0 + p) * b.rs + j0);
            match nr_full {
                32 => copy_panels::<32>(row, kc, full, dst),
                16 => copy_panels::<16>(row, kc, full, dst),
                8 => copy_panels::<8>(row, kc, full, dst),
                _ => {
                    for jp in 0..full {
                        let out = &mut dst[jp * kc * nr_full..(jp + 1) * kc * nr_full];
                        pack_b_panel(b, p0, kc, j0 + jp * nr_full, nr_full, nr_full, out);
                    }
                }
            }
        }
    } else {
        for jp in 0..full {
            let out = &mut dst[jp * kc * nr_full..(jp + 1) * kc * nr_full];
            pack_b_panel(b, p0, kc, j0 + jp * nr_full, nr_full, nr_full, out);
        }
    }
    if nc > full * nr_full {
        let out = &mut dst[full * kc * nr_full..(full + 1) * kc * nr_full];
        pack_b_panel(
            b,
            p0,
            kc,
            j0 + full * nr_full,
            nc - full * nr_full,
            nr_full,
            out,
        );
    }
}

/// `dst[jp * kc * N + p * N..][..N] = row(p)[jp * N..][..N]` for p < kc, jp < panels.
///
/// # Safety
/// Each `row(p)` must point at `panels * N` readable floats; `dst` holds `panels * kc * N`.
#[inline(always)]
unsafe fn copy_panels<const N: usize>(
    row: impl Fn(usize) -> *const f32,
    kc: usize,
    panels: usize,
    dst: &mut [f32],
) {
    assert!(dst.len() >= panels * kc * N);
    for p in 0..kc {
        let src = row(p);
        for jp in 0..panels {
            let o = dst.as_mut_ptr().add(jp * kc * N + p * N) as *mut [f32; N];
            *o = *(src.add(jp * N) as *const [f32; N]);
        }
    }
}

/// `dst[p * N..][..N] = row(p)[..N]` for p < kc.
///
/// # Safety
/// Each `row(p)` must point at `N` readable floats; `dst` holds at least `N * kc`.
#[inline(always)]
unsafe fn copy_rows<const N: usize>(row: impl Fn(usize) -> *const f32, kc: usize, dst: &mut [f32]) {
    for (p, o) in dst.chunks_exact_mut(N).take(kc).enumerate() {
        let o: &mut [f32; N] = o.try_into().unwrap();
        *o = *(row(p) as *const [f32; N]);
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
            let row = |p: usize| b.ptr.add((p0 + p) * b.rs + j0);
            match (nr_full, nr) {
                // Full panels: fixed-size row copies (a memcpy call per 128 bytes cost 14 % of a
                // 128 x 512 x 2048 product).
                (32, 32) => copy_rows::<32>(row, kc, dst),
                (16, 16) => copy_rows::<16>(row, kc, dst),
                (8, 8) => copy_rows::<8>(row, kc, dst),
                _ => {
                    for (p, o) in dst.chunks_exact_mut(nr_full).take(kc).enumerate() {
                        o[..nr].copy_from_slice(std::slice::from_raw_parts(row(p), nr));
                        o[nr..].fill(0.0);
                    }
                }
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
