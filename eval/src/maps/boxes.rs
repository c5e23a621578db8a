//! Attention inside labelled boxes (docs/attention-maps.md, "Attention inside boxes"): YOLO label files, the
//! mapping of a box through the eval transform (resize the shorter side, centre crop) onto the token grid, the
//! exact fraction of each token cell covered by the union of boxes, and the share of a map's mass that falls
//! on the boxes, with and without the 60%-mass threshold.

use super::render::mass_mask;
use dinonat_train::augment::EvalTransform;
use std::path::Path;

/// One YOLO box: class id and centre / size normalised to the original image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct YoloBox {
    pub class: usize,
    pub cx: f64,
    pub cy: f64,
    pub w: f64,
    pub h: f64,
}

/// Parses a YOLO label file's text (`class cx cy w h` per line, blank lines ignored); errors name `source`
/// and the line.
pub fn parse_yolo(text: &str, source: &str) -> Result<Vec<YoloBox>, String> {
    let mut out = Vec::new();
    for (k, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let bad = |why: String| format!("{source} line {}: {why} in '{}'", k + 1, line.trim());
        if fields.len() != 5 {
            return Err(bad(format!(
                "expected 5 fields (class cx cy w h), found {}",
                fields.len()
            )));
        }
        let class = fields[0].parse::<usize>().map_err(|_| {
            bad(format!(
                "class '{}' is not a non-negative integer",
                fields[0]
            ))
        })?;
        let mut v = [0f64; 4];
        for (slot, (f, name)) in v
            .iter_mut()
            .zip(fields[1..].iter().zip(["cx", "cy", "w", "h"]))
        {
            *slot = f
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| bad(format!("{name} '{f}' is not a number")))?;
        }
        if v[2] < 0.0 || v[3] < 0.0 {
            return Err(bad("negative width or height".into()));
        }
        out.push(YoloBox {
            class,
            cx: v[0],
            cy: v[1],
            w: v[2],
            h: v[3],
        });
    }
    Ok(out)
}

/// Reads and parses one label file.
pub fn read_yolo(path: &Path) -> Result<Vec<YoloBox>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    parse_yolo(&text, &path.display().to_string())
}

/// A box of an image of `w` x `h` in the pixels of the transformed crop, [x0, y0, x1, y1], clipped to the crop;
/// None when nothing of it is left.
pub fn box_in_crop(b: &YoloBox, transform: &EvalTransform, w: usize, h: usize) -> Option<[f64; 4]> {
    let (rw, rh, ox, oy) = transform.geometry(w, h);
    let crop = transform.crop as f64;
    // Normalised coordinates scale to the resized image along each axis (rw / w and rh / h differ slightly
    // when the long side is truncated, exactly as the resize does).
    let x = |t: f64| (t * rw as f64 - ox as f64).clamp(0.0, crop);
    let y = |t: f64| (t * rh as f64 - oy as f64).clamp(0.0, crop);
    let r = [
        x(b.cx - b.w / 2.0),
        y(b.cy - b.h / 2.0),
        x(b.cx + b.w / 2.0),
        y(b.cy + b.h / 2.0),
    ];
    (r[2] > r[0] && r[3] > r[1]).then_some(r)
}

/// Area of the union of rectangles [x0, y0, x1, y1] (a sweep over the distinct x edges, merging the y
/// intervals of the rectangles spanning each strip).
pub fn union_area(rects: &[[f64; 4]]) -> f64 {
    let mut xs: Vec<f64> = rects.iter().flat_map(|r| [r[0], r[2]]).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let mut area = 0.0;
    for s in xs.windows(2) {
        let (a, b) = (s[0], s[1]);
        let mut ys: Vec<(f64, f64)> = rects
            .iter()
            .filter(|r| r[0] <= a && r[2] >= b && r[3] > r[1])
            .map(|r| (r[1], r[3]))
            .collect();
        ys.sort_by(|p, q| p.0.total_cmp(&q.0));
        let (mut len, mut cur): (f64, Option<(f64, f64)>) = (0.0, None);
        for (y0, y1) in ys {
            cur = match cur {
                Some((c0, c1)) if y0 <= c1 => Some((c0, c1.max(y1))),
                Some((c0, c1)) => {
                    len += c1 - c0;
                    Some((y0, y1))
                }
                None => Some((y0, y1)),
            };
        }
        if let Some((c0, c1)) = cur {
            len += c1 - c0;
        }
        area += len * (b - a);
    }
    area
}

