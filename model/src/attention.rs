//! The attention sub-layer of a NAT block: QKV projection, neighbourhood (or full) attention,
//! output projection.  x [B, H, W, D] -> y [B, H, W, D].
//!
//! QKV is Linear(D -> 3D) whose output channels are ordered [3][heads][head_dim] (q = first D
//! channels, k = next D, v = last D), as the reference. The scale head_dim^-0.5 is applied
//! inside the attention op (docs/neighborhood-attention.md §1).
//!
//! This file also keeps plain compositions of engine ops (gather neighbours with `index_select`,
//! dot products, softmax) that compute the same functions as the fused ops: they are the oracles
//! the model tests compare the fused ops with, and they make the window rule readable.

use crate::config::AttentionKind;
use crate::Result;
use dinonat_engine::nn::{join, Init, Linear, ParamStore};
use dinonat_engine::{EngineError, Tensor};

/// QKV -> attention -> projection for one block.
#[derive(Clone, Debug)]
pub struct Attention {
    pub qkv: Linear,
    pub proj: Linear,
    /// Relative positional bias [heads, 2k-1, 2k-1] (neighbourhood attention only).
    pub rpb: Option<Tensor>,
    pub heads: usize,
    pub kind: AttentionKind,
    /// Position of the block in its level (the DiNAT schedule alternates on it).
    pub block: usize,
}

impl Attention {
    pub fn new(
        store: &mut ParamStore,
        prefix: &str,
        dim: usize,
        heads: usize,
        kind: AttentionKind,
        block: usize,
    ) -> Result<Attention> {
        let qkv = Linear::new(store, &join(prefix, "qkv"), dim, 3 * dim, true)?;
        let rpb = match kind {
            AttentionKind::Neighborhood { kernel, .. } => Some(store.add(
                &join(prefix, "rpb"),
                &[heads, 2 * kernel - 1, 2 * kernel - 1],
                Init::TruncNormal { std: 0.02 },
            )?),
            AttentionKind::Full => None,
        };
        let proj = Linear::new(store, &join(prefix, "proj"), dim, dim, true)?;
        Ok(Attention {
            qkv,
            proj,
            rpb,
            heads,
            kind,
            block,
        })
    }

    pub fn head_dim(&self) -> usize {
        self.proj.weight.shape()[0] / self.heads
    }

    /// x [B, H, W, D] -> [B, H, W, D].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (h, w) = (x.shape()[1], x.shape()[2]);
        let qkv = self.qkv.forward(x)?;
        let scale = (self.head_dim() as f64).powf(-0.5);
        let y = match self.kind {
            AttentionKind::Neighborhood { kernel, dilation } => {
                let dilation = dilation.dilation(self.block, kernel, h, w);
                neighborhood_attention_qkv(
                    &qkv,
                    self.heads,
                    self.rpb.as_ref(),
                    kernel,
                    dilation,
                    scale,
                )?
            }
            AttentionKind::Full => full_attention_qkv(&qkv, self.heads, scale)?,
        };
        Ok(self.proj.forward(&y)?)
    }
}

/// Neighbourhood attention on the fused QKV output (the engine's fused op):
/// qkv [B, H, W, 3D] -> [B, H, W, D]; `dilation` per axis (rows, columns).
pub fn neighborhood_attention_qkv(
    qkv: &Tensor,
    heads: usize,
    rpb: Option<&Tensor>,
    kernel: usize,
    dilation: [usize; 2],
    scale: f64,
) -> Result<Tensor> {
    Ok(qkv.neighborhood_attention_2d_qkv(heads, rpb, [kernel, kernel], dilation, scale)?)
}

/// Full self-attention over all H*W tokens (the engine's flash-style op):
/// qkv [B, H, W, 3D] -> [B, H, W, D].
pub fn full_attention_qkv(qkv: &Tensor, heads: usize, scale: f64) -> Result<Tensor> {
    if qkv.rank() != 4 {
        return Err(EngineError::InvalidArgument {
            op: "full_attention_qkv",
            shape: qkv.shape().to_vec(),
            message: "qkv must be [B, H, W, 3 * heads * head_dim]".into(),
        }
        .into());
    }
    let s = qkv.shape();
    let (b, h, w, c) = (s[0], s[1], s[2], s[3]);
    let y = qkv.reshape(&[b, h * w, c])?.attention_qkv(heads, scale)?;
    Ok(y.reshape(&[b, h, w, c / 3])?)
}

/// Splits qkv [B, H, W, 3D] into q, k, v, each [B, heads, H*W, head_dim].
fn split_qkv(qkv: &Tensor, heads: usize) -> Result<[Tensor; 3]> {
    let s = qkv.shape();
    if qkv.rank() != 4 || heads == 0 || !s[3].is_multiple_of(3 * heads) {
        return Err(EngineError::InvalidArgument {
            op: "attention (qkv)",
            shape: s.to_vec(),
            message: format!("needs [B, H, W, 3 * heads * head_dim] with {heads} heads"),
        }
        .into());
    }
    let (b, n, hd) = (s[0], s[1] * s[2], s[3] / (3 * heads));
    let t = qkv
        .reshape(&[b, n, 3, heads, hd])?
        .permute(&[2, 0, 3, 1, 4])?;
    let part = |i| -> Result<Tensor> { Ok(t.narrow(0, i, 1)?.squeeze(0)?) };
    Ok([part(0)?, part(1)?, part(2)?])
}

