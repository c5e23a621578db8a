//! The index maths of neighborhood_attention_mma.cu, transcribed (`start_g`, `inv_lo`, `inv_hi`,
//! `in_window`, `halo_of`, the warps' row ranges), checked per axis against the window rule of
//! window.rs on every length 1..=40, odd kernel 3..=13, dilation 1..=4 and tile 8 / 4 / 2: each
//! query's walk visits every key of its window, the mask keeps exactly those, everything it reads
//! lies inside the staged halo, and the plan's halo bounds every tile's halo.

use super::*;
use crate::neighborhood_attention::window::{inverse_window, window};

fn start_g(idx: usize, n: usize, k: usize) -> usize {
    let kk = k.min(n);
    (idx.saturating_sub(kk / 2)).min(n - kk)
}
fn inv_lo(a: usize, n: usize, k: usize) -> usize {
    let kk = k.min(n);
    if a < kk {
        0
    } else {
        a - (kk - 1 - kk / 2)
    }
}
fn inv_hi(a: usize, n: usize, k: usize) -> usize {
    let kk = k.min(n);
    if a >= n - kk {
        n - 1
    } else {
        a + kk / 2
    }
}
fn in_window(q: usize, key: usize, n: usize, k: usize) -> bool {
    let s = start_g(q, n, k);
    key >= s && key < s + k.min(n)
}

/// One axis of one tile: (first, count) of the halo, as `halo_of` computes it.
fn halo(t0: usize, t1: usize, n: usize, k: usize, inverse: bool) -> (usize, usize) {
    if inverse {
        let lo = inv_lo(t0, n, k);
        (lo, inv_hi(t1 - 1, n, k) + 1 - lo)
    } else {
        let lo = start_g(t0, n, k);
        (lo, start_g(t1 - 1, n, k) + k.min(n) - lo)
    }
}

fn shapes() -> impl Iterator<Item = (usize, usize, usize)> {
    (1..=40).flat_map(|len| {
        (3..=13)
            .step_by(2)
            .flat_map(move |k| (1..=4).map(move |d| (len, k, d)))
    })
}

#[test]
fn device_window_formulas_match_window_rs() {
    for (len, k, dil) in shapes() {
        for i in 0..len {
            let (g, idx) = (i % dil, i / dil);
            let n = group_len(len, dil, g);
            let w = window(i, len, k, dil);
            assert_eq!(start_g(idx, n, k) * dil + g, w.first, "{len} {k} {dil} {i}");
            let inv = inverse_window(i, len, k, dil);
            assert_eq!(inv_lo(idx, n, k) * dil + g, inv.first);
            assert_eq!(inv_hi(idx, n, k) + 1 - inv_lo(idx, n, k), inv.count);
            for key in 0..n {
                let abs = key * dil + g;
                let want = abs >= w.first && abs < w.first + w.size * dil;
                assert_eq!(in_window(idx, key, n, k), want, "{len} {k} {dil} {i} {key}");
            }
        }
    }
}

/// Per axis: the warp walk of the query-tile passes (rows: pairs of tile rows, `pair` = 2; columns:
/// one column per fragment row, `pair` = 1) covers each window once, inside the halo; the same for
/// the key-tile pass over inverse neighbourhoods.
#[test]
fn warp_walks_cover_every_window_inside_the_planned_halo() {
    for (len, k, dil) in shapes() {
        for tile in [8, 4, 2] {
            for inverse in [false, true] {
                let planned = max_halo(len, k, dil, tile, inverse);
                for g in 0..dil.min(len) {
                    let n = group_len(len, dil, g);
                    for t0 in (0..n).step_by(tile) {
                        let t1 = (t0 + tile).min(n);
                        let (h0, hn) = halo(t0, t1, n, k, inverse);
                        assert!(hn <= planned, "halo {hn} > plan {planned}: {len} {k} {dil}");
                        for r0 in (t0..t1).step_by(2) {
                            let rows = [r0, (r0 + 1).min(t1 - 1)];
                            // The rows the warp walks (partners: keys, or queries for inverse).
                            let walk = if inverse {
                                inv_lo(rows[0], n, k)..inv_hi(rows[1], n, k) + 1
                            } else {
                                start_g(rows[0], n, k)..start_g(rows[1], n, k) + k.min(n)
                            };
                            assert!(walk.start >= h0 && walk.end <= h0 + hn);
                            for &r in &rows {
                                let need: Vec<usize> = (0..n)
                                    .filter(|&x| {
                                        if inverse {
                                            in_window(x, r, n, k)
                                        } else {
                                            in_window(r, x, n, k)
                                        }
                                    })
                                    .collect();
                                assert!(!need.is_empty());
                                assert!(need.iter().all(|x| walk.contains(x)));
                                assert!(need.iter().all(|&x| x >= h0 && x < h0 + hn));
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn plans_of_the_stated_shapes() {
    let mut p = Na2d::new(8, 56, 56, 4, 32, [7, 7]);
    let f = plan(&p, false).unwrap();
    assert_eq!((f.tile_r, f.halo_r, f.cw), (8, 14, 16));
    assert_eq!(f.smem, 14 * 16 * 2 * 40 * 2);
    assert_eq!(f.tiles, [7, 7]);
    assert!(unsupported(&p).is_none());
    p.head_dim = 48;
    assert!(unsupported(&p).unwrap().contains("head_dim 48"));
    p.head_dim = 64;
    p.kernel_size = [7, 4];
    assert!(unsupported(&p).unwrap().contains("kernel_size[1] = 4"));
    p.kernel_size = [13, 13];
    p.dilation = [2, 3];
    // d 64, k 13: the key tiles at the borders see up to 20 query rows: 185 KB, over the limit.
    assert!(unsupported(&p).unwrap().contains("shared memory"));
    p.head_dim = 32;
    assert_eq!(unsupported(&p), None);
    p.head_dim = 64;
    p.kernel_size = [11, 11];
    assert_eq!(unsupported(&p), None);
    // Every stated shape either has a plan or says why not; none panics.
    for (len, k, dil) in shapes() {
        for d in HEAD_DIMS {
            let mut q = Na2d::new(1, len, len + 3, 1, d, [k, k]);
            q.dilation = [dil, dil];
            if let Some(why) = unsupported(&q) {
                assert!(why.contains("shared memory") || why.contains("columns"));
            } else {
                for inverse in [false, true] {
                    let pl = plan(&q, inverse).unwrap();
                    assert!(pl.smem <= SMEM_LIMIT && pl.cw <= 32 && pl.threads() <= 128);
                }
            }
        }
    }
}
