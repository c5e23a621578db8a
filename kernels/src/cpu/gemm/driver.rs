//! The blocked SGEMM driver (Goto/BLIS loop nest), generic over a register-tile microkernel.
//!
//! Loops, outermost first (block sizes come from the microkernel, see docs/gemm.md):
//!
//! ```text
//! pack all of op(B) once, shared:   [pc block of KC rows][NR-column panel][KC][NR]
//!                                   (BMode::Shared; or Local / InPlace, see BMode)
//! parallel over tasks (m-range x n-range of C, whole MR/NR tiles; never split k)
//!   for ic  in task rows,  step MC          A block
//!     for pc in 0..k,      step KC          (C = alpha*AB + beta*C on the first, += after)
//!       pack A[ic.., pc..] into MR-row panels  -> thread-local buffer
//!                                   (skipped for a row-major A when n <= ROWS_A_MAX_N)
//!       for jc in task cols, step NC        B block, stays in L2 (BMode::Local: packed here)
//!         for ir in 0..mc,  step MR         A micro-panel MR x KC, stays in L1
//!           for jr in jc.., step NR         B micro-panel KC x NR streamed from L2
//!             microkernel: MR x NR tile of C in registers, k-loop of rank-1 updates
//! ```
//!
//! Every element of C is the same sequence of fused multiply-adds over p = 0..k (in KC blocks),
//! whatever the task split or packing choice, so results do not depend on the thread count.

use rayon::prelude::*;
use std::cell::Cell;

use super::pack::{pack_a, pack_b_block, pack_b_panel};
use super::view::{Bias, View, ViewMut};
use crate::cpu::bf16::round_to_bf16_in_place;

/// One call of a microkernel: C[0..mr, 0..nr] = alpha * sum_p A[i, p] B[p, j] + beta * C
/// (C is not read when beta == 0). The kernel always reads MR rows of A and NR columns of B
/// (padding is zero), and writes only the mr x nr corner of C (unit column stride).
pub(crate) struct Tile {
    pub kc: usize,
    /// Packed A: element (i, p) at `a[p * MR + i]`. Row A: element (i, p) at `a[i * a_rs + p]`.
    pub a: *const f32,
    pub a_rs: usize,
    /// The next A micro-panel (same layout), prefetched during this tile's k-loop; null for none.
    pub a_next: *const f32,
    /// Element (p, j) at `b[p * b_rs + j]`.
    pub b: *const f32,
    pub b_rs: usize,
    pub c: *mut f32,
    pub c_rs: usize,
    pub mr: usize,
    pub nr: usize,
    pub alpha: f32,
    pub beta: f32,
}

/// A register-tile microkernel and the cache blocking that suits it.
pub(crate) trait MicroKernel {
    const MR: usize;
    const NR: usize;
    /// Depth of one rank-KC update: an MR x KC panel of A should sit in L1.
    const KC: usize;
    /// Rows of A packed at a time.
    const MC: usize;
    /// Columns of B per block: a KC x NC block of packed B should sit in L2.
    const NC: usize;
    /// # Safety
    /// `t` must describe readable MR x kc (packed) A and kc x NR B, and a writable mr x nr C.
    unsafe fn tile_packed_a(t: &Tile);
    /// # Safety
    /// As [`MicroKernel::tile_packed_a`], with A read in place: MR rows of kc values, `a_rs` apart.
    unsafe fn tile_rows_a(t: &Tile);
}

/// Above this n, A is packed even when it is row-major: each A micro-panel then serves many B panels,
/// which pays for the copy (and packing avoids L1 set conflicts of power-of-two row strides).
const ROWS_A_MAX_N: usize = 512;

/// Up to this m, a row-major B is read in place instead of being packed first.
const B_IN_PLACE_MAX_M: usize = 256;

/// Whether to read B where it lies: its rows must be unit-stride, and each B panel serves few A
/// panels (small m), so a copy of all of B costs more than it saves; for tiny m always, otherwise
/// only when rows are not a multiple of 1 KiB apart (such strides pile a panel's rows onto a few
/// cache sets).
fn b_in_place<K: MicroKernel>(m: usize, b: View) -> bool {
    b.cs == 1 && (m <= 2 * K::MR || (m <= B_IN_PLACE_MAX_M && !b.rs.is_multiple_of(256)))
}

/// Below this many multiply-adds a GEMM runs on the calling thread only.
pub(crate) const SERIAL_MAX_FMAS: usize = 1 << 18;

