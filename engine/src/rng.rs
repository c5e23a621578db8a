//! The project's one random-number generator, SplitMix64 (Steele, Lea, Flood, "Fast splittable
//! pseudorandom number generators", OOPSLA 2014): a counter advanced by the golden-ratio increment,
//! each output a bijective mix of the counter. Two ways to read it:
//!
//! - [`SplitMix64`], sequential draws from a keyed stream: the data loader keys one stream per
//!   (seed, epoch, index), so what a crop looks like never depends on which thread made it
//!   (docs/augmentation.md, "Determinism").
//! - [`Rng`], random tensors: element i of a draw is output i of the draw's stream, a pure function of
//!   (seed, stream, i), so results do not depend on the thread count or on how the work is split.
//!   Each draw from an [`Rng`] takes the next stream, so two draws differ but a program that makes
//!   the same draws in the same order gets the same numbers.

use crate::kernels::Float;
use crate::{with_dtype, DType, EngineError, Result, Tensor};
use rayon::prelude::*;

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finaliser: a bijection on u64 with good avalanche.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in [0, 1) from the top 53 of 64 random bits.
fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// An integer in 0..n from 64 random bits by multiply-shift (Lemire); the bias is below
/// 2^-64 * n, negligible here.
fn below(bits: u64, n: u64) -> u64 {
    ((bits as u128 * n as u128) >> 64) as u64
}

/// Box-Muller from two uniforms in [0, 1): the radius and the angle, so that r cos(theta) and
/// r sin(theta) are two independent standard normals.
fn box_muller(u1: f64, u2: f64) -> (f64, f64) {
    let r = (-2.0 * (1.0 - u1).ln()).sqrt(); // 1 - u1 in (0, 1], so ln is finite
    (r, std::f64::consts::TAU * u2)
}

/// A SplitMix64 stream: its state is the counter.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// The stream whose first output is `mix64(state + GOLDEN_GAMMA)`.
    pub fn new(state: u64) -> Self {
        Self { state }
    }

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

    /// Output `i` (from 0) of the stream, without advancing it: what the (i+1)-th `next_u64` gives.
    pub fn nth(&self, i: u64) -> u64 {
        mix64(
            self.state
                .wrapping_add(i.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA)),
        )
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        unit(self.next_u64())
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }

    /// Uniform integer in [lo, hi) (hi > lo), like torch.randint(lo, hi).
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        debug_assert!(hi > lo, "empty range {lo}..{hi}");
        lo + below(self.next_u64(), (hi - lo) as u64) as i64
    }

    /// True with probability p.
    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// Standard normal (Box-Muller; one value per call, the partner is dropped for simplicity).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.next_f64();
        let (r, theta) = box_muller(u1, self.next_f64());
        r * theta.cos()
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

/// The `i`-th 64 random bits of stream `key`.
fn bits_at(key: u64, i: u64) -> u64 {
    SplitMix64::new(key).nth(i)
}

/// Uniform in [0, 1) with 53 random bits.
fn unit_at(key: u64, i: u64) -> f64 {
    unit(bits_at(key, i))
}

/// Standard normal by Box-Muller; elements 2j and 2j+1 share one pair of uniforms.
fn normal_at(key: u64, i: u64) -> f64 {
    let pair = i & !1;
    let (r, theta) = box_muller(unit_at(key, pair), unit_at(key, pair + 1));
    if i & 1 == 0 {
        r * theta.cos()
    } else {
        r * theta.sin()
    }
}

/// The standard normal CDF.
fn normal_cdf(x: f64) -> f64 {
    0.5 * (1.0 + Float::erf(x / std::f64::consts::SQRT_2))
}

