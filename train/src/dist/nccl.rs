//! The NCCL backend (cargo feature `nccl`; docs/distributed.md, "GPUs: NCCL"): f32 buffers on the
//! GPU all-reduced (sum or mean, in place, one or more buckets) and broadcast between processes, one
//! process per GPU, through cudarc's `nccl` module. libnccl is loaded at run time: a machine without
//! it, or without a GPU, gets an error value naming what is missing, never a panic.
//!
//! The NCCL unique id (the address of NCCL's bootstrap root) is made by rank 0 and sent to the others
//! over the host collective the ranks already share (MPI under `mpirun`), or, when the launcher sets
//! `NCCL_COMM_ID=host:port`, made by every rank from that address (NCCL's own convention).
//!
//! [`NcclWorld`] is the collective a GPU rank trains with: the host collective for what lives on the
//! CPU (the centre's sums, the logged means, stop decisions) plus [`Nccl`] for CUDA gradients, which
//! the trainer finds through [`Collective::nccl`].
//!
//! Determinism: NCCL's ring and tree all-reduces add the ranks' values in an order fixed by the
//! algorithm, the topology and the NCCL version, and every rank receives the same bits; they do not
//! add in rank order as [`super::all_reduce_sum`] does (the docs page says what that changes).

use super::collective::{Collective, DistError, Result};
use cudarc::driver::CudaSlice;
use cudarc::nccl::{result::NcclError, sys, Comm, Id, ReduceOp};
use dinonat_engine::kernels::cuda::GpuDevice;
use std::ffi::CStr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

/// NCCL 2.10 brought `ncclAvg`, which [`Nccl::all_reduce_mean`] uses.
const MIN_VERSION: i32 = 2_10_00;

/// A reduction over ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduce {
    Sum,
    /// The sum divided by the world size (NCCL's `ncclAvg`: each value is scaled by 1/n before the sum).
    Mean,
}

/// One NCCL communicator: this process's rank on the process's GPU (device 0, the engine's), on the
/// engine's stream, so a collective runs after the kernels that made its buffers.
pub struct Nccl {
    comm: Comm,
    dev: &'static GpuDevice,
    version: i32,
}

fn nccl_err(op: &str, e: NcclError) -> DistError {
    // SAFETY: ncclGetErrorString returns a static NUL-terminated string for any result code.
    let what = catch_unwind(|| unsafe { CStr::from_ptr(sys::ncclGetErrorString(e.0)) })
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("{:?}", e.0));
    DistError(format!("NCCL {op}: {what}"))
}

/// Runs a call into libnccl, turning cudarc's panics (a symbol missing from an old libnccl) into errors.
fn guarded<T>(op: &str, f: impl FnOnce() -> std::result::Result<T, NcclError>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(|e| nccl_err(op, e)),
        // cudarc panics with a String (kernels' `panic_message` is private to that crate)
        Err(p) => Err(DistError(format!(
            "NCCL {op}: {}",
            p.downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("panicked")
        ))),
    }
}

/// Checks that libnccl can be loaded under a name cudarc looks for (`libnccl.so`, `libnccl.so.13`,
/// ...). Distributions and the `nvidia-nccl-cu13` wheel ship `libnccl.so.2` alone, which cudarc does
/// not try: then the error gives its path and the link to make.
pub fn check_library() -> Result<()> {
    // SAFETY: only tries to dlopen the candidate names.
    if catch_unwind(|| unsafe { sys::is_culib_present() }).unwrap_or(false) {
        return Ok(());
    }
    Err(DistError(match soname_2_path() {
        Some(path) => format!(
            "NCCL is installed as {path}, a name cudarc does not load (it looks for libnccl.so and \
             libnccl.so.<CUDA major>): link it as libnccl.so in a folder on LD_LIBRARY_PATH, e.g. \
             `mkdir -p ~/.local/nccl && ln -sf {path} ~/.local/nccl/libnccl.so && \
             export LD_LIBRARY_PATH=~/.local/nccl:$LD_LIBRARY_PATH` (docs/distributed.md)"
        ),
        None => "libnccl not found: install NCCL (Debian / Ubuntu: libnccl2 and libnccl-dev; pip: \
                 nvidia-nccl-cu13) and put its folder on LD_LIBRARY_PATH (docs/distributed.md)"
            .into(),
    }))
}

/// Where the dynamic loader finds `libnccl.so.2`, if it does.
fn soname_2_path() -> Option<String> {
    // SAFETY: dlopen / dlsym / dladdr with NUL-terminated names; the handle is closed before return
    // and the path copied out first.
    unsafe {
        let h = libc::dlopen(c"libnccl.so.2".as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL);
        if h.is_null() {
            return None;
        }
        let sym = libc::dlsym(h, c"ncclGetVersion".as_ptr());
        let mut info: libc::Dl_info = std::mem::zeroed();
        let path =
            (!sym.is_null() && libc::dladdr(sym, &mut info) != 0 && !info.dli_fname.is_null())
                .then(|| {
                    CStr::from_ptr(info.dli_fname)
                        .to_string_lossy()
                        .into_owned()
                });
        libc::dlclose(h);
        Some(path.unwrap_or_else(|| "libnccl.so.2".into()))
    }
}

