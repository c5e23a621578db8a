//! A minimal vector abstraction so the attention kernels are written once and compiled three times
//! (AVX-512, AVX2+FMA, portable). Every method is `#[inline(always)]`: a kernel body generic over
//! [`Simd`] is inlined into a `#[target_feature]` entry point, where the intrinsics compile to the
//! wanted instructions. Calling these methods outside such an entry point on a CPU without the
//! feature is undefined behaviour, hence `unsafe`.
//!
//! `exp` is the kernels' one vector exp, `crate::cpu::elementwise::simd::exp` (within 0.61 ulp of
//! the f64 exp over the normal range, exp(-inf) = 0, exp(inf) = inf, NaN -> NaN), called on the
//! same registers through the elementwise layer's vector types.

/// One SIMD register type and the operations the kernels need.
pub(crate) trait Simd: Copy {
    const LANES: usize;
    type V: Copy;
    /// The half-width (or same) vector type usable in the same target-feature context.
    type Half: Simd;
    unsafe fn splat(x: f32) -> Self::V;
    /// Unaligned load of LANES floats.
    unsafe fn load(p: *const f32) -> Self::V;
    /// Unaligned store of LANES floats.
    unsafe fn store(p: *mut f32, v: Self::V);
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V;
    /// a * b + c.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn exp(x: Self::V) -> Self::V;
    /// Sum of the lanes (a fixed tree, so deterministic).
    unsafe fn hsum(v: Self::V) -> f32;
    #[inline(always)]
    unsafe fn zero() -> Self::V {
        Self::splat(0.0)
    }
    /// A hint to bring the cache line holding `p` closer (no-op on the portable path).
    #[inline(always)]
    unsafe fn prefetch(_p: *const f32) {}
    /// dst[c * dst_stride + t] = scale * src[t][c] for t, c < 8: an 8 x 8 transpose.
    #[inline(always)]
    unsafe fn transpose8(src: &[*const f32; 8], scale: f32, dst: *mut f32, dst_stride: usize) {
        for c in 0..8 {
            for (t, s) in src.iter().enumerate() {
                *dst.add(c * dst_stride + t) = scale * *s.add(c);
            }
        }
    }
}

/// Portable path: 8 lanes as an array; plain loops the compiler auto-vectorises for the baseline.
#[derive(Clone, Copy)]
pub(crate) struct Portable;

macro_rules! lanewise {
    ($a:expr, $b:expr, $f:expr) => {{
        let mut r = [0.0f32; 8];
        for i in 0..8 {
            r[i] = $f($a[i], $b[i]);
        }
        r
    }};
}

