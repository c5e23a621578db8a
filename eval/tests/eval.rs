//! Feature evaluations (eval/src, docs/evaluation.md) on synthetic features with known structure.

use dinonat_eval::cluster::{
    exemplar_search, kmeans, near_duplicate_groups, outliers, propagate_labels, ExemplarRule,
    KMeansConfig, Metric, PropagationConfig,
};
use dinonat_eval::knn::{
    knn_classify, knn_classify_reference, knn_classify_with_progress, KnnConfig,
};
use dinonat_eval::linear::{train_linear_probe, LinearProbeConfig, Preprocess};
use dinonat_eval::retrieval::{
    attention_mass_mask, cross_modal_retrieval, layout_descriptor, mask_iou, median_rank,
};
use dinonat_train::rng::SplitMix64;

fn gaussian(rng: &mut SplitMix64, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.normal() as f32).collect()
}

/// `per_class` points around each of `classes` random centres (scale `spread` of the unit noise), class-major.
fn clusters(
    seed: u64,
    classes: usize,
    per_class: usize,
    dim: usize,
    spread: f32,
) -> (Vec<f32>, Vec<usize>) {
    let mut rng = SplitMix64::keyed(&[seed]);
    let centres = gaussian(&mut rng, classes * dim);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for c in 0..classes {
        for _ in 0..per_class {
            let centre = &centres[c * dim..(c + 1) * dim];
            x.extend(centre.iter().map(|&m| m + spread * rng.normal() as f32));
            y.push(c);
        }
    }
    (x, y)
}

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn knn_separates_gaussian_clusters() {
    let dim = 16;
    // 60 points per class: the first 40 form the memory bank, the last 20 the queries.
    let (all, all_y) = clusters(1, 5, 60, dim, 0.3);
    let (mut bank, mut bank_y, mut queries, mut query_y) = (vec![], vec![], vec![], vec![]);
    for (i, &label) in all_y.iter().enumerate() {
        let row = &all[i * dim..(i + 1) * dim];
        if i % 60 < 40 {
            bank.extend_from_slice(row);
            bank_y.push(label);
        } else {
            queries.extend_from_slice(row);
            query_y.push(label);
        }
    }
    let report = knn_classify(&bank, &bank_y, &queries, &query_y, dim, &KnnConfig::new(5)).unwrap();
    assert!(report.top1 > 95.0, "top-1 {}", report.top1);
    assert_eq!(report.top5, 100.0);
}

#[test]
fn knn_random_labels_is_near_chance() {
    let dim = 12;
    let mut rng = SplitMix64::keyed(&[2]);
    let bank = gaussian(&mut rng, 500 * dim);
    let queries = gaussian(&mut rng, 300 * dim);
    let bank_y: Vec<usize> = (0..500).map(|_| rng.range(0, 10) as usize).collect();
    let query_y: Vec<usize> = (0..300).map(|_| rng.range(0, 10) as usize).collect();
    let report =
        knn_classify(&bank, &bank_y, &queries, &query_y, dim, &KnnConfig::new(10)).unwrap();
    // Chance is 10% top-1 and 50% top-5; 300 queries give a standard error of about 2 and 3 points.
    assert!((3.0..20.0).contains(&report.top1), "top-1 {}", report.top1);
    assert!((38.0..62.0).contains(&report.top5), "top-5 {}", report.top5);
}

#[test]
fn knn_matches_f64_reference() {
    for &(bank_rows, query_rows, dim, k) in &[(33, 17, 7, 5), (7, 3, 1, 20), (257, 33, 3, 20)] {
        let mut rng = SplitMix64::keyed(&[3, bank_rows as u64]);
        let bank = gaussian(&mut rng, bank_rows * dim);
        let queries = gaussian(&mut rng, query_rows * dim);
        let bank_y: Vec<usize> = (0..bank_rows).map(|_| rng.range(0, 6) as usize).collect();
        let query_y: Vec<usize> = (0..query_rows).map(|_| rng.range(0, 6) as usize).collect();
        let mut config = KnnConfig::new(6);
        config.k = k;
        let fast = knn_classify(&bank, &bank_y, &queries, &query_y, dim, &config).unwrap();
        let slow =
            knn_classify_reference(&bank, &bank_y, &queries, &query_y, dim, &config).unwrap();
        assert_eq!(
            fast, slow,
            "bank {bank_rows}, queries {query_rows}, dim {dim}"
        );
    }
}

