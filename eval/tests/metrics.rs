//! Classification metrics and their controls (eval/src/metrics.rs) on hand-made cases whose answer is
//! known.

use dinonat_eval::metrics::{
    bootstrap_interval, mean_std, mean_with_interval, ClassificationReport,
};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn majority_only_predictor_on_a_90_10_split() {
    // 90 queries of class 0, 10 of class 1; the classifier always answers 0.
    let labels: Vec<usize> = (0..100).map(|i| usize::from(i >= 90)).collect();
    let predictions = vec![0usize; 100];
    let r =
        ClassificationReport::from_predictions(&labels, &predictions, &[false; 100], 2).unwrap();
    assert!(close(r.majority, 90.0), "majority {}", r.majority);
    assert_eq!(r.majority_class, 0);
    assert!(close(r.top1, 90.0), "top-1 {}", r.top1);
    // Recall 100 % for class 0, 0 % for class 1: balanced accuracy 1 / classes.
    assert!(close(r.balanced, 50.0), "balanced {}", r.balanced);
    assert!(close(r.uniform, 50.0));
    assert_eq!(r.per_class_recall, vec![Some(100.0), Some(0.0)]);
    assert_eq!(r.per_class_queries, vec![90, 10]);
    // A top-1 hit counts as a top-5 hit even when the flag says otherwise.
    assert!(close(r.top5, 90.0), "top-5 {}", r.top5);
}

#[test]
fn balanced_accuracy_of_a_constant_predictor_is_one_over_the_classes() {
    // Four classes of 70 / 20 / 7 / 3 queries, always answering class 2 (a minority).
    let sizes = [70usize, 20, 7, 3];
    let labels: Vec<usize> = sizes
        .iter()
        .enumerate()
        .flat_map(|(c, &n)| std::iter::repeat_n(c, n))
        .collect();
    let n = labels.len();
    let r =
        ClassificationReport::from_predictions(&labels, &vec![2; n], &vec![false; n], 4).unwrap();
    assert!(close(r.balanced, 25.0), "balanced {}", r.balanced);
    assert!(close(r.top1, 7.0));
    assert!(close(r.majority, 70.0));
    assert!(close(r.uniform, 25.0));
    // A class without queries has no recall and does not count in the balanced mean.
    let r =
        ClassificationReport::from_predictions(&labels, &vec![0; n], &vec![false; n], 5).unwrap();
    assert_eq!(r.per_class_recall[4], None);
    assert!(close(r.balanced, 25.0), "balanced {}", r.balanced);
    assert!(close(r.uniform, 20.0));
}

#[test]
fn scores_give_top1_top5_and_ties_to_the_lower_class() {
    // Seven classes; query 0's label is ranked 5th (a top-5 hit), query 1's 6th (a miss), query 2 ties
    // classes 3 and 1 for first: the lower class (1) is the prediction and is the label.
    let scores = [
        [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0],
        [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0],
        [0.0, 9.0, 0.0, 9.0, 0.0, 0.0, 0.0],
    ]
    .concat();
    let r = ClassificationReport::from_scores(&scores, &[4, 5, 1], 7).unwrap();
    assert!(close(r.top1, 100.0 / 3.0), "top-1 {}", r.top1);
    assert!(close(r.top5, 200.0 / 3.0), "top-5 {}", r.top5);
    assert!(ClassificationReport::from_scores(&scores, &[4, 5], 7).is_err());
    assert!(ClassificationReport::from_scores(&scores, &[4, 5, 7], 7).is_err());
    assert!(ClassificationReport::from_predictions(&[], &[], &[], 2).is_err());
}

#[test]
fn bootstrap_interval_holds_the_estimate_and_shrinks_with_more_queries() {
    // Alternating hits and misses: top-1 50 % for any even number of queries.
    let width = |n: usize| {
        let labels: Vec<usize> = (0..n).map(|i| i % 2).collect();
        let predictions = vec![0usize; n];
        let r = ClassificationReport::from_predictions(&labels, &predictions, &vec![false; n], 2)
            .unwrap();
        assert!(close(r.top1, 50.0));
        assert!(r.top1_interval.contains(r.top1), "{:?}", r.top1_interval);
        assert!(
            r.balanced_interval.contains(r.balanced),
            "{:?}",
            r.balanced_interval
        );
        r.top1_interval.width()
    };
    let (small, large) = (width(40), width(4000));
    // The binomial standard error is 50 / sqrt(n): about 7.9 points at 40, 0.79 at 4000; the 95 % interval is
    // about 4 standard errors wide.
    assert!((20.0..42.0).contains(&small), "width at 40 queries {small}");
    assert!((2.0..4.2).contains(&large), "width at 4000 queries {large}");
    // The same seed gives the same interval; a statistic without spread gives a point.
    let constant = bootstrap_interval(50, 0, |_| 3.0);
    assert_eq!((constant.low, constant.high), (3.0, 3.0));
    let values: Vec<f64> = (0..30).map(|i| i as f64).collect();
    assert_eq!(
        mean_with_interval(&values, 5),
        mean_with_interval(&values, 5)
    );
    let (mean, iv) = mean_with_interval(&values, 5);
    assert!(
        close(mean, 14.5) && iv.contains(mean) && iv.width() > 0.0,
        "{iv:?}"
    );
}

#[test]
fn json_carries_every_control_and_interval() {
    let labels = [0usize, 0, 0, 1];
    let r = ClassificationReport::from_predictions(&labels, &[0, 0, 1, 1], &[false; 4], 2).unwrap();
    let v = r.to_json();
    for key in ["top1", "top5", "balanced_accuracy", "majority", "uniform"] {
        assert!(v[key].is_number(), "{key} missing in {v}");
    }
    assert_eq!(v["majority"], 75.0);
    assert_eq!(v["per_class_recall"][1], 100.0);
    for key in ["top1", "top5", "balanced_accuracy"] {
        let iv = v["intervals"][key].as_array().expect("an interval");
        assert!(iv[0].as_f64() <= iv[1].as_f64(), "{key}: {iv:?}");
    }
    assert_eq!(v["intervals"]["resamples"], 1000);
}

#[test]
fn mean_and_sample_standard_deviation() {
    let (m, s) = mean_std(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
    assert!(close(m, 5.0));
    assert!(close(s, (32.0f64 / 7.0).sqrt()), "{s}");
    assert_eq!(mean_std(&[3.0]), (3.0, 0.0));
}
