//! The backward and the gradients' mean over the ranks, overlapped (docs/distributed.md,
//! "Overlapping the all-reduce with the backward"). The student's parameters are cut into fixed
//! buckets, consecutive in the order their gradients become final in rank 0's first step (learnt
//! then, as PyTorch DDP rebuilds its buckets after the first iteration, and broadcast, so every
//! rank has the same buckets), about `bucket_bytes` each; the backward hands each parameter's gradient over
//! as soon as it is final ([`Tensor::backward_with`]), it is copied into its bucket, and a full
//! bucket goes to a communication thread that all-reduces the buckets in their fixed order while
//! the backward goes on. Every element is still summed in rank order and scaled by 1 / n
//! ([`all_reduce_mean`]), so the gradients are the bits of the all-reduce after the backward.

use super::error::{Result, TrainError};
use super::parallel::{average_gradients, dist_err};
use super::state::Trainer;
use crate::dist::{all_reduce_mean, Collective};
use dinonat_engine::autograd::{no_grad, Gradients};
use dinonat_engine::{profile, Device, Tensor};
use std::collections::HashMap;
use std::sync::mpsc::{channel, Receiver};
use std::time::Instant;

/// Seconds of one step's backward and gradient averaging.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ReduceTimes {
    /// The backward walk (with the copies into the buckets when overlapped).
    pub backward: f64,
    /// The all-reduce time the step waits for after the backward: all of it when not overlapped.
    pub exposed: f64,
    /// All the time spent in the all-reduce, overlapped or not (the communication thread's).
    pub total: f64,
}

/// Fixed buckets over a parameter list.
#[derive(Clone, Debug, PartialEq)]
pub struct Buckets {
    /// Per parameter: its bucket and its offset there (in values).
    pub place: Vec<(usize, usize)>,
    /// Per bucket: how many parameters and values it holds.
    pub sizes: Vec<(usize, usize)>,
}

impl Buckets {
    /// Consecutive parameters in `order` (indices into `params`, the first to be final first), a
    /// bucket closed once it holds at least `bucket_bytes` of f32.
    pub fn new(params: &[(String, Tensor)], order: &[usize], bucket_bytes: usize) -> Buckets {
        let mut place = vec![(0, 0); params.len()];
        let mut sizes: Vec<(usize, usize)> = Vec::new();
        for &i in order {
            let open = sizes.len().wrapping_sub(1);
            match sizes.last_mut() {
                Some((count, values)) if *values * 4 < bucket_bytes => {
                    place[i] = (open, *values);
                    *count += 1;
                    *values += params[i].1.numel();
                }
                _ => {
                    place[i] = (sizes.len(), 0);
                    sizes.push((1, params[i].1.numel()));
                }
            }
        }
        Buckets { place, sizes }
    }
}

/// `order` (parameter indices as the backward handed them over; those it never reached appended)
/// as rank 0 saw it, on every rank.
fn rank0_order(comm: &dyn Collective, mut order: Vec<usize>, count: usize) -> Result<Vec<usize>> {
    let mut seen = vec![false; count];
    order.iter().for_each(|&i| seen[i] = true);
    order.extend((0..count).filter(|&i| !seen[i]));
    let mut bytes: Vec<u8> = order
        .iter()
        .flat_map(|&i| (i as u32).to_le_bytes())
        .collect();
    comm.broadcast_bytes(&mut bytes, 0).map_err(dist_err)?;
    Ok(bytes
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect())
}

/// A collective lent to the communication thread.
struct Lent<'a>(&'a dyn Collective);

// SAFETY: made only for a backend whose `serialized_threads()` holds (a thread other than its
// owner may call it while the owner makes none), and the owner makes no call through it until the
// scoped thread that holds it has been joined (`overlapped_backward`).
unsafe impl Send for Lent<'_> {}

impl Trainer {
    /// The all-reduce overlapped with the backward in buckets of `bytes` (None: after the whole
    /// backward, as one bucket). Either way the gradients are the same bits; a backend or device
    /// that cannot overlap (NCCL, a GPU, an MPI library without `MPI_THREAD_SERIALIZED`) all-reduces
    /// after the backward.
    pub fn set_overlap(&mut self, bytes: Option<usize>) {
        self.overlap_bucket_bytes = bytes;
        *self.overlap_order.borrow_mut() = None;
    }