#[test]
fn knn_is_independent_of_thread_count() {
    // 3000 queries against 1500 bank rows span two similarity chunks.
    let dim = 8;
    let mut rng = SplitMix64::keyed(&[4]);
    let bank = gaussian(&mut rng, 1500 * dim);
    let queries = gaussian(&mut rng, 3000 * dim);
    let bank_y: Vec<usize> = (0..1500).map(|i| i % 7).collect();
    let query_y: Vec<usize> = (0..3000).map(|i| i % 7).collect();
    let run = || knn_classify(&bank, &bank_y, &queries, &query_y, dim, &KnnConfig::new(7)).unwrap();
    assert_eq!(in_pool(1, run), in_pool(2, run));
}

#[test]
fn knn_progress_blocks_do_not_change_the_result() {
    // 10000 bank rows: similarity chunks of 419 queries; one thread searches blocks of two chunks
    // (838 queries: three blocks of 2000), three threads one block of 2514.
    let dim = 4;
    let mut rng = SplitMix64::keyed(&[5]);
    let bank = gaussian(&mut rng, 10000 * dim);
    let queries = gaussian(&mut rng, 2000 * dim);
    let bank_y: Vec<usize> = (0..10000).map(|i| i % 5).collect();
    let query_y: Vec<usize> = (0..2000).map(|i| (i * 3) % 5).collect();
    let run = || {
        let mut calls = Vec::new();
        let report = knn_classify_with_progress(
            &bank,
            &bank_y,
            &queries,
            &query_y,
            dim,
            &KnnConfig::new(5),
            &mut |done, total| calls.push((done, total)),
        )
        .unwrap();
        (report, calls)
    };
    let (one, calls_one) = in_pool(1, run);
    let (three, calls_three) = in_pool(3, run);
    assert_eq!(calls_one, [(838, 2000), (1676, 2000), (2000, 2000)]);
    assert_eq!(calls_three, [(2000, 2000)]);
    assert_eq!(one, three);
    let plain = knn_classify(&bank, &bank_y, &queries, &query_y, dim, &KnnConfig::new(5)).unwrap();
    assert_eq!(one, plain);
}

#[test]
fn knn_ties_go_to_the_lower_index() {
    // Three identical bank items (labels 0, 1, 1) and a query equal to them: every similarity ties.
    let bank = [0.6f32, 0.8].repeat(3);
    let query = [3.0f32, 4.0];
    let predict = |k| {
        let mut config = KnnConfig::new(2);
        config.k = k;
        knn_classify(&bank, &[0, 1, 1], &query, &[1], 2, &config)
            .unwrap()
            .predictions[0]
    };
    assert_eq!(predict(1), 0, "the lower bank index is the nearest");
    assert_eq!(predict(2), 0, "one vote each: the lower class wins");
    assert_eq!(predict(3), 1, "two votes beat one");
}

#[test]
fn knn_rejects_bad_input() {
    let bank = vec![1.0f32; 6];
    assert!(knn_classify(&bank, &[0, 1], &bank, &[0, 1], 4, &KnnConfig::new(2)).is_err());
    assert!(knn_classify(&bank, &[0, 2], &bank, &[0, 1], 3, &KnnConfig::new(2)).is_err());
    assert!(knn_classify(&bank, &[0], &bank, &[0, 1], 3, &KnnConfig::new(2)).is_err());
    let nan = vec![f32::NAN; 6];
    assert!(knn_classify(&nan, &[0, 1], &bank, &[0, 1], 3, &KnnConfig::new(2)).is_err());
}

