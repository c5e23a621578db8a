//! `dinonat bench attention` on the CPU.

use super::AttentionArgs;

pub fn run(_args: &AttentionArgs) -> Result<(), String> {
    Err("bench attention: not built yet".into())
}
