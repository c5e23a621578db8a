//! `dinonat bench gemm --device cuda`.

use super::GemmArgs;

pub fn run(_args: &GemmArgs) -> Result<(), String> {
    Err("bench gemm --device cuda: not built yet".into())
}
