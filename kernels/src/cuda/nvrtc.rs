//! The CUDA C sources, embedded in the binary, and their compilation to PTX with NVRTC.
//!
//! Compilation needs only libnvrtc (no driver, no GPU), so [`compile_all`] is the compile-check
//! CI runs on CPU-only machines (scripts/nvrtc-check.sh). Loading libnvrtc is dynamic: when it is
//! missing, cudarc panics; every entry point here catches that and returns an error instead.

use super::{panic_message, Result};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// One CUDA C source file: a kernel family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Source {
    pub name: &'static str,
    pub code: &'static str,
}

pub const ELEMENTWISE: Source = Source {
    name: "elementwise.cu",
    code: include_str!("../../cuda/elementwise.cu"),
};
pub const GEMM_SIMT: Source = Source {
    name: "gemm_simt.cu",
    code: include_str!("../../cuda/gemm_simt.cu"),
};
pub const GEMM_MMA: Source = Source {
    name: "gemm_mma.cu",
    code: include_str!("../../cuda/gemm_mma.cu"),
};

/// Hopper-only (wgmma, TMA): compiled for sm_90a where the device is sm_90 ([`arch_for_source`]).
pub const GEMM_WGMMA: Source = Source {
    name: "gemm_wgmma.cu",
    code: include_str!("../../cuda/gemm_wgmma.cu"),
};

pub const NEIGHBORHOOD_ATTENTION: Source = Source {
    name: "neighborhood_attention.cu",
    code: include_str!("../../cuda/neighborhood_attention.cu"),
};
/// Tensor-core NA (mma.sync bf16, sm_80+); never run on a GPU yet, opt-in (DINONAT_NA_MMA=1).
pub const NEIGHBORHOOD_ATTENTION_MMA: Source = Source {
    name: "neighborhood_attention_mma.cu",
    code: include_str!("../../cuda/neighborhood_attention_mma.cu"),
};
pub const ATTENTION: Source = Source {
    name: "attention.cu",
    code: include_str!("../../cuda/attention.cu"),
};

// Engine ops (docs/gpu-ops.md): reductions and layout copies, softmax, layernorm, conv, optimizers.
pub const REDUCE: Source = Source {
    name: "reduce.cu",
    code: include_str!("../../cuda/reduce.cu"),
};
pub const SOFTMAX: Source = Source {
    name: "softmax.cu",
    code: include_str!("../../cuda/softmax.cu"),
};
pub const LAYERNORM: Source = Source {
    name: "layernorm.cu",
    code: include_str!("../../cuda/layernorm.cu"),
};
pub const CONV: Source = Source {
    name: "conv.cu",
    code: include_str!("../../cuda/conv.cu"),
};
pub const OPTIM: Source = Source {
    name: "optim.cu",
    code: include_str!("../../cuda/optim.cu"),
};

pub const SELECT: Source = Source {
    name: "select.cu",
    code: include_str!("../../cuda/select.cu"),
};

/// Every source, for the compile-check.
pub const ALL_SOURCES: [Source; 13] = [
    ELEMENTWISE,
    GEMM_SIMT,
    GEMM_MMA,
    GEMM_WGMMA,
    NEIGHBORHOOD_ATTENTION,
    NEIGHBORHOOD_ATTENTION_MMA,
    ATTENTION,
    REDUCE,
    SOFTMAX,
    LAYERNORM,
    CONV,
    OPTIM,
    SELECT,
];

/// The target a source is compiled for on a device of `arch`: gemm_wgmma.cu needs the
/// architecture-specific sm_90a (wgmma) on sm_90; everything else the device's own arch.
pub fn arch_for_source(source: Source, arch: &'static str) -> &'static str {
    if source.name == GEMM_WGMMA.name && arch == "sm_90" {
        "sm_90a"
    } else {
        arch
    }
}

/// NVRTC's `--gpu-architecture` for a compute capability, e.g. (9, 0) -> "sm_90".
/// Only the architectures the kernels support (mma.sync, cp.async, ldmatrix: sm_80 and later).
pub fn arch_for(major: i32, minor: i32) -> Result<&'static str> {
    Ok(match (major, minor) {
        (8, 0) => "sm_80",
        (8, 6) => "sm_86",
        (8, 7) => "sm_87",
        (8, 9) => "sm_89",
        (9, 0) => "sm_90",
        (10, 0) => "sm_100",
        (12, 0) => "sm_120",
        _ => {
            return Err(format!(
                "compute capability {major}.{minor} is not supported by the CUDA kernels \
                 (need 8.0, 8.6, 8.7, 8.9, 9.0, 10.0 or 12.0)"
            ))
        }
    })
}

/// True when libnvrtc can be loaded (LD_LIBRARY_PATH or the system's library path).
pub fn nvrtc_present() -> bool {
    catch_unwind(|| unsafe { cudarc::nvrtc::sys::is_culib_present() }).unwrap_or(false)
}

/// NVRTC's version (major, minor), or why it could not be read.
pub fn nvrtc_version() -> Result<(i32, i32)> {
    if !nvrtc_present() {
        return Err("libnvrtc not found (set LD_LIBRARY_PATH)".into());
    }
    catch_unwind(|| {
        let (mut major, mut minor) = (0, 0);
        let status = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
        if status == cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS {
            Ok((major, minor))
        } else {
            Err(format!("nvrtcVersion failed: {status:?}"))
        }
    })
    .unwrap_or_else(|p| {
        Err(format!(
            "libnvrtc could not be loaded: {}",
            panic_message(p)
        ))
    })
}

/// Compile one source for `arch` ("sm_90", ...; see [`arch_for_source`]). Errors carry NVRTC's log.
pub fn compile(source: Source, arch: &'static str) -> Result<Ptx> {
    let arch = arch_for_source(source, arch);
    if !nvrtc_present() {
        return Err("libnvrtc not found (set LD_LIBRARY_PATH)".into());
    }
    let opts = CompileOptions {
        arch: Some(arch),
        name: Some(source.name.to_string()),
        options: vec!["--std=c++17".into()],
        ..Default::default()
    };
    match catch_unwind(AssertUnwindSafe(|| {
        compile_ptx_with_opts(source.code, opts)
    })) {
        Ok(Ok(ptx)) => Ok(ptx),
        Ok(Err(e)) => Err(format!(
            "NVRTC failed on {} for {arch}: {}",
            source.name,
            describe(&e)
        )),
        Err(p) => Err(format!(
            "libnvrtc could not be loaded: {}",
            panic_message(p)
        )),
    }
}

/// Compile every source for `arch`; no GPU needed. Returns each source's PTX size in bytes.
pub fn compile_all(arch: &'static str) -> Result<Vec<(&'static str, usize)>> {
    ALL_SOURCES
        .iter()
        .map(|&s| compile(s, arch).map(|ptx| (s.name, ptx.to_src().len())))
        .collect()
}

fn describe(e: &cudarc::nvrtc::CompileError) -> String {
    match e {
        cudarc::nvrtc::CompileError::CompileError { nvrtc, log, .. } => {
            format!("{nvrtc:?}\n{}", log.to_string_lossy())
        }
        other => format!("{other:?}"),
    }
}
