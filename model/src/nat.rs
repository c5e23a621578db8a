//! The NAT backbone (docs/nat.md), channels-last inside: images [B, in, H, W] ->
//! tokenizer [B, H/4, W/4, C] -> levels of NA blocks (width C * 2^i, halved maps between levels)
//! -> final LayerNorm -> mean over tokens -> features [B, C * 2^(levels-1)].

use crate::attention::Attention;
use crate::config::NatConfig;
use crate::{ModelError, Result};
use dinonat_engine::nn::{join, Conv2d, Init, LayerNorm, Linear, ParamStore};
use dinonat_engine::recompute::checkpointed;
use dinonat_engine::{DType, Device, EngineError, Rng, Tensor};
use std::sync::{Arc, Mutex};

/// Overlapping tokenizer: Conv 3x3 s2 (in -> C/2) then Conv 3x3 s2 (C/2 -> C), no activation
/// between, then LayerNorm(C) on channels-last.  [B, in, H, W] -> [B, H/4, W/4, C].
/// With `patch_stride` 2 the second conv has stride 1 ([B, H/2, W/2, C]).
#[derive(Clone, Debug)]
pub struct Tokenizer {
    pub proj0: Conv2d,
    pub proj1: Conv2d,
    pub norm: LayerNorm,
}

impl Tokenizer {
    fn new(s: &mut ParamStore, cfg: &NatConfig) -> Result<Tokenizer> {
        let c = cfg.embed_dim;
        let second_stride = if cfg.patch_stride == 4 { 2 } else { 1 };
        Ok(Tokenizer {
            proj0: Conv2d::new(
                s,
                "patch_embed.proj.0",
                cfg.in_channels,
                c / 2,
                3,
                2,
                1,
                true,
            )?,
            proj1: Conv2d::new(s, "patch_embed.proj.1", c / 2, c, 3, second_stride, 1, true)?,
            norm: LayerNorm::new(s, "patch_embed.norm", c, cfg.layer_norm_eps)?,
        })
    }

    /// Both convolutions run channels-last (the images are permuted once, before the first).
    pub fn forward(&self, images: &Tensor) -> Result<Tensor> {
        let x = self
            .proj0
            .forward_channels_last(&images.permute(&[0, 2, 3, 1])?)?;
        Ok(self.norm.forward(&self.proj1.forward_channels_last(&x)?)?)
    }
}

/// Linear(D -> rD) -> GELU (erf) -> Linear(rD -> D).
#[derive(Clone, Debug)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
}

impl Mlp {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.fc2.forward(&self.fc1.forward(x)?.gelu()?)?)
    }
}

/// Pre-norm NA block:
///   x = x + DropPath(gamma1 * Attn(LN1(x)));   x = x + DropPath(gamma2 * MLP(LN2(x))).
#[derive(Clone, Debug)]
pub struct NatBlock {
    pub norm1: LayerNorm,
    pub attn: Attention,
    pub norm2: LayerNorm,
    pub mlp: Mlp,
    pub gamma1: Option<Tensor>,
    pub gamma2: Option<Tensor>,
    pub drop_path: f64,
}

impl NatBlock {
    fn new(
        s: &mut ParamStore,
        cfg: &NatConfig,
        level: usize,
        block: usize,
        drop_path: f64,
    ) -> Result<NatBlock> {
        let p = format!("levels.{level}.blocks.{block}");
        let d = cfg.width(level);
        let eps = cfg.layer_norm_eps;
        let norm1 = LayerNorm::new(s, &join(&p, "norm1"), d, eps)?;
        let attn = Attention::new(
            s,
            &join(&p, "attn"),
            d,
            cfg.heads[level],
            cfg.attention,
            block,
        )?;
        let norm2 = LayerNorm::new(s, &join(&p, "norm2"), d, eps)?;
        let hid = cfg.mlp_hidden(level);
        let mlp = Mlp {
            fc1: Linear::new(s, &join(&p, "mlp.fc1"), d, hid, true)?,
            fc2: Linear::new(s, &join(&p, "mlp.fc2"), hid, d, true)?,
        };
        let (gamma1, gamma2) = match cfg.layer_scale {
            Some(v) => (
                Some(s.add(&join(&p, "gamma1"), &[d], Init::Constant(v))?),
                Some(s.add(&join(&p, "gamma2"), &[d], Init::Constant(v))?),
            ),
            None => (None, None),
        };
        Ok(NatBlock {
            norm1,
            attn,
            norm2,
            mlp,
            gamma1,
            gamma2,
            drop_path,
        })
    }

