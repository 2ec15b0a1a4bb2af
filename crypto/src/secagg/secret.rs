//! Secret values with a contract: hidden from `Debug`, compared in constant time, zeroized on drop.

use std::fmt;

use rand::CryptoRng;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// 256 bits of secret key material: a self-mask seed, a pairwise mask seed, an X25519 secret key.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MaskSeed([u8; 32]);

impl MaskSeed {
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh seed from a cryptographic random source.
    pub fn random(rng: &mut impl CryptoRng) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        let seed = Self(bytes);
        bytes.zeroize();
        seed
    }

    #[must_use]
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for MaskSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MaskSeed(<redacted>)")
    }
}

impl PartialEq for MaskSeed {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for MaskSeed {}

/// One Shamir share of a 32-byte secret: the point `x` (1..=255) and the 32 evaluations, one per
/// secret byte, of polynomials over GF(2^8).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ShamirShare {
    x: u8,
    y: [u8; 32],
}

impl ShamirShare {
    /// A share at the point `x`; `x` is public, `y` secret.
    #[must_use]
    pub fn new(x: u8, y: [u8; 32]) -> Self {
        Self { x, y }
    }

    #[must_use]
    pub fn x(&self) -> u8 {
        self.x
    }

    #[must_use]
    pub fn y(&self) -> &[u8; 32] {
        &self.y
    }
}

impl fmt::Debug for ShamirShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShamirShare {{ x: {}, y: <redacted> }}", self.x)
    }
}

impl PartialEq for ShamirShare {
    fn eq(&self, other: &Self) -> bool {
        (self.x.ct_eq(&other.x) & self.y.ct_eq(&other.y)).into()
    }
}

impl Eq for ShamirShare {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_secret_bytes() {
        let seed = MaskSeed::from_bytes([0xAB; 32]);
        let share = ShamirShare::new(3, [0xCD; 32]);
        let shown = format!("{seed:?} {share:?}");
        assert!(!shown.contains("171") && !shown.contains("205"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn equality_compares_all_bytes() {
        let mut bytes = [7u8; 32];
        let a = MaskSeed::from_bytes(bytes);
        bytes[31] ^= 1;
        assert_ne!(a, MaskSeed::from_bytes(bytes));
        assert_eq!(a, MaskSeed::from_bytes([7u8; 32]));
        assert_ne!(ShamirShare::new(1, [0; 32]), ShamirShare::new(2, [0; 32]));
    }
}