/// [B, heads, H*W, head_dim] -> [B, H, W, heads * head_dim].
fn merge_heads(o: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let (b, heads, hd) = (o.shape()[0], o.shape()[1], o.shape()[3]);
    Ok(o.permute(&[0, 2, 1, 3])?.reshape(&[b, h, w, heads * hd])?)
}

/// The 1-D window rule of docs/neighborhood-attention.md §1 on an axis of length `len`: for
/// each position i, its keys and their rpb index (relative offset in units of the dilation,
/// centred at kernel - 1). Dilation splits the axis into interleaved groups, each with its own
/// effective window min(kernel, group length).
pub fn window_1d(len: usize, kernel: usize, dilation: usize) -> Vec<Vec<(usize, usize)>> {
    let d = dilation.max(1);
    (0..len)
        .map(|i| {
            let (g, ig) = (i % d, i / d);
            let group_len = (len - g).div_ceil(d);
            let k = kernel.min(group_len);
            let left = k / 2;
            let right = k - 1 - left;
            let centre = ig.max(left).min(group_len - 1 - right);
            let start = centre - left;
            (0..k)
                .map(|t| ((start + t) * d + g, start + t + kernel - 1 - ig))
                .collect()
        })
        .collect()
}

/// Neighbourhood attention as a composition of engine ops (the oracle of the fused op; dilation
/// per axis): gathers
/// the neighbours of every query into [B, heads, H*W, slots, head_dim]; slots beyond a query's
/// window (only where dilation groups differ in length) are masked with -1e30 before softmax.
pub fn neighborhood_attention_qkv_reference(
    qkv: &Tensor,
    heads: usize,
    rpb: Option<&Tensor>,
    kernel: usize,
    dilation: [usize; 2],
    scale: f64,
) -> Result<Tensor> {
    let [q, k, v] = split_qkv(qkv, heads)?;
    let (b, h, w) = (qkv.shape()[0], qkv.shape()[1], qkv.shape()[2]);
    let (n, hd) = (h * w, q.shape()[3]);
    let rows = window_1d(h, kernel, dilation[0]);
    let cols = window_1d(w, kernel, dilation[1]);
    let sr = rows.iter().map(Vec::len).max().unwrap_or(0);
    let sc = cols.iter().map(Vec::len).max().unwrap_or(0);
    let slots = sr * sc;
    let table = 2 * kernel - 1;
    let mut keys = vec![0usize; n * slots];
    let mut offsets = vec![0usize; n * slots];
    let mut mask = vec![-1e30f64; n * slots];
    for (i, row) in rows.iter().enumerate() {
        for (j, col) in cols.iter().enumerate() {
            let base = (i * w + j) * slots;
            for (tr, &(a, oa)) in row.iter().enumerate() {
                for (tc, &(c, oc)) in col.iter().enumerate() {
                    let s = base + tr * sc + tc;
                    keys[s] = a * w + c;
                    offsets[s] = oa * table + oc;
                    mask[s] = 0.0;
                }
            }
        }
    }
    let kg = k
        .index_select(2, &keys)?
        .reshape(&[b, heads, n, slots, hd])?;
    let vg = v
        .index_select(2, &keys)?
        .reshape(&[b, heads, n, slots, hd])?;
    let mut scores = q.unsqueeze(3)?.mul(&kg)?.sum(4, false)?.mul_scalar(scale)?;
    scores = scores.add(&Tensor::from_vec(mask, &[n, slots])?.to_dtype(qkv.dtype()))?;
    if let Some(rpb) = rpb {
        if rpb.shape() != [heads, table, table] {
            return Err(EngineError::InvalidArgument {
                op: "neighborhood_attention (rpb)",
                shape: rpb.shape().to_vec(),
                message: format!("expected [{heads}, {table}, {table}] for kernel {kernel}"),
            }
            .into());
        }
        let bias = rpb
            .reshape(&[heads, table * table])?
            .index_select(1, &offsets)?
            .reshape(&[heads, n, slots])?;
        scores = scores.add(&bias)?;
    }
    let attn = scores.softmax()?;
    let o = attn.unsqueeze(4)?.mul(&vg)?.sum(3, false)?;
    merge_heads(&o, h, w)
}

/// Full self-attention as matmul -> softmax -> matmul (the oracle of the fused op).
pub fn full_attention_qkv_reference(qkv: &Tensor, heads: usize, scale: f64) -> Result<Tensor> {
    let [q, k, v] = split_qkv(qkv, heads)?;
    let (h, w) = (qkv.shape()[1], qkv.shape()[2]);
    let attn = q.matmul(&k.t()?)?.mul_scalar(scale)?.softmax()?;
    merge_heads(&attn.matmul(&v)?, h, w)
}