    /// x [B, H, W, D] -> [B, H, W, D]. Drop path only when `training`.
    pub fn forward(&self, x: &Tensor, training: bool, rng: &mut Rng) -> Result<Tensor> {
        let branch = |y: Tensor, gamma: &Option<Tensor>, rng: &mut Rng| -> Result<Tensor> {
            let y = match gamma {
                Some(g) => y.mul(g)?,
                None => y,
            };
            // Skipped when it is the identity, so inference runs on devices without drop_path.
            if !training || self.drop_path == 0.0 {
                return Ok(y);
            }
            Ok(y.drop_path(self.drop_path, training, rng)?)
        };
        let y = self.attn.forward(&self.norm1.forward(x)?)?;
        let x = x.add(&branch(y, &self.gamma1, rng)?)?;
        let y = self.mlp.forward(&self.norm2.forward(&x)?)?;
        Ok(x.add(&branch(y, &self.gamma2, rng)?)?)
    }
}

/// Conv 3x3 s2 p1 (D -> 2D, no bias), channels-last, then LayerNorm(2D).
/// [B, H, W, D] -> [B, ceil(H/2), ceil(W/2), 2D].
#[derive(Clone, Debug)]
pub struct Downsampler {
    pub reduction: Conv2d,
    pub norm: LayerNorm,
}

impl Downsampler {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self
            .norm
            .forward(&self.reduction.forward_channels_last(x)?)?)
    }
}

#[derive(Clone, Debug)]
pub struct Level {
    pub blocks: Vec<NatBlock>,
    pub downsample: Option<Downsampler>,
}

/// The whole backbone with its parameters. A clone shares the parameter storage.
#[derive(Clone, Debug)]
pub struct Nat {
    pub config: NatConfig,
    pub params: ParamStore,
    pub patch_embed: Tokenizer,
    pub levels: Vec<Level>,
    pub norm: LayerNorm,
    /// Linear classifier on the pooled features (`head.*`), when `num_classes` > 0.
    pub head: Option<Linear>,
    /// Activation checkpointing per level (training only): each level's blocks keep only their
    /// input for the backward and run again there (dinonat_engine::recompute), trading about one
    /// more forward pass for the memory of all but one level's intermediates. Same values and
    /// gradients, bit for bit. Not part of the config: it changes memory, not the network.
    pub checkpoint_levels: bool,
}

/// A place in [`Nat::forward_tokens_with`] where the hook sees the pass's tensor.
#[derive(Clone, Copy, Debug)]
pub enum ForwardPoint<'a> {
    /// The input of block `block` of level `level`, [B, h, w, D].
    BlockInput {
        level: usize,
        block: usize,
        x: &'a Tensor,
    },
    /// The output of level `level`'s last block, before its downsampler, [B, h, w, D].
    LevelOutput { level: usize, x: &'a Tensor },
}

impl Nat {
    /// Builds the network with fresh weights (NAT's init) from `seed`.
    pub fn new(config: &NatConfig, dtype: DType, seed: u64) -> Result<Nat> {
        Nat::build(config, ParamStore::new(dtype, seed))
    }

    /// The same network with every parameter copied to `device` (the copy's parameters are
    /// new leaves; the original is unchanged). Without a GPU, `Device::Cuda` gives the error
    /// "no CUDA device: use --device cpu (...)". Only f32 networks go to CUDA.
    pub fn to_device(&self, device: Device) -> Result<Nat> {
        if device == self.device() {
            return Ok(self.clone());
        }
        let mut moved = Nat::build(&self.config, self.params.to_device(device)?.replaying())?;
        moved.checkpoint_levels = self.checkpoint_levels;
        Ok(moved)
    }

