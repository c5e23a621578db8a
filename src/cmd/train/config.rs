//! The run's `TrainConfig` from the flags of `dinonat train`: the crop preset, the --init
//! checkpoint's network where flags are not given, and the train crate's defaults for the data
//! (`dinonat_train::run_policy`).

use super::data_flags::Crops;
use super::flags::TrainArgs;
use super::recipe_flags::CenteringArg;
use crate::args::train_flagged;
use dinonat_train::dino::schedule::WarmupFractions;
use dinonat_train::dino::Centering;
use dinonat_train::run_policy::DataDependent;
use dinonat_train::trainer::checkpoint;
use dinonat_train::trainer::config::TrainConfig;

/// The network of the run: the flags', each defaulting to the --init checkpoint's when there is
/// one; a flag that contradicts the checkpoint is an error naming both.
struct Network {
    arch: String,
    out_dim: usize,
    head_hidden: usize,
    head_bottleneck: usize,
    head_bn: bool,
}

fn network(a: &TrainArgs) -> Result<Network, String> {
    let Some(path) = &a.init else {
        return Ok(Network {
            arch: a.network.arch.clone().unwrap_or_else(|| "nat_pico".into()),
            out_dim: a.network.out_dim.unwrap_or(1024),
            head_hidden: a.network.head_hidden.unwrap_or(512),
            head_bottleneck: a.network.head_bottleneck.unwrap_or(128),
            head_bn: a.network.head_bn,
        });
    };
    let theirs = checkpoint::load(path)
        .map_err(|e| format!("--init: {e}"))?
        .config;
    fn pick<T: PartialEq + std::fmt::Display>(
        flag: &str,
        given: Option<T>,
        theirs: T,
        path: &std::path::Path,
    ) -> Result<T, String> {
        match given {
            Some(g) if g != theirs => Err(format!(
                "{flag} {g}: the --init checkpoint {} has {theirs}",
                path.display()
            )),
            _ => Ok(theirs),
        }
    }
    if a.network.head_bn && !theirs.head_bn {
        return Err(format!(
            "--head-bn: the --init checkpoint {} has no batch norm in its head",
            path.display()
        ));
    }
    Ok(Network {
        arch: pick("--arch", a.network.arch.clone(), theirs.arch, path)?,
        out_dim: pick("--out-dim", a.network.out_dim, theirs.out_dim, path)?,
        head_hidden: pick(
            "--head-hidden",
            a.network.head_hidden,
            theirs.head_hidden_dim,
            path,
        )?,
        head_bottleneck: pick(
            "--head-bottleneck",
            a.network.head_bottleneck,
            theirs.head_bottleneck_dim,
            path,
        )?,
        head_bn: theirs.head_bn,
    })
}

/// The run's config: the flags, the crop preset, and `run_policy`'s defaults for the data.
pub fn config(a: &TrainArgs) -> Result<TrainConfig, String> {
    let (g, l, n) = match a.data.crops {
        Crops::Dino => (224, 96, 8),
        Crops::Small => (64, 32, 8),
        Crops::Tiny => (32, 16, 8),
    };
    let net = network(a)?;
    let mut c = TrainConfig {
        arch: net.arch,
        out_dim: net.out_dim,
        head_hidden_dim: net.head_hidden,
        head_bottleneck_dim: net.head_bottleneck,
        head_bn: net.head_bn,
        data: a.data.data.clone(),
        procedural_len: a.data.procedural_len,
        procedural_size: a.data.procedural_size,
        global_size: a.data.global_size.unwrap_or(g),
        local_size: a.data.local_size.unwrap_or(l),
        seed: a.seed,
        base_lr: a.schedule.lr,
        warmups: WarmupFractions {
            lr: a.schedule.lr_warmup,
            teacher_temp: a.schedule.temp_warmup,
            freeze_last_layer: a.schedule.freeze_last_layer,
        },
        teacher_temp: a.schedule.teacher_temp,
        drop_path: a.schedule.drop_path,
        dino_weight: a.loss.dino_weight,
        centering: match a.loss.centering {
            CenteringArg::Center => Centering::Center,
            CenteringArg::SinkhornKnopp => Centering::SinkhornKnopp,
        },
        hue: a.augment.hue,
        grayscale: a.augment.grayscale,
        invert: a.augment.invert,
        clip_grad: a.loss.clip_grad,
        checkpoint_every: a.checkpoint_every,
        log_every: a.log_every.max(1),
        out_dir: a.out.clone(),
        init: a.init.clone(),
        precision: a.precision.resolve(Some(a.device))?,
        ..TrainConfig::default()
    };
    let given = DataDependent {
        batch_size: a.data.batch_size,
        steps: a.steps,
        epochs: a.epochs,
        n_local: a.data.local_crops,
        lr_end: a.schedule.lr_end,
        momentum_teacher: a.schedule.momentum_teacher,
        momentum_teacher_end: a.schedule.momentum_teacher_end,
        koleo: a.loss.koleo,
    };
    given.apply(&mut c, n).map_err(train_flagged)?;
    Ok(c)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
