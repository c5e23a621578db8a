//! The DINO projection head (Caron et al., ICCV 2021; docs/dino-head.md):
//!   features [B, F] -> Linear(F -> hidden) -> GELU -> Linear(hidden -> hidden) -> GELU
//!   -> Linear(hidden -> bottleneck) -> l2-normalise -> weight-normalised Linear(bottleneck -> K)
//!   -> logits [B, K].
//! The last layer has no bias; its weight is W[k] = g[k] v[k] / ||v[k]|| per output row k, with
//! g fixed to 1 when `norm_last_layer` (the default). W is built from v by the engine's
//! `l2_normalize` over rows (whose backward is the weight-norm gradient, docs/dino-head.md) times
//! g, so the gradient reaches v through the projection onto the sphere.

use crate::{ModelError, Result};
use dinonat_engine::nn::{Init, Linear, ParamStore};
use dinonat_engine::{DType, Device, Tensor};

#[derive(Clone, Debug, PartialEq)]
pub struct DinoHeadConfig {
    pub in_dim: usize,
    pub hidden_dim: usize,
    pub bottleneck_dim: usize,
    /// K, the number of prototypes.
    pub out_dim: usize,
    /// Linear layers before the bottleneck output (3 in DINO: `mlp.0`, `mlp.2`, `mlp.4`).
    pub nlayers: usize,
    /// Keep g fixed at 1 (not trained).
    pub norm_last_layer: bool,
    /// BatchNorm after each hidden Linear (DINO's `use_bn_in_head`; off by default). The layers
    /// are then `mlp.0`, BN `mlp.1`, `mlp.3`, BN `mlp.4`, `mlp.6`, as PyTorch's Sequential numbers
    /// them. The statistics are always those of the batch (student and teacher both run DINO's
    /// train mode); no running averages are kept, since only the backbone is used after training.
    pub use_bn: bool,
}

impl DinoHeadConfig {
    /// DINO's defaults (hidden 2048, bottleneck 256, 3 layers, g fixed) for `in_dim` features
    /// and K = `out_dim`.
    pub fn new(in_dim: usize, out_dim: usize) -> DinoHeadConfig {
        DinoHeadConfig {
            in_dim,
            hidden_dim: 2048,
            bottleneck_dim: 256,
            out_dim,
            nlayers: 3,
            norm_last_layer: true,
            use_bn: false,
        }
    }

    /// (name, shape) of every weight, in build order.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut v = Vec::new();
        for (name, fan_in, fan_out) in self.mlp_layers() {
            v.push((format!("{name}.weight"), vec![fan_out, fan_in]));
            v.push((format!("{name}.bias"), vec![fan_out]));
        }
        for name in self.bn_layers() {
            v.push((format!("{name}.weight"), vec![self.hidden_dim]));
            v.push((format!("{name}.bias"), vec![self.hidden_dim]));
        }
        v.push(("last_layer.weight_g".into(), vec![self.out_dim, 1]));
        v.push((
            "last_layer.weight_v".into(),
            vec![self.out_dim, self.bottleneck_dim],
        ));
        v
    }

    /// Sequential index step between Linear layers: 2 (Linear, GELU) or 3 with BN.
    fn stride(&self) -> usize {
        if self.use_bn {
            3
        } else {
            2
        }
    }

    /// Names of the BatchNorm layers (one after each hidden Linear) when `use_bn`.
    fn bn_layers(&self) -> Vec<String> {
        if !self.use_bn || self.nlayers == 1 {
            return Vec::new();
        }
        (0..self.nlayers - 1)
            .map(|i| format!("mlp.{}", self.stride() * i + 1))
            .collect()
    }

    /// (name, in, out) of the MLP's Linear layers: `mlp` alone for one layer, else `mlp.0`,
    /// `mlp.2`, ... (GELUs sit at the odd indices of PyTorch's Sequential; with BN `mlp.0`,
    /// `mlp.3`, ...).
    fn mlp_layers(&self) -> Vec<(String, usize, usize)> {
        if self.nlayers == 1 {
            return vec![("mlp".into(), self.in_dim, self.bottleneck_dim)];
        }
        (0..self.nlayers)
            .map(|i| {
                let fan_in = if i == 0 { self.in_dim } else { self.hidden_dim };
                let fan_out = if i + 1 == self.nlayers {
                    self.bottleneck_dim
                } else {
                    self.hidden_dim
                };
                (format!("mlp.{}", self.stride() * i), fan_in, fan_out)
            })
            .collect()
    }
}

