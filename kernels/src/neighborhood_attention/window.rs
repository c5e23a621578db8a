//! The 1-D window rule of neighborhood attention and its inverse, in closed form.
//! Derivation: docs/neighborhood-attention.md, sections "Window" and "Inverse neighbourhood".
//!
//! On an axis of length `len`, with nominal kernel `k` and dilation `d`, position `i` belongs to the
//! dilation group `g = i % d`, which holds the positions g, g+d, g+2d, ...; inside its group it has
//! the index `i / d`. The rule runs inside the group (length `n_g`): `k' = min(k, n_g)`,
//! `left = k'/2`, `right = k'-1-left`, window start `clamp(idx - left, 0, n_g - k')`.

/// The window of one query on one axis: keys `first + t * step` for `t < size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AxisWindow {
    /// The first key position (absolute, not in group units).
    pub first: usize,
    /// k' = min(k, n_g): the number of keys.
    pub size: usize,
    /// The dilation.
    pub step: usize,
    /// The rpb table index of key t is `bias_first + t` (the relative offset in dilation units
    /// plus k - 1, centred at the nominal kernel); always in 0..2k-1.
    pub bias_first: usize,
}

/// The queries whose window contains a key, on one axis: `first + u * step` for `u < count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AxisInverse {
    pub first: usize,
    pub count: usize,
    pub step: usize,
}

/// Number of positions of dilation group `g` on an axis of length `len`.
#[inline]
pub fn group_len(len: usize, dilation: usize, g: usize) -> usize {
    if g >= len {
        0
    } else {
        (len - g).div_ceil(dilation)
    }
}

/// The 1-D window start, in group units, of index `idx` in a group of length `n` (dilation 1 rule).
#[inline]
fn start_in_group(idx: usize, n: usize, kernel: usize) -> usize {
    let k = kernel.min(n);
    let left = k / 2;
    idx.saturating_sub(left).min(n - k)
}

/// The absolute position of the first key of query `i`'s window (the doc's "window start").
/// Example: len 20, kernel 7, dilation 1 gives 0,0,0,0,1,2,...,13,13,13,13.
#[inline]
pub fn window_start(i: usize, len: usize, kernel: usize, dilation: usize) -> usize {
    window(i, len, kernel, dilation).first
}

/// The full window of query `i` (see [`AxisWindow`]).
#[inline]
pub fn window(i: usize, len: usize, kernel: usize, dilation: usize) -> AxisWindow {
    debug_assert!(i < len && kernel >= 1 && dilation >= 1);
    let g = i % dilation;
    let idx = i / dilation;
    let n = group_len(len, dilation, g);
    let size = kernel.min(n);
    let s = start_in_group(idx, n, kernel);
    AxisWindow {
        first: s * dilation + g,
        size,
        step: dilation,
        // s - idx >= -(k'-1) >= -(k-1), so this is never negative.
        bias_first: s + kernel - 1 - idx,
    }
}

/// The queries whose window contains key `a` (the inverse neighbourhood), in closed form.
///
/// In group units (group length n, k' = min(k, n), left = k'/2, right = k'-1-left), the start
/// s(idx) = clamp(idx - left, 0, n - k') is non-decreasing, and key a is in the window iff
/// a - k' + 1 <= s(idx) <= a, so the queries form a range: lowest = 0 if a < k' else a - right;
/// highest = n - 1 if a >= n - k' else a + left.
#[inline]
pub fn inverse_window(a: usize, len: usize, kernel: usize, dilation: usize) -> AxisInverse {
    debug_assert!(a < len && kernel >= 1 && dilation >= 1);
    let g = a % dilation;
    let aidx = a / dilation;
    let n = group_len(len, dilation, g);
    let k = kernel.min(n);
    let left = k / 2;
    let right = k - 1 - left;
    let lo = if aidx < k { 0 } else { aidx - right };
    let hi = if aidx >= n - k { n - 1 } else { aidx + left };
    AxisInverse {
        first: lo * dilation + g,
        count: hi - lo + 1,
        step: dilation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn border_example_len20_k7() {
        let starts: Vec<usize> = (0..20).map(|i| window_start(i, 20, 7, 1)).collect();
        let mut want = vec![0, 0, 0, 0];
        want.extend(1..=12);
        want.extend([13, 13, 13, 13]);
        assert_eq!(starts, want);
        let counts: Vec<usize> = (0..20).map(|a| inverse_window(a, 20, 7, 1).count).collect();
        assert_eq!(*counts.iter().min().unwrap(), 4);
        assert_eq!(*counts.iter().max().unwrap(), 10);
        assert_eq!(counts[10], 7);
    }

    #[test]
    fn even_kernel_left_is_half() {
        // k = 4: left 2, right 1; interior query 5 sees 3..=6.
        let w = window(5, 10, 4, 1);
        assert_eq!((w.first, w.size), (3, 4));
        assert_eq!(w.bias_first, 3 + 4 - 1 - 5);
    }

    /// Windows hold k' keys of the query's own group, contain the query, lie inside the axis, and
    /// the inverse neighbourhood equals the brute-force set of queries that see each key.
    #[test]
    fn inverse_matches_brute_force() {
        for len in 1..=23 {
            for kernel in 1..=12 {
                for dilation in 1..=5 {
                    let wins: Vec<AxisWindow> =
                        (0..len).map(|i| window(i, len, kernel, dilation)).collect();
                    for (i, w) in wins.iter().enumerate() {
                        let g = i % dilation;
                        assert_eq!(w.size, kernel.min(group_len(len, dilation, g)));
                        assert_eq!(w.first % dilation, g);
                        let last = w.first + (w.size - 1) * dilation;
                        assert!(last < len && w.first <= i && i <= last);
                        assert!(w.bias_first + w.size < 2 * kernel);
                        // bias index of the query itself is k - 1.
                        assert_eq!(w.bias_first + (i - w.first) / dilation, kernel - 1);
                    }
                    for a in 0..len {
                        let brute: Vec<usize> = (0..len)
                            .filter(|&i| {
                                let w = wins[i];
                                a >= w.first
                                    && (a - w.first).is_multiple_of(dilation)
                                    && (a - w.first) / dilation < w.size
                            })
                            .collect();
                        let inv = inverse_window(a, len, kernel, dilation);
                        let got: Vec<usize> =
                            (0..inv.count).map(|u| inv.first + u * inv.step).collect();
                        assert_eq!(
                            got, brute,
                            "len {len} kernel {kernel} dilation {dilation} key {a}"
                        );
                    }
                }
            }
        }
    }
}
