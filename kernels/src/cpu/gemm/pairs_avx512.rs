//! AVX-512 pair packing: f32 -> BF16 pairs sixteen at a time, bit for bit the scalar
//! [`super::pairs::pair`] (round to nearest even by the integer rule of `cpu::bf16`, NaN quieted),
//! for the packers of the BF16 GEMM (`pairs::pack_pairs`, the AMX tile packer `pack_a_tiles`).
//! Masked loads read zeros past an edge: a zero f32 is the zero BF16, so they give exactly the
//! zero pairs and `(x, 0)` pairs the scalar packers write there. On an AMX Xeon the scalar
//! packers took about 70 % of a 1024^3 BF16 GEMM (docs/gemm.md, "AMX").

use std::arch::x86_64::*;

/// Whether the processor can run these packers (every processor with AVX512-BF16 can).
pub(crate) fn supported() -> bool {
    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
}

/// Whether the packers use them: [`supported`] and the active ISA is AVX-512 (`DINONAT_ISA=avx2`
/// or `portable` keeps the scalar packers, as it keeps the other kernels' lower paths).
pub(crate) fn available() -> bool {
    crate::cpu::isa::active() >= crate::cpu::isa::Isa::Avx512 && supported()
}

/// The first `n` of 16 lanes (all for n >= 16).
#[inline(always)]
fn mask(n: usize) -> __mmask16 {
    if n >= 16 {
        0xFFFF
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// Up to 16 f32 at `x` (`n` of them; the rest read as zero, nothing read past them).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load(x: *const f32, n: usize) -> __m512 {
    if n == 0 {
        _mm512_setzero_ps()
    } else {
        _mm512_maskz_loadu_ps(mask(n), x)
    }
}

/// Sixteen f32 rounded to BF16, each in the high half of its lane: `(b + 0x7FFF + lsb)`, or
/// `b | 0x0040_0000` (the quiet bit) for a NaN, as `bf16_from_f32` before its shift.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn round(x: __m512) -> __m512i {
    let b = _mm512_castps_si512(x);
    let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(1));
    let rounded = _mm512_add_epi32(b, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF)));
    let magnitude = _mm512_and_si512(b, _mm512_set1_epi32(0x7FFF_FFFF));
    let nan = _mm512_cmpgt_epu32_mask(magnitude, _mm512_set1_epi32(0x7F80_0000));
    _mm512_mask_or_epi32(rounded, nan, b, _mm512_set1_epi32(0x0040_0000))
}

/// The odd 16-bit halves of two vectors, in order: the high halves of lanes 0..16 of `lo`, then
/// of `hi` (index j of `vpermt2w` below 32 reads `lo`, from 32 `hi`).
static HIGH_HALVES: [u16; 32] = {
    let mut idx = [0u16; 32];
    let mut j = 0;
    while j < 32 {
        idx[j] = 2 * j as u16 + 1;
        j += 1;
    }
    idx
};

/// The 16 pairs of 32 consecutive f32 at `x`, of which `n` are read (the rest are zero):
/// pair q = (x[2q], x[2q + 1]).
///
/// # Safety
/// `x[..n]` must be readable; the processor must have [`available`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn pairs_consecutive(x: *const f32, n: usize) -> __m512i {
    let lo = round(load(x, n.min(16)));
    let hi = round(load(x.wrapping_add(16), n.saturating_sub(16)));
    let idx = _mm512_loadu_si512(HIGH_HALVES.as_ptr() as *const _);
    _mm512_permutex2var_epi16(lo, idx, hi)
}

/// 16 pairs from two runs: pair j = (even[j], odd[j]), `n_even` and `n_odd` of them read (the
/// rest are zero).
///
/// # Safety
/// `even[..n_even]` and `odd[..n_odd]` must be readable; the processor must have [`available`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn pairs_split(
    even: *const f32,
    odd: *const f32,
    n_even: usize,
    n_odd: usize,
) -> __m512i {
    let e = round(load(even, n_even));
    let o = round(load(odd, n_odd));
    let high = _mm512_and_si512(o, _mm512_set1_epi32(0xFFFF_0000u32 as i32));
    _mm512_or_si512(_mm512_srli_epi32::<16>(e), high)
}

/// Stores the first `n` pairs of `v` at `dst`.
///
/// # Safety
/// `dst[..n]` must be writable.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn store_pairs(dst: *mut u32, v: __m512i, n: usize) {
    _mm512_mask_storeu_epi32(dst as *mut _, mask(n), v)
}

/// Stores the first `n` pairs of `v` `stride` pairs apart: pair j at `dst[j * stride]`.
///
/// # Safety
/// `dst[j * stride]` must be writable for j < n, and `stride * 16` must fit an i32.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn store_pairs_strided(dst: *mut u32, stride: usize, v: __m512i, n: usize) {
    let lanes = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    let idx = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(stride as i32));
    _mm512_mask_i32scatter_epi32::<4>(dst as *mut _, mask(n), idx, v)
}
