//! The report of `dinonat boxes` (docs/attention-maps.md, "Attention inside boxes"): class names
//! from a YOLO `data.yaml`, the per-image CSV and the text tables of a [`BoxesReport`].

use super::boxes_eval::{BoxesReport, ShareSummary, PRIORS};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Class names from the first `data.yaml` beside or above `labels` that has a one-line `names: [a, 'b', ...]`.
pub fn yaml_names(labels: &Path) -> Option<(PathBuf, Vec<String>)> {
    labels.ancestors().skip(1).take(2).find_map(|dir| {
        let file = dir.join("data.yaml");
        let text = std::fs::read_to_string(&file).ok()?;
        let list = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("names:"))?
            .trim();
        let inner = list.strip_prefix('[')?.strip_suffix(']')?;
        let names = inner
            .split(',')
            .map(|n| n.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
            .filter(|n| !n.is_empty())
            .collect();
        Some((file, names))
    })
}

/// The per-image CSV of `r` (class columns named by `names`); errors name the parameter `csv`.
pub fn write_csv(path: &Path, r: &BoxesReport, names: &[String]) -> Result<(), String> {
    let shown = path.display();
    let mut ids: Vec<usize> = r
        .per_image
        .iter()
        .flat_map(|i| i.per_class.keys().copied())
        .collect();
    ids.sort();
    ids.dedup();
    let name = |c: usize| names.get(c).cloned().unwrap_or_else(|| c.to_string());
    let mut text = String::from("image,boxes,box_fraction,share_masked,share_map,kept_tokens");
    for p in PRIORS {
        text += &format!(",{p}_share_masked");
    }
    for &c in &ids {
        let n = name(c);
        text += &format!(",{n}_boxes,{n}_box_fraction,{n}_share_masked,{n}_share_map");
    }
    text.push('\n');
    for i in &r.per_image {
        let p = i.path.display().to_string().replace('"', "\"\"");
        text += &format!(
            "\"{p}\",{},{:.6},{:.6},{:.6},{}",
            i.boxes, i.box_fraction, i.share_masked, i.share_map, i.kept_tokens
        );
        for v in i.priors {
            text += &format!(",{v:.6}");
        }
        for c in &ids {
            match i.per_class.get(c) {
                Some((n, v)) => text += &format!(",{n},{:.6},{:.6},{:.6}", v[0], v[1], v[2]),
                None => text += ",0,,,",
            }
        }
        text.push('\n');
    }
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("csv {shown}: cannot write: {e}"))
}

fn line(s: &ShareSummary) -> String {
    format!(
        "{:<10} {:>6} {:>6}   {:>7.1}%  {:>7.1}%  {:>7.1}%   x{:.2}",
        s.name,
        s.images,
        s.boxes,
        100.0 * s.share_masked,
        100.0 * s.share_map,
        100.0 * s.chance,
        if s.chance > 0.0 {
            s.share_masked / s.chance
        } else {
            0.0
        }
    )
}

/// One row of the controls table: each map's mean masked share with its interval.
fn controls_line(s: &ShareSummary) -> String {
    let cells: Vec<String> = s
        .scores
        .iter()
        .map(|m| {
            format!(
                "{:>5.1}% [{:>4.1}, {:>4.1}]",
                100.0 * m.share_masked,
                100.0 * m.interval.low,
                100.0 * m.interval.high
            )
        })
        .collect();
    format!("{:<10} {}", s.name, cells.join("  "))
}

/// The report of `r` as text: what was used, the shares per class beside chance, and the masked
/// share beside the controls (priors) with bootstrap intervals.
pub fn text(r: &BoxesReport) -> String {
    let mut out = vec![format!(
        "{} images with boxes of {} ({} without a label file, {} with no boxes, {} with boxes outside the crop: skipped)",
        r.images_used, r.images_found, r.skipped_no_label_file, r.skipped_no_boxes, r.skipped_outside_crop
    )];
    out.push(format!(
        "{} at {} px, pooled-query map (head mean) at level {} ({}x{}), threshold {:.0}% of the mass",
        r.arch,
        r.size,
        r.level,
        r.grid[0],
        r.grid[1],
        100.0 * r.mass
    ));
    out.push(format!(
        "{:<10} {:>6} {:>6}   {:>8}  {:>8}  {:>8}   masked/chance",
        "class", "images", "boxes", "masked", "map", "chance"
    ));
    out.push(line(&r.all));
    for c in &r.classes {
        out.push(line(c));
    }
    out.push(
        "masked share inside the boxes beside the controls (mean over images, 95% bootstrap interval):"
            .to_string(),
    );
    let names: Vec<String> = r
        .all
        .scores
        .iter()
        .map(|m| format!("{:<19}", m.map))
        .collect();
    out.push(format!("{:<10} {}", "class", names.join("  ")));
    out.push(controls_line(&r.all));
    for c in &r.classes {
        out.push(controls_line(c));
    }
    out.join("\n")
}
