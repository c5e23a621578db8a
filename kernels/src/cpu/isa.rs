//! Run-time choice of the CPU instruction set (AVX-512 -> AVX2+FMA -> portable).
//!
//! Kernels never rely on compile-time `cfg(target_feature)` alone: a binary built without
//! `-C target-cpu` must still use AVX-512 where the processor has it. The choice is made once per
//! process and can be lowered (never raised) with `DINONAT_ISA=avx2|portable`, which tests and
//! benchmarks use to exercise every path on one machine.
//!
//! The BF16 GEMM has its own choice ([`Bf16Gemm`]): AMX tiles where the processor and the OS grant
//! them (verified on an Emerald Rapids Xeon; `DINONAT_AMX=0` refuses them), AVX512-BF16 dot
//! products where the processor has them and runs them faster than f32 FMAs
//! ([`dpbf16_outruns_f32`]: AMD), else rounding while packing on the f32 path above.
//! `DINONAT_ISA=avx512bf16` picks the AVX512-BF16 path wherever the processor has it,
//! `DINONAT_ISA=avx512|avx2|portable` rounding while packing (so CI covers every lower path on a
//! better machine).

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

/// The f32 path `DINONAT_ISA` asks for; None when unset or naming a BF16 path (`avx512bf16`,
/// `amx`), which leaves the f32 path at its best.
fn requested() -> Option<Isa> {
    requested_from(&std::env::var("DINONAT_ISA").ok()?)
}

/// The f32 path a `DINONAT_ISA` value names.
fn requested_from(s: &str) -> Option<Isa> {
    match s {
        "portable" => Some(Isa::Portable),
        "avx2" | "avx2+fma" => Some(Isa::Avx2Fma),
        "avx512" | "avx512f" => Some(Isa::Avx512),
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
    /// AMX `tdpbf16ps` on 16 x 16 tiles of f32 (Xeon since Sapphire Rapids; Linux >= 5.16).
    Amx,
}

impl Bf16Gemm {
    pub fn name(self) -> &'static str {
        match self {
            Bf16Gemm::RoundPack => "round-while-packing",
            Bf16Gemm::DpBf16 => "avx512bf16",
            Bf16Gemm::Amx => "amx",
        }
    }

    /// Every BF16 path this processor can run, best first.
    pub fn available() -> Vec<Bf16Gemm> {
        let best = bf16_gemm_detected();
        [Bf16Gemm::Amx, Bf16Gemm::DpBf16, Bf16Gemm::RoundPack]
            .into_iter()
            .filter(|&p| p <= best)
            .collect()
    }
}

/// The best BF16 GEMM path the processor supports, ignoring `DINONAT_ISA` and `DINONAT_AMX`.
/// AMX counts only where [`amx_support`] is `Ok` (it needs AVX512-BF16 too, which every AMX
/// processor has: its kernel stores through AVX-512).
pub fn bf16_gemm_detected() -> Bf16Gemm {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
        {
            return if amx_support().is_ok() {
                Bf16Gemm::Amx
            } else {
                Bf16Gemm::DpBf16
            };
        }
    }
    Bf16Gemm::RoundPack
}

/// The BF16 GEMM path in use (chosen once per process): see [`bf16_gemm_choice`].
pub fn bf16_gemm_active() -> Bf16Gemm {
    static ACTIVE: OnceLock<Bf16Gemm> = OnceLock::new();
    *ACTIVE.get_or_init(|| {
        let isa = std::env::var("DINONAT_ISA").ok();
        let amx = std::env::var("DINONAT_AMX").ok();
        let detected = bf16_gemm_detected();
        bf16_gemm_choice(
            detected,
            dpbf16_outruns_f32(),
            isa.as_deref(),
            amx.as_deref(),
        )
    })
}

/// The BF16 GEMM path for a processor whose best is `detected`, given whether its `vdpbf16ps`
/// outruns its f32 FMAs (`dp_fast`, [`dpbf16_outruns_f32`]), `DINONAT_ISA` and `DINONAT_AMX`:
/// AMX wherever detected unless `DINONAT_AMX=0` (its tests passed on an AMX Xeon, family 6
/// model 207, 2026-12-08); AVX512-BF16 by default only where `dp_fast`, and wherever the
/// processor has it with `DINONAT_ISA=avx512bf16`; an f32 path (`avx512`, `avx2`, `portable`)
/// gives round-while-packing; never above `detected`.
pub fn bf16_gemm_choice(
    detected: Bf16Gemm,
    dp_fast: bool,
    isa: Option<&str>,
    amx: Option<&str>,
) -> Bf16Gemm {
    let cap = match isa {
        Some("avx512bf16") => Bf16Gemm::DpBf16,
        Some(s) if requested_from(s).is_some() => Bf16Gemm::RoundPack,
        _ => Bf16Gemm::Amx,
    };
    let opt_out = if amx == Some("0") {
        Bf16Gemm::DpBf16
    } else {
        Bf16Gemm::Amx
    };
    let path = detected.min(cap).min(opt_out);
    if path == Bf16Gemm::DpBf16 && !dp_fast && isa != Some("avx512bf16") {
        Bf16Gemm::RoundPack
    } else {
        path
    }
}

