//! Data-parallel collectives (docs/distributed.md): the few operations data-parallel DINO needs
//! between ranks, on engines users already run — MPI ([`mpi`], cargo feature `mpi`) for CPU ranks
//! and launch, NCCL ([`nccl`], cargo feature `nccl`) for gradients on GPUs — plus [`Single`] (a
//! world of one: no launcher, costs nothing) and [`ThreadWorld`] (ranks as threads of one process,
//! for tests and for checking a recipe without a launcher).
//!
//! Every reduction here is **deterministic**: [`all_reduce_sum`] gives the same bits on every rank
//! whatever order messages arrive in. It is a reduce-scatter then an all-gather, both built on
//! fixed-layout primitives: the buffer is cut into one chunk per rank, rank c receives every rank's
//! copy of chunk c (`all_to_all`), adds them in rank order 0, 1, ..., n-1, and the summed chunks are
//! gathered back in rank order. Each rank sends and receives about 2 (n - 1) / n of the buffer, as a
//! ring all-reduce does. NCCL's all-reduce of GPU buffers adds in its own fixed order instead
//! ([`nccl`]).

mod collective;
#[cfg(feature = "mpi")]
pub mod mpi;
#[cfg(feature = "nccl")]
pub mod nccl;
mod threads;

pub use collective::{
    all_gather, all_reduce_mean, all_reduce_sum, Collective, DistError, Element, Result, Single,
};
pub use threads::ThreadWorld;

/// The environment variable (and its value) by which an MPI launcher (`mpirun`, `srun`) announces
/// itself, if the process was started by one.
pub fn launcher() -> Option<(&'static str, String)> {
    [
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMIX_RANK",
        "SLURM_NTASKS",
    ]
    .into_iter()
    .find_map(|v| std::env::var(v).ok().map(|x| (v, x)))
}

/// The world the process was launched into: a world of one without a launcher; under `mpirun` /
/// `srun` (their environment variables) an MPI world when built with `--features mpi`, else an error
/// that says how to build it.
pub fn from_env() -> Result<Box<dyn Collective>> {
    match launcher() {
        None => Ok(Box::new(Single)),
        #[cfg(feature = "mpi")]
        Some(_) => Ok(Box::new(mpi::MpiWorld::init()?)),
        #[cfg(not(feature = "mpi"))]
        Some((var, value)) => {
            if var.ends_with("SIZE") && value == "1" {
                return Ok(Box::new(Single));
            }
            Err(DistError(format!(
                "launched by an MPI launcher ({var}={value}) but this dinonat was built without MPI: \
                 build it with `cargo build --release --features mpi` (docs/distributed.md)"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reductions_match_the_serial_sum_in_rank_order_for_awkward_lengths() {
        for n in [1usize, 2, 3, 5] {
            for len in [1usize, 2, 7, 33, 1000] {
                let data: Vec<Vec<f32>> = (0..n)
                    .map(|r| {
                        (0..len)
                            .map(|i| ((r * 31 + i * 7) % 13) as f32 * 0.37 - 1.9)
                            .collect()
                    })
                    .collect();
                let want: Vec<f32> = (0..len)
                    .map(|i| {
                        let mut s = data[0][i];
                        for d in &data[1..] {
                            s += d[i];
                        }
                        s
                    })
                    .collect();
                let got = ThreadWorld::run(n, |c| {
                    let mut b = data[c.rank()].clone();
                    all_reduce_sum(&c, &mut b).unwrap();
                    let g = all_gather(&c, &[c.rank() as f64 + 0.5]).unwrap();
                    (b, g)
                });
                for (b, g) in got {
                    assert_eq!(b, want, "n {n} len {len}");
                    let ranks: Vec<f64> = (0..n).map(|r| r as f64 + 0.5).collect();
                    assert_eq!(g, ranks);
                }
            }
        }
    }

    #[test]
    fn mean_and_broadcast() {
        let got = ThreadWorld::run(3, |c| {
            let mut b = vec![c.rank() as f64 * 3.0; 4];
            all_reduce_mean(&c, &mut b).unwrap();
            let mut bytes = [c.rank() as u8; 5];
            c.broadcast_bytes(&mut bytes, 2).unwrap();
            c.barrier().unwrap();
            (b, bytes)
        });
        for (b, bytes) in got {
            assert_eq!(b, vec![3.0; 4]);
            assert_eq!(bytes, [2u8; 5]);
        }
    }
}