/// A clone shares the parameter storage.
#[derive(Clone, Debug)]
pub struct DinoHead {
    pub config: DinoHeadConfig,
    pub params: ParamStore,
    pub mlp: Vec<Linear>,
    /// (gamma, beta) of the BatchNorm after each hidden Linear, when `use_bn`.
    pub bn: Vec<(Tensor, Tensor)>,
    /// g [K, 1].
    pub weight_g: Tensor,
    /// v [K, bottleneck].
    pub weight_v: Tensor,
}

/// The weight-norm eps: only a zero row of v would reach it.
const NORM_EPS: f64 = 1e-12;

impl DinoHead {
    /// Linear weights truncated normal 0.02, biases 0; v with PyTorch's Linear default
    /// (U(+-1/sqrt(bottleneck)), as DINO creates the last layer after its init pass); g = 1.
    pub fn new(config: &DinoHeadConfig, dtype: DType, seed: u64) -> Result<DinoHead> {
        DinoHead::build(config, ParamStore::new(dtype, seed))
    }

    /// The same head with every parameter copied to `device` (new leaves; the original is
    /// unchanged), as [`crate::Nat::to_device`].
    pub fn to_device(&self, device: Device) -> Result<DinoHead> {
        if device == self.params.device() {
            return Ok(self.clone());
        }
        DinoHead::build(&self.config, self.params.to_device(device)?.replaying())
    }

    /// Builds the layers on store `s` (fresh, or replaying existing entries).
    fn build(config: &DinoHeadConfig, mut s: ParamStore) -> Result<DinoHead> {
        let c = config;
        if c.nlayers == 0
            || c.in_dim == 0
            || c.hidden_dim == 0
            || c.bottleneck_dim == 0
            || c.out_dim == 0
        {
            return Err(ModelError::Config(format!(
                "DINO head: every size must be positive ({c:?})"
            )));
        }
        let mlp = c
            .mlp_layers()
            .into_iter()
            .map(|(name, i, o)| Linear::new(&mut s, &name, i, o, true))
            .collect::<dinonat_engine::Result<Vec<_>>>()?;
        let bn = c
            .bn_layers()
            .into_iter()
            .map(|name| {
                Ok((
                    s.add(&format!("{name}.weight"), &[c.hidden_dim], Init::Ones)?,
                    s.add(&format!("{name}.bias"), &[c.hidden_dim], Init::Zeros)?,
                ))
            })
            .collect::<dinonat_engine::Result<Vec<_>>>()?;
        let g_shape = [c.out_dim, 1];
        let weight_g = if c.norm_last_layer {
            s.add_fixed("last_layer.weight_g", &g_shape, Init::Ones)?
        } else {
            s.add("last_layer.weight_g", &g_shape, Init::Ones)?
        };
        let weight_v = s.add(
            "last_layer.weight_v",
            &[c.out_dim, c.bottleneck_dim],
            Init::KaimingUniform {
                fan_in: c.bottleneck_dim,
            },
        )?;
        Ok(DinoHead {
            config: c.clone(),
            params: s,
            mlp,
            bn,
            weight_g,
            weight_v,
        })
    }

    /// W = g * v / ||v|| per row: [K, bottleneck].
    pub fn last_layer_weight(&self) -> Result<Tensor> {
        Ok(self.weight_v.l2_normalize(NORM_EPS)?.mul(&self.weight_g)?)
    }

    /// The bottleneck output before normalisation: x [B, F] -> [B, bottleneck].
    pub fn bottleneck(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for (i, layer) in self.mlp.iter().enumerate() {
            x = layer.forward(&x)?;
            if i + 1 < self.mlp.len() {
                if let Some((gamma, beta)) = self.bn.get(i) {
                    x = batch_norm(&x, gamma, beta)?;
                }
                x = x.gelu()?;
            }
        }
        Ok(x)
    }

    /// x [B, F] -> logits [B, K].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let z = self.bottleneck(x)?.l2_normalize(NORM_EPS)?;
        Ok(z.linear(&self.last_layer_weight()?, None)?)
    }
}

/// BatchNorm1d's eps.
const BN_EPS: f64 = 1e-5;

/// BatchNorm over the batch of x [B, C] with batch statistics (biased variance, as PyTorch in
/// train mode): y = (x - mean_B x) / sqrt(var_B x + eps) * gamma + beta. Built from engine ops, so
/// its gradient is their composition (docs/dino-head.md).
pub fn batch_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Result<Tensor> {
    let centred = x.sub(&x.mean(0, true)?)?;
    let var = centred.mul(&centred)?.mean(0, true)?;
    let std = var.add_scalar(BN_EPS)?.sqrt()?;
    Ok(centred.div(&std)?.mul(gamma)?.add(beta)?)
}
