//! `dinonat export`: the teacher's backbone of a training checkpoint as a backbone file.

use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A training checkpoint (checkpoint.safetensors of a run).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Where to write the teacher's backbone (safetensors, NAT names).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: ExportArgs) -> Result<(), String> {
    dinonat_train::guard::check_outputs(&[("--out", &a.out)], &[("--checkpoint", &a.checkpoint)])?;
    dinonat_eval::backbone::export_teacher_backbone(&a.checkpoint, &a.out)
        .map_err(|e| e.describe(crate::args::flag))?;
    println!(
        "wrote the teacher backbone of {} to {}",
        a.checkpoint.display(),
        a.out.display()
    );
    Ok(())
}
