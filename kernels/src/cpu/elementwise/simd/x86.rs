//! The x86-64 implementations of [`SimdF32`]: AVX2+FMA (8 lanes) and AVX-512F (16 lanes).

use super::SimdF32;
use std::arch::x86_64::*;

/// AVX2 + FMA: 8 lanes of `__m256`.
#[derive(Clone, Copy)]
pub(crate) struct Avx2(pub(crate) __m256);

impl SimdF32 for Avx2 {
    const LANES: usize = 8;
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        Avx2(_mm256_set1_ps(v))
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Avx2(_mm256_loadu_ps(p))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        _mm256_storeu_ps(p, self.0)
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        Avx2(_mm256_add_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        Avx2(_mm256_sub_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        Avx2(_mm256_mul_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        Avx2(_mm256_div_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        Avx2(_mm256_fmadd_ps(self.0, b.0, c.0))
    }
    #[inline(always)]
    unsafe fn mul_residual(self, b: Self, p: Self) -> Self {
        Avx2(_mm256_fmsub_ps(self.0, b.0, p.0))
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        Avx2(_mm256_max_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn min(self, o: Self) -> Self {
        Avx2(_mm256_min_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        Avx2(_mm256_andnot_ps(_mm256_set1_ps(-0.0), self.0))
    }
    #[inline(always)]
    unsafe fn sqrt(self) -> Self {
        Avx2(_mm256_sqrt_ps(self.0))
    }
    #[inline(always)]
    unsafe fn round(self) -> Self {
        Avx2(_mm256_round_ps::<
            { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
        >(self.0))
    }
    #[inline(always)]
    unsafe fn pow2i(self) -> Self {
        let n = _mm256_add_epi32(_mm256_cvtps_epi32(self.0), _mm256_set1_epi32(127));
        Avx2(_mm256_castsi256_ps(_mm256_slli_epi32::<23>(n)))
    }
    #[inline(always)]
    unsafe fn select_lt(self, b: Self, x: Self, y: Self) -> Self {
        let m = _mm256_cmp_ps::<_CMP_LT_OQ>(self.0, b.0);
        Avx2(_mm256_blendv_ps(y.0, x.0, m))
    }
    #[inline(always)]
    unsafe fn frexp(self) -> (Self, Self) {
        let bits = _mm256_castps_si256(self.0);
        let m = _mm256_and_si256(bits, _mm256_set1_epi32(0x007f_ffff));
        let m = _mm256_or_si256(m, _mm256_set1_epi32(0x3f80_0000));
        let e = _mm256_sub_epi32(_mm256_srli_epi32::<23>(bits), _mm256_set1_epi32(127));
        (Avx2(_mm256_castsi256_ps(m)), Avx2(_mm256_cvtepi32_ps(e)))
    }
    #[inline(always)]
    unsafe fn reduce_add(self) -> f32 {
        let h = _mm_add_ps(
            _mm256_castps256_ps128(self.0),
            _mm256_extractf128_ps::<1>(self.0),
        );
        let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps::<1>(h, h)))
    }
    #[inline(always)]
    unsafe fn reduce_max(self) -> f32 {
        let h = _mm_max_ps(
            _mm256_castps256_ps128(self.0),
            _mm256_extractf128_ps::<1>(self.0),
        );
        let h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        _mm_cvtss_f32(_mm_max_ss(h, _mm_shuffle_ps::<1>(h, h)))
    }
}

/// AVX-512F: 16 lanes of `__m512`.
#[derive(Clone, Copy)]
pub(crate) struct Avx512(pub(crate) __m512);

impl SimdF32 for Avx512 {
    const LANES: usize = 16;
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        Avx512(_mm512_set1_ps(v))
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Avx512(_mm512_loadu_ps(p))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        _mm512_storeu_ps(p, self.0)
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        Avx512(_mm512_add_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        Avx512(_mm512_sub_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        Avx512(_mm512_mul_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        Avx512(_mm512_div_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        Avx512(_mm512_fmadd_ps(self.0, b.0, c.0))
    }
    #[inline(always)]
    unsafe fn mul_residual(self, b: Self, p: Self) -> Self {
        Avx512(_mm512_fmsub_ps(self.0, b.0, p.0))
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        Avx512(_mm512_max_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn min(self, o: Self) -> Self {
        Avx512(_mm512_min_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        Avx512(_mm512_abs_ps(self.0))
    }
    #[inline(always)]
    unsafe fn sqrt(self) -> Self {
        Avx512(_mm512_sqrt_ps(self.0))
    }
    #[inline(always)]
    unsafe fn round(self) -> Self {
        Avx512(_mm512_roundscale_ps::<
            { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
        >(self.0))
    }
    #[inline(always)]
    unsafe fn pow2i(self) -> Self {
        let n = _mm512_add_epi32(_mm512_cvtps_epi32(self.0), _mm512_set1_epi32(127));
        Avx512(_mm512_castsi512_ps(_mm512_slli_epi32::<23>(n)))
    }
    #[inline(always)]
    unsafe fn select_lt(self, b: Self, x: Self, y: Self) -> Self {
        let m = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(self.0, b.0);
        Avx512(_mm512_mask_blend_ps(m, y.0, x.0))
    }
    #[inline(always)]
    unsafe fn frexp(self) -> (Self, Self) {
        let bits = _mm512_castps_si512(self.0);
        let m = _mm512_and_si512(bits, _mm512_set1_epi32(0x007f_ffff));
        let m = _mm512_or_si512(m, _mm512_set1_epi32(0x3f80_0000));
        let e = _mm512_sub_epi32(_mm512_srli_epi32::<23>(bits), _mm512_set1_epi32(127));
        (
            Avx512(_mm512_castsi512_ps(m)),
            Avx512(_mm512_cvtepi32_ps(e)),
        )
    }
    #[inline(always)]
    unsafe fn reduce_add(self) -> f32 {
        _mm512_reduce_add_ps(self.0)
    }
    #[inline(always)]
    unsafe fn reduce_max(self) -> f32 {
        _mm512_reduce_max_ps(self.0)
    }
    #[inline(always)]
    unsafe fn mul_pow2(self, n: Self) -> Self {
        Avx512(_mm512_scalef_ps(self.0, n.0))
    }
    #[inline(always)]
    unsafe fn load_partial(p: *const f32, n: usize, fill: f32) -> Self {
        let m: __mmask16 = (1u32 << n) as u16 - 1;
        Avx512(_mm512_mask_loadu_ps(_mm512_set1_ps(fill), m, p))
    }
    #[inline(always)]
    unsafe fn store_partial(self, p: *mut f32, n: usize) {
        let m: __mmask16 = (1u32 << n) as u16 - 1;
        _mm512_mask_storeu_ps(p, m, self.0)
    }
}
