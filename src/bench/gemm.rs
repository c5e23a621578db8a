//! `dinonat bench gemm` on the CPU.

use super::GemmArgs;

pub fn run(_args: &GemmArgs) -> Result<(), String> {
    Err("bench gemm: not built yet".into())
}
