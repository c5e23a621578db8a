//! Ranks as threads of one process: the data-parallel trainer's equivalence tests run without a
//! launcher, and a recipe can be checked at world size n on one machine. A rank that panics or
//! returns early ends the others' collectives with an error instead of a hang.

use super::collective::{Collective, DistError, Result};
use std::any::Any;
use std::sync::{Arc, Condvar, Mutex};

type Slot = Option<Arc<dyn Any + Send + Sync>>;

struct State {
    slots: Vec<Slot>,
    arrived: usize,
    generation: u64,
    /// A rank left the world (panicked or finished) while others still wait.
    gone: Option<usize>,
}

struct Hub {
    n: usize,
    state: Mutex<State>,
    cv: Condvar,
}

/// One rank of a world of threads (see [`ThreadWorld::run`]).
pub struct ThreadWorld {
    rank: usize,
    hub: Arc<Hub>,
}

/// Marks the rank gone when its closure ends (normally or by a panic), waking every waiter.
struct Leave(Arc<Hub>, usize);

impl Drop for Leave {
    fn drop(&mut self) {
        let mut s = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        s.gone.get_or_insert(self.1);
        self.0.cv.notify_all();
    }
}

impl ThreadWorld {
    /// Runs `f` on `n` ranks, one thread each (`f` owns its rank's handle, e.g. to give it to a
    /// trainer), and returns their results in rank order.
    pub fn run<R: Send>(n: usize, f: impl Fn(ThreadWorld) -> R + Sync) -> Vec<R> {
        assert!(n > 0, "a world needs at least one rank");
        let hub = Arc::new(Hub {
            n,
            state: Mutex::new(State {
                slots: vec![None; n],
                arrived: 0,
                generation: 0,
                gone: None,
            }),
            cv: Condvar::new(),
        });
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..n)
                .map(|rank| {
                    let world = ThreadWorld {
                        rank,
                        hub: hub.clone(),
                    };
                    let f = &f;
                    scope.spawn(move || {
                        let _leave = Leave(world.hub.clone(), rank);
                        f(world)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    }

    /// Waits until every rank has arrived at this point (an error if one has left).
    fn barrier_wait(&self, op: &str) -> Result<()> {
        let hub = &self.hub;
        let mut s = hub.state.lock().unwrap_or_else(|e| e.into_inner());
        let generation = s.generation;
        s.arrived += 1;
        if s.arrived == hub.n {
            s.arrived = 0;
            s.generation += 1;
            hub.cv.notify_all();
            return Ok(());
        }
        while s.generation == generation {
            if let Some(r) = s.gone {
                return Err(DistError(format!(
                    "{op} on rank {}: rank {r} of the thread world has left",
                    self.rank
                )));
            }
            s = hub.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        Ok(())
    }

    /// Every rank's `data`, in rank order.
    fn exchange<T: Clone + Send + Sync + 'static>(
        &self,
        data: Vec<T>,
        op: &str,
    ) -> Result<Vec<Arc<Vec<T>>>> {
        self.hub
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .slots[self.rank] = Some(Arc::new(data));
        self.barrier_wait(op)?;
        let all: Vec<Arc<Vec<T>>> = {
            let s = self.hub.state.lock().unwrap_or_else(|e| e.into_inner());
            s.slots
                .iter()
                .map(|x| {
                    let any = x.clone().expect("every rank deposited before the barrier");
                    any.downcast::<Vec<T>>()
                        .expect("every rank sent the same type")
                })
                .collect()
        };
        // nobody overwrites a slot before every rank has read them all
        self.barrier_wait(op)?;
        if all.iter().any(|v| v.len() != all[0].len()) {
            return Err(DistError(format!(
                "{op}: the ranks' buffers differ in length"
            )));
        }
        Ok(all)
    }

    fn all_to_all<T: Copy + Send + Sync + 'static>(
        &self,
        send: &[T],
        recv: &mut [T],
    ) -> Result<()> {
        let n = self.hub.n;
        if send.len() != recv.len() || !send.len().is_multiple_of(n) {
            return Err(DistError(format!(
                "all_to_all: {} values to send, {} to receive, {n} ranks",
                send.len(),
                recv.len()
            )));
        }
        let block = send.len() / n;
        let all = self.exchange(send.to_vec(), "all_to_all")?;
        for (s, from) in all.iter().enumerate() {
            recv[s * block..(s + 1) * block]
                .copy_from_slice(&from[self.rank * block..(self.rank + 1) * block]);
        }
        Ok(())
    }

    fn all_gather<T: Copy + Send + Sync + 'static>(
        &self,
        local: &[T],
        out: &mut [T],
    ) -> Result<()> {
        if out.len() != local.len() * self.hub.n {
            return Err(DistError(format!(
                "all_gather: {} values per rank into {} for {} ranks",
                local.len(),
                out.len(),
                self.hub.n
            )));
        }
        let all = self.exchange(local.to_vec(), "all_gather")?;
        for (s, from) in all.iter().enumerate() {
            out[s * local.len()..(s + 1) * local.len()].copy_from_slice(from);
        }
        Ok(())
    }
}

impl Collective for ThreadWorld {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.hub.n
    }
    fn all_to_all_f32(&self, send: &[f32], recv: &mut [f32]) -> Result<()> {
        self.all_to_all(send, recv)
    }
    fn all_to_all_f64(&self, send: &[f64], recv: &mut [f64]) -> Result<()> {
        self.all_to_all(send, recv)
    }
    fn all_gather_f32(&self, local: &[f32], out: &mut [f32]) -> Result<()> {
        self.all_gather(local, out)
    }
    fn all_gather_f64(&self, local: &[f64], out: &mut [f64]) -> Result<()> {
        self.all_gather(local, out)
    }
    fn broadcast_bytes(&self, buf: &mut [u8], root: usize) -> Result<()> {
        let all = self.exchange(buf.to_vec(), "broadcast")?;
        let from = all.get(root).ok_or_else(|| {
            DistError(format!(
                "broadcast: root {root} is not a rank of {}",
                self.hub.n
            ))
        })?;
        buf.copy_from_slice(from);
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        self.barrier_wait("barrier")
    }
    fn name(&self) -> &'static str {
        "threads"
    }
    fn serialized_threads(&self) -> bool {
        true // the hub is a mutex and a condition variable
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
