//! Exact products in Z_{2^64}[X]/(X^2048 + 1).
//!
//! tfhe-rs multiplies compact public keys by the encryption randomness with the NTT of its
//! `tfhe-ntt` crate (three 52-bit primes with AVX-512 IFMA, five 32-bit primes elsewhere, then a
//! CRT reconstruction that is exact modulo 2^64). We call the same plans, but keep operands in the
//! NTT domain when they are reused: the public key's two polynomials are transformed once per key
//! instead of once per block, and a member's key share once per decryption: 9 transforms per
//! encrypted block instead of the 12 of tfhe's
//! `par_encrypt_lwe_compact_ciphertext_list_with_compact_public_key`, and 6 per block of a
//! partial decryption.

use std::sync::OnceLock;

use tfhe_ntt::native64;

use super::params::POLYNOMIAL_SIZE;

/// A polynomial in the NTT domain of the active plan.
#[derive(Clone)]
pub(crate) enum Spectrum {
    #[cfg(target_arch = "x86_64")]
    Ifma([Vec<u64>; 3]),
    Portable([Vec<u32>; 5]),
}

impl zeroize::Zeroize for Spectrum {
    fn zeroize(&mut self) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Ifma(parts) => parts.iter_mut().for_each(|p| p.zeroize()),
            Self::Portable(parts) => parts.iter_mut().for_each(|p| p.zeroize()),
        }
    }
}

/// The NTT plan picked at run time for this CPU.
pub(crate) enum Ring {
    #[cfg(target_arch = "x86_64")]
    Ifma(native64::Plan52),
    Portable(native64::Plan32),
}

impl Ring {
    /// The process-wide plan for N = 2048 (built once: twiddle tables are a few hundred KB).
    pub(crate) fn get() -> &'static Ring {
        static RING: OnceLock<Ring> = OnceLock::new();
        RING.get_or_init(Ring::new)
    }

    fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        if let Some(plan) = native64::Plan52::try_new(POLYNOMIAL_SIZE) {
            return Self::Ifma(plan);
        }
        // Plan32 exists for every power of two in 32..=2^16 (the primes are fixed), so this
        // cannot fail for N = 2048; a failure here would be a tfhe-ntt regression.
        Self::Portable(
            native64::Plan32::try_new(POLYNOMIAL_SIZE).expect("tfhe-ntt Plan32 supports N = 2048"),
        )
    }

    /// Forward transform of a polynomial with arbitrary u64 coefficients (read modulo 2^64).
    pub(crate) fn forward(&self, poly: &[u64]) -> Spectrum {
        debug_assert_eq!(poly.len(), POLYNOMIAL_SIZE);
        let n = POLYNOMIAL_SIZE;
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Ifma(plan) => {
                let [mut p0, mut p1, mut p2] = [vec![0u64; n], vec![0u64; n], vec![0u64; n]];
                plan.fwd(poly, &mut p0, &mut p1, &mut p2);
                Spectrum::Ifma([p0, p1, p2])
            }
            Self::Portable(plan) => {
                let mut parts: [Vec<u32>; 5] = std::array::from_fn(|_| vec![0u32; n]);
                let [p0, p1, p2, p3, p4] = &mut parts;
                plan.fwd(poly, p0, p1, p2, p3, p4);
                Spectrum::Portable(parts)
            }
        }
    }

    /// `out = lhs * rhs` in Z_{2^64}[X]/(X^N + 1), exactly.
    pub(crate) fn multiply(&self, lhs: &Spectrum, rhs: &Spectrum, out: &mut [u64]) {
        self.multiply_consuming(lhs.clone(), rhs, out);
    }

    /// [`Self::multiply`] that reuses `lhs`'s buffers (saves a 48 KiB copy per product).
    pub(crate) fn multiply_consuming(&self, lhs: Spectrum, rhs: &Spectrum, out: &mut [u64]) {
        debug_assert_eq!(out.len(), POLYNOMIAL_SIZE);
        match (self, lhs, rhs) {
            #[cfg(target_arch = "x86_64")]
            (Self::Ifma(plan), Spectrum::Ifma([mut p0, mut p1, mut p2]), Spectrum::Ifma(rhs)) => {
                plan.ntt_0().mul_assign_normalize(&mut p0, &rhs[0]);
                plan.ntt_1().mul_assign_normalize(&mut p1, &rhs[1]);
                plan.ntt_2().mul_assign_normalize(&mut p2, &rhs[2]);
                plan.inv(out, &mut p0, &mut p1, &mut p2);
            }
            (
                Self::Portable(plan),
                Spectrum::Portable([mut p0, mut p1, mut p2, mut p3, mut p4]),
                Spectrum::Portable(rhs),
            ) => {
                plan.ntt_0().mul_assign_normalize(&mut p0, &rhs[0]);
                plan.ntt_1().mul_assign_normalize(&mut p1, &rhs[1]);
                plan.ntt_2().mul_assign_normalize(&mut p2, &rhs[2]);
                plan.ntt_3().mul_assign_normalize(&mut p3, &rhs[3]);
                plan.ntt_4().mul_assign_normalize(&mut p4, &rhs[4]);
                plan.inv(out, &mut p0, &mut p1, &mut p2, &mut p3, &mut p4);
            }
            // Spectra only come from `Ring::get()`, a single process-wide plan.
            #[allow(unreachable_patterns)]
            _ => unreachable!("spectra of two different NTT plans"),
        }
    }
}

