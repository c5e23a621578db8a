//! DinoNAT's models: the NAT backbone (Hassani et al., CVPR 2023; docs/nat.md) and the DINO
//! projection head (Caron et al., ICCV 2021; docs/dino-head.md), built on `dinonat-engine`.
//!
//! Reading order: [`config`] (the configs and the one list of weight names and shapes),
//! [`attention`] (QKV -> neighbourhood or full attention -> projection), [`nat`] (tokenizer,
//! blocks, downsamplers, levels), [`dino_head`], [`network`] (backbone + head over multi-crop batches), then [`checkpoint`]
//! (loading official weights) and [`weights`] (other projects' names and `.pth` files).

pub mod attention;
pub mod checkpoint;
pub mod config;
pub mod dino_head;
pub mod error;
pub mod nat;
pub mod network;
pub mod weights;

pub use checkpoint::{load_backbone, load_weights, save_backbone};
pub use config::{AttentionKind, DilationSchedule, NatConfig};
pub use dino_head::{DinoHead, DinoHeadConfig};
pub use error::{ModelError, Result};
pub use nat::{ForwardPoint, Nat};
pub use network::DinoNetwork;