/// The fraction of each token cell of a `grid` (rows, cols) over a `crop` x `crop` image covered by the union
/// of `rects` (crop pixels): `[rows * cols]` in [0, 1]. Cell (r, c) spans crop / cols pixels across from
/// c * crop / cols, as the nearest-neighbour upsampling of the maps draws it.
pub fn token_coverage(rects: &[[f64; 4]], crop: usize, grid: (usize, usize)) -> Vec<f64> {
    let (rows, cols) = grid;
    let (sx, sy) = (cols as f64 / crop as f64, rows as f64 / crop as f64);
    // In token units each cell is the unit square [c, c + 1] x [r, r + 1].
    let t: Vec<[f64; 4]> = rects
        .iter()
        .map(|r| [r[0] * sx, r[1] * sy, r[2] * sx, r[3] * sy])
        .collect();
    let mut out = vec![0.0; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            let (x0, y0, x1, y1) = (c as f64, r as f64, c as f64 + 1.0, r as f64 + 1.0);
            let clipped: Vec<[f64; 4]> = t
                .iter()
                .map(|b| [b[0].max(x0), b[1].max(y0), b[2].min(x1), b[3].min(y1)])
                .filter(|b| b[2] > b[0] && b[3] > b[1])
                .collect();
            out[r * cols + c] = union_area(&clipped).min(1.0);
        }
    }
    out
}

/// How much of a map lies on the boxes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Share {
    /// Σ_{kept} a_j c_j / Σ_{kept} a_j over the tokens of the `mass` mask.
    pub masked: f64,
    /// Σ_j a_j c_j / Σ_j a_j over all tokens.
    pub map: f64,
    /// Tokens in the mask.
    pub kept: usize,
}

