//! A tiny deterministic PRNG, written here so that the simulated shop's output for a seed never
//! changes with a dependency update: SplitMix64 (for seeding and stream derivation) feeding
//! xoshiro256** (Blackman & Vigna, public domain reference algorithms).
//!
//! Everything built on top uses only integer arithmetic and basic IEEE-754 operations, except
//! [`Rng::lognormal`], which calls `f64::exp` (correctly rounded on every platform we build for;
//! durations are rounded to milliseconds afterwards, so a last-bit difference would not show).

/// SplitMix64: one 64-bit state, used to expand a seed into xoshiro's state.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// xoshiro256**: the generator every simulated machine draws from.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        let mut sm = SplitMix64::new(seed);
        let mut s = [sm.next_u64(), sm.next_u64(), sm.next_u64(), sm.next_u64()];
        if s == [0; 4] {
            s[0] = 1; // the all-zero state is a fixed point; SplitMix64 never yields it, but be sure
        }
        Self { s }
    }

    /// An independent generator for stream `stream` of `seed` (machine `i` of a shop).
    pub fn for_stream(seed: u64, stream: u64) -> Self {
        let mut sm = SplitMix64::new(stream ^ 0xD1B5_4A32_D192_ED03);
        Self::new(seed ^ sm.next_u64())
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `[lo, hi]` (inclusive); `lo` when `hi <= lo`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let span = hi - lo + 1;
        if span == 0 {
            return self.next_u64(); // the full u64 range
        }
        // Lemire's multiply-shift with rejection: unbiased.
        let zone = span.wrapping_neg() % span;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(span);
            if (m as u64) >= zone {
                return lo + (m >> 64) as u64;
            }
        }
    }

    /// Uniform real in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    /// True with probability `p` (clamped to `[0, 1]`).
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// One element of a non-empty slice (`None` for an empty one).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            return None;
        }
        let i = self.range(0, items.len() as u64 - 1) as usize;
        items.get(i)
    }

    /// Roughly normal (Irwin–Hall: the sum of 12 uniforms, minus 6), so bounded to ±6 sd and
    /// free of transcendental functions.
    pub fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let z: f64 = (0..12).map(|_| self.f64()).sum::<f64>() - 6.0;
        mean + sd * z
    }

    /// Log-normal with the given median and shape `sigma` (0.3 = moderately spread, 0.8 = long
    /// tail), clamped to `[min, max]`. The shape of repair times, setups and waits.
    pub fn lognormal(&mut self, median: f64, sigma: f64, min: f64, max: f64) -> f64 {
        let z = self.normal(0.0, 1.0);
        (median * (sigma * z).exp()).clamp(min, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_vector() {
        // Reference output of SplitMix64 seeded with 1234567 (from the published C code).
        let mut sm = SplitMix64::new(1_234_567);
        assert_eq!(sm.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(sm.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn same_seed_same_stream_and_streams_differ() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let xs: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let mut c = Rng::for_stream(42, 1);
        let mut d = Rng::for_stream(42, 2);
        assert_ne!(c.next_u64(), d.next_u64());
    }

    #[test]
    fn helpers_stay_in_range() {
        let mut r = Rng::new(7);
        for _ in 0..10_000 {
            let x = r.range(3, 9);
            assert!((3..=9).contains(&x));
            let f = r.f64();
            assert!((0.0..1.0).contains(&f));
            let l = r.lognormal(60.0, 0.8, 10.0, 300.0);
            assert!((10.0..=300.0).contains(&l));
        }
        assert_eq!(r.range(5, 5), 5);
        assert_eq!(r.pick::<u8>(&[]), None);
        let hits = (0..10_000).filter(|_| r.chance(0.25)).count();
        assert!((2_200..2_800).contains(&hits), "{hits}");
        let mean = (0..10_000).map(|_| r.normal(10.0, 2.0)).sum::<f64>() / 10_000.0;
        assert!((9.8..10.2).contains(&mean), "{mean}");
    }
}
