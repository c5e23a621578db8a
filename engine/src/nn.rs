//! Named parameter sets and the thin layers built on them (Linear, LayerNorm, Conv2d).
//!
//! A [`ParamStore`] maps checkpoint names (`levels.0.blocks.1.attn.qkv.weight`) to leaf tensors,
//! iterated in sorted name order so that optimiser state, checkpoints and EMA walk the same list
//! in the same order every run. Each entry says whether it is trained (`requires_grad`) and
//! whether weight decay applies: DINO (and NAT) exempt 1-D tensors (biases, norm weights, layer
//! scale) and the relative positional bias `rpb`.
//!
//! A layer holds handles to its store entries (same storage), so an optimiser updating the
//! store in place, or a checkpoint loaded into it, is seen by the layer.
//!
//! Initialisers follow the reference models: truncated normal (std 0.02, cut at ±2 absolute as
//! timm's `trunc_normal_`), zeros, ones, constants, and PyTorch's default for convolutions and
//! Linear layers, `kaiming_uniform_(a = sqrt 5)`: with gain sqrt(2 / (1 + a^2)) = sqrt(1/3) the
//! bound gain * sqrt(3 / fan_in) is 1 / sqrt(fan_in); the bias is U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

use crate::{DType, Device, EngineError, Result, Rng, Tensor};
use std::collections::BTreeMap;

/// How a parameter is initialised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Normal(0, std) cut at ±2 (absolute units, as timm).
    TruncNormal {
        std: f64,
    },
    Zeros,
    Ones,
    Constant(f64),
    /// U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's kaiming_uniform(a = sqrt 5) for weights and
    /// its matching bias init.
    KaimingUniform {
        fan_in: usize,
    },
}

impl Init {
    pub fn tensor(self, shape: &[usize], dtype: DType, rng: &mut Rng) -> Result<Tensor> {
        Ok(match self {
            Init::TruncNormal { std } => rng.trunc_normal(shape, 0.0, std, -2.0, 2.0, dtype)?,
            Init::Zeros => Tensor::zeros(shape, dtype),
            Init::Ones => Tensor::ones(shape, dtype),
            Init::Constant(c) => Tensor::full(shape, c, dtype),
            Init::KaimingUniform { fan_in } => {
                let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
                rng.uniform(shape, -bound, bound, dtype)
            }
        })
    }
}

/// One entry of a [`ParamStore`].
#[derive(Clone, Debug)]
pub struct Param {
    pub tensor: Tensor,
    /// Trained by the optimiser (a leaf that requires grad). Fixed entries (DINO's weight-norm
    /// g = 1) are plain tensors.
    pub requires_grad: bool,
    /// Exempt from weight decay: 1-D tensors and `rpb`.
    pub no_decay: bool,
}

/// Name -> parameter, in sorted name order, with the element type and seeded generator that
/// initialise new entries.
#[derive(Clone, Debug)]
pub struct ParamStore {
    params: BTreeMap<String, Param>,
    dtype: DType,
    rng: Rng,
    /// Set by [`ParamStore::replaying`]: `add` / `add_fixed` hand out the existing entries.
    replay: bool,
}

/// `prefix.name`, or `name` when the prefix is empty.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

impl ParamStore {
    pub fn new(dtype: DType, seed: u64) -> ParamStore {
        ParamStore {
            params: BTreeMap::new(),
            dtype,
            rng: Rng::new(seed),
            replay: false,
        }
    }

    /// The same entries, copied to `device` (trained entries stay parameters of the same name;
    /// nothing recorded). Without a GPU, `Device::Cuda` gives the error "no CUDA device: use
    /// --device cpu (...)"; only f32 stores go to CUDA.
    pub fn to_device(&self, device: Device) -> Result<ParamStore> {
        let _guard = crate::no_grad();
        let mut params = BTreeMap::new();
        for (name, p) in &self.params {
            let moved = p.tensor.to(device)?.detach();
            let tensor = if p.requires_grad {
                Tensor::parameter(name.clone(), &moved)
            } else {
                moved
            };
            params.insert(
                name.clone(),
                Param {
                    tensor,
                    requires_grad: p.requires_grad,
                    no_decay: p.no_decay,
                },
            );
        }
        Ok(ParamStore {
            params,
            dtype: self.dtype,
            rng: self.rng.clone(),
            replay: false,
        })
    }

    /// The device of the entries (`Cpu` for an empty store).
    pub fn device(&self) -> Device {
        self.params
            .values()
            .next()
            .map_or(Device::Cpu, |p| p.tensor.device())
    }

    /// This store in replay mode: building a network from it again (the same `add` calls, e.g.
    /// after [`ParamStore::to_device`]) hands out the existing entries instead of new ones; an
    /// `add` of a missing name or another shape is an error.
    pub fn replaying(mut self) -> ParamStore {
        self.replay = true;
        self
    }