/// Inverse error function: Giles' single-precision approximation ("Approximating the erfinv
/// function", GPU Computing Gems, 2011) polished by two Newton steps on erf.
pub fn erfinv(y: f64) -> f64 {
    if y <= -1.0 {
        return f64::NEG_INFINITY;
    }
    if y >= 1.0 {
        return f64::INFINITY;
    }
    let mut w = -((1.0 - y) * (1.0 + y)).ln();
    let mut x = if w < 5.0 {
        w -= 2.5;
        let mut p = 2.810_226_36e-08;
        for c in [
            3.432_739_39e-07,
            -3.523_387_7e-06,
            -4.391_506_54e-06,
            0.000_218_580_87,
            -0.001_253_725_03,
            -0.004_177_681_64,
            0.246_640_727,
            1.501_409_41,
        ] {
            p = c + p * w;
        }
        p * y
    } else {
        w = w.sqrt() - 3.0;
        let mut p = -0.000_200_214_257;
        for c in [
            0.000_100_950_558,
            0.001_349_343_22,
            -0.003_673_428_44,
            0.005_739_507_73,
            -0.007_622_461_3,
            0.009_438_870_47,
            1.001_674_06,
            2.832_976_82,
        ] {
            p = c + p * w;
        }
        p * y
    };
    for _ in 0..2 {
        let err = Float::erf(x) - y;
        x -= err / (std::f64::consts::FRAC_2_SQRT_PI * (-x * x).exp());
    }
    x
}

/// A seeded source of random tensors.
#[derive(Clone, Debug)]
pub struct Rng {
    seed: u64,
    stream: u64,
    rows: Option<RowWindow>,
}

/// Data parallel: the rows of a view-major batch ([view 0: B rows, view 1: B rows, ...]) that this
/// process holds — `local` rows per view starting at `offset` of the `global` rows per view. Per-row
/// draws ([`Rng::uniform_rows`]) then give every row the value it gets in the whole batch, so a run
/// on n ranks draws what a run on one draws (docs/distributed.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowWindow {
    pub local: usize,
    pub global: usize,
    pub offset: usize,
}

