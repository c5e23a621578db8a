//! Run-time choice of the CPU instruction set (AVX-512 -> AVX2+FMA -> portable).
//!
//! Kernels never rely on compile-time `cfg(target_feature)` alone: a binary built without
//! `-C target-cpu` must still use AVX-512 where the processor has it. The choice is made once per
//! process and can be lowered (never raised) with `DINONAT_ISA=avx2|portable`, which tests and
//! benchmarks use to exercise every path on one machine.
//!
//! The BF16 GEMM has its own choice ([`Bf16Gemm`]): AVX512-BF16 dot products where the processor has
//! them, else rounding while packing on the f32 path above. `DINONAT_ISA=avx512|avx2|portable`
//! lowers it to rounding while packing too (so CI covers both on a BF16 machine).

use std::sync::OnceLock;

/// The instruction-set paths the CPU kernels are written for, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Plain Rust, auto-vectorised by the compiler for the baseline target (any CPU, aarch64 included).
    Portable,
    /// x86-64 AVX2 + FMA (256-bit vectors).
    Avx2Fma,
    /// x86-64 AVX-512F (512-bit vectors).
    Avx512,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2Fma => "avx2+fma",
            Isa::Avx512 => "avx512f",
        }
    }

    /// Every path this processor can run, best first (tests compare each against the reference).
    pub fn available() -> Vec<Isa> {
        let best = detected();
        [Isa::Avx512, Isa::Avx2Fma, Isa::Portable]
            .into_iter()
            .filter(|&i| i <= best)
            .collect()
    }
}

/// The best path the processor supports, ignoring `DINONAT_ISA`.
pub fn detected() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Isa::Avx2Fma;
        }
    }
    Isa::Portable
}

/// The f32 path `DINONAT_ISA` asks for; None when unset or naming a BF16 path (`avx512bf16`),
/// which leaves the f32 path at its best.
fn requested() -> Option<Isa> {
    match std::env::var("DINONAT_ISA").ok().as_deref() {
        Some("portable") => Some(Isa::Portable),
        Some("avx2") | Some("avx2+fma") => Some(Isa::Avx2Fma),
        Some("avx512") | Some("avx512f") => Some(Isa::Avx512),
        _ => None,
    }
}

/// The path the kernels use: the detected one, lowered by `DINONAT_ISA` if set.
pub fn active() -> Isa {
    static ACTIVE: OnceLock<Isa> = OnceLock::new();
    *ACTIVE.get_or_init(|| {
        let best = detected();
        requested().unwrap_or(best).min(best)
    })
}

/// The BF16 GEMM paths (both operands rounded to BF16 to nearest even, products summed in f32),
/// worst first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bf16Gemm {
    /// Round A and B to BF16 while packing them into f32 panels, then the f32 microkernel of
    /// [`active`]: any CPU; the result equals the f32 GEMM of the rounded operands bit for bit.
    RoundPack,
    /// AVX512-BF16 `vdpbf16ps` on pairs of k packed as BF16 (Zen 4 / Zen 5, Xeon since Cooper Lake).
    DpBf16,
}

impl Bf16Gemm {
    pub fn name(self) -> &'static str {
        match self {
            Bf16Gemm::RoundPack => "round-while-packing",
            Bf16Gemm::DpBf16 => "avx512bf16",
        }
    }

    /// Every BF16 path this processor can run, best first.
    pub fn available() -> Vec<Bf16Gemm> {
        let best = bf16_gemm_detected();
        [Bf16Gemm::DpBf16, Bf16Gemm::RoundPack]
            .into_iter()
            .filter(|&p| p <= best)
            .collect()
    }
}

/// The best BF16 GEMM path the processor supports, ignoring `DINONAT_ISA`.
pub fn bf16_gemm_detected() -> Bf16Gemm {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
        {
            return Bf16Gemm::DpBf16;
        }
    }
    Bf16Gemm::RoundPack
}

/// The BF16 GEMM path in use: the detected one; round-while-packing when `DINONAT_ISA` names an
/// f32 path (`avx512`, `avx2`, `portable`).
pub fn bf16_gemm_active() -> Bf16Gemm {
    static ACTIVE: OnceLock<Bf16Gemm> = OnceLock::new();
    *ACTIVE.get_or_init(|| match requested() {
        Some(_) => Bf16Gemm::RoundPack,
        None => bf16_gemm_detected(),
    })
}