/// This process's rank and the world size as the launcher gives them (Open MPI, PMI / MPICH, Slurm),
/// or (0, 1) without a launcher. `env` reads a variable (a parameter so tests need not set any).
pub fn launcher_rank_size(env: impl Fn(&str) -> Option<String>) -> Result<(usize, usize)> {
    let pairs = [
        ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
        ("PMI_RANK", "PMI_SIZE"),
        ("SLURM_PROCID", "SLURM_NTASKS"),
    ];
    for (r, s) in pairs {
        if let (Some(rank), Some(size)) = (env(r), env(s)) {
            let parse = |var: &str, v: &str| {
                v.trim().parse::<usize>().map_err(|_| {
                    DistError(format!("{var}={v:?} set by the launcher is not a number"))
                })
            };
            let (rank, size) = (parse(r, &rank)?, parse(s, &size)?);
            if size == 0 || rank >= size {
                return Err(DistError(format!(
                    "{r}={rank} and {s}={size} set by the launcher: not a rank of the world"
                )));
            }
            return Ok((rank, size));
        }
    }
    Ok((0, 1))
}

impl Nccl {
    /// A communicator of `host`'s ranks: rank 0 makes the unique id and sends it over `host`
    /// (unless `NCCL_COMM_ID` is set: then every rank makes it from that address).
    pub fn over(host: &dyn Collective) -> Result<Nccl> {
        let (rank, size) = (host.rank(), host.size());
        Nccl::init(rank, size, |id| {
            if std::env::var_os("NCCL_COMM_ID").is_some() {
                return Ok(());
            }
            let mut bytes: Vec<u8> = id.iter().map(|&c| c as u8).collect();
            host.broadcast_bytes(&mut bytes, 0)?;
            id.iter_mut().zip(&bytes).for_each(|(c, &b)| *c = b as _);
            Ok(())
        })
    }

    /// A communicator of the launcher's ranks without a host collective (the bandwidth benchmark):
    /// rank and size from the launcher's variables, the id from `NCCL_COMM_ID` (required for more
    /// than one rank); a world of one without a launcher.
    pub fn from_launcher_env() -> Result<Nccl> {
        let (rank, size) = launcher_rank_size(|v| std::env::var(v).ok())?;
        if size > 1 && std::env::var_os("NCCL_COMM_ID").is_none() {
            return Err(DistError(format!(
                "{size} ranks but NCCL_COMM_ID is not set: set NCCL_COMM_ID=<rank 0's host>:<free port> \
                 for every rank, or start the ranks with MPI (docs/distributed.md)"
            )));
        }
        Nccl::init(rank, size, |_| Ok(()))
    }

    /// `share_id` turns rank 0's id into every rank's (a no-op where each rank made the same one).
    fn init(
        rank: usize,
        size: usize,
        share_id: impl FnOnce(&mut [std::ffi::c_char; 128]) -> Result<()>,
    ) -> Result<Nccl> {
        check_library()?;
        let mut version = 0;
        // SAFETY: writes one int.
        guarded("ncclGetVersion", || unsafe {
            sys::ncclGetVersion(&mut version).result()
        })?;
        if version < MIN_VERSION {
            return Err(DistError(format!(
                "NCCL {version} is too old: 2.10 or newer is needed (ncclAvg)"
            )));
        }
        let dev = GpuDevice::get().map_err(DistError)?;
        let mut id = if rank == 0 || std::env::var_os("NCCL_COMM_ID").is_some() {
            *guarded("ncclGetUniqueId", Id::new)?.internal()
        } else {
            [0; 128]
        };
        share_id(&mut id)?;
        dev.context()
            .bind_to_thread()
            .map_err(|e| DistError(format!("binding the CUDA context: {e}")))?;
        let stream = dev.stream().clone();
        let comm = guarded("ncclCommInitRank", || {
            Comm::from_rank(stream, rank, size, Id::uninit(id))
        })?;
        Ok(Nccl { comm, dev, version })
    }

