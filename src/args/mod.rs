//! The argument groups that several commands share: where the backbone comes from
//! ([`BackboneArgs`]); where the network runs ([`DeviceArg`]), at what GEMM precision
//! ([`PrecisionArgs`]) and the parameter-to-flag mapping of library errors ([`param_flags`]) are
//! shared with the benchmarks and live in `dinonat_report::args`.

use clap::Args;
use dinonat_eval::backbone::{BackboneSource, Param};
use dinonat_model::Nat;
use dinonat_train::guard::Named;
use std::path::PathBuf;

pub mod frozen;

pub use dinonat_report::args::{param_flags, train_flagged, DeviceArg, PrecisionArgs};

/// Where the backbone comes from: --checkpoint FILE, --weights FILE [--arch NAME] or
/// --random-init [--arch NAME].
#[derive(Args, Clone, Debug)]
pub struct BackboneArgs {
    /// Backbone weights (safetensors with the reference NAT names; DINO's `backbone.` prefix is
    /// stripped, `head.*` ignored).
    #[arg(long, value_name = "FILE", conflicts_with = "random_init")]
    pub weights: Option<PathBuf>,
    /// Architecture (nat_mini, nat_tiny, nat_small, nat_base, nat_nano, nat_pico; dinat_ prefix,
    /// _full suffix). Default: the file's `arch` metadata (--weights), the training config
    /// (--checkpoint), nat_mini (--random-init).
    #[arg(long, value_name = "NAME")]
    pub arch: Option<String>,
    /// A DINO training checkpoint (`dinonat train`): its teacher backbone is used.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["weights", "random_init"])]
    pub checkpoint: Option<PathBuf>,
    /// Fresh NAT initialisation (an untrained baseline).
    #[arg(long)]
    pub random_init: bool,
    /// Seed of --random-init.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl BackboneArgs {
    pub fn source(&self) -> Result<BackboneSource, String> {
        if let Some(path) = &self.checkpoint {
            return Ok(BackboneSource::Checkpoint {
                path: path.clone(),
                arch: self.arch.clone(),
            });
        }
        match (&self.weights, self.random_init) {
            (Some(path), false) => Ok(BackboneSource::Weights {
                path: path.clone(),
                arch: self.arch.clone(),
            }),
            (None, true) => Ok(BackboneSource::RandomInit {
                arch: self.arch.clone().unwrap_or_else(|| "nat_mini".into()),
                seed: self.seed,
            }),
            (Some(_), true) => Err("--weights and --random-init exclude each other".into()),
            (None, false) => Err(
                "no backbone: pass --checkpoint FILE, --weights FILE [--arch NAME] or --random-init [--arch NAME]"
                    .into(),
            ),
        }
    }

    /// The files these flags read, for [`dinonat_train::guard::check_outputs`].
    pub fn inputs(&self) -> Vec<Named<'_>> {
        let files = [
            ("--weights", &self.weights),
            ("--checkpoint", &self.checkpoint),
        ];
        files
            .into_iter()
            .filter_map(|(flag, p)| p.as_deref().map(|p| (flag, p)))
            .collect()
    }

    /// Loads the backbone, printing notes (ignored head tensors) to stderr.
    pub fn load(&self) -> Result<Nat, String> {
        load_backbone(&self.source()?)
    }
}

/// The flag of a backbone parameter (the library's errors name parameters, the command line its flags).
pub fn flag(param: Param) -> &'static str {
    match param {
        Param::Weights => "--weights",
        Param::Checkpoint => "--checkpoint",
        Param::Arch => "--arch",
    }
}

/// The curation library's errors (`dinonat_eval::curate`) with the image size and batch named by
/// their flags, `--size` and `--batch`, where they lead the message (`embed`, `filter`,
/// `crossmodal`).
pub fn curate_flagged(e: impl ToString) -> String {
    param_flags(e, &[("size", "--size"), ("batch", "--batch")], false)
}

/// Loads `source` with the one backbone loader, printing notes (ignored head tensors) to stderr.
pub fn load_backbone(source: &BackboneSource) -> Result<Nat, String> {
    let mut notes = Vec::new();
    let nat = source.load(&mut notes).map_err(|e| e.describe(flag))?;
    for n in notes {
        eprintln!("note: {n}");
    }
    Ok(nat)
}

#[cfg(test)]
mod tests;
