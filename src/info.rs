//! `dinonat info`: what this machine offers and which kernel path each kernel takes.

use dinonat_kernels::cpu::isa;
use dinonat_kernels::cuda::{nvrtc, GpuDevice};

pub fn run() -> Result<(), String> {
    println!("cpu isa detected: {}", isa::detected().name());
    println!("cpu isa active:   {}", isa::active().name());
    println!("threads:          {}", rayon::current_num_threads());
    match GpuDevice::get() {
        Ok(dev) => {
            let i = dev.info();
            println!("gpu:              {}", i.name);
            println!(
                "gpu compute cap:  {}.{} (kernels compiled for {})",
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
