//! Conversions between bfloat16 and f32 / f64 (math: docs/autodiff.md, "Data types").
//!
//! bfloat16 is the top half of an f32: 1 sign bit, the same 8 exponent bits, 7 of the 23
//! mantissa bits. Widening is exact (a shift). Narrowing rounds to nearest, ties to even (RNE):
//! with b the f32 bits, `(b + 0x7FFF + ((b >> 16) & 1)) >> 16` adds just under half an ulp, plus
//! one more when the kept part is odd, so a tie goes to the even neighbour; a carry out of the
//! mantissa moves to the next binade and past the largest finite value to infinity, as IEEE
//! rounding does. NaN stays NaN (quiet bit set), as `half` does, so the two agree bit for bit
//! (tests below). From f64 the rounding is direct (no double rounding through f32): the value is
//! scaled by its bf16 ulp, rounded to an integer with ties to even, and scaled back, all exact in
//! f64; `half::bf16::from_f64` instead drops the low 32 mantissa bits first and can round a value
//! just above a tie down.

use half::bf16;
use rayon::prelude::*;

/// Slices longer than this are converted in parallel chunks of this size.
const PAR_CHUNK: usize = 1 << 16;

/// f32 -> bf16, round to nearest even; NaN quieted.
#[inline(always)]
pub fn bf16_from_f32(x: f32) -> bf16 {
    let b = x.to_bits();
    let rounded = (b.wrapping_add(0x7FFF + ((b >> 16) & 1)) >> 16) as u16;
    let nan = ((b >> 16) | 0x0040) as u16;
    bf16::from_bits(if b & 0x7FFF_FFFF > 0x7F80_0000 {
        nan
    } else {
        rounded
    })
}

/// bf16 -> f32, exact; NaN quieted (as `half`).
#[inline(always)]
pub fn f32_from_bf16(x: bf16) -> f32 {
    let b = x.to_bits() as u32;
    let quiet = if b & 0x7FFF > 0x7F80 { 0x0040 } else { 0 };
    f32::from_bits((b | quiet) << 16)
}

/// f64 -> bf16, round to nearest even (correctly rounded, no double rounding); NaN quieted.
pub fn bf16_from_f64(x: f64) -> bf16 {
    if x.is_nan() {
        // the sign and the top mantissa bits, quiet bit set (as half)
        let b = x.to_bits();
        let bits = ((b >> 48) as u16 & 0x8000) | 0x7FC0 | ((b >> 45) as u16 & 0x007F);
        return bf16::from_bits(bits);
    }
    if x.is_infinite() {
        return bf16_from_f32(x as f32);
    }
    // the bf16 ulp of |x|: 2^(e - 7) for |x| in [2^e, 2^(e+1)), e clamped to the smallest normal
    // exponent (-126) so that subnormals share one spacing, 2^-133
    let e = (((x.to_bits() >> 52) & 0x7FF) as i32 - 1023).clamp(-126, 128);
    let ulp = f64::powi(2.0, e - 7);
    let rounded = (x / ulp).round_ties_even() * ulp;
    // `rounded` has at most 8 significant bits: exact as f32 (or beyond f32's range: infinity)
    bf16::from_bits(((rounded as f32).to_bits() >> 16) as u16)
}

/// x rounded to the nearest BF16 (ties to even) and widened back: the f32 a BF16 GEMM multiplies.
#[inline(always)]
pub fn round_to_bf16(x: f32) -> f32 {
    f32_from_bf16(bf16_from_f32(x))
}

/// Every element of `x` through [`round_to_bf16`], in place (the GEMM's packed panels; serial,
/// the callers are already parallel). Integer arithmetic only, so the same bits on every path;
/// compiled for AVX-512 too, where the active instruction set has it.
pub fn round_to_bf16_in_place(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::isa::active() >= crate::cpu::isa::Isa::Avx512 {
        // SAFETY: the processor has AVX-512F (active() never exceeds detected()).
        return unsafe { round_in_place_avx512(x) };
    }
    round_in_place(x)
}