/// The share of `map` (weights a_j >= 0 on the grid) inside boxes covering `coverage` (c_j in [0, 1]) of each
/// token, with the `mass` mask (DINO's threshold) and without.
pub fn box_share(map: &[f32], coverage: &[f64], mass: f64) -> Share {
    let keep = mass_mask(map, mass);
    let (mut kept_in, mut kept_all, mut all_in, mut all) = (0.0, 0.0, 0.0, 0.0);
    for ((&a, &c), &k) in map.iter().zip(coverage).zip(&keep) {
        let a = a as f64;
        all += a;
        all_in += a * c;
        if k {
            kept_all += a;
            kept_in += a * c;
        }
    }
    let ratio = |n: f64, d: f64| if d > 0.0 { n / d } else { 0.0 };
    Share {
        masked: ratio(kept_in, kept_all),
        map: ratio(all_in, all),
        kept: keep.iter().filter(|&&k| k).count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_of_a_hand_made_map() {
        // 2 x 2 grid, weights 0.5 (top-left), 0.3 (top-right), 0.15, 0.05; the box covers the left column
        // fully and half of the top-right cell.
        let map = [0.5f32, 0.3, 0.15, 0.05];
        let coverage = [1.0, 0.5, 1.0, 0.0];
        // 60% mass: 0.5 then 0.3 (cumulative 0.8) -> kept {0, 1}: (0.5 * 1 + 0.3 * 0.5) / 0.8.
        let s = box_share(&map, &coverage, 0.6);
        assert_eq!(s.kept, 2);
        assert!((s.masked - 0.65 / 0.8).abs() < 1e-7, "{s:?}");
        // All tokens: 0.5 + 0.15 + 0.15 = 0.8.
        assert!((s.map - 0.8).abs() < 1e-7, "{s:?}");
        // 40% mass keeps the top-left token only, fully inside.
        assert!((box_share(&map, &coverage, 0.4).masked - 1.0).abs() < 1e-12);
        // A uniform map's share is the covered fraction (the chance level).
        let uniform = [0.25f32; 4];
        let s = box_share(&uniform, &coverage, 1.0);
        assert!((s.map - 0.625).abs() < 1e-7 && (s.masked - 0.625).abs() < 1e-7);
    }

    #[test]
    fn coverage_is_exact_for_overlapping_boxes() {
        // A 4 x 4 grid over 8 px: cells of 2 px. Two boxes overlapping in [2, 3] x [2, 3].
        let rects = [[1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 4.0, 4.0]];
        let c = token_coverage(&rects, 8, (4, 4));
        // Cell (0, 0) = [0, 2]^2 holds [1, 2]^2: 1/4. Cell (1, 1) = [2, 4]^2 is covered by the second box fully.
        assert!((c[0] - 0.25).abs() < 1e-12);
        assert!((c[5] - 1.0).abs() < 1e-12);
        // Cell (0, 1) = [2, 4] x [0, 2]: [2, 3] x [1, 2] from the first box: 1/4.
        assert!((c[1] - 0.25).abs() < 1e-12);
        assert_eq!(c[15], 0.0);
        // Total covered area in cells: union = 4 + 4 - 1 = 7 px^2 = 7/4 cells.
        assert!((c.iter().sum::<f64>() - 7.0 / 4.0).abs() < 1e-12);
        assert!((union_area(&rects) - 7.0).abs() < 1e-12);
        assert!((union_area(&[[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.0]]) - 4.0).abs() < 1e-12);
    }

    #[test]
    fn boxes_follow_resize_and_centre_crop() {
        let t = EvalTransform::square(100);
        // 400 x 200 (landscape): resized to 200 x 100, crop x from 50 to 150.
        assert_eq!(t.geometry(400, 200), (200, 100, 50, 0));
        let b = YoloBox {
            class: 0,
            cx: 0.5,
            cy: 0.5,
            w: 0.5,
            h: 0.5,
        };
        // Original x 100..300 -> resized 50..150 -> crop 0..100; y 50..150 -> 25..75.
        assert_eq!(
            box_in_crop(&b, &t, 400, 200),
            Some([0.0, 25.0, 100.0, 75.0])
        );
        // A box in the left quarter is cut away by the crop; one straddling its edge is clipped.
        let left = YoloBox {
            cx: 0.1,
            w: 0.1,
            ..b
        };
        assert_eq!(box_in_crop(&left, &t, 400, 200), None);
        let edge = YoloBox {
            cx: 0.25,
            w: 0.2,
            ..b
        };
        let r = box_in_crop(&edge, &t, 400, 200).unwrap();
        assert!(
            (r[0] - 0.0).abs() < 1e-9 && (r[2] - 20.0).abs() < 1e-9,
            "{r:?}"
        );
        // Portrait 30 x 61: short side 100, long side int(100 * 61 / 30) = 203, crop y offset round(51.5) = 52.
        assert_eq!(t.geometry(30, 61), (100, 203, 0, 52));
        // Check against the transform itself: a white rectangle in a black image lands where the box says.
        let (w, h) = (120, 80);
        let (bx0, by0, bx1, by1) = (70, 20, 110, 60);
        let mut px = vec![0u8; w * h * 3];
        for y in by0..by1 {
            for x in bx0..bx1 {
                px[(y * w + x) * 3..(y * w + x) * 3 + 3].fill(255);
            }
        }
        let img = dinonat_train::data::RgbImage::new(w, h, px);
        let t = EvalTransform::square(40);
        let view = t.apply(&img);
        let yb = YoloBox {
            class: 0,
            cx: (bx0 + bx1) as f64 / 2.0 / w as f64,
            cy: (by0 + by1) as f64 / 2.0 / h as f64,
            w: (bx1 - bx0) as f64 / w as f64,
            h: (by1 - by0) as f64 / h as f64,
        };
        let r = box_in_crop(&yb, &t, w, h).unwrap();
        // Pixels well inside the mapped box are white, well outside black (channel 0, normalised).
        let v = |x: usize, y: usize| view.plane(0)[y * 40 + x];
        let (mx, my) = (
            ((r[0] + r[2]) / 2.0) as usize,
            ((r[1] + r[3]) / 2.0) as usize,
        );
        assert!(v(mx, my) > 2.0, "centre of the mapped box is not white");
        assert!(
            v(r[0] as usize - 2, my) < -1.5,
            "left of the mapped box is not black"
        );
        assert!(
            v(mx, r[3] as usize + 2) < -1.5,
            "below the mapped box is not black"
        );
        assert!(v(r[0].ceil() as usize + 1, my) > 2.0 && v(r[2] as usize - 2, my) > 2.0);
    }

    #[test]
    fn bad_label_lines_name_file_and_line() {
        let ok = parse_yolo("0 0.5 0.5 0.2 0.1\n\n1 0.1 0.2 0.3 0.4\n", "l.txt").unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].class, 1);
        for (text, what) in [
            ("0 0.5 0.5 0.2 0.1\n1 0.5 0.5 0.2\n", "5 fields"),
            ("0 0.5 0.5 0.2 0.1\n\nx 0.5 0.5 0.2 0.1\n", "class 'x'"),
            ("0 0.5 0.5 0.2 0.1\n0 0.5 nan 0.2 0.1\n", "cy 'nan'"),
            ("0 0.5 0.5 0.2 0.1\n0 0.5 0.5 -0.2 0.1\n", "negative"),
        ] {
            let e = parse_yolo(text, "labels/a.txt").unwrap_err();
            let line = if text.contains("\n\n") { 3 } else { 2 };
            assert!(e.starts_with(&format!("labels/a.txt line {line}:")), "{e}");
            assert!(e.contains(what), "{e}");
        }
    }
}
