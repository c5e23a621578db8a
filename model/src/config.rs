//! NAT configurations (docs/nat.md): the four reference configs of the paper, DinoNAT's own small
//! configs for 32-128 px images, and the single list of weight names and shapes that building,
//! counting and checkpoint loading all use.

use crate::{ModelError, Result};

/// Attention inside every block of the network.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AttentionKind {
    /// Neighbourhood attention with a `kernel` x `kernel` window (min(k, L) per axis on small
    /// maps) and a relative positional bias table [heads, 2k-1, 2k-1].
    Neighborhood {
        kernel: usize,
        dilation: DilationSchedule,
    },
    /// Global self-attention over all tokens of the level (no positional bias): the same network
    /// with the window widened to the whole map.
    Full,
}

/// Dilation of the neighbourhood per block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DilationSchedule {
    /// Every block uses this dilation (1 = NAT).
    Constant(usize),
    /// DiNAT (Hassani & Shi, 2022): blocks alternate dilation 1 and max(1, L / k) per axis,
    /// where L is that side of the level's map at run time, so k * dilation covers the level
    /// (at 224 px: 8, 4, 2, 1 on the four levels, as DiNAT's configs).
    DiNat,
}

impl DilationSchedule {
    /// Dilation (rows, columns) of block `block` of a level on an `h` x `w` map.
    pub fn dilation(self, block: usize, kernel: usize, h: usize, w: usize) -> [usize; 2] {
        match self {
            DilationSchedule::Constant(d) => [d.max(1); 2],
            DilationSchedule::DiNat if block % 2 == 1 => {
                [(h / kernel.max(1)).max(1), (w / kernel.max(1)).max(1)]
            }
            DilationSchedule::DiNat => [1, 1],
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct NatConfig {
    pub name: String,
    pub in_channels: usize,
    /// C: width of level 0; level i has width C * 2^i.
    pub embed_dim: usize,
    /// Blocks per level (the number of levels is depths.len()).
    pub depths: Vec<usize>,
    /// Attention heads per level.
    pub heads: Vec<usize>,
    /// MLP hidden width = mlp_ratio * D.
    pub mlp_ratio: f64,
    pub attention: AttentionKind,
    /// Largest drop-path rate; block b of n gets drop_path * b / (n - 1).
    pub drop_path: f64,
    /// Layer scale gamma init (per-channel), or None.
    pub layer_scale: Option<f64>,
    /// Stride of the tokenizer: 4 (two stride-2 convs, the paper) or 2 (second conv stride 1,
    /// for 32-64 px images).
    pub patch_stride: usize,
    /// Classes of a linear classifier after pooling (`head.*`); 0 = none (DINO's backbone).
    pub num_classes: usize,
    pub layer_norm_eps: f64,
}

impl NatConfig {
    fn reference(
        name: &str,
        c: usize,
        depths: [usize; 4],
        heads: [usize; 4],
        mlp_ratio: f64,
        drop_path: f64,
        layer_scale: Option<f64>,
    ) -> NatConfig {
        NatConfig {
            name: name.to_string(),
            in_channels: 3,
            embed_dim: c,
            depths: depths.to_vec(),
            heads: heads.to_vec(),
            mlp_ratio,
            attention: AttentionKind::Neighborhood {
                kernel: 7,
                dilation: DilationSchedule::Constant(1),
            },
            drop_path,
            layer_scale,
            patch_stride: 4,
            num_classes: 0,
            layer_norm_eps: 1e-5,
        }
    }

    pub fn nat_mini() -> NatConfig {
        Self::reference("nat_mini", 64, [3, 4, 6, 5], [2, 4, 8, 16], 3.0, 0.2, None)
    }
    pub fn nat_tiny() -> NatConfig {
        Self::reference("nat_tiny", 64, [3, 4, 18, 5], [2, 4, 8, 16], 3.0, 0.2, None)
    }
    pub fn nat_small() -> NatConfig {
        Self::reference(
            "nat_small",
            96,
            [3, 4, 18, 5],
            [3, 6, 12, 24],
            2.0,
            0.3,
            Some(1e-5),
        )
    }
    pub fn nat_base() -> NatConfig {
        Self::reference(
            "nat_base",
            128,
            [3, 4, 18, 5],
            [4, 8, 16, 32],
            2.0,
            0.5,
            Some(1e-5),
        )
    }

    /// DinoNAT's "nano": C = 32, depths 2-2-4-2, for 64-128 px (levels 16, 8, 4, 2 at 64 px).
    pub fn nat_nano() -> NatConfig {
        NatConfig {
            name: "nat_nano".into(),
            depths: vec![2, 2, 4, 2],
            heads: vec![1, 2, 4, 8],
            drop_path: 0.1,
            ..Self::reference("", 32, [0; 4], [0; 4], 3.0, 0.0, None)
        }
    }

    /// DinoNAT's "pico": three levels, stride-2 tokenizer, kernel 5, for 32 px images (levels
    /// 16, 8, 4); the config that trains usefully in minutes on two cores.
    pub fn nat_pico() -> NatConfig {
        NatConfig {
            name: "nat_pico".into(),
            depths: vec![1, 2, 3],
            heads: vec![1, 2, 4],
            mlp_ratio: 2.0,
            attention: AttentionKind::Neighborhood {
                kernel: 5,
                dilation: DilationSchedule::Constant(1),
            },
            patch_stride: 2,
            ..Self::reference("", 32, [0; 4], [0; 4], 2.0, 0.0, None)
        }
    }

    /// Every named config.
    pub const NAMES: [&'static str; 6] = [
        "nat_mini",
        "nat_tiny",
        "nat_small",
        "nat_base",
        "nat_nano",
        "nat_pico",
    ];

    /// A config by name (`nat_mini`, ...); a `dinat_` prefix gives the DiNAT schedule and a
    /// `_full` suffix global attention (e.g. `dinat_nano`, `nat_pico_full`).
    pub fn from_name(name: &str) -> Result<NatConfig> {
        let (base, dinat) = match name.strip_prefix("dinat_") {
            Some(rest) => (format!("nat_{rest}"), true),
            None => (name.to_string(), false),
        };
        let (base, full) = match base.strip_suffix("_full") {
            Some(b) => (b.to_string(), true),
            None => (base, false),
        };
        let mut c = match base.as_str() {
            "nat_mini" => Self::nat_mini(),
            "nat_tiny" => Self::nat_tiny(),
            "nat_small" => Self::nat_small(),
            "nat_base" => Self::nat_base(),
            "nat_nano" => Self::nat_nano(),
            "nat_pico" => Self::nat_pico(),
            _ => {
                return Err(ModelError::Config(format!(
                    "unknown architecture '{name}' (known: {}, with optional dinat_ prefix or _full suffix)",
                    Self::NAMES.join(", ")
                )))
            }
        };
        if dinat && full {
            return Err(ModelError::Config(format!(
                "'{name}': DiNAT dilation needs neighbourhood attention"
            )));
        }
        if let (true, AttentionKind::Neighborhood { kernel, .. }) = (dinat, c.attention) {
            c.attention = AttentionKind::Neighborhood {
                kernel,
                dilation: DilationSchedule::DiNat,
            };
        }
        if full {
            c.attention = AttentionKind::Full;
        }
        c.name = name.to_string();
        Ok(c)
    }

    pub fn with_classes(mut self, num_classes: usize) -> NatConfig {
        self.num_classes = num_classes;
        self
    }

    pub fn num_levels(&self) -> usize {
        self.depths.len()
    }
    /// Width of level i: C * 2^i.
    pub fn width(&self, level: usize) -> usize {
        self.embed_dim << level
    }
    /// Width of the pooled feature vector: C * 2^(levels - 1) (8C with four levels).
    pub fn num_features(&self) -> usize {
        self.width(self.num_levels().saturating_sub(1))
    }
    pub fn mlp_hidden(&self, level: usize) -> usize {
        (self.width(level) as f64 * self.mlp_ratio) as usize
    }
    pub fn total_blocks(&self) -> usize {
        self.depths.iter().sum()
    }
    /// Drop-path rate of block `index` (counted over the whole network): linear from 0 to drop_path.
    pub fn drop_path_rate(&self, index: usize) -> f64 {
        let n = self.total_blocks();
        if n <= 1 {
            0.0
        } else {
            self.drop_path * index as f64 / (n - 1) as f64
        }
    }

    /// Checks what the builder relies on; the message names the field.
    pub fn validate(&self) -> Result<()> {
        let err = |m: String| Err(ModelError::Config(format!("{}: {m}", self.name)));
        if self.depths.is_empty() || self.depths.len() != self.heads.len() {
            return err(format!(
                "depths {:?} and heads {:?} must be non-empty and of equal length",
                self.depths, self.heads
            ));
        }
        if self.embed_dim < 2 || !self.embed_dim.is_multiple_of(2) {
            return err(format!("embed_dim {} must be even", self.embed_dim));
        }
        for (i, &h) in self.heads.iter().enumerate() {
            if h == 0 || !self.width(i).is_multiple_of(h) {
                return err(format!(
                    "level {i}: width {} is not divisible by {h} heads",
                    self.width(i)
                ));
            }
        }
        if self.patch_stride != 2 && self.patch_stride != 4 {
            return err(format!("patch_stride {} must be 2 or 4", self.patch_stride));
        }
        if !(0.0..1.0).contains(&self.drop_path) {
            return err(format!("drop_path {} must be in [0, 1)", self.drop_path));
        }
        if self.mlp_ratio.is_nan() || self.mlp_ratio <= 0.0 {
            return err(format!("mlp_ratio {} must be positive", self.mlp_ratio));
        }
        if let AttentionKind::Neighborhood { kernel, dilation } = self.attention {
            if kernel < 2 {
                return err(format!("kernel {kernel} must be at least 2"));
            }
            if dilation == DilationSchedule::Constant(0) {
                return err("dilation must be at least 1".into());
            }
        }
        Ok(())
    }

    /// Every weight of the network in build order, with its shape, under the names of the
    /// reference implementation (docs/nat.md).
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (c, i) = (self.embed_dim, self.in_channels);
        let mut v: Vec<(String, Vec<usize>)> = vec![
            ("patch_embed.proj.0.weight".into(), vec![c / 2, i, 3, 3]),
            ("patch_embed.proj.0.bias".into(), vec![c / 2]),
            ("patch_embed.proj.1.weight".into(), vec![c, c / 2, 3, 3]),
            ("patch_embed.proj.1.bias".into(), vec![c]),
            ("patch_embed.norm.weight".into(), vec![c]),
            ("patch_embed.norm.bias".into(), vec![c]),
        ];
        for (l, (&depth, &heads)) in self.depths.iter().zip(&self.heads).enumerate() {
            let d = self.width(l);
            let hid = self.mlp_hidden(l);
            for j in 0..depth {
                let p = format!("levels.{l}.blocks.{j}");
                let mut push = |n: &str, s: Vec<usize>| v.push((format!("{p}.{n}"), s));
                push("norm1.weight", vec![d]);
                push("norm1.bias", vec![d]);
                push("attn.qkv.weight", vec![3 * d, d]);
                push("attn.qkv.bias", vec![3 * d]);
                if let AttentionKind::Neighborhood { kernel, .. } = self.attention {
                    push("attn.rpb", vec![heads, 2 * kernel - 1, 2 * kernel - 1]);
                }
                push("attn.proj.weight", vec![d, d]);
                push("attn.proj.bias", vec![d]);
                push("norm2.weight", vec![d]);
                push("norm2.bias", vec![d]);
                push("mlp.fc1.weight", vec![hid, d]);
                push("mlp.fc1.bias", vec![hid]);
                push("mlp.fc2.weight", vec![d, hid]);
                push("mlp.fc2.bias", vec![d]);
                if self.layer_scale.is_some() {
                    push("gamma1", vec![d]);
                    push("gamma2", vec![d]);
                }
            }
            if l + 1 < self.num_levels() {
                let p = format!("levels.{l}.downsample");
                v.push((format!("{p}.reduction.weight"), vec![2 * d, d, 3, 3]));
                v.push((format!("{p}.norm.weight"), vec![2 * d]));
                v.push((format!("{p}.norm.bias"), vec![2 * d]));
            }
        }
        let f = self.num_features();
        v.push(("norm.weight".into(), vec![f]));
        v.push(("norm.bias".into(), vec![f]));
        if self.num_classes > 0 {
            v.push(("head.weight".into(), vec![self.num_classes, f]));
            v.push(("head.bias".into(), vec![self.num_classes]));
        }
        v
    }

    /// Number of parameters, counted from the config (nothing allocated).
    pub fn num_parameters(&self) -> usize {
        self.parameter_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    /// Token map sizes per level for an `h` x `w` image.
    pub fn level_sizes(&self, h: usize, w: usize) -> Vec<(usize, usize)> {
        let conv = |l: usize, s: usize| (l + 2 - 3) / s + 1; // 3x3, padding 1
        let (mut h, mut w) = (conv(h, 2), conv(w, 2));
        if self.patch_stride == 4 {
            (h, w) = (conv(h, 2), conv(w, 2));
        }
        let mut v = vec![(h, w)];
        for _ in 1..self.num_levels() {
            (h, w) = (conv(h, 2), conv(w, 2));
            v.push((h, w));
        }
        v
    }

    /// Multiply-accumulates of one forward pass on an `h` x `w` image: convolutions, Linear
    /// layers, and attention (QK and AV: 2 * D * window per token). Norms, softmax, GELU and the
    /// pooling are not counted (as the reference's fvcore count). Includes the classifier when
    /// `num_classes` > 0.
    pub fn macs(&self, h: usize, w: usize) -> u64 {
        let c = self.embed_dim as u64;
        let conv = |l: usize, s: usize| (l + 2 - 3) / s + 1;
        let (h0, w0) = (conv(h, 2), conv(w, 2));
        let mut m = (h0 * w0) as u64 * (c / 2) * self.in_channels as u64 * 9;
        let sizes = self.level_sizes(h, w);
        m += (sizes[0].0 * sizes[0].1) as u64 * c * (c / 2) * 9;
        for (l, &(lh, lw)) in sizes.iter().enumerate() {
            let d = self.width(l) as u64;
            let n = (lh * lw) as u64;
            let window = match self.attention {
                AttentionKind::Neighborhood { kernel, .. } => {
                    (kernel.min(lh) * kernel.min(lw)) as u64
                }
                AttentionKind::Full => n,
            };
            let hid = self.mlp_hidden(l) as u64;
            let per_block = n * (3 * d * d + 2 * d * window + d * d + 2 * d * hid);
            m += per_block * self.depths[l] as u64;
            if let Some(&(nh, nw)) = sizes.get(l + 1) {
                m += (nh * nw) as u64 * 2 * d * d * 9;
            }
        }
        m + (self.num_features() * self.num_classes) as u64
    }
}
