//! The neighbourhood map (docs/attention-maps.md, §2): for one token t = (r, c) of a level, its
//! real attention weights in each block of the level, per head,
//!
//! ```text
//! a_h(j) = softmax_{j ∈ N(t)}( q_{t,h} · k_{j,h} / sqrt(head_dim) + B_h[off(t, j)] ),
//! ```
//!
//! over the k x k window N(t) of that block (its dilation, the min(k, L) rule on small maps and
//! the relative positional bias B, exactly as in the forward pass); with full attention, N(t)
//! is every token and there is no bias.

use super::{block_queries_keys, softmax_f64, LevelCapture, Result};
use dinonat_engine::DType;
use dinonat_model::attention::window_1d;
use dinonat_model::{AttentionKind, ModelError, Nat};

/// One block's weights for the chosen token.
#[derive(Clone, Debug)]
pub struct BlockNeighbourhood {
    pub block: usize,
    /// Dilation (rows, columns) of the block's window.
    pub dilation: [usize; 2],
    /// Keys of the window as token indices r * w + c (row-major over the window).
    pub keys: Vec<usize>,
    /// `[heads, keys.len()]` weights, each row summing to 1.
    pub weights: Vec<f32>,
    pub heads: usize,
}

impl BlockNeighbourhood {
    /// Head `h`'s weights scattered onto the level grid (zero outside the window): `[n]`.
    pub fn on_grid(&self, h: usize, n: usize) -> Vec<f32> {
        let mut map = vec![0f32; n];
        let m = self.keys.len();
        for (t, &key) in self.keys.iter().enumerate() {
            map[key] = self.weights[h * m + t];
        }
        map
    }
}

/// The token of an `h` x `w` grid that covers pixel (x, y) of a `size_w` x `size_h` input.
pub fn token_of_pixel(
    x: usize,
    y: usize,
    size_w: usize,
    size_h: usize,
    grid: (usize, usize),
) -> usize {
    let r = (y * grid.0 / size_h.max(1)).min(grid.0 - 1);
    let c = (x * grid.1 / size_w.max(1)).min(grid.1 - 1);
    r * grid.1 + c
}

/// The attention weights of token `token` of image `image` (batch index) in every block of the
/// captured level.
pub fn neighbourhood_attention(
    nat: &Nat,
    capture: &LevelCapture,
    image: usize,
    token: usize,
) -> Result<Vec<BlockNeighbourhood>> {
    let (h, w) = capture.grid;
    let n = h * w;
    if token >= n || image >= capture.tokens.shape()[0] {
        return Err(ModelError::Config(format!(
            "neighbourhood map: token {token} of image {image} outside the {h}x{w} grid of {} images",
            capture.tokens.shape()[0]
        )));
    }
    let (r, c) = (token / w, token % w);
    let mut out = Vec::new();
    for (bi, block) in nat.levels[capture.level].blocks.iter().enumerate() {
        let heads = block.attn.heads;
        let (q, k) = block_queries_keys(nat, capture, bi)?;
        let dim = q.len() / (capture.tokens.shape()[0] * n);
        let hd = dim / heads;
        let scale = (hd as f64).powf(-0.5);
        let base = image * n * dim;
        let (keys, offsets, dilation, table) = match block.attn.kind {
            AttentionKind::Neighborhood { kernel, dilation } => {
                let d = dilation.dilation(bi, kernel, h, w);
                let rows = &window_1d(h, kernel, d[0])[r];
                let cols = &window_1d(w, kernel, d[1])[c];
                let mut keys = Vec::new();
                let mut offsets = Vec::new();
                for &(a, oa) in rows {
                    for &(b, ob) in cols {
                        keys.push(a * w + b);
                        offsets.push((oa, ob));
                    }
                }
                (keys, offsets, d, 2 * kernel - 1)
            }
            AttentionKind::Full => ((0..n).collect(), Vec::new(), [1, 1], 0),
        };
        let rpb = match &block.attn.rpb {
            Some(t) if !offsets.is_empty() => Some(t.to_dtype(DType::F32).to_vec::<f32>()?),
            _ => None,
        };
        let mut weights = Vec::with_capacity(heads * keys.len());
        let qt = &q[base + token * dim..base + (token + 1) * dim];
        for hh in 0..heads {
            let qh = &qt[hh * hd..(hh + 1) * hd];
            let scores: Vec<f64> = keys
                .iter()
                .enumerate()
                .map(|(t, &j)| {
                    let kj = &k[base + j * dim + hh * hd..base + j * dim + (hh + 1) * hd];
                    let dot: f64 = qh.iter().zip(kj).map(|(&a, &b)| a as f64 * b as f64).sum();
                    let bias = rpb.as_ref().map_or(0.0, |b| {
                        let (oa, ob) = offsets[t];
                        b[hh * table * table + oa * table + ob] as f64
                    });
                    dot * scale + bias
                })
                .collect();
            weights.extend(softmax_f64(&scores));
        }
        out.push(BlockNeighbourhood {
            block: bi,
            dilation,
            keys,
            weights,
            heads,
        });
    }
    Ok(out)
}
