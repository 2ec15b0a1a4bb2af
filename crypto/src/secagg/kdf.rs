//! Key derivation: every key is HKDF-SHA256 output bound to its purpose, round and owners.
//!
//! Domain separation by label keeps one secret from ever serving two purposes (the self-mask
//! seed keys the PRG only through its derived key and is committed to separately; a pairwise
//! X25519 secret never keys anything directly).

use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::ids::{ParticipantId, RoundId};
use super::secret::MaskSeed;
use crate::CryptoError;

const SALT: &[u8] = b"gridfed secagg v1";

fn derive(ikm: &[u8], label: &[u8], round: &RoundId, ids: &[ParticipantId]) -> MaskSeed {
    let mut info = Vec::with_capacity(label.len() + 24 + 4 * ids.len());
    info.extend_from_slice(label);
    info.extend_from_slice(&round.binding());
    for id in ids {
        info.extend_from_slice(&id.0.to_le_bytes());
    }
    let mut okm = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 8160-byte output limit, so expand cannot fail.
    if Hkdf::<Sha256>::new(Some(SALT), ikm)
        .expand(&info, okm.as_mut())
        .is_err()
    {
        unreachable!("HKDF-SHA256 output of 32 bytes is always valid");
    }
    MaskSeed::from_bytes(*okm)
}

/// X25519 agreement that refuses low-order public keys (an all-zero shared secret would make
/// the "secret" mask public).
pub(crate) fn agree(
    secret: &StaticSecret,
    public: &[u8; 32],
    peer: ParticipantId,
) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let shared = secret.diffie_hellman(&PublicKey::from(*public));
    if !shared.was_contributory() {
        return Err(CryptoError::WeakPublicKey(peer));
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}

/// AES-256 key of `owner`'s self-mask stream.
pub(crate) fn self_mask_key(seed: &MaskSeed, round: &RoundId, owner: ParticipantId) -> MaskSeed {
    derive(seed.expose(), b"self mask", round, &[owner])
}

/// AES-256 key of the mask shared by `a` and `b`; symmetric in the pair.
pub(crate) fn pairwise_mask_key(
    shared: &[u8; 32],
    round: &RoundId,
    a: ParticipantId,
    b: ParticipantId,
) -> MaskSeed {
    derive(shared, b"pairwise mask", round, &[a.min(b), a.max(b)])
}

/// ChaCha20-Poly1305 key for the shares `sender` encrypts to `recipient`; directional, so the
/// two members of a pair never encrypt under the same key.
pub(crate) fn share_key(
    shared: &[u8; 32],
    round: &RoundId,
    sender: ParticipantId,
    recipient: ParticipantId,
) -> MaskSeed {
    derive(shared, b"share envelope", round, &[sender, recipient])
}

/// Public commitment to a self-mask seed, checked after reconstruction. The seed has 256 bits of
/// entropy, so the hash hides it.
pub(crate) fn self_seed_commitment(
    seed: &MaskSeed,
    round: &RoundId,
    owner: ParticipantId,
) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"gridfed secagg v1 self seed commitment");
    hash.update(round.binding());
    hash.update(owner.0.to_le_bytes());
    hash.update(seed.expose());
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secagg::FederationId;

    #[test]
    fn keys_are_bound_to_round_pair_and_direction() {
        let round = RoundId {
            federation: FederationId([1; 16]),
            round: 7,
        };
        let other = RoundId { round: 8, ..round };
        let (a, b) = (ParticipantId(1), ParticipantId(2));
        let shared = [9u8; 32];
        assert_eq!(
            pairwise_mask_key(&shared, &round, a, b),
            pairwise_mask_key(&shared, &round, b, a)
        );
        assert_ne!(
            pairwise_mask_key(&shared, &round, a, b),
            pairwise_mask_key(&shared, &other, a, b)
        );
        assert_ne!(
            share_key(&shared, &round, a, b),
            share_key(&shared, &round, b, a)
        );
        let seed = MaskSeed::from_bytes(shared);
        assert_ne!(
            self_mask_key(&seed, &round, a),
            self_mask_key(&seed, &round, b)
        );
    }

    #[test]
    fn low_order_public_keys_are_refused() {
        let secret = StaticSecret::from([5u8; 32]);
        assert!(matches!(
            agree(&secret, &[0u8; 32], ParticipantId(3)),
            Err(CryptoError::WeakPublicKey(_))
        ));
        let public = PublicKey::from(&StaticSecret::from([6u8; 32]));
        assert!(agree(&secret, public.as_bytes(), ParticipantId(3)).is_ok());
    }
}