/// Roughly this many multiply-adds per parallel task (finer tasks balance better on a busy machine).
const TASK_FMAS: usize = 1 << 22;

thread_local! {
    pub(crate) static A_BUF: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    pub(crate) static B_BUF: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Buffers above this many floats (64 MiB) are not kept after a call; below, keeping them saves
/// re-faulting fresh pages on every call (measurable for a 19 MB packed B of a weight gradient).
const KEEP_MAX: usize = 1 << 24;

/// Runs `f` on a 64-byte aligned scratch slice of `len` floats taken from the thread-local `key`
/// (taken, not borrowed, so a nested call on the same thread allocates instead of panicking).
pub(crate) fn with_scratch<R>(
    key: &'static std::thread::LocalKey<Cell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    let mut v = key.with(|c| c.take());
    if v.len() < len + 16 {
        v = vec![0.0; len + 16];
    }
    let off = v.as_ptr().align_offset(64).min(15);
    let r = f(&mut v[off..off + len]);
    if v.len() <= KEEP_MAX {
        key.with(|c| c.set(v));
    }
    r
}

/// C = alpha * A * B + beta * C for an m x k A, k x n B and m x n C (unit column stride),
/// k >= 1 and m, n >= 1. `parallel = false` keeps everything on the calling thread. `round`:
/// every packed panel is rounded to BF16 (and widened back) before the microkernel reads it, and
/// neither operand is read in place, so C is the f32 GEMM of the BF16-rounded operands, bit for
/// bit (the same FMA sequence as without `round`). `bias` is added to each block of rows of C as
/// soon as its product is complete (while the block is in cache).
pub(crate) fn gemm<K: MicroKernel>(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: View,
    b: View,
    beta: f32,
    c: ViewMut,
    parallel: bool,
    round: bool,
    bias: Bias,
) {
    let parallel = parallel && m * n * k > SERIAL_MAX_FMAS && rayon::current_num_threads() > 1;
    let pack_a = round || a.cs != 1 || n > ROWS_A_MAX_N;
    let (m_step, n_step) = if parallel {
        split::<K>(m, k, n, rayon::current_num_threads())
    } else {
        (m, n)
    };
    let b_mode = if !round && b_in_place::<K>(m, b) {
        BMode::InPlace
    } else if m_step >= m && m <= K::MC {
        // One block of rows per task: each B block is used by exactly one task, right away.
        BMode::Local
    } else {
        BMode::Shared
    };
    let n_pad = n.div_ceil(K::NR) * K::NR;

    let run = |bp: &mut [f32]| {
        let bp = bp.as_mut_ptr();
        if b_mode == BMode::Shared {
            pack_all_b::<K>(k, n, b, bp, parallel, round);
        }
        let plan = Plan {
            k,
            n,
            alpha,
            beta,
            a,
            b,
            bpack: View {
                ptr: bp,
                rs: 0,
                cs: 0,
            },
            pack_a,
            b_mode,
            n_pad,
            c,
            round,
            bias,
        };
        let mt = m.div_ceil(m_step);
        let nt = n.div_ceil(n_step);
        let one = |t: usize| {
            let (i0, j0) = (t / nt * m_step, t % nt * n_step);
            plan.task::<K>(i0, (i0 + m_step).min(m), j0, (j0 + n_step).min(n));
        };
        if parallel {
            (0..mt * nt).into_par_iter().for_each(one);
        } else {
            (0..mt * nt).for_each(one);
        }
    };
    if b_mode == BMode::Shared {
        with_scratch(&B_BUF, k * n_pad, run);
    } else {
        run(&mut []);
    }
}

/// Where the microkernel reads B from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BMode {
    /// The caller's buffer (see [`b_in_place`]).
    InPlace,
    /// All of B packed once before the tasks start, shared by them (tasks that split m reuse it).
    Shared,
    /// Each task packs its own KC x NC blocks into its thread-local buffer just before use: when
    /// every task holds all rows of C, nothing is packed twice, and the copy stays in this core's
    /// L2 instead of going out to memory and back.
    Local,
}

/// Task shape: (rows, cols) of C per task, in whole tiles. Picks the grid of mt x nt tasks with
/// the least estimated time per thread: the largest task's multiply-adds times the rounds of tasks,
/// plus re-reading (and packing) A once per column of tasks and B once per row of tasks, at about 8
/// multiply-adds per element moved. At least 2 tasks per thread when there is enough work, so a
/// core slowed by another process does not hold the others up.
fn split<K: MicroKernel>(m: usize, k: usize, n: usize, threads: usize) -> (usize, usize) {
    split_tiles((K::MR, K::NR), m, k, n, threads)
}

