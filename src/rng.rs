//! The crate's one source of seeded random numbers: [`SplitMix64`], a tiny stream for test
//! data and random weights, and [`Rng`], xoshiro256++ seeded through SplitMix64, for scenes
//! and evaluation. Both are deterministic for a seed on every platform, which the golden
//! frames and the benchmark's numbers rely on.

/// SplitMix64 (Steele, Lea & Flood): one 64-bit state advanced by the golden gamma. Tiny and
/// seedable; used where a few random numbers must be the same on every run.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix64(self.0)
    }

    /// A uniform float in [0, 1) with 24 random bits.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// A uniform float in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A small seeded random number generator: xoshiro256++ (Blackman & Vigna), its state filled
/// by SplitMix64. Fast, 2²⁵⁶ − 1 period, good statistical quality; not cryptographic and not
/// NumPy's PCG64 (see the module docs).
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
    /// The second normal of the last Box–Muller pair.
    spare_normal: Option<f64>,
}

/// SplitMix64's output function: a bijective 64-bit mixer.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut s = [0u64; 4];
        for v in &mut s {
            x = x.wrapping_add(GOLDEN);
            *v = mix64(x);
        }
        // xoshiro's state must not be all zeros; SplitMix64 never yields four zeros in a row,
        // but keep the guarantee explicit.
        if s == [0; 4] {
            s[0] = GOLDEN;
        }
        Rng {
            s,
            spare_normal: None,
        }
    }

    /// The generator of stream `index` of base seed `seed` for purpose `domain` (scenes use
    /// domain 0; other uses pick their own so they never share a scene's numbers). Chaining
    /// the bijective mixer keeps, for a fixed seed and domain, every index on its own state.
    pub fn for_stream(seed: u64, index: u64, domain: u64) -> Self {
        Rng::new(mix64(
            mix64(mix64(seed).wrapping_add(index)) ^ domain.wrapping_mul(GOLDEN),
        ))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform float in [0, 1) with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform float in [lo, hi) (NumPy's `uniform(lo, hi)`).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// A uniform integer in [0, n), without modulo bias (Lemire's method); 0 when `n == 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// A uniform integer in [lo, hi] inclusive (`U{lo..hi}` of the specification); `lo` when
    /// `hi < lo`.
    pub fn int_inclusive(&mut self, lo: i64, hi: i64) -> i64 {
        if hi < lo {
            return lo;
        }
        let span = (hi - lo) as u64 + 1;
        lo + self.below(span) as i64
    }

    /// A standard normal (Box–Muller; the pair's second value is kept for the next call).
    pub fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare_normal.take() {
            return z;
        }
        // 1 − unit is in (0, 1], so the logarithm is finite.
        let r = (-2.0 * (1.0 - self.unit()).ln()).sqrt();
        let theta = std::f64::consts::TAU * self.unit();
        self.spare_normal = Some(r * theta.sin());
        r * theta.cos()
    }
}
