//! Data-parallel DINO (docs/distributed.md): what the step does differently on n ranks. Each rank
//! takes rows [r b, (r + 1) b) of every global batch of B = n b images (the same seeded order on every
//! rank; each crop is keyed by its sample's index, drop path by its whole-batch row), and then:
//! gradients are averaged over ranks, the centre's mean and Sinkhorn-Knopp run over the global
//! batch, and the logged loss, entropy and KL are the global batch's. Clipping, AdamW and the teacher
//! EMA then run on the same numbers on every rank, so the networks stay identical. KoLeo stays per
//! rank (its nearest neighbours are those of the rank's batch, as in DINOv2).

use super::error::{Result, TrainError};
use crate::dino::loss::{row_sums, sinkhorn_knopp};
use crate::dino::DinoLoss;
use crate::dist::{all_gather, all_reduce_mean, all_reduce_sum, Collective};
use dinonat_engine::autograd::{no_grad, Gradients};
use dinonat_engine::rng::mix64;
use dinonat_engine::{Device, RowWindow, Tensor};

pub(super) fn dist_err(e: crate::dist::DistError) -> TrainError {
    TrainError(format!("data parallel: {e}"))
}

/// This rank's rows of a global batch of `global` images (view-major rows for drop path).
pub fn row_window(comm: &dyn Collective, global: usize) -> RowWindow {
    let local = global / comm.size();
    RowWindow {
        local,
        global,
        offset: comm.rank() * local,
    }
}

/// This rank's share of a global batch's sample indices.
pub fn shard<'a>(comm: &dyn Collective, batch: &'a [usize]) -> &'a [usize] {
    let local = batch.len() / comm.size();
    &batch[comm.rank() * local..(comm.rank() + 1) * local]
}

/// Every gradient of `params` <- its mean over ranks: those on the CPU as one bucket through the
/// host collective (rank-order sums), those on the GPU as one bucket through NCCL
/// ([`Collective::nccl`]; cargo feature `nccl`), each in the parameters' order.
pub fn average_gradients(
    comm: &dyn Collective,
    grads: &mut Gradients,
    params: &[(String, Tensor)],
) -> Result<()> {
    let (mut host, mut gpu) = (Bucket::default(), Bucket::default());
    for (name, p) in params {
        if let Some(g) = grads.get(p) {
            let bucket = if g.device() == Device::Cpu {
                &mut host
            } else {
                check_gpu_path(comm, name, g)?;
                &mut gpu
            };
            bucket.values.extend(g.to_vec::<f32>()?);
            bucket
                .present
                .push((p.clone(), g.shape().to_vec(), g.device()));
        }
    }
    // every rank must hold the same gradients, or the buckets would not line up
    let sent = [
        host.present.len(),
        host.values.len(),
        gpu.present.len(),
        gpu.values.len(),
    ]
    .map(|x| x as f64);
    let mut count = sent;
    all_reduce_mean(comm, &mut count).map_err(dist_err)?;
    if count != sent {
        return Err(TrainError(format!(
            "data parallel: rank {} has {} + {} gradients ({} + {} values on CPU + GPU), the ranks' mean is {:?}",
            comm.rank(),
            sent[0],
            sent[2],
            sent[1],
            sent[3],
            count
        )));
    }
    all_reduce_mean(comm, &mut host.values).map_err(dist_err)?;
    if !gpu.present.is_empty() {
        gpu_mean(comm, &mut gpu.values)?;
    }
    let _no_graph = no_grad();
    for bucket in [host, gpu] {
        let mut at = 0;
        for (p, shape, device) in bucket.present {
            let n: usize = shape.iter().product();
            grads.insert(
                &p,
                Tensor::from_slice(&bucket.values[at..at + n], &shape)?.to(device)?,
            );
            at += n;
        }
    }
    Ok(())
}

/// Gradients gathered into one flat bucket, with where each came from.
#[derive(Default)]
struct Bucket {
    values: Vec<f32>,
    present: Vec<(Tensor, Vec<usize>, Device)>,
}

/// A gradient on the GPU needs a backend with NCCL.
fn check_gpu_path(comm: &dyn Collective, name: &str, g: &Tensor) -> Result<()> {
    #[cfg(feature = "nccl")]
    if crate::dist::nccl::of(comm).is_some() {
        return Ok(());
    }
    Err(TrainError(format!(
        "data parallel: the gradient of {name} is on {:?}; the {} backend averages CPU gradients \
         (GPU ranks use NCCL: build with --features nccl, docs/distributed.md)",
        g.device(),
        comm.name()
    )))
}

