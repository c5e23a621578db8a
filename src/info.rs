//! `dinonat info`: what this machine offers and which kernel path each kernel takes.

use dinonat_kernels::cpu::isa;

pub fn run() -> Result<(), String> {
    println!("cpu isa detected: {}", isa::detected().name());
    println!("cpu isa active:   {}", isa::active().name());
    println!("threads:          {}", rayon::current_num_threads());
    Ok(())
}
