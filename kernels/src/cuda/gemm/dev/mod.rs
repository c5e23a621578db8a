//! The GPU GEMM dev corner (cargo feature `gemm-dev`; the default build does not compile it), in
//! the spirit of llm.c's dev/cuda: what only the kernel tests (kernels/tests/cuda.rs) and
//! `dinonat bench gemm --device cuda` use. The engine runs [`super::gemm_batched`] alone.
//!
//! - [`GemmKernel`]: each tensor-core kernel and block tile forced ([`gemm_batched_kernel`]).
//! - bf16 operands on the device and B given as B^T ([`gemm_bf16`], [`gemm_bf16_kernel`],
//!   [`gemm_bf16_bt`], [`gemm_tf32_bt`]).
//! - The environment switches of `GemmKernel::Auto` here (production ignores them):
//!   `DINONAT_NO_WGMMA` takes mma.sync on compute capability 9.0 too ([`wgmma_available`] is
//!   false), `DINONAT_NO_NMAJOR` makes `gemm_bf16` transpose a row-major B instead of reading it
//!   N-major. scripts/gpu-check.sh sets them when the wgmma / N-major smoke tests fail.
//!
//! Build: `cargo build --release --features gemm-dev` (the root crate passes the feature on);
//! `.ci/run` compile-checks it with clippy.

mod bf16;

pub use super::mma::MmaTile;
pub use super::wgmma::WgmmaTile;
pub use bf16::{gemm_bf16, gemm_bf16_bt, gemm_bf16_kernel, gemm_tf32_bt};

use super::{gemm_batched_on, GemmPrecision, Route};
use crate::cuda::device::GpuDevice;
use crate::cuda::Result;
use crate::gemm::{BatchStrides, MatrixLayout};
use cudarc::driver::CudaSlice;

impl MmaTile {
    pub const ALL: [MmaTile; 2] = [MmaTile::T128x128, MmaTile::T128x256];

    pub fn name(self) -> &'static str {
        match self {
            MmaTile::T128x128 => "128x128",
            MmaTile::T128x256 => "128x256",
        }
    }
}

impl WgmmaTile {
    pub const ALL: [WgmmaTile; 2] = [WgmmaTile::T128x128, WgmmaTile::T128x256];

    pub fn name(self) -> &'static str {
        match self {
            WgmmaTile::T128x128 => "wgmma 128x128",
            WgmmaTile::T128x256 => "wgmma 128x256",
        }
    }

    /// The name with "B N-major" (the bf16 kernel reading a row-major B in place).
    pub fn name_n_major(self) -> &'static str {
        match self {
            WgmmaTile::T128x128 => "wgmma 128x128 B N-major",
            WgmmaTile::T128x256 => "wgmma 128x256 B N-major",
        }
    }
}

/// True where `GemmKernel::Auto` takes wgmma: compute capability 9.0 (H100, H200) and
/// `DINONAT_NO_WGMMA` unset.
pub fn wgmma_available(dev: &GpuDevice) -> bool {
    super::wgmma::available(dev) && std::env::var_os("DINONAT_NO_WGMMA").is_none()
}

/// Which tensor-core kernel runs a TF32/BF16 GEMM. `Auto`: production's choice (wgmma with its
/// tile on compute capability 9.0, for bf16 operands B read N-major in place; otherwise mma.sync
/// with its tile), subject to the environment switches above. Forcing a wgmma kernel elsewhere is
/// an error value. `Wgmma` reads B K-major (a row-major B is transposed first: one pass);
/// `WgmmaNMajorB` reads a row-major bf16 B in place ([`gemm_bf16_kernel`]; with f32 operands it
/// is the same as `Wgmma`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GemmKernel {
    Auto,
    Mma(MmaTile),
    Wgmma(WgmmaTile),
    WgmmaNMajorB(WgmmaTile),
}

impl GemmKernel {
    pub fn name(self) -> &'static str {
        match self {
            GemmKernel::Auto => "auto",
            GemmKernel::Mma(t) => t.name(),
            GemmKernel::Wgmma(t) => t.name(),
            GemmKernel::WgmmaNMajorB(t) => t.name_n_major(),
        }
    }

    fn route(self, dev: &GpuDevice) -> Route {
        match self {
            GemmKernel::Auto => Route {
                wgmma: wgmma_available(dev).then_some(None),
                mma: None,
            },
            GemmKernel::Mma(t) => Route {
                wgmma: None,
                mma: Some(t),
            },
            GemmKernel::Wgmma(t) | GemmKernel::WgmmaNMajorB(t) => Route {
                wgmma: Some(Some(t)),
                mma: None,
            },
        }
    }

    /// Whether a row-major bf16 B is read in place (N-major) rather than transposed first.
    /// `Auto` does unless the environment sets `DINONAT_NO_NMAJOR`.
    fn b_n_major(self) -> bool {
        match self {
            GemmKernel::WgmmaNMajorB(_) => true,
            GemmKernel::Auto => std::env::var_os("DINONAT_NO_NMAJOR").is_none(),
            _ => false,
        }
    }
}

/// [`super::gemm_batched`] with the tensor-core kernel chosen ([`GemmKernel`]); ignored by
/// `Fp32Simt`.
pub fn gemm_batched_kernel(
    dev: &GpuDevice,
    precision: GemmPrecision,
    kernel: GemmKernel,
    batch: BatchStrides,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &CudaSlice<f32>,
    la: MatrixLayout,
    b: &CudaSlice<f32>,
    lb: MatrixLayout,
    beta: f32,
    c: &mut CudaSlice<f32>,
    lc: MatrixLayout,
) -> Result<()> {
    let route = kernel.route(dev);
    gemm_batched_on(
        dev, precision, route, batch, m, k, n, alpha, a, la, b, lb, beta, c, lc,
    )
}