    /// The existing entry `name` for a replayed `add`.
    fn replayed(&self, name: &str, shape: &[usize], requires_grad: bool) -> Result<Tensor> {
        match self.params.get(name) {
            Some(p) if p.tensor.shape() == shape && p.requires_grad == requires_grad => {
                Ok(p.tensor.clone())
            }
            found => Err(EngineError::InvalidArgument {
                op: "ParamStore::add (replay)",
                shape: shape.to_vec(),
                message: match found {
                    Some(p) => format!(
                        "parameter '{name}' has shape {:?} (trained: {}), the network asks for \
                         {shape:?} (trained: {requires_grad})",
                        p.tensor.shape(),
                        p.requires_grad
                    ),
                    None => format!("parameter '{name}' is not in the store"),
                },
            }),
        }
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Creates a trained parameter `name` of `shape`; decay applies unless it is 1-D or an rpb.
    pub fn add(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        if self.replay {
            return self.replayed(name, shape, true);
        }
        let value = init.tensor(shape, self.dtype, &mut self.rng)?;
        self.insert(name, &value, true)
    }

    /// Creates an entry that is stored and checkpointed but not trained.
    pub fn add_fixed(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        if self.replay {
            return self.replayed(name, shape, false);
        }
        let value = init.tensor(shape, self.dtype, &mut self.rng)?;
        self.insert(name, &value, false)
    }

    /// Adds `value` (copied if it is a view) under `name`; an error if the name exists.
    pub fn insert(&mut self, name: &str, value: &Tensor, requires_grad: bool) -> Result<Tensor> {
        if self.params.contains_key(name) {
            return Err(EngineError::InvalidArgument {
                op: "ParamStore::insert",
                shape: value.shape().to_vec(),
                message: format!("parameter '{name}' exists already"),
            });
        }
        let tensor = if requires_grad {
            Tensor::parameter(name, value)
        } else {
            let _guard = crate::no_grad();
            value.try_contiguous()?.detach()
        };
        let no_decay = value.rank() <= 1 || name == "rpb" || name.ends_with(".rpb");
        self.params.insert(
            name.to_string(),
            Param {
                tensor: tensor.clone(),
                requires_grad,
                no_decay,
            },
        );
        Ok(tensor)
    }

    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.params.get(name).map(|p| &p.tensor)
    }
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.get(name)
    }
    pub fn contains(&self, name: &str) -> bool {
        self.params.contains_key(name)
    }

    /// (name, entry) in sorted name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Param)> {
        self.params.iter().map(|(n, p)| (n.as_str(), p))
    }
    /// Trained parameters only, in sorted name order.
    pub fn trainable(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.iter()
            .filter(|(_, p)| p.requires_grad)
            .map(|(n, p)| (n, &p.tensor))
    }
    pub fn names(&self) -> Vec<&str> {
        self.params.keys().map(String::as_str).collect()
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.params.len()
    }
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }
    /// Total number of scalars over all entries (trained and fixed).
    pub fn num_elements(&self) -> usize {
        self.params.values().map(|p| p.tensor.numel()).sum()
    }
    /// Number of trained scalars.
    pub fn num_trainable_elements(&self) -> usize {
        self.params
            .values()
            .filter(|p| p.requires_grad)
            .map(|p| p.tensor.numel())
            .sum()
    }

    /// (name, tensor) pairs for saving.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        self.iter()
            .map(|(n, p)| (n.to_string(), p.tensor.clone()))
            .collect()
    }

    /// Copies `value` into entry `name` in place (same shape; converted to the store's dtype).
    pub fn assign(&self, name: &str, value: &Tensor) -> Result<()> {
        let p = self
            .params
            .get(name)
            .ok_or_else(|| EngineError::InvalidArgument {
                op: "ParamStore::assign",
                shape: value.shape().to_vec(),
                message: format!("no parameter named '{name}'"),
            })?;
        p.tensor.assign(&value.try_to_dtype(self.dtype)?)
    }

    /// Copies every value of `other` into the entry of the same name (teacher <- student).
    pub fn copy_from(&self, other: &ParamStore) -> Result<()> {
        for (name, p) in other.iter() {
            self.assign(name, &p.tensor)?;
        }
        Ok(())
    }
}

/// y = x W^T + b.  x [.., in] -> y [.., out];  weight [out, in], bias [out].
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    /// Weight trunc normal std 0.02, bias 0 (the ViT/NAT/DINO init).
    pub fn new(
        store: &mut ParamStore,
        prefix: &str,
        in_features: usize,
        out_features: usize,
        bias: bool,
    ) -> Result<Linear> {
        Linear::with_init(
            store,
            prefix,
            in_features,
            out_features,
            bias,
            Init::TruncNormal { std: 0.02 },
        )
    }

    pub fn with_init(
        store: &mut ParamStore,
        prefix: &str,
        in_features: usize,
        out_features: usize,
        bias: bool,
        weight_init: Init,
    ) -> Result<Linear> {
        let weight = store.add(
            &join(prefix, "weight"),
            &[out_features, in_features],
            weight_init,
        )?;
        let bias = bias
            .then(|| store.add(&join(prefix, "bias"), &[out_features], Init::Zeros))
            .transpose()?;
        Ok(Linear { weight, bias })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.linear(&self.weight, self.bias.as_ref())
    }
}

