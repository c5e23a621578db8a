//! The ten classes' shapes in the object's own frame (the procedural data set draws them; docs/data.md).

/// Is (u, v) inside the shape of `class`, in the object's own frame where the shape spans about [-1, 1]^2?
pub fn inside(class: usize, u: f32, v: f32) -> bool {
    let r2 = u * u + v * v;
    match class {
        0 => r2 <= 0.85 * 0.85,
        1 => u.abs().max(v.abs()) <= 0.75,
        3 => (u.abs() <= 0.28 && v.abs() <= 0.95) || (v.abs() <= 0.28 && u.abs() <= 0.95),
        4 => (0.5 * 0.5..=0.9 * 0.9).contains(&r2),
        6 => u.abs() <= 0.85 && v.abs() <= 0.85 && ((u + 0.85) / 0.34) as i32 % 2 == 0,
        7 => u * u + (v / 0.45) * (v / 0.45) <= 1.0,
        2 | 5 | 8 | 9 => in_polygon(&polygons()[class], u, v),
        _ => false,
    }
}

/// The polygonal classes' outlines (triangle, star, L, arrow), built once.
fn polygons() -> &'static [Vec<(f32, f32)>; 10] {
    static POLYGONS: std::sync::OnceLock<[Vec<(f32, f32)>; 10]> = std::sync::OnceLock::new();
    POLYGONS.get_or_init(|| {
        let mut p: [Vec<(f32, f32)>; 10] = Default::default();
        p[2] = regular_polygon::<3>(1.0, 1.0).to_vec();
        p[5] = regular_polygon::<10>(1.0, 0.42).to_vec();
        p[8] = vec![
            (-0.8, -0.8),
            (-0.3, -0.8),
            (-0.3, 0.3),
            (0.8, 0.3),
            (0.8, 0.8),
            (-0.8, 0.8),
        ];
        p[9] = vec![
            (-0.9, -0.18),
            (0.2, -0.18),
            (0.2, -0.6),
            (0.95, 0.0),
            (0.2, 0.6),
            (0.2, 0.18),
            (-0.9, 0.18),
        ];
        p
    })
}

/// N vertices on a circle, alternating radii `r_even` / `r_odd` (a star when they differ), first vertex up.
fn regular_polygon<const N: usize>(r_even: f32, r_odd: f32) -> [(f32, f32); N] {
    std::array::from_fn(|k| {
        let a = -std::f32::consts::FRAC_PI_2 + k as f32 * std::f32::consts::TAU / N as f32;
        let r = if k % 2 == 0 { r_even } else { r_odd };
        (r * a.cos(), r * a.sin())
    })
}

/// Even-odd rule point-in-polygon.
fn in_polygon(p: &[(f32, f32)], x: f32, y: f32) -> bool {
    let mut inside = false;
    let mut j = p.len() - 1;
    for i in 0..p.len() {
        let ((xi, yi), (xj, yj)) = (p[i], p[j]);
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}