impl Simd for Portable {
    const LANES: usize = 8;
    type V = [f32; 8];
    type Half = Portable;
    #[inline(always)]
    unsafe fn splat(x: f32) -> [f32; 8] {
        [x; 8]
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> [f32; 8] {
        std::ptr::read_unaligned(p as *const [f32; 8])
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: [f32; 8]) {
        std::ptr::write_unaligned(p as *mut [f32; 8], v)
    }
    #[inline(always)]
    unsafe fn add(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        lanewise!(a, b, |x: f32, y: f32| x + y)
    }
    #[inline(always)]
    unsafe fn sub(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        lanewise!(a, b, |x: f32, y: f32| x - y)
    }
    #[inline(always)]
    unsafe fn mul(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        lanewise!(a, b, |x: f32, y: f32| x * y)
    }
    #[inline(always)]
    unsafe fn max(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        lanewise!(a, b, |x: f32, y: f32| if x > y { x } else { y })
    }
    #[inline(always)]
    unsafe fn fma(a: [f32; 8], b: [f32; 8], c: [f32; 8]) -> [f32; 8] {
        let mut r = c;
        for i in 0..8 {
            r[i] += a[i] * b[i];
        }
        r
    }
    #[inline(always)]
    unsafe fn exp(x: [f32; 8]) -> [f32; 8] {
        use crate::cpu::elementwise::simd as ew;
        ew::exp(ew::Portable(x)).0
    }
    #[inline(always)]
    unsafe fn hsum(v: [f32; 8]) -> f32 {
        ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]))
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    /// The classic AVX 8 x 8 transpose: unpack pairs, shuffle quads, swap 128-bit halves.
    #[inline(always)]
    unsafe fn avx_transpose8(src: &[*const f32; 8], scale: f32, dst: *mut f32, stride: usize) {
        let r = src.map(|p| _mm256_loadu_ps(p));
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        let k = _mm256_set1_ps(scale);
        let o = [
            _mm256_permute2f128_ps::<0x20>(s0, s4),
            _mm256_permute2f128_ps::<0x20>(s1, s5),
            _mm256_permute2f128_ps::<0x20>(s2, s6),
            _mm256_permute2f128_ps::<0x20>(s3, s7),
            _mm256_permute2f128_ps::<0x31>(s0, s4),
            _mm256_permute2f128_ps::<0x31>(s1, s5),
            _mm256_permute2f128_ps::<0x31>(s2, s6),
            _mm256_permute2f128_ps::<0x31>(s3, s7),
        ];
        for (c, v) in o.iter().enumerate() {
            _mm256_storeu_ps(dst.add(c * stride), _mm256_mul_ps(*v, k));
        }
    }

    /// AVX2 + FMA: 8 lanes.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2;

    impl Simd for Avx2 {
        const LANES: usize = 8;
        type V = __m256;
        type Half = Avx2;
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m256 {
            _mm256_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            _mm256_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            _mm256_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            _mm256_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn sub(a: __m256, b: __m256) -> __m256 {
            _mm256_sub_ps(a, b)
        }
        #[inline(always)]
        unsafe fn mul(a: __m256, b: __m256) -> __m256 {
            _mm256_mul_ps(a, b)
        }
        #[inline(always)]
        unsafe fn max(a: __m256, b: __m256) -> __m256 {
            _mm256_max_ps(a, b)
        }
        #[inline(always)]
        unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn exp(x: __m256) -> __m256 {
            crate::cpu::elementwise::simd::exp(crate::cpu::elementwise::simd::Avx2(x)).0
        }
        #[inline(always)]
        unsafe fn transpose8(src: &[*const f32; 8], scale: f32, dst: *mut f32, dst_stride: usize) {
            avx_transpose8(src, scale, dst, dst_stride)
        }
        #[inline(always)]
        unsafe fn prefetch(p: *const f32) {
            _mm_prefetch::<_MM_HINT_T0>(p as *const i8)
        }
        #[inline(always)]
        unsafe fn hsum(v: __m256) -> f32 {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
            _mm_cvtss_f32(s)
        }
    }

    /// AVX-512F: 16 lanes.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx512;

    impl Simd for Avx512 {
        const LANES: usize = 16;
        type V = __m512;
        type Half = Avx2;
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m512 {
            _mm512_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            _mm512_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            _mm512_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn sub(a: __m512, b: __m512) -> __m512 {
            _mm512_sub_ps(a, b)
        }
        #[inline(always)]
        unsafe fn mul(a: __m512, b: __m512) -> __m512 {
            _mm512_mul_ps(a, b)
        }
        #[inline(always)]
        unsafe fn max(a: __m512, b: __m512) -> __m512 {
            _mm512_max_ps(a, b)
        }
        #[inline(always)]
        unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn exp(x: __m512) -> __m512 {
            crate::cpu::elementwise::simd::exp(crate::cpu::elementwise::simd::Avx512(x)).0
        }
        #[inline(always)]
        unsafe fn transpose8(src: &[*const f32; 8], scale: f32, dst: *mut f32, dst_stride: usize) {
            avx_transpose8(src, scale, dst, dst_stride)
        }
        #[inline(always)]
        unsafe fn prefetch(p: *const f32) {
            _mm_prefetch::<_MM_HINT_T0>(p as *const i8)
        }
        #[inline(always)]
        unsafe fn hsum(v: __m512) -> f32 {
            let lo = _mm512_castps512_ps256(v);
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
            Avx2::hsum(_mm256_add_ps(lo, hi))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::isa::Isa;

    /// Max error in ulp of the result against f64 exp, over every 997th f32 in [-87.3, 88.7]
    /// (normal results; the sweep of the elementwise `exp_sweep`).
    unsafe fn exp_err<S: Simd>() -> f64 {
        let lo = (-87.3f32).to_bits();
        let neg = (0x8000_0001u32..=lo).step_by(997);
        let pos = (0u32..=88.7f32.to_bits()).step_by(997);
        let mut worst = 0.0f64;
        let mut buf = [0.0f32; 16];
        for x in neg.chain(pos).map(f32::from_bits) {
            S::store(buf.as_mut_ptr(), S::exp(S::splat(x)));
            let want = (x as f64).exp();
            worst = worst.max(((buf[0] as f64) - want).abs() / (want * f32::EPSILON as f64));
        }
        S::store(buf.as_mut_ptr(), S::exp(S::splat(f32::NEG_INFINITY)));
        assert_eq!(buf[0], 0.0);
        worst
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn exp_err_avx512() -> f64 {
        exp_err::<Avx512>()
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn exp_err_avx2() -> f64 {
        exp_err::<Avx2>()
    }

    /// Tolerance: 2 ulp of the result over the normal range, for every available path (measured
    /// 0.61 ulp on AVX-512 and AVX2, 0.79 portable; the attention kernels' own Cephes exp before
    /// it measured 0.99 ulp below 88.3 and saturated above 88.38).
    #[test]
    fn exp_matches_f64_on_each_path() {
        for isa in Isa::available() {
            let err = unsafe {
                match isa {
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512 => exp_err_avx512(),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2Fma => exp_err_avx2(),
                    _ => exp_err::<Portable>(),
                }
            };
            println!("attention exp {}: max error {err:.2} ulp", isa.name());
            assert!(err <= 2.0, "{}: exp error {err} ulp", isa.name());
        }
    }
}
