//! t-of-n Shamir sharing of 32-byte secrets, bytewise over GF(2^8).
//!
//! Each secret byte is the constant term of its own random polynomial of degree `t - 1` over
//! GF(2^8) (the AES field, modulus x^8 + x^4 + x^3 + x + 1); share `x` holds the 32 evaluations at
//! `x`. GF(2^8) keeps shares as small as the secret (32 bytes) and needs no big-integer code; its
//! cost is a ceiling of 255 holders, far above the O(log n) neighbours of SecAgg+. Any `t - 1`
//! shares are uniformly distributed whatever the secret (perfect secrecy; tested exhaustively).
//! Multiplications touching secret bytes run in constant time (no branches or table lookups on
//! secrets); evaluation points are public.

use rand::CryptoRng;
use zeroize::Zeroizing;

use super::secret::{MaskSeed, ShamirShare};
use crate::CryptoError;

/// Product in GF(2^8), branch-free and table-free so timing does not depend on the operands.
fn gf_mul(mut a: u8, mut b: u8) -> u8 {
    let mut product = 0u8;
    for _ in 0..8 {
        product ^= a & 0u8.wrapping_sub(b & 1);
        let carry = 0u8.wrapping_sub(a >> 7);
        a = (a << 1) ^ (0x1B & carry);
        b >>= 1;
    }
    product
}

/// Inverse in GF(2^8) as a^254 (a^255 = 1 for a != 0); only ever applied to public points.
fn gf_inv(a: u8) -> u8 {
    let mut result = 1u8;
    let mut base = a;
    let mut exponent = 254u8;
    while exponent > 0 {
        if exponent & 1 == 1 {
            result = gf_mul(result, base);
        }
        base = gf_mul(base, base);
        exponent >>= 1;
    }
    result
}

/// Evaluates `secret + c[0] x + c[1] x^2 + ...` at `x` by Horner's rule.
fn evaluate(secret: u8, coefficients: &[u8], x: u8) -> u8 {
    let high = coefficients
        .iter()
        .rev()
        .fold(0u8, |acc, &c| gf_mul(acc, x) ^ c);
    gf_mul(high, x) ^ secret
}

/// Random polynomial coefficients for sharing one 32-byte secret with `threshold`.
pub fn random_coefficients(threshold: usize, rng: &mut impl CryptoRng) -> Zeroizing<Vec<u8>> {
    let mut coefficients = Zeroizing::new(vec![0u8; 32 * threshold.saturating_sub(1)]);
    rng.fill_bytes(&mut coefficients);
    coefficients
}

/// Splits `secret` into shares at the points `1..=holders`, any `threshold` of which rebuild it.
/// `coefficients` come from [`random_coefficients`] for the same threshold and must be used once.
pub fn split(
    secret: &MaskSeed,
    coefficients: &[u8],
    threshold: usize,
    holders: usize,
) -> Result<Vec<ShamirShare>, CryptoError> {
    if threshold == 0 || threshold > holders || holders > 255 {
        return Err(CryptoError::InvalidParams(format!(
            "cannot share {threshold}-of-{holders} over GF(2^8) (needs 1 <= t <= n <= 255)"
        )));
    }
    // coefficients[b * (t-1) + j] is the x^(j+1) coefficient of secret byte b's polynomial.
    let degree = threshold - 1;
    if coefficients.len() != 32 * degree {
        return Err(CryptoError::InvalidParams(
            "coefficients for another threshold".into(),
        ));
    }
    let shares = (1..=holders)
        .map(|holder| {
            // holder <= 255 was checked above.
            let x = holder as u8;
            let mut y = Zeroizing::new([0u8; 32]);
            for (b, byte) in y.iter_mut().enumerate() {
                let poly = &coefficients[b * degree..(b + 1) * degree];
                *byte = evaluate(secret.expose()[b], poly, x);
            }
            ShamirShare::new(x, *y)
        })
        .collect();
    Ok(shares)
}