/// Fraction of items whose cluster's majority label is their own label.
fn purity(assignments: &[usize], labels: &[usize], k: usize, classes: usize) -> f64 {
    let mut counts = vec![0usize; k * classes];
    for (&a, &l) in assignments.iter().zip(labels) {
        counts[a * classes + l] += 1;
    }
    let majority: usize = counts
        .chunks(classes)
        .map(|c| *c.iter().max().unwrap())
        .sum();
    majority as f64 / labels.len() as f64
}

#[test]
fn kmeans_recovers_separated_clusters() {
    let dim = 8;
    let (x, y) = clusters(5, 6, 30, dim, 0.25);
    for metric in [Metric::Cosine, Metric::Euclidean] {
        let mut config = KMeansConfig::new(6, 11);
        config.metric = metric;
        let result = kmeans(&x, dim, &config).unwrap();
        assert!(result.converged, "{metric:?}");
        assert_eq!(purity(&result.assignments, &y, 6, 6), 1.0, "{metric:?}");
        assert_eq!(result.centroids.len(), 6 * dim);
        let again = in_pool(2, || kmeans(&x, dim, &config).unwrap());
        let single = in_pool(1, || kmeans(&x, dim, &config).unwrap());
        assert_eq!(result, again);
        assert_eq!(result, single);
    }
    assert!(kmeans(&x, dim, &KMeansConfig::new(0, 1)).is_err());
    assert!(kmeans(&x, dim, &KMeansConfig::new(181, 1)).is_err());
}

#[test]
fn near_duplicates_are_exactly_the_planted_copies() {
    let dim = 16;
    let mut rng = SplitMix64::keyed(&[6]);
    let mut x = gaussian(&mut rng, 50 * dim);
    for source in [3usize, 3, 10, 41] {
        let copy: Vec<f32> = x[source * dim..(source + 1) * dim]
            .iter()
            .map(|&v| v * 1.5 + 0.001 * rng.normal() as f32)
            .collect();
        x.extend(copy);
    }
    let groups = near_duplicate_groups(&x, dim, 0.99).unwrap();
    assert_eq!(groups, vec![vec![3, 50, 51], vec![10, 52], vec![41, 53]]);
    assert!(near_duplicate_groups(&x, dim, 1.5).unwrap().is_empty());
}

#[test]
fn outliers_are_the_planted_far_points() {
    let dim = 16;
    let mut rng = SplitMix64::keyed(&[7]);
    let centre = gaussian(&mut rng, dim);
    let mut x = Vec::new();
    for i in 0..100 {
        if i == 17 || i == 58 || i == 93 {
            x.extend(gaussian(&mut rng, dim));
        } else {
            x.extend(centre.iter().map(|&c| c + 0.2 * rng.normal() as f32));
        }
    }
    let (density, flagged) = outliers(&x, dim, 5, 3.0).unwrap();
    assert_eq!(density.len(), 100);
    let mut sorted = flagged.clone();
    sorted.sort();
    assert_eq!(sorted, vec![17, 58, 93]);
    assert!(density[flagged[2]] <= density[0]);
    assert!(outliers(&x, dim, 5, 0.0).unwrap().1.is_empty());
    assert!(outliers(&x, dim, 100, 3.0).is_err());
    assert!(outliers(&x, dim, 5, 101.0).is_err());
}

