//! The multiply-add rate of one core in f32 FMAs (`vfmadd231ps zmm`) and in BF16 pair dot products
//! (`vdpbf16ps zmm`, two products per f32 lane): the ceiling each BF16 GEMM path can reach, and the
//! measurement behind `isa::dpbf16_outruns_f32` (docs/gemm.md, "BF16 on this machine").
//!     cargo run -p dinonat-bench --release --example dot_rates
//!
//! Each loop issues 12 independent accumulator chains (more than latency x ports of either
//! instruction on current x86-64 cores; with 24 the compiler kept some in memory), one thread,
//! the median of 5 timed runs of 240 M instructions after a warm-up.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

#[cfg(target_arch = "x86_64")]
const CHAINS: usize = 12;
#[cfg(target_arch = "x86_64")]
const ROUNDS: usize = 20_000_000;

/// `vfmadd231ps` on 24 chains for `ROUNDS` rounds; returns a sum so nothing is optimised away.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_loop(x: f32) -> f32 {
    let (mut a, b) = (_mm512_set1_ps(1.0 + x), _mm512_set1_ps(1.0 - x));
    let mut acc = [_mm512_set1_ps(x); CHAINS];
    for _ in 0..ROUNDS {
        for c in acc.iter_mut() {
            *c = _mm512_fmadd_ps(a, b, *c);
        }
        // An operand the compiler cannot see through, so no round is folded away.
        a = std::hint::black_box(a);
    }
    acc.iter().map(|&v| _mm512_reduce_add_ps(v)).sum()
}

/// `vdpbf16ps` on 24 chains for `ROUNDS` rounds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn dp_loop(x: f32) -> f32 {
    let mut pairs = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1.0 + x), _mm512_set1_ps(1.0 - x));
    let mut acc = [_mm512_set1_ps(x); CHAINS];
    for _ in 0..ROUNDS {
        for c in acc.iter_mut() {
            *c = _mm512_dpbf16_ps(*c, pairs, pairs);
        }
        pairs = std::hint::black_box(pairs);
    }
    acc.iter().map(|&v| _mm512_reduce_add_ps(v)).sum()
}

/// Instructions per second (median of 5 after a warm-up) of `f`, which issues `CHAINS * ROUNDS`.
#[cfg(target_arch = "x86_64")]
fn rate(f: impl Fn() -> f32) -> f64 {
    use dinonat_bench::timing::{median, wall_ms};
    std::hint::black_box(f());
    let ms = median(
        (0..5)
            .map(|_| wall_ms(|| std::hint::black_box(f())).0)
            .collect(),
    );
    (CHAINS * ROUNDS) as f64 / (ms * 1e-3)
}

#[cfg(target_arch = "x86_64")]
fn main() {
    if !is_x86_feature_detected!("avx512f") {
        println!("skip: no AVX-512 on this processor");
        return;
    }
    let x = std::hint::black_box(1e-7f32);
    // SAFETY: AVX-512F checked above.
    let fma = rate(|| unsafe { fma_loop(x) });
    println!(
        "vfmadd231ps zmm: {:.2} G/s, {:.1} GFLOP/s per core (16 multiply-adds each)",
        fma * 1e-9,
        fma * 32e-9
    );
    if !is_x86_feature_detected!("avx512bf16") {
        println!("skip: no AVX512-BF16 on this processor");
        return;
    }
    // SAFETY: AVX512-BF16 checked above.
    let dp = rate(|| unsafe { dp_loop(x) });
    println!(
        "vdpbf16ps zmm:   {:.2} G/s, {:.1} GFLOP/s per core (32 multiply-adds each)",
        dp * 1e-9,
        dp * 64e-9
    );
    println!(
        "BF16 pair dot products / f32 FMAs, in multiply-adds per second: {:.2} \
         (dinonat picks the AVX512-BF16 GEMM by default only where this exceeds 1: isa::dpbf16_outruns_f32)",
        2.0 * dp / fma
    );
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    println!("skip: the dot-product rates are x86-64 instructions");
}
