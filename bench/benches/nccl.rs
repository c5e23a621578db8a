//! NCCL all-reduce bandwidth of f32 gradient buffers on this process's GPU (cargo feature `nccl`):
//!
//!     cargo bench -p dinonat-bench --features nccl --bench nccl            # one GPU, a world of one
//!     NCCL_COMM_ID=host0:29500 mpirun -np N target/release/deps/nccl-...   # N GPUs (one per rank)
//!
//! Sizes: nat_pico's gradients (1.1 M f32), nat_mini's with K 1024 (25.5 M) and nat_base's with
//! K 65536 (112.3 M) (docs/distributed.md, "Scaling on paper"). Each line of output is one JSON object:
//! milliseconds per call (CUDA events on the engine's stream; the median of 5 samples of 10 calls
//! after 3 warm-up calls), the algorithm bandwidth (bytes / time) and the bus bandwidth
//! (x 2 (n - 1) / n, what each rank's links carry in a ring), beside the control that explains a
//! world of one: a device-to-device copy of the same bytes. With one rank NCCL moves no data between
//! GPUs: in place it has nothing to do, out of place it copies; the figures are then its call cost
//! and the copy bandwidth, not a link's.

use dinonat_engine::kernels::cuda::GpuDevice;
use dinonat_train::dist::nccl::{Nccl, Reduce};

const SIZES: [(&str, usize); 3] = [
    ("nat_pico", 1_100_000),
    ("nat_mini K1024", 25_500_000),
    ("nat_base K65536", 112_300_000),
];

/// Median milliseconds per call of `f` (5 samples of 10 calls after 3 warm-up calls).
fn median_ms(dev: &GpuDevice, mut f: impl FnMut() -> Result<(), String>) -> Result<f64, String> {
    for _ in 0..3 {
        f()?;
    }
    dinonat_bench::timing::gpu_median_ms(dev, 5, 10, f)
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken
    let nccl = match Nccl::from_launcher_env() {
        Ok(c) => c,
        Err(e) => {
            println!("skipped: {e}");
            // on the GPU host (the packed check) a bench that cannot run is a failure
            let required =
                std::env::var(dinonat_engine::kernels::cuda::REQUIRE_GPU).as_deref() == Ok("1");
            std::process::exit(required as i32);
        }
    };
    if let Err(e) = run(&nccl) {
        eprintln!("nccl bench: {e}");
        std::process::exit(1);
    }
}

fn run(nccl: &Nccl) -> Result<(), String> {
    let dev = nccl.device();
    let n = nccl.size();
    let (major, minor, patch) = nccl.version();
    let bus = 2.0 * (n as f64 - 1.0) / n as f64;
    for (what, len) in SIZES {
        let values: Vec<f32> = (0..len).map(|i| (i % 1013) as f32 * 1e-3 - 0.5).collect();
        let send = dev.upload(&values)?;
        let mut recv = dev.uninit::<f32>(len)?;
        let mut inplace = dev.upload(&values)?;
        let e = |e: dinonat_train::dist::DistError| e.to_string();
        let ms_in = median_ms(dev, || {
            nccl.all_reduce(&mut [&mut inplace], Reduce::Sum).map_err(e)
        })?;
        let ms_out = median_ms(dev, || {
            nccl.all_reduce_into(&send, &mut recv, Reduce::Sum)
                .map_err(e)
        })?;
        let stream = dev.stream();
        let ms_copy = median_ms(dev, || {
            stream
                .memcpy_dtod(&send, &mut recv)
                .map_err(|e| format!("device copy: {e}"))
        })?;
        let bytes = 4.0 * len as f64;
        let gbs = |ms: f64| bytes / (ms * 1e-3) / 1e9;
        if nccl.rank() == 0 {
            println!(
                "{}",
                serde_json::json!({
                    "bench": "nccl-all-reduce",
                    "gpu": dev.info().name,
                    "nccl": format!("{major}.{minor}.{patch}"),
                    "ranks": n,
                    "gradients_of": what,
                    "values": len,
                    "bytes": bytes,
                    "in_place_ms": ms_in,
                    "in_place_algbw_gbs": gbs(ms_in),
                    "in_place_busbw_gbs": gbs(ms_in) * bus,
                    "out_of_place_ms": ms_out,
                    "out_of_place_algbw_gbs": gbs(ms_out),
                    "out_of_place_busbw_gbs": gbs(ms_out) * bus,
                    "device_copy_ms": ms_copy,
                    "device_copy_gbs": gbs(ms_copy),
                })
            );
        }
    }
    Ok(())
}