#[test]
fn exemplar_search_finds_the_exemplars_cluster() {
    let dim = 16;
    let (mut x, _) = clusters(8, 2, 20, dim, 0.15);
    // Item 40: a near copy of exemplar 2.
    let copy: Vec<f32> = x[2 * dim..3 * dim].to_vec();
    x.extend(copy.iter().map(|&v| v + 1e-3));
    let exemplars = [2, 5];
    let by_threshold = exemplar_search(&x, dim, &exemplars, ExemplarRule::Threshold(0.8)).unwrap();
    let mut found: Vec<usize> = by_threshold.iter().map(|m| m.index).collect();
    found.sort();
    let expected: Vec<usize> = (0..20)
        .filter(|i| !exemplars.contains(i))
        .chain([40])
        .collect();
    assert_eq!(found, expected);
    assert_eq!(by_threshold[0].index, 40);
    assert_eq!(by_threshold[0].exemplar, 2);
    let by_margin = exemplar_search(&x, dim, &exemplars, ExemplarRule::Margin(0.0)).unwrap();
    assert!(by_margin.iter().any(|m| m.index == 40));
    for m in &by_margin {
        assert!(
            m.index < 20 || m.index == 40,
            "item {} from the other cluster",
            m.index
        );
        assert!(m.exemplar_similarity > m.rest_similarity);
    }
    assert!(exemplar_search(&x, dim, &[41], ExemplarRule::Margin(0.0)).is_err());
}

#[test]
fn label_propagation_spreads_one_label_per_cluster() {
    let dim = 8;
    let (x, y) = clusters(9, 3, 25, dim, 0.2);
    let mut given = vec![None; y.len()];
    given[0] = Some(0);
    given[30] = Some(1);
    given[74] = Some(2);
    let run = || propagate_labels(&x, dim, &given, &PropagationConfig::new(3)).unwrap();
    let result = run();
    for (i, r) in result.iter().enumerate() {
        assert_eq!(r.map(|p| p.0), Some(y[i]), "item {i}");
    }
    assert_eq!(in_pool(1, run), in_pool(2, run));
}

#[test]
fn retrieval_identity_pairing_is_perfect() {
    let dim = 5;
    let mut rng = SplitMix64::keyed(&[10]);
    let a = gaussian(&mut rng, 33 * dim);
    let r = cross_modal_retrieval(&a, &a, dim).unwrap();
    assert_eq!(
        (r.a_to_b_top1, r.a_to_b_top5, r.b_to_a_top1, r.b_to_a_top5),
        (100.0, 100.0, 100.0, 100.0)
    );
    assert_eq!((r.a_to_b_median_rank, r.b_to_a_median_rank), (1.0, 1.0));
}

#[test]
fn retrieval_median_rank_of_a_cyclic_shift_and_by_hand() {
    // One-hot rows, B row i = A row i + 1 (mod n): query i's partner has similarity 0, below the copy of itself
    // (1) and tied with the n - 2 others, so every partner ranks last: median rank n (chance: (n + 1) / 2).
    let n = 9;
    let a: Vec<f32> = (0..n * n).map(|i| (i / n == i % n) as u8 as f32).collect();
    let b: Vec<f32> = (0..n)
        .flat_map(|i| a[((i + 1) % n) * n..((i + 1) % n + 1) * n].to_vec())
        .collect();
    let r = cross_modal_retrieval(&a, &b, n).unwrap();
    assert_eq!((r.a_to_b_median_rank, r.b_to_a_median_rank), (9.0, 9.0));
    assert_eq!((r.a_to_b_top5, r.b_to_a_top5), (0.0, 0.0));
    // 0-based ranks in, 1-based median out; an even count takes the mean of the middle two.
    assert_eq!(median_rank(&[4, 0, 2]), 3.0);
    assert_eq!(median_rank(&[0, 3, 1, 7]), 3.0);
    assert_eq!(median_rank(&[]), 0.0);
}

