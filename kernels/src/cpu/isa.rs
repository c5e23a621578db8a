//! Run-time choice of the CPU instruction set (AVX-512 -> AVX2+FMA -> portable).
//!
//! Kernels never rely on compile-time `cfg(target_feature)` alone: a binary built without
//! `-C target-cpu` must still use AVX-512 where the processor has it. The choice is made once per
//! process and can be lowered (never raised) with `DINONAT_ISA=avx2|portable`, which tests and
//! benchmarks use to exercise every path on one machine.

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

/// The path the kernels use: the detected one, lowered by `DINONAT_ISA` if set.
pub fn active() -> Isa {
    static ACTIVE: OnceLock<Isa> = OnceLock::new();
    *ACTIVE.get_or_init(|| {
        let best = detected();
        let wanted = match std::env::var("DINONAT_ISA").ok().as_deref() {
            Some("portable") => Isa::Portable,
            Some("avx2") | Some("avx2+fma") => Isa::Avx2Fma,
            Some("avx512") | Some("avx512f") => Isa::Avx512,
            _ => best,
        };
        wanted.min(best)
    })
}
