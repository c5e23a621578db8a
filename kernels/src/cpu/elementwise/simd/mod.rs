//! A small f32 vector abstraction so each kernel is written once and compiled three times:
//! AVX-512F (16 lanes), AVX2+FMA (8 lanes) and a portable 8-lane array the compiler
//! auto-vectorises for the baseline target. Kernels are `#[inline(always)] unsafe fn k<V: SimdF32>`;
//! [`isa_dispatch!`] wraps each in `#[target_feature]` entry points chosen at run time, so the
//! intrinsics inline into a function compiled for the right instruction set.
//!
//! Semantics shared by every implementation (tests rely on them):
//! - `max(a, b)` / `min(a, b)` return `b` when either is NaN (the x86 `maxps` rule), so
//!   `splat(lo).max(x)` lets a NaN `x` through;
//! - horizontal reductions combine lanes in a fixed order (deterministic for a given ISA).

pub(crate) use math::{exp, exp_with_tail, ln};
#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2, Avx512};

mod math;
#[cfg(target_arch = "x86_64")]
mod x86;

/// The f32 vector operations the CPU kernels use. All methods are `unsafe`: the caller guarantees
/// the instruction set is available (see [`isa_dispatch!`]) and pointers are valid for `LANES`.
pub(crate) trait SimdF32: Copy {
    const LANES: usize;
    unsafe fn splat(v: f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(self, p: *mut f32);
    unsafe fn add(self, o: Self) -> Self;
    unsafe fn sub(self, o: Self) -> Self;
    unsafe fn mul(self, o: Self) -> Self;
    unsafe fn div(self, o: Self) -> Self;
    /// self * b + c, fused (one rounding) where the ISA has FMA.
    unsafe fn mul_add(self, b: Self, c: Self) -> Self;
    /// self * b - p exactly, for p = fl(self * b) (the rounding error of a product).
    unsafe fn mul_residual(self, b: Self, p: Self) -> Self;
    unsafe fn max(self, o: Self) -> Self;
    unsafe fn min(self, o: Self) -> Self;
    unsafe fn abs(self) -> Self;
    unsafe fn sqrt(self) -> Self;
    /// Round to the nearest integer (ties to even); valid for |x| < 2^22.
    unsafe fn round(self) -> Self;
    /// 2^n for integral n in [-126, 127] held as f32.
    unsafe fn pow2i(self) -> Self;
    /// Lane-wise `if self < b { x } else { y }` (false for NaN).
    unsafe fn select_lt(self, b: Self, x: Self, y: Self) -> Self;
    /// For positive normal x: (m, e) with x = m 2^e, m in [1, 2), e integral (as f32); read
    /// straight from the bits (other inputs give unspecified values).
    unsafe fn frexp(self) -> (Self, Self);
    unsafe fn reduce_add(self) -> f32;
    unsafe fn reduce_max(self) -> f32;

    /// self * 2^n for integral n in [-150, 128]: as two factors 2^(n/2) 2^(n - n/2) so each
    /// stays in the normal exponent range (AVX-512 does it in one `vscalefps`).
    #[inline(always)]
    unsafe fn mul_pow2(self, n: Self) -> Self {
        let n1 = n.mul(Self::splat(0.5)).round();
        self.mul(n1.pow2i()).mul(n.sub(n1).pow2i())
    }

    /// Loads `n < LANES` elements, filling the other lanes with `fill`.
    #[inline(always)]
    unsafe fn load_partial(p: *const f32, n: usize, fill: f32) -> Self {
        let mut buf = [fill; 16];
        std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
        Self::load(buf.as_ptr())
    }
    /// Stores the first `n < LANES` lanes.
    #[inline(always)]
    unsafe fn store_partial(self, p: *mut f32, n: usize) {
        let mut buf = [0.0f32; 16];
        self.store(buf.as_mut_ptr());
        std::ptr::copy_nonoverlapping(buf.as_ptr(), p, n);
    }
}

/// Portable path: 8 lanes as a plain array; loops the compiler vectorises for any target.
#[derive(Clone, Copy)]
pub(crate) struct Portable(pub(crate) [f32; 8]);

macro_rules! portable_map {
    ($a:expr, |$x:ident| $e:expr) => {{
        let mut r = [0.0f32; 8];
        for (o, &$x) in r.iter_mut().zip(&$a.0) {
            *o = $e;
        }
        Portable(r)
    }};
    ($a:expr, $b:expr, |$x:ident, $y:ident| $e:expr) => {{
        let mut r = [0.0f32; 8];
        for ((o, &$x), &$y) in r.iter_mut().zip(&$a.0).zip(&$b.0) {
            *o = $e;
        }
        Portable(r)
    }};
}

impl SimdF32 for Portable {
    const LANES: usize = 8;
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        Portable([v; 8])
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Portable(std::ptr::read_unaligned(p as *const [f32; 8]))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        std::ptr::write_unaligned(p as *mut [f32; 8], self.0)
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        portable_map!(self, o, |a, b| a + b)
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        portable_map!(self, o, |a, b| a - b)
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        portable_map!(self, o, |a, b| a * b)
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        portable_map!(self, o, |a, b| a / b)
    }
    #[inline(always)]
    unsafe fn mul_add(self, b: Self, c: Self) -> Self {
        // Unfused: a software fma would be far slower than the rounding it saves.
        self.mul(b).add(c)
    }
    #[inline(always)]
    unsafe fn mul_residual(self, b: Self, p: Self) -> Self {
        // The product of two f32 is exact in f64, and so is its difference from p.
        let mut r = [0.0f32; 8];
        for (i, o) in r.iter_mut().enumerate() {
            *o = (self.0[i] as f64 * b.0[i] as f64 - p.0[i] as f64) as f32;
        }
        Portable(r)
    }
    #[inline(always)]
    unsafe fn max(self, o: Self) -> Self {
        portable_map!(self, o, |a, b| if a > b { a } else { b })
    }
    #[inline(always)]
    unsafe fn min(self, o: Self) -> Self {
        portable_map!(self, o, |a, b| if a < b { a } else { b })
    }
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        portable_map!(self, |a| f32::from_bits(a.to_bits() & 0x7fff_ffff))
    }
    #[inline(always)]
    unsafe fn sqrt(self) -> Self {
        portable_map!(self, |a| a.sqrt())
    }
    #[inline(always)]
    unsafe fn round(self) -> Self {
        // Adding and removing 1.5 * 2^23 rounds to nearest-even without SSE4.1.
        const MAGIC: f32 = 12_582_912.0;
        portable_map!(self, |a| (a + MAGIC) - MAGIC)
    }
    #[inline(always)]
    unsafe fn pow2i(self) -> Self {
        // a + 127 + 2^23 has exactly the bits of the integer a + 127 in its mantissa; shifting
        // them into the exponent field gives 2^a with no (saturating, unvectorisable) cast.
        portable_map!(self, |a| f32::from_bits((a + 8_388_735.0).to_bits() << 23))
    }
    #[inline(always)]
    unsafe fn select_lt(self, b: Self, x: Self, y: Self) -> Self {
        let mut r = [0.0f32; 8];
        for (i, o) in r.iter_mut().enumerate() {
            *o = if self.0[i] < b.0[i] { x.0[i] } else { y.0[i] };
        }
        Portable(r)
    }
    #[inline(always)]
    unsafe fn frexp(self) -> (Self, Self) {
        let m = portable_map!(self, |a| f32::from_bits(
            (a.to_bits() & 0x007f_ffff) | 0x3f80_0000
        ));
        let e = portable_map!(self, |a| ((a.to_bits() >> 23) as i32 - 127) as f32);
        (m, e)
    }
    #[inline(always)]
    unsafe fn reduce_add(self) -> f32 {
        let a = self.0;
        ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
    }
    #[inline(always)]
    unsafe fn reduce_max(self) -> f32 {
        self.0
            .iter()
            .fold(f32::NEG_INFINITY, |m, &v| if m > v { m } else { v })
    }
}