impl RowWindow {
    /// The whole-batch row of local row `j`.
    pub fn global_row(&self, j: usize) -> usize {
        (j / self.local) * self.global + self.offset + j % self.local
    }
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng {
            seed,
            stream: 0,
            rows: None,
        }
    }

    /// This generator with per-row draws restricted to `window` (see [`RowWindow`]).
    pub fn with_rows(mut self, window: RowWindow) -> Rng {
        self.rows = Some(window);
        self
    }

    /// One uniform number in [0, 1) per row of a batch of `n` rows (e.g. drop path's keep mask):
    /// [`Rng::uniform_vec`] without a row window; with one, local row j gets the number of its
    /// whole-batch row, so the draws do not depend on how the batch is split across ranks.
    pub fn uniform_rows(&mut self, n: usize) -> Vec<f64> {
        match self.rows {
            None => self.uniform_vec(n),
            Some(w) => {
                let key = self.next_key();
                (0..n)
                    .map(|j| unit_at(key, w.global_row(j) as u64))
                    .collect()
            }
        }
    }

    /// The key of the next stream.
    fn next_key(&mut self) -> u64 {
        self.stream += 1;
        mix64(self.seed ^ mix64(self.stream.wrapping_mul(GOLDEN_GAMMA)))
    }

    /// A new generator seeded from this one (e.g. one per data-loader worker).
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next_key())
    }

    /// `n` values `f(key, i)` for i in 0..n, in parallel by index.
    fn generate(&mut self, n: usize, f: impl Fn(u64, u64) -> f64 + Sync) -> Vec<f64> {
        let key = self.next_key();
        let mut v = vec![0.0; n];
        v.par_chunks_mut(4096).enumerate().for_each(|(c, chunk)| {
            for (j, x) in chunk.iter_mut().enumerate() {
                *x = f(key, (c * 4096 + j) as u64);
            }
        });
        v
    }

    fn tensor(values: Vec<f64>, shape: &[usize], dtype: DType) -> Tensor {
        with_dtype!(dtype, T => Tensor::from_data(values.into_iter().map(T::from_f64).collect::<Vec<T>>(), shape))
    }

    /// `n` uniform numbers in [0, 1) as f64.
    pub fn uniform_vec(&mut self, n: usize) -> Vec<f64> {
        self.generate(n, unit_at)
    }

    /// `n` standard normal numbers as f64.
    pub fn normal_vec(&mut self, n: usize) -> Vec<f64> {
        self.generate(n, normal_at)
    }

    /// A random integer in 0..n (n > 0), e.g. for shuffles and crop positions.
    pub fn below(&mut self, n: u64) -> u64 {
        let key = self.next_key();
        below(bits_at(key, 0), n)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, shape: &[usize], lo: f64, hi: f64, dtype: DType) -> Tensor {
        let n = shape.iter().product();
        let v = self.generate(n, |k, i| lo + (hi - lo) * unit_at(k, i));
        Rng::tensor(v, shape, dtype)
    }

    /// Normal with the given mean and standard deviation.
    pub fn normal(&mut self, shape: &[usize], mean: f64, std: f64, dtype: DType) -> Tensor {
        let n = shape.iter().product();
        let v = self.generate(n, |k, i| mean + std * normal_at(k, i));
        Rng::tensor(v, shape, dtype)
    }

    /// Normal(mean, std) truncated to [a, b], by inverse-CDF sampling as timm's `trunc_normal_`:
    /// u uniform in [cdf(a'), cdf(b')], x = mean + std * sqrt(2) * erfinv(2u - 1), clamped.
    pub fn trunc_normal(
        &mut self,
        shape: &[usize],
        mean: f64,
        std: f64,
        a: f64,
        b: f64,
        dtype: DType,
    ) -> Result<Tensor> {
        let valid = a < b && std > 0.0; // false for NaN too
        if !valid {
            return Err(EngineError::arg(
                "trunc_normal",
                shape,
                format!("needs a < b and std > 0 (a={a}, b={b}, std={std})"),
            ));
        }
        let lo = normal_cdf((a - mean) / std);
        let hi = normal_cdf((b - mean) / std);
        let n = shape.iter().product();
        let v = self.generate(n, |k, i| {
            let u = lo + (hi - lo) * unit_at(k, i);
            (mean + std * std::f64::consts::SQRT_2 * erfinv(2.0 * u - 1.0)).clamp(a, b)
        });
        Ok(Rng::tensor(v, shape, dtype))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_and_repeat() {
        let draw = |mut r: SplitMix64| (0..4).map(|_| r.next_u64()).collect::<Vec<_>>();
        let a = draw(SplitMix64::for_sample(1, 2, 3));
        assert_eq!(a, draw(SplitMix64::for_sample(1, 2, 3)));
        assert_ne!(a, draw(SplitMix64::for_sample(1, 3, 2)));
        // counter access reads the same stream
        let r = SplitMix64::for_sample(1, 2, 3);
        assert_eq!(a, (0..4).map(|i| r.nth(i)).collect::<Vec<_>>());
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

    #[test]
    fn per_row_draws_do_not_depend_on_how_the_batch_is_split() {
        // 3 views of a global batch of 6, split over 3 ranks of 2 rows: each rank's rows get the
        // numbers the whole batch draws for them.
        let (views, global) = (3, 6);
        let whole = Rng::new(77).uniform_rows(views * global);
        assert_eq!(whole, Rng::new(77).uniform_vec(views * global));
        for rank in 0..3 {
            let w = RowWindow {
                local: 2,
                global,
                offset: 2 * rank,
            };
            let mine = Rng::new(77).with_rows(w).uniform_rows(views * 2);
            for (j, x) in mine.iter().enumerate() {
                assert_eq!(*x, whole[w.global_row(j)], "rank {rank} row {j}");
            }
        }
        // the window of a world of one is the identity
        let one = RowWindow {
            local: global,
            global,
            offset: 0,
        };
        assert_eq!(
            Rng::new(77).with_rows(one).uniform_rows(views * global),
            whole
        );
    }
}
