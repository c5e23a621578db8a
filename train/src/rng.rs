//! Counter-based random numbers for data loading (docs/augmentation.md, "Determinism").
//!
//! Every sample draws from its own stream keyed by (seed, epoch, index), so what a crop looks like never depends
//! on which thread made it or in which order. The generator is SplitMix64 (Steele, Lea, Flood, "Fast splittable
//! pseudorandom number generators", OOPSLA 2014): the state is a counter advanced by the golden-ratio increment and
//! each output is a bijective mix of the counter.

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 finaliser: a bijection on u64 with good avalanche.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A stream keyed by an arbitrary list of words (seed, epoch, index, view, ...).
    pub fn keyed(words: &[u64]) -> Self {
        let mut key = 0x6A09_E667_F3BC_C908u64; // arbitrary non-zero start (sqrt 2 fraction)
        for &w in words {
            key = mix64(key ^ mix64(w.wrapping_add(GOLDEN_GAMMA)));
        }
        Self { state: key }
    }

    /// The stream for one sample of one epoch.
    pub fn for_sample(seed: u64, epoch: u64, index: u64) -> Self {
        Self::keyed(&[seed, epoch, index])
    }

    /// An independent sub-stream (e.g. one per crop), unaffected by how much the parent has consumed.
    pub fn fork(&self, stream: u64) -> Self {
        Self::keyed(&[self.state, stream])
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }

    /// Uniform integer in [lo, hi) (hi > lo), like torch.randint(lo, hi).
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        debug_assert!(hi > lo, "empty range {lo}..{hi}");
        let span = (hi - lo) as u64;
        // Multiply-shift (Lemire); the bias is below 2^-64 * span, negligible here.
        lo + ((self.next_u64() as u128 * span as u128) >> 64) as i64
    }

    /// True with probability p.
    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// Standard normal (Box-Muller; one value per call, the partner is dropped for simplicity).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// A uniformly random permutation of 0..n (Fisher-Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.range(0, i as i64 + 1) as usize;
            p.swap(i, j);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_and_repeat() {
        let a: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(SplitMix64::for_sample(1, 2, 3), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(SplitMix64::for_sample(1, 2, 3), |r, _| Some(r.next_u64()))
            .collect();
        let c: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(SplitMix64::for_sample(1, 3, 2), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn range_and_uniform_bounds() {
        let mut r = SplitMix64::keyed(&[7]);
        for _ in 0..10_000 {
            let k = r.range(-3, 4);
            assert!((-3..4).contains(&k));
            let u = r.uniform(0.25, 0.5);
            assert!((0.25..0.5).contains(&u));
        }
        let mut p = r.permutation(33);
        p.sort_unstable();
        assert_eq!(p, (0..33).collect::<Vec<_>>());
    }
}
