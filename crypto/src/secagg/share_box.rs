//! End-to-end encryption of the share bundle one participant hands to one neighbour.
//!
//! The coordinator relays these envelopes but cannot open them: the key comes from X25519
//! between the two participants' signed cipher keys. ChaCha20-Poly1305 with a zero nonce is safe
//! because each directional key (see `kdf::share_key`) encrypts exactly one message. The
//! associated data binds the round, sender and recipient, so an envelope cannot be redirected.
//!
//! Plaintext: `x u8 | self-seed share y [32] | mask-key share y [32]` (65 bytes; 81 sealed).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use zeroize::Zeroizing;

use super::ids::{ParticipantId, RoundId};
use super::secret::{MaskSeed, ShamirShare};
use crate::CryptoError;

/// Bytes of a sealed bundle.
pub(crate) const SEALED_LEN: usize = 65 + 16;

/// The two shares a neighbour holds of one participant's secrets, at the same point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShareBundle {
    pub(crate) self_seed: ShamirShare,
    pub(crate) mask_key: ShamirShare,
}

fn associated_data(round: &RoundId, sender: ParticipantId, recipient: ParticipantId) -> Vec<u8> {
    let mut ad = b"gridfed secagg v1 share".to_vec();
    ad.extend_from_slice(&round.binding());
    ad.extend_from_slice(&sender.0.to_le_bytes());
    ad.extend_from_slice(&recipient.0.to_le_bytes());
    ad
}

pub(crate) fn seal(
    key: &MaskSeed,
    round: &RoundId,
    sender: ParticipantId,
    recipient: ParticipantId,
    bundle: &ShareBundle,
) -> Result<Vec<u8>, CryptoError> {
    if bundle.self_seed.x() != bundle.mask_key.x() {
        return Err(CryptoError::InvalidParams(
            "shares of one bundle must share a point".into(),
        ));
    }
    let mut plain = Zeroizing::new([0u8; 65]);
    plain[0] = bundle.self_seed.x();
    plain[1..33].copy_from_slice(bundle.self_seed.y());
    plain[33..].copy_from_slice(bundle.mask_key.y());
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key.expose()));
    let aad = associated_data(round, sender, recipient);
    cipher
        .encrypt(
            &Nonce::default(),
            Payload {
                msg: plain.as_slice(),
                aad: &aad,
            },
        )
        .map_err(|_| CryptoError::InvalidParams("share encryption failed".into()))
}

pub(crate) fn open(
    key: &MaskSeed,
    round: &RoundId,
    sender: ParticipantId,
    recipient: ParticipantId,
    sealed: &[u8],
) -> Result<ShareBundle, CryptoError> {
    let fail = CryptoError::ShareAuthentication { sender, recipient };
    if sealed.len() != SEALED_LEN {
        return Err(fail);
    }
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key.expose()));
    let aad = associated_data(round, sender, recipient);
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                &Nonce::default(),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| fail)?,
    );
    let mut self_y = Zeroizing::new([0u8; 32]);
    let mut mask_y = Zeroizing::new([0u8; 32]);
    self_y.copy_from_slice(&plain[1..33]);
    mask_y.copy_from_slice(&plain[33..65]);
    Ok(ShareBundle {
        self_seed: ShamirShare::new(plain[0], *self_y),
        mask_key: ShamirShare::new(plain[0], *mask_y),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secagg::FederationId;

    #[test]
    fn sealed_bundles_open_only_for_their_round_and_pair() {
        let key = MaskSeed::from_bytes([8; 32]);
        let round = RoundId {
            federation: FederationId([0; 16]),
            round: 1,
        };
        let (a, b) = (ParticipantId(1), ParticipantId(2));
        let bundle = ShareBundle {
            self_seed: ShamirShare::new(3, [1; 32]),
            mask_key: ShamirShare::new(3, [2; 32]),
        };
        let sealed = seal(&key, &round, a, b, &bundle).unwrap();
        assert_eq!(sealed.len(), SEALED_LEN);
        assert_eq!(open(&key, &round, a, b, &sealed).unwrap(), bundle);
        assert!(open(&key, &round, b, a, &sealed).is_err(), "redirected");
        assert!(
            open(&key, &RoundId { round: 2, ..round }, a, b, &sealed).is_err(),
            "replayed"
        );
        let mut tampered = sealed.clone();
        tampered[5] ^= 1;
        assert!(matches!(
            open(&key, &round, a, b, &tampered),
            Err(CryptoError::ShareAuthentication { .. })
        ));
        assert!(open(&MaskSeed::from_bytes([9; 32]), &round, a, b, &sealed).is_err());
    }
}