/// Whether this processor's `vdpbf16ps` (two BF16 products per f32 lane) does more multiply-adds
/// per second than its f32 FMAs, so that the AVX512-BF16 path beats rounding while packing. AMD's
/// Zen 4 / Zen 5 issue it at the FMA rate (twice the multiply-adds); Intel's Xeons do not: on an
/// Emerald Rapids Xeon (family 6, model 207) one core issued 1.32 G `vdpbf16ps` zmm/s against
/// 5.33 G `vfmadd231ps` zmm/s, half the f32 rate in multiply-adds (docs/gemm.md, "BF16"), and
/// their fast BF16 unit is AMX. Decided by the vendor, not timed, so a run's path (and its bits)
/// never depends on the load of the moment.
pub fn dpbf16_outruns_f32() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let leaf0 = std::arch::x86_64::__cpuid_count(0, 0);
        // The vendor string is EBX, EDX, ECX: "Auth" "enti" "cAMD".
        let vendor = [leaf0.ebx, leaf0.edx, leaf0.ecx]
            .map(u32::to_le_bytes)
            .concat();
        vendor == b"AuthenticAMD"
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this process may run AMX BF16 tiles, or why not: the processor's AMX-TILE and
/// AMX-BF16 (CPUID leaf 7, EDX bits 24 and 22), the OS's tile state (XCR0 bits 17 and 18), and
/// Linux's permission for the tile data (`arch_prctl(ARCH_REQ_XCOMP_PERM, 18)`), requested once
/// per process. A refusal or an older kernel (before 5.16) makes it unavailable, never a panic.
pub fn amx_support() -> Result<(), &'static str> {
    static SUPPORT: OnceLock<Result<(), &'static str>> = OnceLock::new();
    *SUPPORT.get_or_init(amx_probe)
}

#[cfg(not(target_arch = "x86_64"))]
fn amx_probe() -> Result<(), &'static str> {
    Err("not an x86-64 processor")
}

#[cfg(target_arch = "x86_64")]
fn amx_probe() -> Result<(), &'static str> {
    use std::arch::x86_64::__cpuid_count;
    // Leaf 7 is read only when the maximum leaf (leaf 0, EAX) reaches it.
    let max_leaf = __cpuid_count(0, 0).eax;
    let leaf7 = if max_leaf >= 7 {
        __cpuid_count(7, 0).edx
    } else {
        0
    };
    let leaf1 = __cpuid_count(1, 0).ecx;
    let (amx_bf16, amx_tile) = ((leaf7 >> 22) & 1 == 1, (leaf7 >> 24) & 1 == 1);
    if max_leaf < 7 || !amx_bf16 || !amx_tile {
        return Err("the processor has no AMX-BF16 tiles");
    }
    if (leaf1 >> 27) & 1 == 0 {
        return Err("the OS has not enabled XSAVE (CPUID.1:ECX.OSXSAVE = 0)");
    }
    let xcr0: u64 = {
        let (lo, hi): (u32, u32);
        // SAFETY: XGETBV is available when CPUID reports OSXSAVE (checked above).
        unsafe {
            std::arch::asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi,
                options(nomem, nostack, preserves_flags));
        }
        (hi as u64) << 32 | lo as u64
    };
    if (xcr0 >> 17) & 3 != 3 {
        return Err("the OS has not enabled the tile state (XCR0 bits 17, 18)");
    }
    request_tile_data()
}

/// Linux: asks for the AMX tile data state (XFEATURE_XTILEDATA = 18) with the raw
/// `arch_prctl(ARCH_REQ_XCOMP_PERM = 0x1023, 18)` system call (number 158 on x86-64).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_data() -> Result<(), &'static str> {
    let ret: isize;
    // SAFETY: arch_prctl only records a permission for this process; the syscall instruction
    // clobbers rcx and r11.
    unsafe {
        std::arch::asm!("syscall", inlateout("rax") 158isize => ret, in("rdi") 0x1023usize,
            in("rsi") 18usize, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    if ret == 0 {
        Ok(())
    } else {
        Err("Linux refused the tile data (arch_prctl ARCH_REQ_XCOMP_PERM; needs Linux >= 5.16)")
    }
}

#[cfg(all(target_arch = "x86_64", not(target_os = "linux")))]
fn request_tile_data() -> Result<(), &'static str> {
    Err("AMX is used only on Linux (the tile data permission request is Linux's)")
}
