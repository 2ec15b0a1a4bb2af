//! Randomness: tfhe-rs's AES-CTR CSPRNG, seeded from the operating system.
//!
//! Secret randomness (key shares, encryption randomness, noise, smudging, Shamir coefficients)
//! comes from a [`NoiseSource`]; public randomness (the common polynomial `a`) is expanded from a
//! public seed by the same generator, so every party derives the same `a`.
//!
//! Noise is the one thing not drawn byte by byte through tfhe's generator: it hands out
//! randomness one byte per call (about 1.2 ns a byte here), which made noise sampling half the
//! cost of encryption (TUniform, 3 bytes a sample) and of a partial decryption (Gaussian, 16
//! bytes a pair). For each block we key an AES-128-CTR keystream (the construction of tfhe's
//! generator) with 128 bits from the tfhe CSPRNG and run tfhe's TUniform algorithm, and the
//! Ziggurat normal sampler of `rand_distr` for the Gaussian, over it in bulk. Keys, encryption randomness, Shamir coefficients and
//! the public polynomial come straight from tfhe's samplers.

use std::fmt;

use aes::Aes128;
use aes::cipher::{KeyIvInit, StreamCipher};
use rand::TryRngCore;
use rand::rngs::OsRng;
use rand_distr::{Distribution, StandardNormal};
use tfhe::core_crypto::commons::math::random::{DefaultRandomGenerator, RandomGenerator, Seed};

use zeroize::Zeroize;

use super::HeError;
use super::params::NOISE_BOUND_LOG2;

/// Secret randomness for one party. Not `Clone`: two copies would repeat the same "random" keys
/// and noise, which breaks the encryption.
pub struct NoiseSource {
    generator: RandomGenerator<DefaultRandomGenerator>,
}

impl fmt::Debug for NoiseSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NoiseSource(..)")
    }
}

impl NoiseSource {
    /// A generator seeded with 128 bits from the operating system (AES-128-CTR, as in tfhe-rs).
    pub fn from_os() -> Result<Self, HeError> {
        let mut seed = [0u8; 16];
        OsRng
            .try_fill_bytes(&mut seed)
            .map_err(|_| HeError::Entropy)?;
        Ok(Self::from_seed(u128::from_le_bytes(seed)))
    }

    /// A deterministic generator, for tests and reproducible demonstrations only: anyone who
    /// knows the seed knows every key share and every plaintext encrypted with it.
    #[must_use]
    pub fn from_seed(seed: u128) -> Self {
        Self {
            generator: RandomGenerator::new(Seed(seed)),
        }
    }

    /// Independent generators for parallel work, one per item. Seeding child CSPRNGs from a
    /// CSPRNG is what tfhe's own `DeterministicSeeder` does.
    pub(crate) fn split(&mut self, count: usize) -> Vec<NoiseSource> {
        (0..count)
            .map(|_| Self::from_seed(self.generator.random_uniform::<u128>()))
            .collect()
    }

    /// Uniform binary coefficients (tfhe's secret-key and encryption-randomness distribution).
    pub(crate) fn fill_binary(&mut self, out: &mut [u64]) {
        self.generator
            .fill_slice_with_random_uniform_binary_bits(out);
    }

    /// Uniform words modulo 2^64.
    pub(crate) fn fill_uniform(&mut self, out: &mut [u64]) {
        self.generator.fill_slice_with_random_uniform(out);
    }

    /// Adds TUniform(17) noise to every coefficient (wrapping): tfhe's sampler, run in bulk.
    pub(crate) fn add_tuniform(&mut self, out: &mut [u64]) {
        // tfhe's TUniform(b) (`t_uniform.rs`): r uniform on b + 2 bits, value
        // (r >> 1) + (r & 1) - 2^b, i.e. -2^b..=2^b with the two ends at half weight. Three
        // 19-bit draws per 64-bit keystream word.
        const BITS: u32 = NOISE_BOUND_LOG2 + 2;
        const MASK: u64 = (1 << BITS) - 1;
        let mut stream = Keystream::new(self.generator.random_uniform::<u128>());
        for chunk in out.chunks_mut(3) {
            let mut random = stream.next_u64();
            for word in chunk {
                let r = random & MASK;
                random >>= BITS;
                let noise = ((r >> 1) + (r & 1)).wrapping_sub(1 << NOISE_BOUND_LOG2);
                *word = word.wrapping_add(noise);
            }
        }
    }

    /// Adds rounded Gaussian noise of standard deviation `std` (in units of 1) to every word.
    pub(crate) fn add_gaussian(&mut self, out: &mut [u64], std: f64) {
        let mut stream = Keystream::new(self.generator.random_uniform::<u128>());
        for word in out {
            // Ziggurat (rand_distr) over the keystream; exact tails, |sample| < 2^63.
            let sample = Distribution::<f64>::sample(&StandardNormal, &mut stream) * std;
            // Round half away from zero.
            let rounded = (sample + 0.5f64.copysign(sample)) as i64;
            *word = word.wrapping_add(rounded as u64);
        }
    }
}

/// AES-128-CTR keystream read in 4 KiB chunks.
struct Keystream {
    cipher: ctr::Ctr128LE<Aes128>,
    buffer: Box<[u8; 4096]>,
    position: usize,
}