    /// The device of the parameters.
    pub fn device(&self) -> Device {
        self.params.device()
    }

    /// Builds the layers on store `s` (fresh, or replaying existing entries).
    fn build(config: &NatConfig, mut s: ParamStore) -> Result<Nat> {
        config.validate()?;
        let cfg = config;
        let patch_embed = Tokenizer::new(&mut s, cfg)?;
        let mut levels = Vec::with_capacity(cfg.num_levels());
        let mut index = 0;
        for level in 0..cfg.num_levels() {
            let mut blocks = Vec::with_capacity(cfg.depths[level]);
            for j in 0..cfg.depths[level] {
                blocks.push(NatBlock::new(
                    &mut s,
                    cfg,
                    level,
                    j,
                    cfg.drop_path_rate(index),
                )?);
                index += 1;
            }
            let downsample = if level + 1 < cfg.num_levels() {
                let d = cfg.width(level);
                let p = format!("levels.{level}.downsample");
                Some(Downsampler {
                    reduction: Conv2d::new(
                        &mut s,
                        &join(&p, "reduction"),
                        d,
                        2 * d,
                        3,
                        2,
                        1,
                        false,
                    )?,
                    norm: LayerNorm::new(&mut s, &join(&p, "norm"), 2 * d, cfg.layer_norm_eps)?,
                })
            } else {
                None
            };
            levels.push(Level { blocks, downsample });
        }
        let f = cfg.num_features();
        let norm = LayerNorm::new(&mut s, "norm", f, cfg.layer_norm_eps)?;
        let head = (cfg.num_classes > 0)
            .then(|| Linear::new(&mut s, "head", f, cfg.num_classes, true))
            .transpose()?;
        Ok(Nat {
            config: cfg.clone(),
            params: s,
            patch_embed,
            levels,
            norm,
            head,
            checkpoint_levels: false,
        })
    }

    /// images [B, in, H, W] -> token map after the final LayerNorm [B, h, w, F], on the device of
    /// the parameters (images on another device are copied there first: an explicit `to`).
    pub fn forward_tokens(&self, images: &Tensor, training: bool, rng: &mut Rng) -> Result<Tensor> {
        self.forward_tokens_with(images, training, rng, &mut |_| {})
    }

