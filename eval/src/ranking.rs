//! Metrics of a ranking: items scored by a similarity (higher: more likely positive) against binary
//! labels, every item at or above a threshold called positive. Precision, recall and F1 at a
//! threshold, the threshold with the best F1, the most precise threshold reaching a recall, and the
//! average precision. Equal scores form one step (a threshold takes them all). Used by the
//! near-duplicate and exemplar evaluations (curate::duplicates, curate::exemplars).

/// Items sorted by score, highest first, as (score, label).
fn ranked(scores: &[f64], labels: &[bool]) -> Vec<(f64, bool)> {
    let mut v: Vec<(f64, bool)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    v.sort_by(|a, b| b.0.total_cmp(&a.0));
    v
}

/// (precision, recall, F1) when every pair with a similarity >= `threshold` is called a duplicate
/// (precision 0 when none is called; recall 0 when there are no positives).
pub fn precision_recall(scores: &[f64], labels: &[bool], threshold: f64) -> (f64, f64, f64) {
    let (mut tp, mut called) = (0usize, 0usize);
    for (&s, &l) in scores.iter().zip(labels) {
        if s >= threshold {
            called += 1;
            tp += l as usize;
        }
    }
    let positives = labels.iter().filter(|&&l| l).count();
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let (p, r) = (ratio(tp, called), ratio(tp, positives));
    (
        p,
        r,
        if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        },
    )
}

/// The threshold with the best F1 (among the distinct similarities; the highest such threshold
/// on a tie) and that F1.
pub fn best_f1_threshold(scores: &[f64], labels: &[bool]) -> (f64, f64) {
    let positives = labels.iter().filter(|&&l| l).count();
    let pairs = ranked(scores, labels);
    let (mut best, mut tp) = ((f64::INFINITY, 0.0), 0usize);
    for (k, &(s, l)) in pairs.iter().enumerate() {
        tp += l as usize;
        // A threshold takes every pair of its similarity: only the last of equal ones counts.
        if pairs.get(k + 1).is_some_and(|next| next.0 == s) || positives == 0 {
            continue;
        }
        let (p, r) = (tp as f64 / (k + 1) as f64, tp as f64 / positives as f64);
        let f1 = if tp > 0 { 2.0 * p * r / (p + r) } else { 0.0 };
        if f1 > best.1 {
            best = (s, f1);
        }
    }
    best
}

/// Average precision of the ranking (the mean over duplicate pairs of the precision at their
/// similarity; equal similarities form one step, as a threshold takes them all). 0 without
/// duplicates.
pub fn average_precision(scores: &[f64], labels: &[bool]) -> f64 {
    let positives = labels.iter().filter(|&&l| l).count();
    if positives == 0 {
        return 0.0;
    }
    let pairs = ranked(scores, labels);
    let (mut ap, mut tp, mut start) = (0.0, 0usize, 0usize);
    while start < pairs.len() {
        let end = start
            + pairs[start..]
                .iter()
                .take_while(|p| p.0 == pairs[start].0)
                .count();
        let new = pairs[start..end].iter().filter(|p| p.1).count();
        tp += new;
        ap += new as f64 * tp as f64 / end as f64;
        start = end;
    }
    ap / positives as f64
}

/// The threshold with the best precision among those whose recall reaches `min_recall` (the
/// highest such threshold on a tie), with its (precision, recall); `None` when no threshold does
/// (no positives).
pub fn best_precision_at_recall(
    scores: &[f64],
    labels: &[bool],
    min_recall: f64,
) -> Option<(f64, f64, f64)> {
    let positives = labels.iter().filter(|&&l| l).count();
    if positives == 0 {
        return None;
    }
    let pairs = ranked(scores, labels);
    let (mut best, mut tp): (Option<(f64, f64, f64)>, usize) = (None, 0);
    for (k, &(s, l)) in pairs.iter().enumerate() {
        tp += l as usize;
        if pairs.get(k + 1).is_some_and(|next| next.0 == s) {
            continue;
        }
        let (p, r) = (tp as f64 / (k + 1) as f64, tp as f64 / positives as f64);
        if r >= min_recall && best.is_none_or(|b| p > b.1) {
            best = Some((s, p, r));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-worked: 4 items, scores 0.9 (dup), 0.8 (not), 0.8 (dup), 0.1 (dup).
    #[test]
    fn threshold_precision_recall_and_ap_by_hand() {
        let s = [0.9, 0.8, 0.8, 0.1];
        let l = [true, false, true, true];
        // >= 0.9: P 1, R 1/3, F1 0.5; >= 0.8: P 2/3, R 2/3, F1 2/3; >= 0.1: P 3/4, R 1, F1 6/7.
        let (t, f1) = best_f1_threshold(&s, &l);
        assert_eq!(t, 0.1);
        assert!((f1 - 6.0 / 7.0).abs() < 1e-12);
        let (p, r, f) = precision_recall(&s, &l, 0.8);
        assert!((p - 2.0 / 3.0).abs() < 1e-12 && (r - 2.0 / 3.0).abs() < 1e-12);
        assert!((f - 2.0 / 3.0).abs() < 1e-12);
        // AP: dup at 0.9 -> precision 1; the tie at 0.8 is one step: precision 2/3 for its one
        // dup; 0.1: 3/4. Mean over 3 dups: (1 + 2/3 + 3/4) / 3.
        let ap = average_precision(&s, &l);
        assert!((ap - (1.0 + 2.0 / 3.0 + 0.75) / 3.0).abs() < 1e-12, "{ap}");
        assert_eq!(precision_recall(&s, &l, 2.0), (0.0, 0.0, 0.0));
    }

    #[test]
    fn the_most_precise_threshold_reaching_a_recall() {
        let s = [0.9, 0.8, 0.8, 0.1];
        let l = [true, false, true, true];
        // Recall >= 0.3: 0.9 (P 1, R 1/3). Recall >= 0.5: 0.8 (P 2/3, R 2/3) or 0.1 (P 3/4, R 1).
        assert_eq!(
            best_precision_at_recall(&s, &l, 0.3),
            Some((0.9, 1.0, 1.0 / 3.0))
        );
        assert_eq!(
            best_precision_at_recall(&s, &l, 0.5),
            Some((0.1, 0.75, 1.0))
        );
        assert_eq!(best_precision_at_recall(&s, &[false; 4], 0.5), None);
    }
}