/// Rebuilds a secret from at least `threshold` shares at distinct non-zero points (the first
/// `threshold` distinct ones are used).
pub fn reconstruct(shares: &[ShamirShare], threshold: usize) -> Result<MaskSeed, CryptoError> {
    let mut chosen: Vec<&ShamirShare> = Vec::with_capacity(threshold);
    for share in shares {
        if share.x() != 0 && chosen.iter().all(|c| c.x() != share.x()) {
            chosen.push(share);
        }
        if chosen.len() == threshold {
            break;
        }
    }
    if threshold == 0 || chosen.len() < threshold {
        return Err(CryptoError::InsufficientShares {
            need: threshold,
            have: chosen.len(),
        });
    }
    let mut secret = Zeroizing::new([0u8; 32]);
    for (i, share) in chosen.iter().enumerate() {
        // Lagrange basis at 0: prod over j != i of x_j / (x_j - x_i); subtraction is XOR.
        let (num, den) = chosen
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .fold((1u8, 1u8), |(num, den), (_, other)| {
                (gf_mul(num, other.x()), gf_mul(den, other.x() ^ share.x()))
            });
        let basis = gf_mul(num, gf_inv(den));
        for (out, &y) in secret.iter_mut().zip(share.y()) {
            *out ^= gf_mul(basis, y);
        }
    }
    Ok(MaskSeed::from_bytes(*secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn field_inverse_is_an_inverse_for_every_element() {
        for a in 1..=255u8 {
            assert_eq!(gf_mul(a, gf_inv(a)), 1, "a = {a}");
        }
        assert_eq!(gf_mul(0x57, 0x83), 0xC1, "FIPS-197 worked example");
    }

    #[test]
    fn every_threshold_subset_rebuilds_and_smaller_ones_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let secret = MaskSeed::random(&mut rng);
        let shares = split(&secret, &random_coefficients(3, &mut rng), 3, 5).unwrap();
        for a in 0..5 {
            for b in a + 1..5 {
                for c in b + 1..5 {
                    let subset = [shares[c].clone(), shares[a].clone(), shares[b].clone()];
                    assert_eq!(reconstruct(&subset, 3).unwrap(), secret);
                }
                let pair = [shares[a].clone(), shares[b].clone()];
                assert!(matches!(
                    reconstruct(&pair, 3),
                    Err(CryptoError::InsufficientShares { need: 3, have: 2 })
                ));
            }
        }
        // A repeated point does not count twice.
        let repeated = [shares[0].clone(), shares[0].clone(), shares[1].clone()];
        assert!(reconstruct(&repeated, 3).is_err());
    }

    /// Perfect secrecy, exhaustively: for threshold 3, the two shares at x = 1 and x = 2 take
    /// every one of the 65,536 value pairs exactly once as the random coefficients range over
    /// all choices, for every secret byte. So t - 1 shares say nothing about the secret.
    #[test]
    fn threshold_minus_one_shares_are_uniform_for_every_secret() {
        for secret in [0u8, 1, 0x80, 0xFF] {
            let mut seen = vec![false; 1 << 16];
            for c1 in 0..=255u8 {
                for c2 in 0..=255u8 {
                    let pair = (usize::from(evaluate(secret, &[c1, c2], 1)) << 8)
                        | usize::from(evaluate(secret, &[c1, c2], 2));
                    assert!(!seen[pair], "pair repeated for secret {secret}");
                    seen[pair] = true;
                }
            }
        }
    }

    #[test]
    fn invalid_sharings_are_errors() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let secret = MaskSeed::random(&mut rng);
        let two = random_coefficients(2, &mut rng);
        assert!(split(&secret, &[], 0, 3).is_err());
        assert!(split(&secret, &two, 4, 3).is_err());
        assert!(split(&secret, &two, 2, 256).is_err());
        assert!(
            split(&secret, &two, 3, 5).is_err(),
            "coefficients of another threshold"
        );
        assert_eq!(split(&secret, &[], 1, 1).unwrap()[0].y(), secret.expose());
    }
}