    /// [`Nat::forward_tokens`], showing `hook` each block's input and each level's output as the
    /// pass goes (attention maps keep those of one level; the pass itself is unchanged).
    pub fn forward_tokens_with(
        &self,
        images: &Tensor,
        training: bool,
        rng: &mut Rng,
        hook: &mut dyn FnMut(ForwardPoint<'_>),
    ) -> Result<Tensor> {
        if images.rank() != 4 || images.shape()[1] != self.config.in_channels {
            return Err(ModelError::Config(format!(
                "{}: images must be [batch, {}, height, width], got {:?}",
                self.config.name,
                self.config.in_channels,
                images.shape()
            )));
        }
        let images = images.to(self.device())?;
        let mut x = self.patch_embed.forward(&images)?;
        let recompute = self.checkpoint_levels && training && dinonat_engine::is_grad_enabled();
        for (l, level) in self.levels.iter().enumerate() {
            if recompute {
                hook(ForwardPoint::BlockInput {
                    level: l,
                    block: 0,
                    x: &x,
                });
                x = self.checkpointed_level(l, &x, rng)?;
            } else {
                for (b, block) in level.blocks.iter().enumerate() {
                    hook(ForwardPoint::BlockInput {
                        level: l,
                        block: b,
                        x: &x,
                    });
                    x = block.forward(&x, training, rng)?;
                }
            }
            hook(ForwardPoint::LevelOutput { level: l, x: &x });
            if let Some(down) = &level.downsample {
                x = down.forward(&x)?;
            }
        }
        Ok(self.norm.forward(&x)?)
    }

    /// Level `l`'s blocks on `x` as one checkpointed op (`checkpoint_levels`). Drop path's draws
    /// come from `rng`: the recomputation starts from a copy of its state before the level, and
    /// `rng` ends where the blocks leave it, as without checkpointing. The hook sees only the
    /// level's input and output.
    fn checkpointed_level(&self, l: usize, x: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        let prefix = format!("levels.{l}.blocks.");
        let params: Vec<Tensor> = self
            .params
            .trainable()
            .filter(|(n, _)| n.starts_with(&prefix))
            .map(|(_, t)| t.clone())
            .collect();
        let blocks = self.levels[l].blocks.clone();
        let (start, end) = (rng.clone(), Arc::new(Mutex::new(None)));
        let end_of_call = end.clone();
        let y = checkpointed(x, &params, move |x| {
            let mut rng = start.clone();
            let mut x = x.clone();
            for block in &blocks {
                x = block.forward(&x, true, &mut rng).map_err(|e| match e {
                    ModelError::Engine(e) => e,
                    other => EngineError::InvalidArgument {
                        op: "checkpointed level",
                        shape: x.shape().to_vec(),
                        message: other.to_string(),
                    },
                })?;
            }
            *end_of_call.lock().unwrap_or_else(|p| p.into_inner()) = Some(rng);
            Ok(x)
        })?;
        let after = end.lock().unwrap_or_else(|p| p.into_inner()).take();
        *rng = after.expect("the level ran once in the forward");
        Ok(y)
    }

    /// images [B, in, H, W] -> pooled features [B, F] (mean over tokens of the final map).
    pub fn forward_features(
        &self,
        images: &Tensor,
        training: bool,
        rng: &mut Rng,
    ) -> Result<Tensor> {
        self.forward_features_with(images, training, rng, &mut |_| {})
    }

    /// [`Nat::forward_features`] with the hook of [`Nat::forward_tokens_with`].
    pub fn forward_features_with(
        &self,
        images: &Tensor,
        training: bool,
        rng: &mut Rng,
        hook: &mut dyn FnMut(ForwardPoint<'_>),
    ) -> Result<Tensor> {
        let x = self.forward_tokens_with(images, training, rng, hook)?;
        let (b, h, w, f) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
        Ok(x.reshape(&[b, h * w, f])?.mean_tokens()?)
    }

    /// Features, then the classifier when there is one: [B, F] or [B, classes].
    pub fn forward(&self, images: &Tensor, training: bool, rng: &mut Rng) -> Result<Tensor> {
        let f = self.forward_features(images, training, rng)?;
        match &self.head {
            Some(head) => Ok(head.forward(&f)?),
            None => Ok(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A network rebuilt from a replayed store (what `to_device` does) computes the same values
    /// from the same, not copied, entries. The CUDA copy is checked in the engine's GPU tests; here
    /// `Device::Cuda` must be an error value without a GPU.
    #[test]
    fn rebuilt_network_uses_the_stored_entries() {
        let nat = Nat::new(&NatConfig::nat_pico(), DType::F32, 3).unwrap();
        let again = Nat::build(
            &nat.config,
            nat.params.to_device(Device::Cpu).unwrap().replaying(),
        )
        .unwrap();
        assert_eq!(again.params.names(), nat.params.names());
        let x = Tensor::from_vec(
            (0..2 * 3 * 32 * 32)
                .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
                .collect(),
            &[2, 3, 32, 32],
        )
        .unwrap();
        let mut rng = Rng::new(0);
        let a: Vec<f32> = nat
            .forward_features(&x, false, &mut rng)
            .unwrap()
            .to_vec()
            .unwrap();
        let b: Vec<f32> = again
            .forward_features(&x, false, &mut rng)
            .unwrap()
            .to_vec()
            .unwrap();
        assert_eq!(a, b);
        let w = again.params.get("norm.weight").unwrap();
        assert!(again.norm.weight.shares_storage(w));
        match nat.to_device(Device::Cuda(0)) {
            Ok(g) => assert_eq!(g.device(), Device::Cuda(0)),
            Err(e) => assert!(
                e.to_string().contains("no CUDA device: use --device cpu"),
                "{e}"
            ),
        }
        let mut s = ParamStore::new(DType::F32, 0).replaying();
        let e = s.add("missing", &[2], Init::Zeros).unwrap_err().to_string();
        assert!(e.contains("'missing' is not in the store"), "{e}");
    }
}