/// LayerNorm over the last axis: x [.., C] -> y [.., C]; weight 1, bias 0 at init.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    pub fn new(
        store: &mut ParamStore,
        prefix: &str,
        channels: usize,
        eps: f64,
    ) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: store.add(&join(prefix, "weight"), &[channels], Init::Ones)?,
            bias: store.add(&join(prefix, "bias"), &[channels], Init::Zeros)?,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.layer_norm(&self.weight, &self.bias, self.eps)
    }
}

/// 2-D convolution, channels-first: x [N, C, H, W] -> y [N, O, H', W'];
/// weight [O, C, kh, kw], optional bias [O]; PyTorch's default init.
#[derive(Clone, Debug)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub stride: usize,
    pub padding: usize,
}

impl Conv2d {
    pub fn new(
        store: &mut ParamStore,
        prefix: &str,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
    ) -> Result<Conv2d> {
        let init = Init::KaimingUniform {
            fan_in: in_channels * kernel * kernel,
        };
        let weight = store.add(
            &join(prefix, "weight"),
            &[out_channels, in_channels, kernel, kernel],
            init,
        )?;
        let bias = bias
            .then(|| store.add(&join(prefix, "bias"), &[out_channels], init))
            .transpose()?;
        Ok(Conv2d {
            weight,
            bias,
            stride,
            padding,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.conv2d(
            &self.weight,
            self.bias.as_ref(),
            (self.stride, self.stride),
            (self.padding, self.padding),
        )
    }

    /// The same convolution on channels-last x [N, H, W, C] -> [N, oh, ow, O].
    pub fn forward_channels_last(&self, x: &Tensor) -> Result<Tensor> {
        x.conv2d_channels_last(
            &self.weight,
            self.bias.as_ref(),
            (self.stride, self.stride),
            (self.padding, self.padding),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_is_sorted_flags_decay_and_shares_storage_with_layers() {
        let mut s = ParamStore::new(DType::F32, 1);
        let lin = Linear::new(&mut s, "b.fc", 3, 4, true).unwrap();
        let ln = LayerNorm::new(&mut s, "a.norm", 4, 1e-5).unwrap();
        s.add("a.attn.rpb", &[2, 3, 3], Init::TruncNormal { std: 0.02 })
            .unwrap();
        s.add_fixed("c.g", &[4, 1], Init::Ones).unwrap();
        let conv = Conv2d::new(&mut s, "d.conv", 2, 3, 3, 2, 1, false).unwrap();
        assert_eq!(
            s.names(),
            [
                "a.attn.rpb",
                "a.norm.bias",
                "a.norm.weight",
                "b.fc.bias",
                "b.fc.weight",
                "c.g",
                "d.conv.weight"
            ]
        );
        assert_eq!(s.num_elements(), 18 + 4 + 4 + 4 + 12 + 4 + 54);
        assert_eq!(s.num_trainable_elements(), s.num_elements() - 4);
        let nd: Vec<&str> = s
            .iter()
            .filter(|(_, p)| p.no_decay)
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            nd,
            ["a.attn.rpb", "a.norm.bias", "a.norm.weight", "b.fc.bias"]
        );
        assert!(!s.param("c.g").unwrap().requires_grad && !s.get("c.g").unwrap().requires_grad());
        assert!(s.add("b.fc.weight", &[1], Init::Zeros).is_err());
        // an in-place update of the store is seen by the layer
        s.assign("b.fc.weight", &Tensor::ones(&[4, 3], DType::F32))
            .unwrap();
        assert!(lin
            .weight
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .all(|&v| v == 1.0));
        assert_eq!(ln.weight.to_vec::<f32>().unwrap(), vec![1.0; 4]);
        // PyTorch's conv default: |w| <= 1 / sqrt(fan_in)
        let bound = 1.0 / (18.0f32).sqrt();
        assert!(conv
            .weight
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .all(|v| v.abs() <= bound));
        let y = conv
            .forward(&Tensor::ones(&[1, 2, 5, 5], DType::F32))
            .unwrap();
        assert_eq!(y.shape(), [1, 3, 3, 3]);
    }

    #[test]
    fn same_seed_same_init() {
        let mk = || {
            let mut s = ParamStore::new(DType::F32, 9);
            Linear::new(&mut s, "fc", 5, 6, true).unwrap();
            s.get("fc.weight").unwrap().to_vec::<f32>().unwrap()
        };
        assert_eq!(mk(), mk());
    }
}