    /// Whether this run's all-reduce overlaps the backward, and in buckets of how many bytes.
    pub fn overlap(&self) -> Option<usize> {
        let comm = self.comm.as_ref();
        let host_only = self.device == Device::Cpu && comm.serialized_threads();
        #[cfg(feature = "nccl")]
        let host_only = host_only && crate::dist::nccl::of(comm).is_none();
        self.overlap_bucket_bytes
            .filter(|_| comm.size() > 1 && host_only)
    }

    /// The backward of `loss` and, on more than one rank, every gradient's mean over the ranks
    /// (overlapped when [`Trainer::overlap`] says so). `lap` gives the seconds since its last call.
    pub(super) fn backward_averaged(
        &self,
        loss: Tensor,
        lap: &mut dyn FnMut() -> Result<f64>,
    ) -> Result<(Gradients, ReduceTimes)> {
        profile::phase("backward");
        let comm = self.comm.as_ref();
        let learnt = self.overlap_order.borrow().clone();
        if let (Some(bytes), Some(order)) = (self.overlap(), learnt) {
            let buckets = Buckets::new(&self.params, &order, bytes);
            let (grads, backward, total) = overlapped_backward(comm, loss, &self.params, &buckets)?;
            let exposed = lap()? - backward;
            return Ok((
                grads,
                ReduceTimes {
                    backward,
                    exposed,
                    total,
                },
            ));
        }
        let mut grads = if self.overlap().is_some() {
            // the first step: learn the order in which the gradients become final
            let index = param_index(&self.params);
            let mut order = Vec::with_capacity(self.params.len());
            let grads = loss.backward_with(&mut |leaf, _| {
                order.extend(index.get(&leaf.id()));
                Ok(())
            })?;
            *self.overlap_order.borrow_mut() = Some(rank0_order(comm, order, self.params.len())?);
            grads
        } else {
            loss.backward()?
        };
        drop(loss);
        let backward = lap()?;
        profile::phase("all-reduce");
        if comm.size() > 1 {
            average_gradients(comm, &mut grads, &self.params)?;
        }
        let all_reduce = lap()?;
        Ok((
            grads,
            ReduceTimes {
                backward,
                exposed: all_reduce,
                total: all_reduce,
            },
        ))
    }
}

/// The overlapped backward (module docs): returns the averaged gradients, the seconds of the
/// backward walk and the communication thread's seconds in the all-reduce.
fn overlapped_backward(
    comm: &dyn Collective,
    loss: Tensor,
    params: &[(String, Tensor)],
    buckets: &Buckets,
) -> Result<(Gradients, f64, f64)> {
    let index = param_index(params);
    let mut filling: Vec<Option<Vec<f32>>> = buckets
        .sizes
        .iter()
        .map(|&(_, n)| Some(vec![0.0; n]))
        .collect();
    let mut left: Vec<usize> = buckets.sizes.iter().map(|&(count, _)| count).collect();
    let mut present = vec![false; params.len()];
    let lent = Lent(comm);
    let walk = Instant::now();
    let (grads, backward, reduced) = std::thread::scope(|scope| {
        let (send, receive) = channel();
        let count = buckets.sizes.len();
        let worker = scope.spawn(move || reduce_in_order(lent, receive, count));
        let mut hand_over = |leaf: &Tensor, grad: &Tensor| -> dinonat_engine::Result<()> {
            let Some(&i) = index.get(&leaf.id()) else {
                return Ok(()); // not a trained parameter
            };
            let (b, at) = buckets.place[i];
            let values = grad.to_vec::<f32>()?;
            let bucket = filling[b].as_mut().expect("a bucket is sent once full");
            bucket[at..at + values.len()].copy_from_slice(&values);
            present[i] = true;
            left[b] -= 1;
            if left[b] == 0 {
                // a closed receiver means the thread failed: its error is reported at the join
                let _ = send.send((b, filling[b].take().expect("not sent yet")));
            }
            Ok(())
        };
        let grads = loss.backward_with(&mut hand_over);
        drop(loss);
        if grads.is_ok() {
            // buckets with a parameter the loss did not reach go out as they are
            for (b, bucket) in filling.iter_mut().enumerate() {
                if let Some(values) = bucket.take() {
                    let _ = send.send((b, values));
                }
            }
        }
        drop(send);
        let backward = walk.elapsed().as_secs_f64();
        profile::phase("all-reduce");
        let reduced = worker
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        (grads, backward, reduced)
    });
    let mut grads = grads?;
    let (values, total) = reduced?;
    check_same_gradients(comm, params, &present)?;
    let _no_graph = no_grad();
    for (((_, p), &(b, at)), &reached) in params.iter().zip(&buckets.place).zip(&present) {
        if reached {
            let n = p.numel();
            grads.insert(p, Tensor::from_slice(&values[b][at..at + n], p.shape())?);
        }
    }
    Ok((grads, backward, total))
}