/// [`split`] for an mr x nr register tile.
pub(crate) fn split_tiles(
    (mr, nr): (usize, usize),
    m: usize,
    k: usize,
    n: usize,
    threads: usize,
) -> (usize, usize) {
    let m_tiles = m.div_ceil(mr);
    let n_tiles = n.div_ceil(nr);
    let min_tasks = (m * n * k / TASK_FMAS).clamp(threads, 2 * threads);
    let mut best = (usize::MAX, 0, (m_tiles * mr, n_tiles * nr));
    for mt in 1..=m_tiles.min(4 * threads) {
        for nt in 1..=n_tiles.min(4 * threads) {
            let (m_step, n_step) = (m_tiles.div_ceil(mt), n_tiles.div_ceil(nt));
            // Tasks actually produced once steps are rounded up to whole tiles.
            let tasks = m_tiles.div_ceil(m_step) * n_tiles.div_ceil(n_step);
            if tasks < min_tasks.min(m_tiles * n_tiles) {
                continue;
            }
            let largest = m_step * mr * n_step * nr * k;
            let moved = 8 * (nt * m * k + mt * k * n) / threads;
            let time = tasks.div_ceil(threads) * largest + moved;
            if time < best.0 || (time == best.0 && tasks > best.1) {
                best = (time, tasks, (m_step * mr, n_step * nr));
            }
        }
    }
    best.2
}

/// Packs all of B: block of rows pc..pc+kc starts at `pc * n_pad`, panel jp of it at `jp * kc * NR`.
/// In parallel over (KC block, NC block) pieces.
fn pack_all_b<K: MicroKernel>(
    k: usize,
    n: usize,
    b: View,
    dst: *mut f32,
    parallel: bool,
    round: bool,
) {
    let n_pad = n.div_ceil(K::NR) * K::NR;
    let n_blocks = n.div_ceil(K::NC);
    let k_blocks = k.div_ceil(K::KC);
    let dst = ViewMut { ptr: dst, rs: 0 };
    let one = |idx: usize| {
        let (kb, jb) = (idx / n_blocks, idx % n_blocks);
        let (pc, jc) = (kb * K::KC, jb * K::NC);
        let kc = K::KC.min(k - pc);
        let nc = K::NC.min(n - jc);
        let len = nc.div_ceil(K::NR) * K::NR * kc;
        // SAFETY: piece (kb, jb) owns dst[pc * n_pad + jc * kc..][..len], disjoint from the others.
        unsafe {
            let out = std::slice::from_raw_parts_mut(dst.offset(pc * n_pad + jc * kc), len);
            pack_b_block(b, pc, kc, jc, nc, K::NR, out);
            if round {
                round_to_bf16_in_place(out);
            }
        }
    };
    let total = k_blocks * n_blocks;
    if parallel && k * n >= 1 << 16 {
        (0..total).into_par_iter().for_each(one);
    } else {
        (0..total).for_each(one);
    }
}

/// Everything a task needs; shared read-only between tasks.
struct Plan {
    k: usize,
    n: usize,
    alpha: f32,
    beta: f32,
    a: View,
    b: View,
    bpack: View,
    pack_a: bool,
    b_mode: BMode,
    n_pad: usize,
    c: ViewMut,
    /// Round packed panels to BF16 (see [`gemm`]).
    round: bool,
    bias: Bias,
}

