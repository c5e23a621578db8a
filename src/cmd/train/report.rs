//! What `dinonat train` prints around the steps: the run's header, the k-NN controls before the
//! first step, and the k-NN table at the end: the trained teacher beside the random-init network
//! and raw pixels on every split (`dinonat_eval::knn_splits`), printed and added to the run's JSON
//! object.

use super::curves::Curves;
use crate::args::train_flagged as flagged;
use dinonat_eval::knn_splits::{detail_table, reports_json, EvalSplit, Scores};
use dinonat_train::dist::Collective;
use dinonat_train::trainer::Trainer;
use serde_json::{json, Value};

/// The scores of the controls, measured before the first step.
pub struct Baselines {
    pub pixels: Scores,
    pub random: Scores,
}

/// Prints the table of `trained` against `base` on `split` (to stderr with `json`) and adds the
/// k-NN fields to `out`.
pub fn knn_table(
    t: &Trainer,
    split: &EvalSplit,
    trained: &Scores,
    base: &Baselines,
    json: bool,
    out: &mut Value,
) {
    let (random, pixels) = (&base.random, &base.pixels);
    let roles: Vec<&str> = trained.0.iter().map(|(r, _)| *r).collect();
    let row = |x: &Scores| {
        x.0.iter()
            .map(|(_, v)| format!("{:.2}", v.top1))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let lines = [
        format!("\nk-NN top-1 (k = 20, T = 0.07) on {}:", split.describe()),
        format!("| features | {} |", roles.join(" top-1 % | ") + " top-1 %"),
        format!("|---|{}", "---|".repeat(roles.len())),
        format!("| trained teacher (step {}) | {} |", t.step, row(trained)),
        format!(
            "| random init ({}, seed {}) | {} |",
            t.config.arch,
            t.config.seed,
            row(random)
        ),
        format!("| raw pixels ({} px) | {} |", split.size, row(pixels)),
        detail_table(trained, random, pixels),
    ];
    for l in lines {
        say!(json, "{l}");
    }
    out["knn_top1_trained"] = json!(trained.reported());
    out["knn_top1_random"] = json!(random.reported());
    out["knn_top1_pixels"] = json!(pixels.reported());
    out["knn_split"] = json!(split.describe());
    let mut by_split = serde_json::Map::new();
    for (role, name) in split.describe_all() {
        by_split.insert(
            role.to_string(),
            json!({
                "split": name,
                "trained": trained.get(role),
                "random": random.get(role),
                "pixels": pixels.get(role),
            }),
        );
    }
    out["knn_top1_by_split"] = Value::Object(by_split);
    out["knn_by_split"] = reports_json(trained, random, pixels);
}

/// The run's header: the network, data, crops and schedules.
pub fn describe(t: &Trainer, comm: &dyn Collective, js: bool) {
    let world = comm.size();
    if world > 1 {
        say!(
            js,
            "data parallel: {world} ranks ({}), global batch {} = {world} x {} per rank; the lr follows the global batch (peak = --lr x {} / 256); KoLeo per rank",
            comm.name(),
            t.config.batch_size,
            t.config.batch_size / world,
            t.config.batch_size
        );
    }
    let c = &t.config;
    say!(
        js,
        "dino: {} + head {}-{}-{} -> K {} | {} params | data {} | crops 2 x {} + {} x {} | batch {} | {} steps/epoch",
        c.arch,
        c.head_hidden_dim,
        c.head_hidden_dim,
        c.head_bottleneck_dim,
        c.out_dim,
        t.student.backbone.params.num_trainable_elements()
            + t.student.head.params.num_trainable_elements(),
        c.data
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| format!("procedural ({} x {} px)", c.procedural_len, c.procedural_size)),
        c.global_size,
        c.n_local,
        c.local_size,
        c.batch_size,
        t.steps_per_epoch,
    );
    say!(js, "schedules: {}", t.schedules.describe());
    say!(
        js,
        "drop path {} (student), clip {} per tensor, threads {}, out {}{}",
        c.drop_path,
        c.clip_grad,
        rayon::current_num_threads(),
        c.out_dir.display(),
        if t.step > 0 {
            format!(", resuming at step {}", t.step)
        } else {
            String::new()
        }
    );
}

/// The k-NN of raw pixels and of the run's random-init network, printed; at step 0 the latter is
/// the first point of the k-NN curve.
pub fn baselines(
    t: &Trainer,
    s: &EvalSplit,
    js: bool,
    curves: &mut Curves,
) -> Result<Baselines, String> {
    let pixels = s.knn_pixels()?;
    let random = s.knn_random_init(&t.config).map_err(flagged)?;
    say!(
        js,
        "k-NN (k 20, T 0.07) on {}: raw pixels {:.2}%, random init {:.2}%",
        s.describe(),
        pixels.reported(),
        random.reported()
    );
    if t.step == 0 {
        curves.knn_point(&t.config.out_dir, 0, random.reported())?;
    }
    Ok(Baselines { pixels, random })
}