/// Each parameter's index in `params`, by tensor id.
fn param_index(params: &[(String, Tensor)]) -> HashMap<usize, usize> {
    params
        .iter()
        .enumerate()
        .map(|(i, (_, p))| (p.id(), i))
        .collect()
}

/// The communication thread: all-reduces bucket 0, 1, ... in that order (the same order on every
/// rank, whichever fills first), each as soon as it has arrived. Returns the averaged buckets and
/// its seconds inside the all-reduce.
fn reduce_in_order(
    comm: Lent<'_>,
    receive: Receiver<(usize, Vec<f32>)>,
    count: usize,
) -> Result<(Vec<Vec<f32>>, f64)> {
    let mut arrived: Vec<Option<Vec<f32>>> = vec![None; count];
    let mut done = Vec::with_capacity(count);
    let mut busy = 0.0;
    for next in 0..count {
        while arrived[next].is_none() {
            let (b, values) = receive.recv().map_err(|_| {
                TrainError(format!(
                    "data parallel: the backward ended before gradient bucket {next} of {count} was sent"
                ))
            })?;
            arrived[b] = Some(values);
        }
        let mut values = arrived[next].take().expect("arrived");
        let start = Instant::now();
        all_reduce_mean(comm.0, &mut values).map_err(dist_err)?;
        busy += start.elapsed().as_secs_f64();
        done.push(values);
    }
    Ok((done, busy))
}

/// Every rank must have reached the same parameters, or the buckets held different gradients.
fn check_same_gradients(
    comm: &dyn Collective,
    params: &[(String, Tensor)],
    present: &[bool],
) -> Result<()> {
    let reached = present.iter().filter(|&&p| p).count();
    let values: usize = params
        .iter()
        .zip(present)
        .filter(|(_, &p)| p)
        .map(|((_, t), _)| t.numel())
        .sum();
    let sent = [reached as f64, values as f64];
    let mut mean = sent;
    all_reduce_mean(comm, &mut mean).map_err(dist_err)?;
    if mean != sent {
        return Err(TrainError(format!(
            "data parallel: rank {} has {reached} gradients ({values} values), the ranks' mean is {mean:?}",
            comm.rank()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dinonat_engine::DType;

    #[test]
    fn buckets_tile_the_parameters_in_the_given_order() {
        // awkward sizes; 40 bytes per bucket: 10 values, a larger parameter fills one alone
        let sizes = [3usize, 7, 1, 25, 4, 4, 9, 2];
        let params: Vec<(String, Tensor)> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (format!("p{i}"), Tensor::zeros(&[n], DType::F32)))
            .collect();
        let b = Buckets::new(&params, &[7, 6, 5, 4, 3, 2, 1, 0], 40);
        // sizes in that order 2 9 | 4 4 25 | 1 7 3: a parameter joins while the bucket holds < 10 values
        assert_eq!(b.sizes, vec![(2, 11), (3, 33), (3, 11)]);
        assert_eq!(
            b.place,
            vec![
                (2, 8),
                (2, 1),
                (2, 0),
                (1, 8),
                (1, 4),
                (1, 0),
                (0, 2),
                (0, 0)
            ]
        );
        // every value of every parameter has one place
        for (bucket, &(count, values)) in b.sizes.iter().enumerate() {
            let mut members: Vec<(usize, usize)> = (0..sizes.len())
                .filter(|&i| b.place[i].0 == bucket)
                .map(|i| (b.place[i].1, sizes[i]))
                .collect();
            members.sort();
            assert_eq!(members.len(), count);
            let mut at = 0;
            for (offset, n) in members {
                assert_eq!(offset, at);
                at += n;
            }
            assert_eq!(at, values);
        }
    }
}
