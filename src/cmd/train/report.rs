//! The k-NN table at the end of `dinonat train`: the trained teacher beside the random-init
//! network and raw pixels on every split (`dinonat_eval::knn_splits`), printed and added to the
//! run's JSON object.

use dinonat_eval::knn_splits::{detail_table, reports_json, EvalSplit, Scores};
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