impl Keystream {
    fn new(key: u128) -> Self {
        let cipher = ctr::Ctr128LE::<Aes128>::new(&key.to_le_bytes().into(), &[0u8; 16].into());
        Self {
            cipher,
            buffer: Box::new([0u8; 4096]),
            position: 4096,
        }
    }

    fn next_u64(&mut self) -> u64 {
        if self.position == self.buffer.len() {
            self.buffer.fill(0);
            self.cipher.apply_keystream(&mut self.buffer[..]);
            self.position = 0;
        }
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.buffer[self.position..self.position + 8]);
        self.position += 8;
        u64::from_le_bytes(word)
    }
}

impl rand::RngCore for Keystream {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }

    fn next_u64(&mut self) -> u64 {
        Keystream::next_u64(self)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            chunk.copy_from_slice(&Keystream::next_u64(self).to_le_bytes()[..chunk.len()]);
        }
    }
}

impl Drop for Keystream {
    fn drop(&mut self) {
        self.buffer.zeroize();
    }
}

/// Expands a public 128-bit seed into uniform words modulo 2^64 (the common polynomial `a`).
pub(crate) fn expand_public(seed: [u8; 16], out: &mut [u64]) {
    let mut generator =
        RandomGenerator::<DefaultRandomGenerator>::new(Seed(u128::from_le_bytes(seed)));
    generator.fill_slice_with_random_uniform(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(word: u64) -> f64 {
        word as i64 as f64
    }

    #[test]
    fn tuniform_noise_stays_within_its_bound_and_has_its_variance() {
        let mut source = NoiseSource::from_seed(1);
        let mut noise = vec![0u64; 1 << 16];
        source.add_tuniform(&mut noise);
        let bound = f64::from(1u32 << NOISE_BOUND_LOG2);
        assert!(noise.iter().all(|&x| signed(x).abs() <= bound));
        let variance = noise.iter().map(|&x| signed(x).powi(2)).sum::<f64>() / noise.len() as f64;
        let expected = (2f64.powi(35) + 1.0) / 6.0;
        assert!(
            (variance / expected - 1.0).abs() < 0.03,
            "{variance} vs {expected}"
        );
    }

    #[test]
    fn bulk_tuniform_matches_tfhe_s_sampler() {
        use tfhe::core_crypto::commons::math::random::TUniform;
        // Each end has probability 2^-19: 2^22 draws hit both ends of both samplers except with
        // probability about 4 e^-8.
        let count = 1 << 22;
        let mut ours = vec![0u64; count];
        NoiseSource::from_seed(4).add_tuniform(&mut ours);
        let mut theirs = vec![0u64; count];
        RandomGenerator::<DefaultRandomGenerator>::new(Seed(5))
            .fill_slice_with_random_from_distribution(
                &mut theirs,
                TUniform::<u64>::new(NOISE_BOUND_LOG2),
            );
        let bound = 1i64 << NOISE_BOUND_LOG2;
        for sample in [&ours, &theirs] {
            let values: Vec<i64> = sample.iter().map(|&x| x as i64).collect();
            assert_eq!(values.iter().min(), Some(&-bound));
            assert_eq!(values.iter().max(), Some(&bound));
        }
        // Same histogram over 32 equal cells of [-2^17, 2^17] (two-sample chi-square, 31 dof:
        // P(chi2 > 61.1) = 0.001).
        let cell = |x: u64| (((x as i64 + bound) * 32) / (2 * bound + 1)) as usize;
        let (mut a, mut b) = ([0f64; 32], [0f64; 32]);
        ours.iter().for_each(|&x| a[cell(x)] += 1.0);
        theirs.iter().for_each(|&x| b[cell(x)] += 1.0);
        let chi: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).powi(2) / (x + y))
            .sum();
        assert!(chi < 61.1, "chi-square {chi}");
    }

    #[test]
    fn gaussian_smudging_has_the_requested_deviation() {
        let mut source = NoiseSource::from_seed(2);
        let mut noise = vec![0u64; 1 << 16];
        let std = 2f64.powi(38);
        source.add_gaussian(&mut noise, std);
        let mean = noise.iter().map(|&x| signed(x)).sum::<f64>() / noise.len() as f64;
        let var = noise
            .iter()
            .map(|&x| (signed(x) - mean).powi(2))
            .sum::<f64>()
            / noise.len() as f64;
        assert!(
            (var.sqrt() / std - 1.0).abs() < 0.02,
            "{} vs {std}",
            var.sqrt()
        );
        assert!(mean.abs() < 0.02 * std);
    }

    #[test]
    fn public_expansion_is_deterministic_and_split_sources_differ() {
        let (mut a, mut b) = (vec![0u64; 64], vec![0u64; 64]);
        expand_public([7; 16], &mut a);
        expand_public([7; 16], &mut b);
        assert_eq!(a, b);
        expand_public([8; 16], &mut b);
        assert_ne!(a, b);
        let mut children = NoiseSource::from_seed(3).split(2);
        let (mut x, mut y) = (vec![0u64; 64], vec![0u64; 64]);
        children[0].fill_uniform(&mut x);
        children[1].fill_uniform(&mut y);
        assert_ne!(x, y);
    }
}
