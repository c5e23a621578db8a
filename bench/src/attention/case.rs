//! What one case of `dinonat bench attention` is and what its timing holds.

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Pass {
    Forward,
    ForwardBackward,
}

impl Pass {
    pub(super) fn name(self) -> &'static str {
        match self {
            Pass::Forward => "fwd",
            Pass::ForwardBackward => "fwd+bwd",
        }
    }
}

/// One measured (or skipped) case. `kernel` None: full attention.
#[derive(Clone, Debug)]
pub(super) struct Case {
    pub(super) size: usize,
    pub(super) kernel: Option<usize>,
    pub(super) pass: Pass,
    pub(super) gflop: f64,
    pub(super) extra_mem_bytes: usize,
    pub(super) naive_mem_bytes: usize,
    /// None when skipped.
    pub(super) timing: Option<Timing>,
}

impl Case {
    pub(super) fn op(&self) -> &'static str {
        if self.kernel.is_some() {
            "na"
        } else {
            "full"
        }
    }
    pub(super) fn tokens(&self) -> usize {
        self.size * self.size
    }
}

/// One warm-up call, then repeats adapted to its cost; the median in ms and the repeat count.
#[derive(Clone, Copy, Debug)]
pub(super) struct Timing {
    /// Median wall-clock milliseconds per call.
    pub(super) ms: f64,
    pub(super) repeats: usize,
    /// Process CPU time per call (mean over the repeats) divided by the thread count: the wall
    /// time the call would take with the cores to itself and perfect scaling. On a machine shared
    /// with other work the wall time is inflated and this is the better estimate of the kernel's
    /// own cost. None off Linux.
    pub(super) cpu_ms: Option<f64>,
}

impl Timing {
    pub(super) fn plotted(&self, cpu: bool) -> f64 {
        match (cpu, self.cpu_ms) {
            (true, Some(v)) => v,
            _ => self.ms,
        }
    }
}
