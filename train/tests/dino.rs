//! The DINO loss, centre, schedules and teacher EMA against hand computations in f64.

use dinonat_engine::gradcheck::gradcheck;
use dinonat_engine::nn::{Init, ParamStore};
use dinonat_engine::{DType, Rng, Tensor};
use dinonat_train::dino::loss::{mean_entropy, sinkhorn_knopp};
use dinonat_train::dino::schedule::WarmupFractions;
use dinonat_train::dino::{cosine_schedule, ema_update, Centering, DinoLoss, Schedules};

fn softmax(x: &[f64]) -> Vec<f64> {
    let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = x.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// The loss written as in the paper: a loop over teacher views i, student views j != i, images.
fn reference_loss(
    s: &[f64],
    t: &[f64],
    c: &[f64],
    b: usize,
    k: usize,
    ncrops: usize,
    tt: f64,
) -> f64 {
    let row = |x: &[f64], r: usize| x[r * k..(r + 1) * k].to_vec();
    let (mut total, mut n) = (0.0, 0);
    for i in 0..2 {
        for j in 0..ncrops {
            if j == i {
                continue;
            }
            for img in 0..b {
                let tr: Vec<f64> = row(t, i * b + img)
                    .iter()
                    .zip(c)
                    .map(|(x, c)| (x - c) / tt)
                    .collect();
                let pt = softmax(&tr);
                let ps = softmax(
                    &row(s, j * b + img)
                        .iter()
                        .map(|x| x / 0.1)
                        .collect::<Vec<_>>(),
                );
                total += -pt.iter().zip(&ps).map(|(p, q)| p * q.ln()).sum::<f64>();
            }
            n += 1;
        }
    }
    total / (n * b) as f64
}

fn setup(b: usize, k: usize, ncrops: usize, seed: u64) -> (Vec<f64>, Vec<f64>, DinoLoss) {
    let mut rng = Rng::new(seed);
    let s = rng.normal_vec(ncrops * b * k);
    let t = rng.normal_vec(2 * b * k);
    let mut l = DinoLoss::new(k, ncrops);
    l.center = rng.normal_vec(k).iter().map(|x| 0.3 * x).collect();
    (s, t, l)
}

#[test]
fn loss_matches_the_pairwise_definition_in_f64() {
    for (b, k, ncrops) in [(1, 3, 2), (2, 5, 3), (3, 7, 4)] {
        let (s, t, l) = setup(b, k, ncrops, 7 + b as u64);
        let st = Tensor::from_slice(&s, &[ncrops * b, k]).unwrap();
        let tt = Tensor::from_slice(&t, &[2 * b, k]).unwrap();
        let out = l.forward(&st, &tt, 0.04).unwrap();
        let want = reference_loss(&s, &t, &l.center, b, k, ncrops, 0.04);
        let got = out.loss.item().unwrap();
        assert!(
            (got - want).abs() < 1e-12 * want.abs().max(1.0),
            "{got} vs {want}"
        );
        // KL = CE - H(Pt) >= 0, H in [0, ln K]
        assert!(out.kl > -1e-12 && out.teacher_entropy >= 0.0);
        assert!(out.teacher_entropy <= (k as f64).ln() + 1e-12);
    }
}

#[test]
fn hand_computed_two_views_example() {
    // K = 2, B = 1, two views, centre 0, τt = 1 (so Pt = softmax(t)), τs = 0.1.
    let mut l = DinoLoss::new(2, 2);
    l.student_temp = 0.1;
    let s = Tensor::from_slice(&[0.1f64, 0.0, 0.0, 0.1], &[2, 2]).unwrap();
    let t = Tensor::from_slice(&[0.0f64, 0.0, 2.0f64.ln(), 0.0], &[2, 2]).unwrap();
    // teacher view 0: Pt = (1/2, 1/2); teacher view 1: Pt = (2/3, 1/3)
    // student view 1: s/τs = (0, 1) -> log Ps = (-ln(1+e), 1 - ln(1+e));
    // student view 0: s/τs = (1, 0) -> log Ps = (1 - ln(1+e), -ln(1+e)).
    let lse = (1.0 + std::f64::consts::E).ln();
    let term01 = -(0.5 * -lse + 0.5 * (1.0 - lse));
    let term10 = -((2.0 / 3.0) * (1.0 - lse) + (1.0 / 3.0) * -lse);
    let want = (term01 + term10) / 2.0;
    let got = l.forward(&s, &t, 1.0).unwrap().loss.item().unwrap();
    assert!((got - want).abs() < 1e-14, "{got} vs {want}");
}

#[test]
fn gradient_wrt_student_logits_is_softmax_minus_teacher_over_tau() {
    let (b, k, ncrops) = (2, 4, 3);
    let (s, t, l) = setup(b, k, ncrops, 3);
    let tt = Tensor::from_slice(&t, &[2 * b, k]).unwrap();
    let tau_t = 0.05;
    // numeric check (central differences, f64)
    let lc = l.clone();
    let tc = tt.clone();
    gradcheck(
        |x| Ok(lc.forward(&x[0], &tc, tau_t)?.loss),
        &[Tensor::from_slice(&s, &[ncrops * b, k]).unwrap()],
    )
    .unwrap();
    // closed form: dL/ds_j = (n_j softmax(s_j/τs) - sum_{i != j} Pt_i) / (τs B n_pairs)
    let st = Tensor::from_slice(&s, &[ncrops * b, k])
        .unwrap()
        .with_grad();
    let grads = l.forward(&st, &tt, tau_t).unwrap().loss.backward().unwrap();
    let g = grads.get(&st).unwrap().to_vec_f64();
    let pt = l.teacher_probs(&tt, tau_t).unwrap().to_vec_f64();
    let pairs = 2 * (ncrops - 1);
    for j in 0..ncrops {
        for img in 0..b {
            let r = j * b + img;
            let ps = softmax(
                &s[r * k..(r + 1) * k]
                    .iter()
                    .map(|x| x / 0.1)
                    .collect::<Vec<_>>(),
            );
            let teachers: Vec<usize> = (0..2).filter(|&i| i != j).collect();
            for q in 0..k {
                let sum_pt: f64 = teachers.iter().map(|&i| pt[(i * b + img) * k + q]).sum();
                let want = (teachers.len() as f64 * ps[q] - sum_pt) / (0.1 * (b * pairs) as f64);
                assert!(
                    (g[r * k + q] - want).abs() < 1e-12,
                    "view {j} img {img} k {q}"
                );
            }
        }
    }
}

#[test]
fn teacher_gets_no_gradient() {
    let (b, k, ncrops) = (1, 3, 2);
    let (s, t, l) = setup(b, k, ncrops, 5);
    let st = Tensor::from_slice(&s, &[ncrops * b, k])
        .unwrap()
        .with_grad();
    let tt = Tensor::from_slice(&t, &[2 * b, k]).unwrap().with_grad();
    let grads = l.forward(&st, &tt, 0.04).unwrap().loss.backward().unwrap();
    assert!(grads.get(&st).is_some() && grads.get(&tt).is_none());
}

#[test]
fn center_update_is_an_ema_of_the_batch_mean() {
    let mut l = DinoLoss::new(3, 2);
    l.center = vec![1.0, 2.0, 3.0];
    let t = Tensor::from_slice(&[0.0f32, 4.0, -1.0, 2.0, 0.0, 5.0], &[2, 3]).unwrap();
    l.update_center(&t).unwrap();
    // mean = (1, 2, 2); c = 0.9 c + 0.1 mean
    let want = [0.9 + 0.1, 1.8 + 0.2, 2.7 + 0.2];
    for (c, w) in l.center.iter().zip(want) {
        assert!((c - w).abs() < 1e-12);
    }
    assert!(l
        .update_center(&Tensor::zeros(&[2, 4], DType::F32))
        .is_err());
}

#[test]
fn entropy_of_uniform_is_ln_k() {
    assert!((mean_entropy(&[0.25; 8], 4) - 4f64.ln()).abs() < 1e-12);
    assert_eq!(mean_entropy(&[1.0, 0.0, 0.0], 3), 0.0);
}

#[test]
fn loss_errors_name_the_shapes() {
    let l = DinoLoss::new(4, 3);
    let e = l
        .forward(
            &Tensor::zeros(&[5, 4], DType::F32),
            &Tensor::zeros(&[2, 4], DType::F32),
            0.04,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("student logits") && e.contains("[5, 4]"), "{e}");
}

#[test]
fn cosine_schedule_endpoints_and_midpoints() {
    // warm-up 0 -> 1 over 5 steps (linspace: 0, .25, .5, .75, 1), then cosine 1 -> 0 over 10
    let f = |s| cosine_schedule(1.0, 0.0, 15, 5, 0.0, s);
    assert_eq!(f(0), 0.0);
    assert!((f(2) - 0.5).abs() < 1e-15);
    assert_eq!(f(4), 1.0);
    assert!((f(5) - 1.0).abs() < 1e-15);
    assert!((f(10) - 0.5).abs() < 1e-15); // cos(π/2)
    let last = 0.5 * (1.0 + (std::f64::consts::PI * 9.0 / 10.0).cos());
    assert!((f(14) - last).abs() < 1e-15);
    assert_eq!(f(100), f(14));
    // no warm-up: starts at base exactly
    assert!((cosine_schedule(0.996, 1.0, 100, 0, 0.0, 0) - 0.996).abs() < 1e-15);
}

#[test]
fn run_schedules_follow_dino() {
    let s = Schedules::for_run(100, 1e-3, WarmupFractions::default());
    assert_eq!(
        (
            s.lr_warmup_steps,
            s.teacher_temp_warmup_steps,
            s.freeze_last_layer_steps
        ),
        (10, 30, 5)
    );
    assert_eq!(s.lr(0), 0.0);
    assert_eq!(s.lr(9), 1e-3);
    assert!((s.lr(10) - 1e-3).abs() < 1e-18);
    assert!((s.lr(55) - (1e-6 + 0.5 * (1e-3 - 1e-6))).abs() < 1e-15);
    assert!(s.lr(99) < 2e-6);
    assert!((s.weight_decay(0) - 0.04).abs() < 1e-15);
    assert!((s.weight_decay(50) - 0.22).abs() < 1e-12);
    assert!((s.weight_decay(99) - 0.4).abs() < 1e-3);
    assert!((s.teacher_momentum(0) - 0.996).abs() < 1e-15);
    assert!((s.teacher_momentum(50) - 0.998).abs() < 1e-12);
    assert!(s.teacher_momentum(99) > 0.99999);
    assert_eq!(s.teacher_temp(0), 0.04);
    assert!((s.teacher_temp(29) - s.teacher_temp(30)).abs() < 1e-15);
    assert!((s.teacher_temp(58) - 0.07).abs() < 1e-15);
    assert!((s.teacher_temp(29) - 0.07).abs() < 1e-15);
    assert!((s.teacher_temp(14) - (0.04 + 0.03 * 14.0 / 29.0)).abs() < 1e-15);
    assert!(s.last_layer_frozen(4) && !s.last_layer_frozen(5));
}

#[test]
fn ema_moves_the_teacher_towards_the_student() {
    let mut st = ParamStore::new(DType::F32, 1);
    st.add("w", &[2, 2], Init::Constant(1.0)).unwrap();
    st.add_fixed("g", &[2], Init::Constant(3.0)).unwrap();
    let mut te = ParamStore::new(DType::F32, 2);
    te.add("w", &[2, 2], Init::Constant(0.0)).unwrap();
    te.add_fixed("g", &[2], Init::Constant(1.0)).unwrap();
    ema_update(&te, &st, 0.75).unwrap();
    assert_eq!(te.get("w").unwrap().to_vec::<f32>().unwrap(), vec![0.25; 4]);
    assert_eq!(te.get("g").unwrap().to_vec::<f32>().unwrap(), vec![1.5; 2]);
    // the student is untouched
    assert_eq!(st.get("w").unwrap().to_vec::<f32>().unwrap(), vec![1.0; 4]);
    // m = 1 keeps the teacher; a missing name is an error naming it
    ema_update(&te, &st, 1.0).unwrap();
    assert_eq!(te.get("w").unwrap().to_vec::<f32>().unwrap(), vec![0.25; 4]);
    let mut other = ParamStore::new(DType::F32, 3);
    other.add("x", &[1], Init::Zeros).unwrap();
    assert!(ema_update(&other, &st, 0.5)
        .unwrap_err()
        .to_string()
        .contains("'x'"));
}

/// Rows of a seeded pseudo-random [n, f] matrix in [-1, 1] (never zeros).
fn rows(n: usize, f: usize, seed: u64) -> Vec<f64> {
    Rng::new(seed)
        .uniform_vec(n * f)
        .into_iter()
        .map(|u| 2.0 * u - 1.0)
        .collect()
}

/// KoLeo against a plain loop over all pairs, in f64: - mean_i log(min_j |y_i - y_j| + 1e-8).
#[test]
fn koleo_matches_the_nearest_neighbour_distances() {
    use dinonat_train::dino::koleo::koleo_loss;
    for (n, f, seed) in [(2, 3, 1), (5, 7, 2), (13, 4, 3)] {
        let x = rows(n, f, seed);
        let y: Vec<Vec<f64>> = x
            .chunks(f)
            .map(|r| {
                let norm = r.iter().map(|v| v * v).sum::<f64>().sqrt();
                r.iter().map(|v| v / norm).collect()
            })
            .collect();
        let want = -(0..n)
            .map(|i| {
                let d = (0..n)
                    .filter(|&j| j != i)
                    .map(|j| {
                        y[i].iter()
                            .zip(&y[j])
                            .map(|(a, b)| (a - b) * (a - b))
                            .sum::<f64>()
                            .sqrt()
                    })
                    .fold(f64::INFINITY, f64::min);
                (d + 1e-8).ln()
            })
            .sum::<f64>()
            / n as f64;
        let got = koleo_loss(&Tensor::from_slice(&x, &[n, f]).unwrap())
            .unwrap()
            .item()
            .unwrap();
        assert!((got - want).abs() < 1e-9, "n {n} f {f}: {got} vs {want}");
    }
}

#[test]
fn koleo_gradient_check() {
    use dinonat_train::dino::koleo::koleo_loss;
    // Awkward sizes; the nearest neighbours are well separated, so central differences do not
    // cross a change of neighbour.
    for (n, f, seed) in [(3, 5, 4), (6, 3, 5)] {
        let x = Tensor::from_slice(&rows(n, f, seed), &[n, f]).unwrap();
        gradcheck(|x| koleo_loss(&x[0]), &[x]).unwrap();
    }
}

#[test]
fn koleo_spreads_rows_and_rejects_one_row() {
    use dinonat_train::dino::koleo::koleo_loss;
    let close = Tensor::from_slice(&[1.0, 0.0, 0.99, 0.14, 0.0, 1.0], &[3, 2]).unwrap();
    let spread = Tensor::from_slice(&[1.0, 0.0, -0.5, 0.866, -0.5, -0.866], &[3, 2]).unwrap();
    let (lc, ls) = (
        koleo_loss(&close).unwrap().item().unwrap(),
        koleo_loss(&spread).unwrap().item().unwrap(),
    );
    assert!(
        ls < lc,
        "spread rows {ls} should score below close rows {lc}"
    );
    let err = koleo_loss(&Tensor::from_slice(&[1.0, 2.0], &[1, 2]).unwrap()).unwrap_err();
    assert!(err.to_string().contains("koleo_loss"), "{err}");
}

/// DINOv2's `sinkhorn_knopp_teacher` transcribed with its transpose: Q = exp(t / τ)^T [K, B], Q /= sum;
/// per iteration rows (prototypes) to 1/K, columns (samples) to 1/B; Q *= B; back to [B, K].
fn sinkhorn_as_written(t: &[f64], rows: usize, k: usize, tt: f64, iters: usize) -> Vec<f64> {
    let mut q = vec![vec![0.0; rows]; k];
    for (r, row) in t.chunks_exact(k).enumerate() {
        for (p, x) in row.iter().enumerate() {
            q[p][r] = (x / tt).exp();
        }
    }
    let total: f64 = q.iter().flatten().sum();
    q.iter_mut().flatten().for_each(|x| *x /= total);
    for _ in 0..iters {
        for prototype in q.iter_mut() {
            let s: f64 = prototype.iter().sum();
            prototype.iter_mut().for_each(|x| *x /= s * k as f64);
        }
        let sample_sums: Vec<f64> = (0..rows)
            .map(|r| q.iter().map(|prototype| prototype[r]).sum())
            .collect();
        for prototype in q.iter_mut() {
            for (x, s) in prototype.iter_mut().zip(&sample_sums) {
                *x /= s * rows as f64;
            }
        }
    }
    (0..rows * k)
        .map(|i| q[i % k][i / k] * rows as f64)
        .collect()
}

#[test]
fn sinkhorn_knopp_matches_dinov2_and_balances_the_prototypes() {
    for (rows, k, tt, seed) in [(2, 3, 0.04, 1u64), (6, 5, 0.04, 2), (10, 17, 0.07, 3)] {
        let t: Vec<f64> = Rng::new(seed).normal_vec(rows * k);
        let got = sinkhorn_knopp(&t, rows, k, tt, 3);
        let want = sinkhorn_as_written(&t, rows, k, tt, 3);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-12, "{g} vs {w}");
        }
        // every row a distribution (the last step of an iteration normalises rows)
        for row in got.chunks_exact(k) {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            assert!(row.iter().all(|&x| x >= 0.0));
        }
        // with enough iterations every prototype gets the same mass rows / k (at τ = 1, where the
        // scaling converges fast; at 0.04 the entries span e^±50 and it takes far more iterations)
        let many = sinkhorn_knopp(&t, rows, k, 1.0, 200);
        for p in 0..k {
            let mass: f64 = (0..rows).map(|r| many[r * k + p]).sum();
            assert!((mass - rows as f64 / k as f64).abs() < 1e-6, "{mass}");
        }
    }
    // a collapsed teacher (every row prefers prototype 0) is spread over the prototypes
    let (rows, k) = (8, 4);
    let t: Vec<f64> = (0..rows * k)
        .map(|i| if i % k == 0 { 1.0 } else { 0.0 })
        .collect();
    let q = sinkhorn_knopp(&t, rows, k, 0.04, 3);
    let mass0: f64 = (0..rows).map(|r| q[r * k]).sum();
    assert!(mass0 < 0.5 * rows as f64, "{mass0}");
}