#[cfg(test)]
mod tests {
    use tfhe::core_crypto::algorithms::polynomial_algorithms::polynomial_karatsuba_wrapping_mul;
    use tfhe::core_crypto::entities::Polynomial;

    use super::*;

    fn pseudo_random(seed: u64) -> Vec<u64> {
        // splitmix64: a test oracle only needs varied full-width coefficients.
        let mut state = seed;
        (0..POLYNOMIAL_SIZE)
            .map(|_| {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^ (z >> 31)
            })
            .collect()
    }

    fn karatsuba(lhs: &[u64], rhs: &[u64]) -> Vec<u64> {
        let mut out = Polynomial::new(
            0u64,
            tfhe::core_crypto::prelude::PolynomialSize(POLYNOMIAL_SIZE),
        );
        polynomial_karatsuba_wrapping_mul(
            &mut out,
            &Polynomial::from_container(lhs),
            &Polynomial::from_container(rhs),
        );
        out.into_container()
    }

    #[test]
    fn ntt_products_equal_tfhe_karatsuba_for_full_width_operands() {
        let ring = Ring::get();
        for seed in 0..4 {
            let lhs = pseudo_random(seed);
            let mut rhs = pseudo_random(seed + 100);
            if seed % 2 == 1 {
                // Binary right-hand side, as in encryption and m-of-m decryption.
                rhs.iter_mut().for_each(|x| *x &= 1);
            }
            let mut out = vec![0u64; POLYNOMIAL_SIZE];
            ring.multiply(&ring.forward(&lhs), &ring.forward(&rhs), &mut out);
            assert_eq!(out, karatsuba(&lhs, &rhs), "seed {seed}");
        }
    }

    #[test]
    fn multiplying_by_x_rotates_negacyclically() {
        let ring = Ring::get();
        let lhs = pseudo_random(7);
        let mut x = vec![0u64; POLYNOMIAL_SIZE];
        x[1] = 1;
        let mut out = vec![0u64; POLYNOMIAL_SIZE];
        ring.multiply(&ring.forward(&lhs), &ring.forward(&x), &mut out);
        assert_eq!(out[0], lhs[POLYNOMIAL_SIZE - 1].wrapping_neg());
        assert_eq!(&out[1..], &lhs[..POLYNOMIAL_SIZE - 1]);
    }
}
