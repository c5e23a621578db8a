//! The one timing helper of the benchmarks: the median of repeated runs after a warm-up (wall
//! clock on the CPU, CUDA events on the GPU), repeats sized to a time budget, the process's CPU
//! time, GFLOP/s, and the pseudo-random inputs the timed kernels run on. `dinonat bench`, the
//! criterion benches and the timing examples all use it; none keeps its own.

use dinonat_kernels::cuda::GpuDevice;
use std::time::Instant;

/// The median of `samples` (the upper of the two middle ones for an even count).
pub fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Wall-clock milliseconds of one call of `f`, with what it returned.
pub fn wall_ms<R>(f: impl FnOnce() -> R) -> (f64, R) {
    let t = Instant::now();
    let r = f();
    (t.elapsed().as_secs_f64() * 1e3, r)
}

/// How many repeats of a call that took `first_ms` fill `budget_ms`, within `[min, max]`.
pub fn repeats(budget_ms: f64, first_ms: f64, min: usize, max: usize) -> usize {
    ((budget_ms / first_ms.max(1e-3)) as usize).clamp(min, max)
}

/// The median milliseconds per call of `f` on the GPU: `samples` batches of `batch` calls, each
/// batch between two CUDA events on the device's stream (warm up before).
pub fn gpu_median_ms(
    dev: &GpuDevice,
    samples: usize,
    batch: usize,
    mut f: impl FnMut() -> Result<(), String>,
) -> Result<f64, String> {
    let times = (0..samples)
        .map(|_| dev.time_ms(batch, &mut f))
        .collect::<Result<Vec<f64>, String>>()?;
    Ok(median(times))
}

/// Calls per batch so that a batch lasts about `batch_ms` (from one timed call, between 1 and
/// `max`), and that call's milliseconds.
pub fn gpu_batch(
    dev: &GpuDevice,
    batch_ms: f64,
    max: usize,
    f: impl FnMut() -> Result<(), String>,
) -> Result<(usize, f64), String> {
    let estimate = dev.time_ms(1, f)?.max(1e-4);
    Ok((
        ((batch_ms / estimate).ceil() as usize).clamp(1, max),
        estimate,
    ))
}

/// GFLOP/s of `gflop` GFLOP done in `ms` milliseconds.
pub fn gflop_per_s(gflop: f64, ms: f64) -> f64 {
    gflop / ms * 1e3
}

/// `n` pseudo-random values in [-1, 1) from `seed` (a 64-bit LCG, the high bits): the inputs of
/// the timed kernels, the same on every run and machine.
pub fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Seconds of CPU (user + system) this process has used, all threads, from
/// `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)` (nanosecond resolution: the scheduler's own run-time
/// accounting); the one CPU-time helper of the benchmarks.
#[cfg(target_os = "linux")]
pub fn process_cpu_seconds() -> Option<f64> {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
    let mut t = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec (two 64-bit fields on 64-bit Linux) into `t`.
    let rc = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    (rc == 0).then_some(t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9)
}

#[cfg(not(target_os = "linux"))]
pub fn process_cpu_seconds() -> Option<f64> {
    None
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::process_cpu_seconds;

    #[test]
    fn process_cpu_time_advances_with_work() {
        let start = process_cpu_seconds().expect("CLOCK_PROCESS_CPUTIME_ID on Linux");
        assert!(start > 0.0, "{start}");
        let (mut x, mut now) = (1u64, start);
        for _ in 0..1000 {
            for i in 0..100_000u64 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
            }
            now = process_cpu_seconds().expect("clock");
            if now > start {
                break;
            }
        }
        assert!(
            now > start,
            "no CPU time counted after the work ({start} -> {now}, {x})"
        );
    }
}

#[cfg(test)]
mod helper_tests {
    use super::*;

    #[test]
    fn median_is_the_middle_of_the_sorted_samples() {
        assert_eq!(median(vec![5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 3.0);
        assert_eq!(median(vec![2.5]), 2.5);
    }

    #[test]
    fn repeats_fill_the_budget_within_bounds() {
        assert_eq!(repeats(500.0, 10.0, 5, 200), 50);
        assert_eq!(repeats(500.0, 1000.0, 5, 200), 5);
        assert_eq!(repeats(500.0, 0.0, 5, 200), 200);
    }

    #[test]
    fn random_inputs_are_reproducible_and_in_range() {
        let a = random(1000, 7);
        assert_eq!(a, random(1000, 7));
        assert_ne!(a, random(1000, 8));
        assert!(a.iter().all(|&x| (-1.0..1.0).contains(&x)), "{a:?}");
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        assert!(mean.abs() < 0.1, "mean {mean}");
    }
}