impl Plan {
    /// C[i0..i1, j0..j1] (i0 and j0 on tile boundaries).
    fn task<K: MicroKernel>(&self, i0: usize, i1: usize, j0: usize, j1: usize) {
        let (mr_, nr_, kc_) = (K::MR, K::NR, K::KC);
        // Scratch: packed A block | packed B block | one padded A and one padded B micro-panel.
        let a_len = if self.pack_a { K::MC * kc_ } else { 0 };
        let b_len = if self.b_mode == BMode::Local {
            kc_ * K::NC
        } else {
            0
        };
        let len = a_len + b_len + mr_ * kc_ + kc_ * nr_;
        with_scratch(&A_BUF, len, |buf| {
            let (ablock, rest) = buf.split_at_mut(a_len);
            let (bblock, rest) = rest.split_at_mut(b_len);
            let (aedge, bedge) = rest.split_at_mut(mr_ * kc_);
            for ic in (i0..i1).step_by(K::MC) {
                let mc = K::MC.min(i1 - ic);
                for pc in (0..self.k).step_by(kc_) {
                    let kc = kc_.min(self.k - pc);
                    let beta = if pc == 0 { self.beta } else { 1.0 };
                    if self.pack_a {
                        pack_a(self.a, ic, mc, pc, kc, mr_, ablock);
                        if self.round {
                            round_to_bf16_in_place(&mut ablock[..mc.div_ceil(mr_) * mr_ * kc]);
                        }
                    }
                    // With B read in place, its last partial panel is padded once per pc block.
                    let last = (self.n - 1) / nr_ * nr_;
                    if self.b_mode == BMode::InPlace && !self.n.is_multiple_of(nr_) && j1 > last {
                        pack_b_panel(self.b, pc, kc, last, self.n - last, nr_, bedge);
                    }
                    for jc in (j0..j1).step_by(K::NC) {
                        let jc_end = (jc + K::NC).min(j1);
                        if self.b_mode == BMode::Local {
                            pack_b_block(self.b, pc, kc, jc, jc_end - jc, nr_, bblock);
                            if self.round {
                                let len = (jc_end - jc).div_ceil(nr_) * nr_ * kc;
                                round_to_bf16_in_place(&mut bblock[..len]);
                            }
                        }
                        for ir in (0..mc).step_by(mr_) {
                            let mr = mr_.min(mc - ir);
                            let i = ic + ir;
                            let (a_ptr, a_rs, packed) = if self.pack_a {
                                (ablock[ir * kc..].as_ptr(), 0, true)
                            } else if mr == mr_ {
                                // SAFETY: rows i..i+MR, columns pc..pc+kc are inside A.
                                let p = unsafe { self.a.ptr.add(i * self.a.rs + pc) };
                                (p, self.a.rs, false)
                            } else {
                                pack_a(self.a, i, mr, pc, kc, mr_, aedge);
                                (aedge.as_ptr(), 0, true)
                            };
                            // The next full A micro-panel, for the kernel to prefetch.
                            let a_next = if ir + 2 * mr_ > mc {
                                std::ptr::null()
                            } else if packed {
                                ablock[(ir + mr_) * kc..].as_ptr()
                            } else {
                                a_ptr.wrapping_add(mr_ * self.a.rs)
                            };
                            for jr in (jc..jc_end).step_by(nr_) {
                                let nr = nr_.min(self.n - jr);
                                let (b_ptr, b_rs) = match self.b_mode {
                                    BMode::Shared => {
                                        let off = pc * self.n_pad + jr / nr_ * kc * nr_;
                                        // SAFETY: inside the packed-B buffer of k * n_pad floats.
                                        (unsafe { self.bpack.ptr.add(off) }, nr_)
                                    }
                                    BMode::Local => {
                                        (bblock[(jr - jc) / nr_ * kc * nr_..].as_ptr(), nr_)
                                    }
                                    BMode::InPlace if nr == nr_ => {
                                        // SAFETY: rows pc..pc+kc, columns jr..jr+NR are inside B.
                                        let off = pc * self.b.rs + jr;
                                        (unsafe { self.b.ptr.add(off) }, self.b.rs)
                                    }
                                    BMode::InPlace => (bedge.as_ptr(), nr_),
                                };
                                let t = Tile {
                                    kc,
                                    a: a_ptr,
                                    a_rs,
                                    a_next: if jr == jc { a_next } else { std::ptr::null() },
                                    b: b_ptr,
                                    b_rs,
                                    // SAFETY: tile (i, jr) lies inside C.
                                    c: unsafe { self.c.ptr.add(i * self.c.rs + jr) },
                                    c_rs: self.c.rs,
                                    mr,
                                    nr,
                                    alpha: self.alpha,
                                    beta,
                                };
                                // SAFETY: the pointers above satisfy the microkernel's contract.
                                unsafe {
                                    if packed {
                                        K::tile_packed_a(&t)
                                    } else {
                                        K::tile_rows_a(&t)
                                    }
                                }
                            }
                        }
                    }
                }
                // SAFETY: rows ic..ic+mc and columns j0..j1 are this task's, now complete.
                unsafe { self.bias.add(self.c, ic..ic + mc, j0..j1) };
            }
        });
    }
}