/// Generates `fn name(isa, args..) -> ret` that runs `generic::<V>(args..)` compiled for `isa`
/// (AVX-512F, AVX2+FMA in `#[target_feature]` functions, or portable). Panics if `isa` is
/// better than the processor supports (an internal invariant: callers pass `isa::active()` or
/// one of `Isa::available()`).
macro_rules! isa_dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)?
        = $generic:ident $(:: <$($extra:ty),*>)?;) => {
        $(#[$m])*
        $vis fn $name(isa: $crate::cpu::isa::Isa, $($arg: $ty),*) $(-> $ret)? {
            use $crate::cpu::elementwise::simd as s;
            assert!(isa <= $crate::cpu::isa::detected(), "{} path not supported here", isa.name());
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f")]
            unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                unsafe { $generic::<s::Avx512 $($(, $extra)*)?>($($arg),*) }
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                unsafe { $generic::<s::Avx2 $($(, $extra)*)?>($($arg),*) }
            }
            match isa {
                #[cfg(target_arch = "x86_64")]
                $crate::cpu::isa::Isa::Avx512 => unsafe { avx512($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                $crate::cpu::isa::Isa::Avx2Fma => unsafe { avx2($($arg),*) },
                _ => unsafe { $generic::<s::Portable $($(, $extra)*)?>($($arg),*) },
            }
        }
    };
}
pub(crate) use isa_dispatch;

/// One vector step of [`lanes_loop!`]: offset `i`, and `n < LANES` valid lanes for the tail.
/// (A struct with `#[inline(always)]` methods rather than closures: a closure is inlined only by
/// the cost model, and if it is not, every intrinsic in it becomes an out-of-line call.)
#[derive(Clone, Copy)]
pub(crate) struct At<V> {
    pub(crate) i: usize,
    pub(crate) tail: Option<usize>,
    pub(crate) _v: std::marker::PhantomData<V>,
}

impl<V: SimdF32> At<V> {
    /// The lanes at p + i; the tail is padded with `fill`.
    #[inline(always)]
    pub(crate) unsafe fn load(self, p: *const f32, fill: f32) -> V {
        match self.tail {
            None => V::load(p.add(self.i)),
            Some(n) => V::load_partial(p.add(self.i), n, fill),
        }
    }
    /// Writes the valid lanes at p + i.
    #[inline(always)]
    pub(crate) unsafe fn store(self, v: V, p: *mut f32) {
        match self.tail {
            None => v.store(p.add(self.i)),
            Some(n) => v.store_partial(p.add(self.i), n),
        }
    }
}

/// Runs `$body` over `$len` elements in vector steps; `$at` ([`At`]) loads and stores the lanes
/// of the current step, full vectors first and then one padded tail.
macro_rules! lanes_loop {
    ($V:ty, $len:expr, |$at:ident| $body:block) => {{
        let len: usize = $len;
        let l = <$V>::LANES;
        let mut i = 0;
        while i + l <= len {
            let $at = $crate::cpu::elementwise::simd::At::<$V> {
                i,
                tail: None,
                _v: std::marker::PhantomData,
            };
            $body
            i += l;
        }
        if i < len {
            let $at = $crate::cpu::elementwise::simd::At::<$V> {
                i,
                tail: Some(len - i),
                _v: std::marker::PhantomData,
            };
            $body
        }
    }};
}
pub(crate) use lanes_loop;