/// `values` <- their mean over ranks through NCCL. The engine has no public access to a tensor's
/// device buffer yet, so the GPU gradients are staged through host memory into one device bucket
/// (docs/distributed.md, "GPUs: NCCL").
#[cfg(feature = "nccl")]
fn gpu_mean(comm: &dyn Collective, values: &mut [f32]) -> Result<()> {
    use crate::dist::nccl::Reduce;
    let nccl = crate::dist::nccl::of(comm).expect("checked by check_gpu_path");
    let dev = nccl.device();
    let gpu = |e: String| TrainError(format!("data parallel (NCCL): {e}"));
    let mut bucket = dev.upload(values).map_err(gpu)?;
    nccl.all_reduce(&mut [&mut bucket], Reduce::Mean)
        .map_err(dist_err)?;
    values.copy_from_slice(&dev.download(&bucket).map_err(gpu)?);
    Ok(())
}

#[cfg(not(feature = "nccl"))]
fn gpu_mean(_: &dyn Collective, _: &mut [f32]) -> Result<()> {
    unreachable!("check_gpu_path refuses GPU gradients without the nccl feature")
}

/// Sinkhorn-Knopp's targets over the global batch, this rank's rows: every rank's teacher logits
/// [2 b, K] are gathered into the whole batch's view-major order [2 B, K], normalised there, and
/// this rank's rows taken back.
pub fn global_sinkhorn_targets(
    comm: &dyn Collective,
    loss: &DinoLoss,
    teacher: &Tensor,
    teacher_temp: f64,
) -> Result<Tensor> {
    let k = loss.out_dim;
    let (rows, n) = (teacher.shape()[0], comm.size());
    let b = rows / 2;
    let all = all_gather(comm, &teacher.to_vec_f64()).map_err(dist_err)?; // [n][2][b][K]
    let global = n * b;
    let mut ordered = vec![0.0; n * rows * k]; // [2][n b][K]
    for r in 0..n {
        for v in 0..2 {
            for i in 0..b {
                let from = ((r * 2 + v) * b + i) * k;
                let to = (v * global + r * b + i) * k;
                ordered[to..to + k].copy_from_slice(&all[from..from + k]);
            }
        }
    }
    let q = sinkhorn_knopp(&ordered, 2 * global, k, teacher_temp, 3);
    let window = row_window(comm, global);
    let mut mine = Vec::with_capacity(rows * k);
    for j in 0..rows {
        let g = window.global_row(j);
        mine.extend_from_slice(&q[g * k..(g + 1) * k]);
    }
    Ok(Tensor::from_slice(&mine, &[rows, k])?.to_dtype(teacher.dtype()))
}

/// The centre update with the mean over the global batch's teacher rows.
pub fn update_global_center(
    comm: &dyn Collective,
    loss: &mut DinoLoss,
    teacher: &Tensor,
) -> Result<()> {
    let mut sums = row_sums(teacher, loss.out_dim);
    all_reduce_sum(comm, &mut sums).map_err(dist_err)?;
    loss.update_center_from_sums(&sums, teacher.shape()[0] * comm.size());
    Ok(())
}

/// The global batch's mean of per-rank numbers (loss, entropy, KL).
pub fn mean_over_ranks<const N: usize>(comm: &dyn Collective, mut x: [f64; N]) -> Result<[f64; N]> {
    all_reduce_mean(comm, &mut x).map_err(dist_err)?;
    Ok(x)
}

/// Rank 0's decision (stop or go on) on every rank, so no rank waits for a peer that has stopped.
pub fn agree(comm: &dyn Collective, stop: bool) -> Result<bool> {
    let mut b = [stop as u8];
    comm.broadcast_bytes(&mut b, 0).map_err(dist_err)?;
    Ok(b[0] != 0)
}

/// Refuses to start unless every rank runs the same config from the same step (a rank started
/// with other flags, or resumed from another checkpoint, would train a different network).
pub fn check_same_start(comm: &dyn Collective, config_json: &str, step: usize) -> Result<()> {
    let h = mix64(config_json.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    }));
    // each 32-bit half and the step are exact in f64
    let mine = [(h >> 32) as f64, (h & 0xffff_ffff) as f64, step as f64];
    let all = all_gather(comm, &mine).map_err(dist_err)?;
    for (r, theirs) in all.chunks_exact(3).enumerate() {
        if theirs != mine {
            return Err(TrainError(format!(
                "data parallel: rank {r} runs another config or step than rank {} (step {} vs {}): \
                 start every rank with the same flags and checkpoint",
                comm.rank(),
                theirs[2],
                step
            )));
        }
    }
    Ok(())
}
