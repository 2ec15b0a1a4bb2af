//! Arithmetic in the Galois ring GR(2^64, 8) = Z_{2^64}[Y] / (Y^8 + Y^4 + Y^3 + Y + 1).
//!
//! Shamir sharing needs evaluation points whose pairwise differences are invertible. Z_{2^64} has
//! only two such points (any two odd or even numbers differ by an even number), so the key shares
//! are Shamir-shared over this degree-8 extension instead: reducing modulo 2 maps it onto the
//! field GF(2^8) (the polynomial is AES's, irreducible over F_2), an element is a unit exactly
//! when its reduction is non-zero, and the 255 points whose coefficients are the bits of 1..=255
//! differ pairwise by units. Z_{2^64} sits inside as the constant coefficient, so a secret in
//! Z_{2^64} is shared and recombined exactly, with no modulus mismatch (Abspoel et al., "Efficient
//! information-theoretic secure multiparty computation over Z/p^k Z via Galois rings", TCC 2019).

use zeroize::Zeroize;

/// Degree of the extension.
pub(crate) const DEGREE: usize = 8;

/// An element of GR(2^64, 8): coefficients of 1, Y, ..., Y^7.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Zeroize)]
pub(crate) struct GaloisElement(pub(crate) [u64; DEGREE]);

impl GaloisElement {
    pub(crate) const ZERO: Self = Self([0; DEGREE]);
    pub(crate) const ONE: Self = Self([1, 0, 0, 0, 0, 0, 0, 0]);

    /// The constant `value` of Z_{2^64}.
    pub(crate) fn constant(value: u64) -> Self {
        let mut element = Self::ZERO;
        element.0[0] = value;
        element
    }

    /// The evaluation point of committee member `index` (1..=255): the bits of `index` as
    /// coefficients. Point 0 is where the secret sits.
    pub(crate) fn point(index: u16) -> Self {
        let mut element = Self::ZERO;
        for (bit, coefficient) in element.0.iter_mut().enumerate() {
            *coefficient = u64::from((index >> bit) & 1);
        }
        element
    }

    pub(crate) fn add(&self, other: &Self) -> Self {
        Self(std::array::from_fn(|i| self.0[i].wrapping_add(other.0[i])))
    }

    pub(crate) fn sub(&self, other: &Self) -> Self {
        Self(std::array::from_fn(|i| self.0[i].wrapping_sub(other.0[i])))
    }

    pub(crate) fn mul(&self, other: &Self) -> Self {
        let mut product = [0u64; 2 * DEGREE - 1];
        for (i, &x) in self.0.iter().enumerate() {
            for (j, &y) in other.0.iter().enumerate() {
                product[i + j] = product[i + j].wrapping_add(x.wrapping_mul(y));
            }
        }
        // Y^8 = -(Y^4 + Y^3 + Y + 1): fold the high coefficients down, highest first.
        for k in (DEGREE..2 * DEGREE - 1).rev() {
            let high = product[k];
            let base = k - DEGREE;
            for offset in [0, 1, 3, 4] {
                product[base + offset] = product[base + offset].wrapping_sub(high);
            }
        }
        let mut reduced = [0u64; DEGREE];
        reduced.copy_from_slice(&product[..DEGREE]);
        Self(reduced)
    }

    fn pow(&self, mut exponent: u32) -> Self {
        let (mut base, mut result) = (*self, Self::ONE);
        while exponent > 0 {
            if exponent & 1 == 1 {
                result = result.mul(&base);
            }
            base = base.mul(&base);
            exponent >>= 1;
        }
        result
    }

    /// The inverse, or `None` when the element is not a unit (its reduction mod 2 is zero).
    pub(crate) fn inverse(&self) -> Option<Self> {
        // a^254 inverts a modulo 2 (the multiplicative group of GF(2^8) has order 255); each
        // Newton step y <- y (2 - a y) doubles the number of correct low bits: 1 -> 64 in six.
        let mut inverse = self.pow(254);
        let two = Self::constant(2);
        for _ in 0..6 {
            inverse = inverse.mul(&two.sub(&self.mul(&inverse)));
        }
        (self.mul(&inverse) == Self::ONE).then_some(inverse)
    }
}

/// Lagrange coefficient at 0 of member `member` within the decryption set `members`
/// (distinct indices in 1..=255): `prod_{k != j} x_k / (x_k - x_j)`.
pub(crate) fn lagrange_at_zero(member: u16, members: &[u16]) -> Option<GaloisElement> {
    let own = GaloisElement::point(member);
    let mut coefficient = GaloisElement::ONE;
    for &other in members.iter().filter(|&&k| k != member) {
        let point = GaloisElement::point(other);
        coefficient = coefficient.mul(&point).mul(&point.sub(&own).inverse()?);
    }
    Some(coefficient)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(seed: u64) -> GaloisElement {
        GaloisElement(std::array::from_fn(|i| {
            (seed.wrapping_add(i as u64)).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (seed << 7)
        }))
    }

    #[test]
    fn multiplication_is_commutative_associative_and_distributive() {
        let (a, b, c) = (element(1), element(2), element(3));
        assert_eq!(a.mul(&b), b.mul(&a));
        assert_eq!(a.mul(&b).mul(&c), a.mul(&b.mul(&c)));
        assert_eq!(a.mul(&b.add(&c)), a.mul(&b).add(&a.mul(&c)));
    }

    #[test]
    fn every_difference_of_member_points_is_a_unit() {
        for i in 0..=255u16 {
            for j in (i + 1)..=255u16 {
                let difference = GaloisElement::point(j).sub(&GaloisElement::point(i));
                let inverse = difference.inverse().expect("unit");
                assert_eq!(difference.mul(&inverse), GaloisElement::ONE);
            }
        }
        // An even constant is not a unit.
        assert_eq!(GaloisElement::constant(2).inverse(), None);
    }

    #[test]
    fn lagrange_coefficients_rebuild_a_shared_polynomial_at_zero() {
        // f(x) = s + r1 x + r2 x^2 with s in Z_{2^64}; any three points rebuild s exactly.
        let (secret, r1, r2) = (
            GaloisElement::constant(0xDEAD_BEEF_1234_5678),
            element(9),
            element(10),
        );
        let f = |x: &GaloisElement| secret.add(&r1.mul(x)).add(&r2.mul(&x.mul(x)));
        for members in [[1u16, 2, 3], [5, 17, 255], [200, 3, 64]] {
            let rebuilt = members.iter().fold(GaloisElement::ZERO, |acc, &j| {
                let share = f(&GaloisElement::point(j));
                acc.add(&lagrange_at_zero(j, &members).unwrap().mul(&share))
            });
            assert_eq!(rebuilt, secret, "{members:?}");
        }
        // Two points of a degree-2 polynomial do not.
        let two = [1u16, 2];
        let wrong = two.iter().fold(GaloisElement::ZERO, |acc, &j| {
            acc.add(
                &lagrange_at_zero(j, &two)
                    .unwrap()
                    .mul(&f(&GaloisElement::point(j))),
            )
        });
        assert_ne!(wrong, secret);
    }
}