#[test]
fn sinkhorn_knopp_centering_gives_the_loss_of_its_targets() {
    let (b, k, ncrops) = (3, 6, 4);
    let (s, t, mut l) = setup(b, k, ncrops, 11);
    l.centering = Centering::SinkhornKnopp;
    let st = Tensor::from_slice(&s, &[ncrops * b, k]).unwrap();
    let tt = Tensor::from_slice(&t, &[2 * b, k]).unwrap();
    let pt = l.teacher_probs(&tt, 0.04).unwrap().to_vec_f64();
    let want_pt = sinkhorn_knopp(&t, 2 * b, k, 0.04, 3);
    for (g, w) in pt.iter().zip(&want_pt) {
        assert!((g - w).abs() < 1e-12, "{g} vs {w}");
    }
    // the loss: - Pt_i . log Ps_j over pairs j != i, as in reference_loss but with these targets
    let log_ps = |r: usize| {
        let p = softmax(
            &s[r * k..(r + 1) * k]
                .iter()
                .map(|x| x / 0.1)
                .collect::<Vec<_>>(),
        );
        p.iter().map(|x| x.ln()).collect::<Vec<_>>()
    };
    let (mut total, mut n) = (0.0, 0);
    for i in 0..2 {
        for j in (0..ncrops).filter(|&j| j != i) {
            for img in 0..b {
                let q = &want_pt[(i * b + img) * k..(i * b + img + 1) * k];
                total -= q
                    .iter()
                    .zip(log_ps(j * b + img))
                    .map(|(a, l)| a * l)
                    .sum::<f64>();
            }
            n += 1;
        }
    }
    let want = total / (n * b) as f64;
    let got = l.forward(&st, &tt, 0.04).unwrap().loss.item().unwrap();
    assert!(
        (got - want).abs() < 1e-12 * want.abs().max(1.0),
        "{got} vs {want}"
    );
    // no running centre with Sinkhorn-Knopp
    let c = l.center.clone();
    l.update_center(&tt).unwrap();
    assert_eq!(l.center, c);
}