#[test]
fn retrieval_of_a_planted_permutation() {
    // One-hot rows: distinct items have similarity 0. Swapping rows (0, 1) and (2, 3) of B leaves the true partner
    // of queries 0..4 at similarity 0, tied with 8 others and below the swapped copy: rank 9, a miss even at top-5.
    let n = 10;
    let a: Vec<f32> = (0..n * n).map(|i| (i / n == i % n) as u8 as f32).collect();
    let mut b = a.clone();
    for (i, j) in [(0, 1), (2, 3)] {
        for col in 0..n {
            b.swap(i * n + col, j * n + col);
        }
    }
    let r = cross_modal_retrieval(&a, &b, n).unwrap();
    assert_eq!(
        (r.a_to_b_top1, r.a_to_b_top5, r.b_to_a_top1, r.b_to_a_top5),
        (60.0, 60.0, 60.0, 60.0)
    );
    // Random features, B = A under a permutation with 7 fixed points out of 20: top-1 is exactly 35%.
    let dim = 6;
    let mut rng = SplitMix64::keyed(&[11]);
    let a = gaussian(&mut rng, 20 * dim);
    let moved = [1usize, 4, 5, 8, 9, 11, 12, 13, 15, 16, 18, 19, 0];
    let mut perm: Vec<usize> = (0..20).collect();
    for (w, &i) in moved.iter().enumerate() {
        perm[i] = moved[(w + 1) % moved.len()];
    }
    let b: Vec<f32> = perm
        .iter()
        .flat_map(|&p| a[p * dim..(p + 1) * dim].to_vec())
        .collect();
    let r = cross_modal_retrieval(&a, &b, dim).unwrap();
    assert_eq!((r.a_to_b_top1, r.b_to_a_top1), (35.0, 35.0));
}

#[test]
fn layout_descriptor_standardises_each_channel_over_the_positions() {
    // 3 positions x 2 channels, a position's channels together: channel 0 = (1, 2, 3), channel 1 = (5, 5, 5).
    let t = [1.0f32, 5.0, 2.0, 5.0, 3.0, 5.0];
    let d = layout_descriptor(&t, 3, 2).unwrap();
    let z = (1.5f32).sqrt(); // (x - 2) / sqrt(2/3) for x = 3
    assert_close_slice(&d, &[-z, 0.0, 0.0, 0.0, z, 0.0], 1e-6);
    // Random maps of awkward size: each channel has mean 0 and variance 1 over the positions, and a positive
    // scale and any shift per channel leave the descriptor as it was.
    let (positions, channels) = (37, 13);
    let mut rng = SplitMix64::keyed(&[12]);
    let x = gaussian(&mut rng, positions * channels);
    let d = layout_descriptor(&x, positions, channels).unwrap();
    for c in 0..channels {
        let col: Vec<f64> = (0..positions).map(|p| d[p * channels + c] as f64).collect();
        let mean = col.iter().sum::<f64>() / positions as f64;
        let var = col.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / positions as f64;
        assert!(
            mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5,
            "channel {c}: {mean} {var}"
        );
    }
    let affine: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let c = (i % channels) as f32;
            (0.5 + c) * v + 3.0 - c
        })
        .collect();
    let d2 = layout_descriptor(&affine, positions, channels).unwrap();
    assert_close_slice(&d2, &d, 1e-4);
    // A negative scale flips the channel: the descriptor keeps the sign of a contrast.
    let negated: Vec<f32> = x.iter().map(|v| -v).collect();
    let d3 = layout_descriptor(&negated, positions, channels).unwrap();
    assert_close_slice(&d3, &d.iter().map(|v| -v).collect::<Vec<_>>(), 1e-5);
    assert!(layout_descriptor(&x, positions + 1, channels).is_err());
    assert!(layout_descriptor(&[], 0, 3).is_err());
}

fn assert_close_slice(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "[{i}]: got {g}, want {w}");
    }
}

#[test]
fn retrieval_ties_count_against_the_true_match() {
    let dim = 4;
    let same: Vec<f32> = [1.0f32, 2.0, 3.0, 4.0].repeat(8);
    let r = cross_modal_retrieval(&same, &same, dim).unwrap();
    assert_eq!((r.a_to_b_top1, r.a_to_b_top5), (0.0, 0.0));
    let three = [1.0f32, 2.0, 3.0, 4.0].repeat(3);
    let r = cross_modal_retrieval(&three, &three, dim).unwrap();
    assert_eq!((r.b_to_a_top1, r.b_to_a_top5), (0.0, 100.0));
    assert!(cross_modal_retrieval(&three, &same, dim).is_err());
}

