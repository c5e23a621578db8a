//! The MPI backend (cargo feature `mpi`; Open MPI or MPICH, launched by `mpirun` or Slurm's `srun`).
//! MPI's default error handler aborts the whole job on a failed collective, and `mpirun` ends every
//! rank when one dies, naming it, so a dead peer never leaves the others waiting.

use super::collective::{Collective, DistError, Result};
use mpi::environment::{Threading, Universe};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

/// `MPI_COMM_WORLD` of this process (MPI is finalised when it is dropped).
pub struct MpiWorld {
    world: SimpleCommunicator,
    /// The thread level the library granted ([`MpiWorld::init`] asks for `Serialized`).
    threading: Threading,
    // dropped last: finalises MPI
    _universe: Universe,
}

impl MpiWorld {
    /// Initialises MPI (once per process) asking for `MPI_THREAD_SERIALIZED`: the overlapped
    /// all-reduce calls MPI from its communication thread while the main thread computes the
    /// backward, never both at once. A library that grants less (Open MPI 4.1 grants it, and
    /// `MULTIPLE`) makes the trainer all-reduce after the backward instead.
    pub fn init() -> Result<MpiWorld> {
        let (universe, threading) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| DistError("MPI was already initialised in this process".into()))?;
        Ok(MpiWorld {
            world: universe.world(),
            threading,
            _universe: universe,
        })
    }

    fn check_blocks(&self, op: &str, send: usize, recv: usize) -> Result<()> {
        let n = self.size();
        if send != recv || !send.is_multiple_of(n) {
            return Err(DistError(format!(
                "{op}: {send} values to send, {recv} to receive, {n} ranks"
            )));
        }
        Ok(())
    }
}

impl Collective for MpiWorld {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn size(&self) -> usize {
        self.world.size() as usize
    }
    fn all_to_all_f32(&self, send: &[f32], recv: &mut [f32]) -> Result<()> {
        self.check_blocks("all_to_all", send.len(), recv.len())?;
        self.world.all_to_all_into(send, recv);
        Ok(())
    }
    fn all_to_all_f64(&self, send: &[f64], recv: &mut [f64]) -> Result<()> {
        self.check_blocks("all_to_all", send.len(), recv.len())?;
        self.world.all_to_all_into(send, recv);
        Ok(())
    }
    fn all_gather_f32(&self, local: &[f32], out: &mut [f32]) -> Result<()> {
        self.check_blocks("all_gather", local.len() * self.size(), out.len())?;
        self.world.all_gather_into(local, out);
        Ok(())
    }
    fn all_gather_f64(&self, local: &[f64], out: &mut [f64]) -> Result<()> {
        self.check_blocks("all_gather", local.len() * self.size(), out.len())?;
        self.world.all_gather_into(local, out);
        Ok(())
    }
    fn broadcast_bytes(&self, buf: &mut [u8], root: usize) -> Result<()> {
        if root >= self.size() {
            return Err(DistError(format!(
                "broadcast: root {root} is not a rank of {}",
                self.size()
            )));
        }
        self.world.process_at_rank(root as i32).broadcast_into(buf);
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        self.world.barrier();
        Ok(())
    }
    fn name(&self) -> &'static str {
        "mpi"
    }
    fn serialized_threads(&self) -> bool {
        matches!(self.threading, Threading::Serialized | Threading::Multiple)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