#[inline(always)]
fn round_in_place(x: &mut [f32]) {
    for v in x {
        *v = round_to_bf16(*v);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn round_in_place_avx512(x: &mut [f32]) {
    round_in_place(x)
}

/// dst[i] = f(src[i]), in parallel chunks for long slices.
fn convert<S: Copy + Sync, D: Send>(src: &[S], dst: &mut [D], f: impl Fn(S) -> D + Sync) {
    assert_eq!(src.len(), dst.len(), "bf16 conversion: lengths differ");
    let run = |(d, s): (&mut [D], &[S])| {
        for (o, &v) in d.iter_mut().zip(s) {
            *o = f(v);
        }
    };
    if src.len() > PAR_CHUNK {
        dst.par_chunks_mut(PAR_CHUNK)
            .zip(src.par_chunks(PAR_CHUNK))
            .for_each(run);
    } else {
        run((dst, src));
    }
}

/// dst[i] = RNE(src[i]).
pub fn narrow_f32(src: &[f32], dst: &mut [bf16]) {
    convert(src, dst, bf16_from_f32)
}

/// dst[i] = src[i] as f32 (exact).
pub fn widen_to_f32(src: &[bf16], dst: &mut [f32]) {
    convert(src, dst, f32_from_bf16)
}

/// f32 values where narrowing to bf16 goes wrong if it is done carelessly (ties with odd and
/// even kept parts and one ulp either side in several binades, subnormals, the overflow tie,
/// infinities, signed zeros, quiet and signalling NaNs with payloads): the cases every test of a
/// narrowing (this file's, the CUDA kernel's, the engine's on both devices) starts from.
pub fn rounding_cases() -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7F80_0001), // signalling NaN
        f32::from_bits(0xFFC1_2345),
        f32::MAX,
        f32::MIN,
        f32::MIN_POSITIVE,
        f32::from_bits(1),           // smallest subnormal
        f32::from_bits(0x0000_8000), // a tie below the smallest bf16 subnormal
        f32::from_bits(0x0001_8000), // a tie between bf16 subnormals (odd -> up)
        f32::from_bits(0x0002_8000), // (even -> stays)
        f32::from_bits(0x007F_FFFF), // largest subnormal: rounds up to MIN_POSITIVE
        f32::from_bits(0x7F7F_8000), // tie at the top: rounds to infinity
        f32::from_bits(0x7F7F_7FFF), // just below it: stays finite
    ];
    // ties, and one ulp either side of them, around 1 and in other binades
    for base in [
        0x3F80_0000u32,
        0x3F81_0000,
        0xBF80_0000,
        0x4B00_0000,
        0x0080_0000,
    ] {
        for low in [0x7FFF, 0x8000, 0x8001, 0x17FFF, 0x18000, 0x18001, 0xFFFF] {
            v.push(f32::from_bits(base + low));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small xorshift generator (the kernels' tests need no more).
    fn bits(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    fn same(a: bf16, b: bf16) -> bool {
        a.to_bits() == b.to_bits()
    }

    #[test]
    fn narrowing_f32_matches_half_bit_for_bit() {
        let mut values = rounding_cases();
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        values.extend((0..1 << 20).map(|_| f32::from_bits(bits(&mut seed) as u32)));
        for &x in &values {
            let (ours, theirs) = (bf16_from_f32(x), bf16::from_f32(x));
            assert!(same(ours, theirs), "{x:e} ({:#010x})", x.to_bits());
        }
        // the slice kernel, over more than one parallel chunk, outputs poisoned
        let mut out = vec![bf16::NAN; values.len()];
        narrow_f32(&values, &mut out);
        for (&x, &y) in values.iter().zip(&out) {
            assert!(same(y, bf16::from_f32(x)), "{:#010x}", x.to_bits());
        }
    }

    #[test]
    fn widening_matches_half_for_every_bf16() {
        let all: Vec<bf16> = (0..=u16::MAX).map(bf16::from_bits).collect();
        let mut out = vec![f32::NAN; all.len()];
        widen_to_f32(&all, &mut out);
        for (&h, &x) in all.iter().zip(&out) {
            assert_eq!(x.to_bits(), h.to_f32().to_bits(), "{:#06x}", h.to_bits());
            assert_eq!(x.to_bits(), f32_from_bf16(h).to_bits());
            // and back: narrowing a widened value is the identity (NaN payloads quieted)
            let back = bf16_from_f32(x);
            if h.is_nan() {
                assert!(back.is_nan());
            } else {
                assert!(same(back, h), "{:#06x}", h.to_bits());
            }
        }
    }

    #[test]
    fn narrowing_f64_is_correctly_rounded() {
        // on f32 values the direct rounding equals f32 -> bf16 (there is nothing below f32's bits)
        let mut seed = 0x2545_f491_4f6c_dd1d;
        let mut values = rounding_cases();
        values.extend((0..1 << 18).map(|_| f32::from_bits(bits(&mut seed) as u32)));
        for &x in &values {
            let (ours, want) = (bf16_from_f64(x as f64), bf16::from_f32(x));
            if x.is_nan() {
                assert!(ours.is_nan());
            } else {
                assert!(same(ours, want), "{x:e} ({:#010x})", x.to_bits());
            }
        }
        // where the low 32 mantissa bits are zero, half's truncating conversion is exact too
        for _ in 0..1 << 18 {
            let x = f64::from_bits(bits(&mut seed) & !0xFFFF_FFFF);
            let (ours, theirs) = (bf16_from_f64(x), bf16::from_f64(x));
            if x.is_nan() {
                assert!(ours.is_nan() && theirs.is_nan());
            } else {
                assert!(same(ours, theirs), "{x:e} ({:#018x})", x.to_bits());
            }
        }
        // a tie plus less than 2^-32 of an ulp rounds up (half, truncating, rounds it to even)
        let tie = 1.0 + 2f64.powi(-8); // halfway between 1 and 1 + 2^-7
        assert_eq!(bf16_from_f64(tie).to_bits(), 0x3F80);
        assert_eq!(bf16_from_f64(tie + 2f64.powi(-40)).to_bits(), 0x3F81);
        assert_eq!(bf16_from_f64(-(tie + 2f64.powi(-40))).to_bits(), 0xBF81);
        // f64 beyond f32's range and below bf16's smallest subnormal
        assert_eq!(bf16_from_f64(1e300).to_bits(), 0x7F80);
        assert_eq!(bf16_from_f64(-1e300).to_bits(), 0xFF80);
        assert_eq!(bf16_from_f64(1e-300).to_bits(), 0x0000);
        assert_eq!(bf16_from_f64(-1e-300).to_bits(), 0x8000);
        assert_eq!(bf16_from_f64(f64::MIN_POSITIVE / 4.0).to_bits(), 0x0000);
        // 3 * 2^-134 is a tie between the subnormals 2^-133 (odd) and 2^-132 (even)
        assert_eq!(bf16_from_f64(3.0 * 2f64.powi(-134)).to_bits(), 0x0002);
    }
}