#[test]
fn attention_mass_mask_on_a_hand_example() {
    let attention = [0.125f32, 0.5, 0.25, 0.125];
    let mask = |mass| attention_mass_mask(&attention, mass).unwrap();
    assert_eq!(mask(0.6), vec![false, true, true, false]);
    assert_eq!(mask(0.5), vec![false, true, false, false]);
    // 0.5 + 0.25 = 0.75 < 0.8: one of the tied 0.125 joins, the lower index.
    assert_eq!(mask(0.8), vec![true, true, true, false]);
    assert_eq!(mask(1.0), vec![true; 4]);
    assert_eq!(mask(0.0), vec![false; 4]);
    // Unnormalised weights give the same mask.
    let scaled: Vec<f32> = attention.iter().map(|v| v * 8.0).collect();
    assert_eq!(attention_mass_mask(&scaled, 0.6).unwrap(), mask(0.6));
    assert!(attention_mass_mask(&[0.5, -0.1], 0.6).is_err());
    assert!(attention_mass_mask(&[0.5, f32::NAN], 0.6).is_err());
}

#[test]
fn mask_iou_cases() {
    let iou = |a: &[bool], b: &[bool]| mask_iou(a, b).unwrap();
    assert_eq!(
        iou(&[true, true, false, false], &[true, false, true, false]),
        1.0 / 3.0
    );
    assert_eq!(iou(&[true, false, true], &[true, false, true]), 1.0);
    assert_eq!(iou(&[true, false], &[false, true]), 0.0);
    assert_eq!(iou(&[false, false], &[false, false]), 1.0);
    assert!(mask_iou(&[true], &[true, false]).is_err());
}

/// Points labelled by a random linear teacher argmax(W* x), keeping those with a logit margin of at least 0.5.
fn linearly_separable(
    seed: u64,
    rows: usize,
    dim: usize,
    classes: usize,
) -> (Vec<f32>, Vec<usize>) {
    let mut rng = SplitMix64::keyed(&[seed]);
    let teacher = gaussian(&mut rng, classes * dim);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    while y.len() < rows {
        let point = gaussian(&mut rng, dim);
        let mut logits: Vec<(f32, usize)> = teacher
            .chunks(dim)
            .map(|w| w.iter().zip(&point).map(|(a, b)| a * b).sum::<f32>())
            .zip(0..)
            .collect();
        logits.sort_by(|a, b| b.0.total_cmp(&a.0));
        if logits[0].0 - logits[1].0 >= 0.5 {
            x.extend(point);
            y.push(logits[0].1);
        }
    }
    (x, y)
}

#[test]
fn linear_probe_separates_separable_data() {
    let dim = 10;
    let (x, y) = linearly_separable(12, 900, dim, 4);
    let (train_x, train_y) = (&x[..600 * dim], &y[..600]);
    let (val_x, val_y) = (&x[600 * dim..], &y[600..]);
    for preprocess in [Preprocess::L2Normalize, Preprocess::Standardize] {
        let mut config = LinearProbeConfig::new(4, 3);
        config.epochs = 30;
        config.batch_size = 32;
        config.preprocess = preprocess;
        let run = || train_linear_probe((train_x, train_y), (val_x, val_y), dim, &config).unwrap();
        let report = run();
        assert!(
            report.train_top1 > 95.0,
            "{preprocess:?} train {}",
            report.train_top1
        );
        assert!(
            report.val_top1 > 95.0,
            "{preprocess:?} val {}",
            report.val_top1
        );
        assert!(report.best_val_top1 >= report.val_top1);
        assert_eq!(report.probe.top1(val_x, val_y).unwrap(), report.val_top1);
        assert!(report.probe.predict(&[1.0; 3]).is_err());
        let losses = &report.train_loss_per_epoch;
        assert!(
            losses[losses.len() - 1] < losses[0],
            "{preprocess:?} loss {losses:?}"
        );
        assert_eq!(report, run());
    }
    let config = LinearProbeConfig::new(3, 0);
    assert!(train_linear_probe((train_x, train_y), (val_x, val_y), dim, &config).is_err());
}
