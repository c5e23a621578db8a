//! `dinonat info`: what this machine offers and which kernel path each kernel takes.

use dinonat_kernels::cpu::isa;
use dinonat_kernels::cuda::{nvrtc, GpuDevice};

/// What each CPU kernel runs on the given instruction-set path (the register tiles are the
/// microkernels' in kernels/src/cpu/gemm, the lane counts the SIMD layer's).
fn kernel_paths(active: isa::Isa) -> [(&'static str, String); 5] {
    let (gemm_tile, lanes) = match active {
        isa::Isa::Avx512 => ("14x32 register tile", 16),
        isa::Isa::Avx2Fma => ("6x16 register tile", 8),
        isa::Isa::Portable => ("4x8 register tile", 8),
    };
    let name = active.name();
    [
        (
            "sgemm",
            format!("{name}, {gemm_tile}, packed panels, rayon over C tiles, split-k for long k"),
        ),
        (
            "softmax/layernorm/gelu",
            format!("{name}, {lanes} lanes, rayon over rows"),
        ),
        (
            "elementwise/reductions",
            format!("{name}, {lanes} lanes, fixed-chunk reductions"),
        ),
        (
            "neighborhood attention",
            format!("{name}, fused row tiles, rayon over (batch, head, tile)"),
        ),
        ("full attention", format!("{name}, flash-style key tiles")),
    ]
}

/// The x86 features the dispatch looks at ("-" where the processor lacks one).
fn cpu_features() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let f = |name: &'static str, present: bool| if present { name } else { "-" };
        [
            f("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
            f("avx2", std::arch::is_x86_feature_detected!("avx2")),
            f("fma", std::arch::is_x86_feature_detected!("fma")),
            f(
                "avx512bf16",
                std::arch::is_x86_feature_detected!("avx512bf16"),
            ),
        ]
        .join(" ")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH.to_string()
    }
}

pub fn run() -> Result<(), String> {
    println!("cpu features:     {}", cpu_features());
    println!("cpu isa detected: {}", isa::detected().name());
    println!("cpu isa active:   {}", isa::active().name());
    println!("threads:          {}", rayon::current_num_threads());
    let bf16 = isa::bf16_gemm_active();
    let on = match bf16 {
        isa::Bf16Gemm::RoundPack
            if isa::bf16_gemm_detected() >= isa::Bf16Gemm::DpBf16 && !isa::dpbf16_outruns_f32() =>
        {
            format!(
                " (on the {} f32 kernel: this vendor's vdpbf16ps does fewer multiply-adds per \
                 second than its f32 FMAs; DINONAT_ISA=avx512bf16 forces it)",
                isa::active().name()
            )
        }
        isa::Bf16Gemm::RoundPack => format!(" (on the {} f32 kernel)", isa::active().name()),
        isa::Bf16Gemm::DpBf16 => " (vdpbf16ps, 14x32 register tile)".into(),
        isa::Bf16Gemm::Amx => " (tdpbf16ps, 2x2 tiles of 16x16 f32)".into(),
    };
    println!("cpu bf16 gemm:    {}{on}", bf16.name());
    match isa::amx_support() {
        Ok(()) => println!("AMX:              present (DINONAT_AMX=0 refuses it)"),
        Err(why) => println!("AMX:              absent ({why})"),
    }
    for (kernel, path) in kernel_paths(isa::active()) {
        println!("  {kernel:<24}{path}");
    }
    match GpuDevice::get() {
        Ok(dev) => {
            let i = dev.info();
            println!("gpu:              {}", i.name);
            println!(
                "gpu compute cap:  {}.{} (kernels compiled for {}; the wgmma GEMM for sm_90a on Hopper)",
                i.compute_capability.0, i.compute_capability.1, i.arch
            );
            println!(
                "gpu memory:       {:.1} GiB, {} SMs",
                i.total_memory_bytes as f64 / (1u64 << 30) as f64,
                i.multiprocessors
            );
            println!(
                "cuda driver:      {}.{}",
                i.driver_version / 1000,
                (i.driver_version % 1000) / 10
            );
            println!(
                "nvrtc:            {}.{}",
                i.nvrtc_version.0, i.nvrtc_version.1
            );
        }
        Err(e) => {
            println!("gpu:              {e}");
            match nvrtc::nvrtc_version() {
                Ok((major, minor)) => println!("nvrtc:            {major}.{minor}"),
                Err(e) => println!("nvrtc:            {e}"),
            }
        }
    }
    Ok(())
}