    pub fn rank(&self) -> usize {
        self.comm.rank()
    }
    pub fn size(&self) -> usize {
        self.comm.world_size()
    }
    /// The GPU the buffers live on (the engine's device 0).
    pub fn device(&self) -> &'static GpuDevice {
        self.dev
    }
    /// libnccl's version as (major, minor, patch).
    pub fn version(&self) -> (i32, i32, i32) {
        let v = self.version;
        (v / 10000, v / 100 % 100, v % 100)
    }

    /// Every bucket <- its sum or mean over ranks, in place; the buckets are queued as one NCCL group
    /// on the engine's stream (asynchronous: a download or [`GpuDevice::synchronize`] waits for them).
    pub fn all_reduce(&self, buckets: &mut [&mut CudaSlice<f32>], op: Reduce) -> Result<()> {
        let op = || match op {
            Reduce::Sum => ReduceOp::Sum,
            Reduce::Mean => ReduceOp::Avg,
        };
        guarded("ncclGroupStart", cudarc::nccl::group_start)?;
        let mut first_error = None;
        for b in buckets.iter_mut() {
            if let Err(e) = guarded("ncclAllReduce", || {
                self.comm.all_reduce_in_place(&mut **b, &op())
            }) {
                first_error.get_or_insert(e);
            }
        }
        // the group is closed whatever happened inside it
        guarded("ncclGroupEnd", cudarc::nccl::group_end)?;
        first_error.map_or(Ok(()), Err)
    }

    /// `recv` <- the sum or mean over ranks of `send` (same length; the benchmark's out-of-place case).
    pub fn all_reduce_into(
        &self,
        send: &CudaSlice<f32>,
        recv: &mut CudaSlice<f32>,
        op: Reduce,
    ) -> Result<()> {
        if send.len() != recv.len() {
            return Err(DistError(format!(
                "NCCL all-reduce: {} values to send into {}",
                send.len(),
                recv.len()
            )));
        }
        let op = match op {
            Reduce::Sum => ReduceOp::Sum,
            Reduce::Mean => ReduceOp::Avg,
        };
        guarded("ncclAllReduce", || self.comm.all_reduce(send, recv, &op))?;
        Ok(())
    }

    /// Every rank's `buf` <- `root`'s, in place.
    pub fn broadcast(&self, buf: &mut CudaSlice<f32>, root: usize) -> Result<()> {
        if root >= self.size() {
            return Err(DistError(format!(
                "NCCL broadcast: root {root} is not a rank of {}",
                self.size()
            )));
        }
        guarded("ncclBroadcast", || {
            self.comm.broadcast_in_place(buf, root as i32)
        })?;
        Ok(())
    }
}

/// A GPU rank's collective: `host` (MPI, or [`super::Single`]) for host buffers and NCCL for CUDA
/// gradients ([`of`]).
pub struct NcclWorld {
    // dropped first: the communicator goes before the host world (MPI may finalise with it)
    nccl: Nccl,
    host: Rc<dyn Collective>,
}

impl NcclWorld {
    /// NCCL over `host`'s ranks (one GPU per process; docs/distributed.md for picking it).
    pub fn new(host: Rc<dyn Collective>) -> Result<NcclWorld> {
        let nccl = Nccl::over(host.as_ref())?;
        Ok(NcclWorld { nccl, host })
    }
}

impl Collective for NcclWorld {
    fn rank(&self) -> usize {
        self.host.rank()
    }
    fn size(&self) -> usize {
        self.host.size()
    }
    fn all_to_all_f32(&self, send: &[f32], recv: &mut [f32]) -> Result<()> {
        self.host.all_to_all_f32(send, recv)
    }
    fn all_to_all_f64(&self, send: &[f64], recv: &mut [f64]) -> Result<()> {
        self.host.all_to_all_f64(send, recv)
    }
    fn all_gather_f32(&self, local: &[f32], out: &mut [f32]) -> Result<()> {
        self.host.all_gather_f32(local, out)
    }
    fn all_gather_f64(&self, local: &[f64], out: &mut [f64]) -> Result<()> {
        self.host.all_gather_f64(local, out)
    }
    fn broadcast_bytes(&self, buf: &mut [u8], root: usize) -> Result<()> {
        self.host.broadcast_bytes(buf, root)
    }
    fn barrier(&self) -> Result<()> {
        self.host.barrier()
    }
    fn name(&self) -> &'static str {
        "nccl"
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl NcclWorld {
    /// The NCCL communicator for the GPU buffers.
    pub fn nccl(&self) -> &Nccl {
        &self.nccl
    }
}

/// The NCCL communicator of `comm` where it is a GPU rank's world ([`NcclWorld`]); host-only
/// backends have none.
pub fn of(comm: &dyn Collective) -> Option<&Nccl> {
    comm.as_any()
        .downcast_ref::<NcclWorld>()
        .map(NcclWorld::nccl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launcher_variables_give_rank_and_size_or_a_clear_error() {
        fn env<'a>(pairs: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'a {
            move |v| pairs.iter().find(|p| p.0 == v).map(|p| p.1.to_string())
        }
        assert_eq!(launcher_rank_size(env(&[])), Ok((0, 1)));
        let ompi = [("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "4")];
        assert_eq!(launcher_rank_size(env(&ompi)), Ok((1, 4)));
        let slurm = [("SLURM_PROCID", "2"), ("SLURM_NTASKS", "3")];
        assert_eq!(launcher_rank_size(env(&slurm)), Ok((2, 3)));
        let bad = [("PMI_RANK", "x"), ("PMI_SIZE", "2")];
        let e = launcher_rank_size(env(&bad)).unwrap_err();
        assert!(e.0.contains("PMI_RANK"), "{e}");
        let outside = [("PMI_RANK", "2"), ("PMI_SIZE", "2")];
        let e = launcher_rank_size(env(&outside)).unwrap_err();
        assert!(e.0.contains("not a rank"), "{e}");
    }
}
