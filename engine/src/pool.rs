//! A size-keyed pool of f32 buffers: a dropped tensor's buffer is kept and handed to the next op
//! that asks for the same length, so a training step reuses last step's activations' memory
//! instead of going back to the allocator.
//!
//! Buffers from [`take_f32`] hold stale values: a caller must write every element (kernels do, see
//! kernels/src/cpu/mod.rs). Use [`take_f32_zeroed`] when accumulating.

use std::collections::HashMap;
use std::sync::Mutex;

/// Buffers shorter than this go straight to the allocator (cheap anyway).
const MIN_POOLED_LEN: usize = 1024;
/// Buffers kept per length.
const MAX_PER_LEN: usize = 8;
/// Upper bound on the pooled floats overall (1 GiB of f32).
const MAX_POOLED_FLOATS: usize = 1 << 28;

struct Pool {
    free: HashMap<usize, Vec<Vec<f32>>>,
    floats: usize,
    hits: u64,
    misses: u64,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);

fn with_pool<R>(f: impl FnOnce(&mut Pool) -> R) -> R {
    let mut guard = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let pool = guard.get_or_insert_with(|| Pool {
        free: HashMap::new(),
        floats: 0,
        hits: 0,
        misses: 0,
    });
    f(pool)
}

/// A buffer of exactly `len` floats with unspecified (stale) contents.
pub fn take_f32(len: usize) -> Vec<f32> {
    take_pooled(len).unwrap_or_else(|| vec![0.0; len])
}

/// A pooled buffer of `len` floats (stale contents), if the pool has one.
fn take_pooled(len: usize) -> Option<Vec<f32>> {
    if len < MIN_POOLED_LEN {
        return None;
    }
    with_pool(|p| {
        let v = p.free.get_mut(&len).and_then(|list| list.pop());
        match &v {
            Some(_) => {
                p.hits += 1;
                p.floats -= len;
            }
            None => p.misses += 1,
        }
        v
    })
}

/// A buffer of `len` zeros: a pooled one cleared, else a fresh allocation, which is zero already
/// (cleared again, its pages would all be touched for nothing).
pub fn take_f32_zeroed(len: usize) -> Vec<f32> {
    match take_pooled(len) {
        Some(mut v) => {
            v.fill(0.0);
            v
        }
        None => vec![0.0; len],
    }
}

/// Returns a buffer to the pool (dropped if the pool is full).
pub fn give_f32(v: Vec<f32>) {
    let len = v.len();
    if len < MIN_POOLED_LEN || v.capacity() != len {
        return;
    }
    with_pool(|p| {
        let list = p.free.entry(len).or_default();
        if list.len() < MAX_PER_LEN && p.floats + len <= MAX_POOLED_FLOATS {
            list.push(v);
            p.floats += len;
        }
    });
}

/// (reused buffers, fresh allocations) since the process started, for benchmarks.
pub fn stats() -> (u64, u64) {
    with_pool(|p| (p.hits, p.misses))
}

/// Frees every pooled buffer.
pub fn clear() {
    with_pool(|p| {
        p.free.clear();
        p.floats = 0;
    });
}
