//! The collective primitives ([`Collective`]), the world of one ([`Single`]) and the deterministic
//! reductions built on them (the module docs of `dist` say how they add up).

use std::fmt;

/// A collective failed (a peer is gone, sizes disagree); the message names the operation.
#[derive(Clone, Debug, PartialEq)]
pub struct DistError(pub String);

impl fmt::Display for DistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for DistError {}

pub type Result<T> = std::result::Result<T, DistError>;

/// The primitives a backend provides. Buffers have the same length on every rank; results are laid
/// out in rank order.
pub trait Collective {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// `send` holds `size` equal blocks; block `r` goes to rank `r`. `recv` (same length) gets, in
    /// block `s`, what rank `s` sent to this rank.
    fn all_to_all_f32(&self, send: &[f32], recv: &mut [f32]) -> Result<()>;
    fn all_to_all_f64(&self, send: &[f64], recv: &mut [f64]) -> Result<()>;
    /// `out` (length `size * local.len()`) gets every rank's `local`, in rank order.
    fn all_gather_f32(&self, local: &[f32], out: &mut [f32]) -> Result<()>;
    fn all_gather_f64(&self, local: &[f64], out: &mut [f64]) -> Result<()>;
    /// Every rank's `buf` becomes `root`'s (same length on every rank).
    fn broadcast_bytes(&self, buf: &mut [u8], root: usize) -> Result<()>;
    fn barrier(&self) -> Result<()>;
    /// The backend's name for messages ("single", "threads", "mpi", "nccl").
    fn name(&self) -> &'static str;
    /// Whether a thread other than the one that made this backend may call it while that one
    /// makes no call (MPI's `MPI_THREAD_SERIALIZED`): the all-reduce overlapped with the backward
    /// runs on a communication thread (trainer/overlap.rs) only where this holds.
    fn serialized_threads(&self) -> bool {
        false
    }
    /// The backend as `Any`, so a caller can ask whether it is a particular one (the NCCL
    /// communicator of a GPU rank: `nccl::of`) without this trait naming every backend.
    fn as_any(&self) -> &dyn std::any::Any;
}

/// A world of one process: every collective is the identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_to_all_f32(&self, send: &[f32], recv: &mut [f32]) -> Result<()> {
        recv.copy_from_slice(send);
        Ok(())
    }
    fn all_to_all_f64(&self, send: &[f64], recv: &mut [f64]) -> Result<()> {
        recv.copy_from_slice(send);
        Ok(())
    }
    fn all_gather_f32(&self, local: &[f32], out: &mut [f32]) -> Result<()> {
        out.copy_from_slice(local);
        Ok(())
    }
    fn all_gather_f64(&self, local: &[f64], out: &mut [f64]) -> Result<()> {
        out.copy_from_slice(local);
        Ok(())
    }
    fn broadcast_bytes(&self, _buf: &mut [u8], _root: usize) -> Result<()> {
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
    fn name(&self) -> &'static str {
        "single"
    }
    fn serialized_threads(&self) -> bool {
        true
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The element types the reductions run on.
pub trait Element: Copy + Default + std::ops::AddAssign + std::ops::Mul<Output = Self> {
    fn all_to_all(c: &dyn Collective, send: &[Self], recv: &mut [Self]) -> Result<()>;
    fn all_gather(c: &dyn Collective, local: &[Self], out: &mut [Self]) -> Result<()>;
    fn from_f64(x: f64) -> Self;
}

impl Element for f32 {
    fn all_to_all(c: &dyn Collective, send: &[f32], recv: &mut [f32]) -> Result<()> {
        c.all_to_all_f32(send, recv)
    }
    fn all_gather(c: &dyn Collective, local: &[f32], out: &mut [f32]) -> Result<()> {
        c.all_gather_f32(local, out)
    }
    fn from_f64(x: f64) -> f32 {
        x as f32
    }
}

impl Element for f64 {
    fn all_to_all(c: &dyn Collective, send: &[f64], recv: &mut [f64]) -> Result<()> {
        c.all_to_all_f64(send, recv)
    }
    fn all_gather(c: &dyn Collective, local: &[f64], out: &mut [f64]) -> Result<()> {
        c.all_gather_f64(local, out)
    }
    fn from_f64(x: f64) -> f64 {
        x
    }
}

/// `buf` <- the sum of every rank's `buf`, the same bits on every rank: chunk c is added up on rank
/// c in rank order (module docs), so the result does not depend on arrival order.
pub fn all_reduce_sum<T: Element>(c: &dyn Collective, buf: &mut [T]) -> Result<()> {
    let n = c.size();
    if n == 1 || buf.is_empty() {
        return Ok(());
    }
    let chunk = buf.len().div_ceil(n);
    let mut send = vec![T::default(); chunk * n];
    send[..buf.len()].copy_from_slice(buf);
    let mut recv = vec![T::default(); chunk * n];
    T::all_to_all(c, &send, &mut recv)?;
    let mut mine = recv[..chunk].to_vec();
    for s in 1..n {
        for (m, x) in mine.iter_mut().zip(&recv[s * chunk..(s + 1) * chunk]) {
            *m += *x;
        }
    }
    T::all_gather(c, &mine, &mut send)?;
    buf.copy_from_slice(&send[..buf.len()]);
    Ok(())
}

/// `buf` <- the mean over ranks of `buf` ([`all_reduce_sum`] divided by the world size).
pub fn all_reduce_mean<T: Element>(c: &dyn Collective, buf: &mut [T]) -> Result<()> {
    all_reduce_sum(c, buf)?;
    let inv = T::from_f64(1.0 / c.size() as f64);
    buf.iter_mut().for_each(|x| *x = *x * inv);
    Ok(())
}

/// Every rank's `local` in rank order (length `size * local.len()`).
pub fn all_gather<T: Element>(c: &dyn Collective, local: &[T]) -> Result<Vec<T>> {
    let mut out = vec![T::default(); local.len() * c.size()];
    T::all_gather(c, local, &mut out)?;
    Ok(out)
}
