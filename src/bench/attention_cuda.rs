//! `dinonat bench attention --device cuda`.

use super::AttentionArgs;

pub fn run(_args: &AttentionArgs) -> Result<(), String> {
    Err("bench attention --device cuda: not built yet".into())
}
