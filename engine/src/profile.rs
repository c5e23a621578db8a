//! Where a step's time goes, by kind of kernel: an opt-in profiler of the backend layer
//! (`dinonat bench train-step --profile`).
//!
//! Every function of the backend seam (`backend/mod.rs`) opens a [`kernel`] scope naming its
//! [`Kind`]; the caller names the phase of the step it is in ([`phase`]: forward, backward,
//! optimiser, ...). While profiling is on ([`start`]), each outermost scope adds its wall time to
//! the (phase, kind) cell; nested scopes (a backend function calling another) count once, in the
//! outer one. [`finish`] stops and returns the cells. Off, a scope costs one relaxed atomic load.
//!
//! What the cells do not hold is the time spent outside the backend: building the graph,
//! shape checks, views, the autograd's bookkeeping, and everything the caller does between
//! ops; the bench reports it as the phase's wall time minus its kernel time.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// The kinds of kernels the backend runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// matmul and linear (GEMM).
    Gemm,
    /// conv2d (im2col + GEMM), forward and backward.
    Conv,
    /// 2-D neighborhood attention, forward and backward.
    NeighborhoodAttention,
    /// full (flash-style) attention, forward and backward.
    Attention,
    LayerNorm,
    Softmax,
    Gelu,
    /// Binary and unary elementwise ops (add, mul, exp, ...), L2 normalisation.
    Elementwise,
    /// sum and max over axes.
    Reduction,
    /// contiguous copies, scatters, cat, index_select, dtype conversions, assignments.
    Copy,
    /// In-place updates of a tensor's elements (optimiser, EMA, centre).
    InPlace,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Gemm => "GEMM (matmul, linear)",
            Kind::Conv => "conv2d",
            Kind::NeighborhoodAttention => "neighborhood attention",
            Kind::Attention => "full attention",
            Kind::LayerNorm => "layer norm",
            Kind::Softmax => "softmax",
            Kind::Gelu => "GELU",
            Kind::Elementwise => "elementwise, L2 norm",
            Kind::Reduction => "reductions (sum, max)",
            Kind::Copy => "copies (contiguous, cat, select, scatter)",
            Kind::InPlace => "in-place updates",
        }
    }
}

/// Time spent in one (phase, kind) cell.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileCell {
    pub phase: &'static str,
    pub kind: Kind,
    pub seconds: f64,
    pub calls: u64,
    /// Floating-point operations of the calls that declared them ([`KernelScope::flops`]).
    pub flops: f64,
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static CELLS: Mutex<Vec<ProfileCell>> = Mutex::new(Vec::new());

thread_local! {
    static PHASE: Cell<&'static str> = const { Cell::new("other") };
    /// Scopes open on this thread while profiling.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Clears the cells and starts recording.
pub fn start() {
    CELLS.lock().unwrap_or_else(|e| e.into_inner()).clear();
    ENABLED.store(true, Ordering::Relaxed);
}

/// Stops recording and returns the cells, in order of first use.
pub fn finish() -> Vec<ProfileCell> {
    ENABLED.store(false, Ordering::Relaxed);
    std::mem::take(&mut *CELLS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Names the phase of the work that follows on this thread (until the next call).
pub fn phase(name: &'static str) {
    PHASE.with(|p| p.set(name));
}

/// The open scope of one backend call; an outermost scope adds its time when it drops.
pub struct KernelScope {
    holds_depth: bool,
    timed: Option<(Kind, Instant)>,
    flops: f64,
}

/// Opens a scope for a backend call of `kind` (a no-op unless profiling is on; a scope nested
/// in another records nothing).
pub fn kernel(kind: Kind) -> KernelScope {
    if !ENABLED.load(Ordering::Relaxed) {
        return KernelScope {
            holds_depth: false,
            timed: None,
            flops: 0.0,
        };
    }
    let outermost = DEPTH.with(|d| {
        let open = d.get();
        d.set(open + 1);
        open == 0
    });
    KernelScope {
        holds_depth: true,
        timed: outermost.then(|| (kind, Instant::now())),
        flops: 0.0,
    }
}

impl KernelScope {
    /// Declares the call's floating-point operations (2 per multiply-add), for a GFLOP/s figure.
    pub fn flops(mut self, flops: f64) -> KernelScope {
        self.flops = flops;
        self
    }
}

impl Drop for KernelScope {
    fn drop(&mut self) {
        if self.holds_depth {
            DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        }
        let Some((kind, t0)) = self.timed.take() else {
            return;
        };
        let seconds = t0.elapsed().as_secs_f64();
        let phase = PHASE.with(|p| p.get());
        let mut cells = CELLS.lock().unwrap_or_else(|e| e.into_inner());
        match cells
            .iter_mut()
            .find(|c| c.phase == phase && c.kind == kind)
        {
            Some(c) => {
                c.seconds += seconds;
                c.calls += 1;
                c.flops += self.flops;
            }
            None => cells.push(ProfileCell {
                phase,
                kind,
                seconds,
                calls: 1,
                flops: self.flops,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_scopes_count_once_in_the_outer_kind_and_phase() {
        start();
        phase("forward");
        {
            let _outer = kernel(Kind::Copy);
            let _inner = kernel(Kind::InPlace);
        }
        phase("backward");
        drop(kernel(Kind::Gemm));
        drop(kernel(Kind::Gemm));
        let cells = finish();
        // other tests' threads record under their own (default) phase
        let mine = cells.iter().filter(|c| c.phase != "other");
        let got: Vec<_> = mine.map(|c| (c.phase, c.kind, c.calls)).collect();
        assert_eq!(
            got,
            vec![("forward", Kind::Copy, 1), ("backward", Kind::Gemm, 2)]
        );
        assert!(cells.iter().all(|c| c.seconds >= 0.0));
        // off: nothing is recorded and the depth is back at zero
        drop(kernel(Kind::Gemm));
        assert!(finish().iter().all(|c| c.phase == "other"));
        assert_eq!(DEPTH.with(|d| d.get()), 0);
    }
}
