//! End-to-end encryption of the Shamir fragments that the coordinator relays between members.
//!
//! A fragment `f_i(x_j)` is secret: `t` of them reconstruct member `i`'s key share, so a relay
//! that could read them would own the collective key. Each member therefore publishes a fresh
//! X25519 key for the session, signed with its Ed25519 identity and bound to the committee
//! digest and its member index (so a relay cannot substitute its own). A fragment travels sealed
//! with ChaCha20-Poly1305 under an HKDF key of the X25519 secret between dealer and recipient,
//! bound to the session and to the ordered pair, as secure aggregation's share envelopes
//! (`secagg::share_box`). The zero nonce is safe: each directional key seals exactly one message
//! (one fragment per dealer and recipient per session, and exchange keys are never reused).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ed25519_dalek::{Signature, Signer, Verifier};
use hkdf::Hkdf;
use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::HeError;
use super::committee::{Committee, MemberIndex};
use super::member::{CommitteeMember, FRAGMENT_BODY_LEN, SecretFrame};
use super::wire::{FrameKind, frame_len};

/// Bytes of a signed exchange-key advertisement: X25519 key, Ed25519 signature.
pub const EXCHANGE_ADVERTISEMENT_LEN: usize = 32 + 64;
const ADVERTISEMENT_DOMAIN: &[u8] = b"gridfed he v1 fragment exchange key\0";
const ENVELOPE_LABEL: &[u8] = b"gridfed he v1 fragment envelope";

/// Bytes of one sealed fragment (its signed frame plus the AEAD tag).
#[must_use]
pub fn sealed_fragment_len() -> usize {
    frame_len(FrameKind::KeyShareFragment, FRAGMENT_BODY_LEN) + 16
}

/// A member's X25519 key for one key session. Secret; wiped on drop (x25519-dalek zeroizes).
pub struct FragmentExchange {
    secret: StaticSecret,
}

impl std::fmt::Debug for FragmentExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FragmentExchange(..)")
    }
}

fn signed_bytes(committee: &Committee, member: MemberIndex, key: &[u8; 32]) -> Vec<u8> {
    let mut bytes = ADVERTISEMENT_DOMAIN.to_vec();
    bytes.extend_from_slice(&committee.digest());
    bytes.extend_from_slice(&member.0.to_le_bytes());
    bytes.extend_from_slice(key);
    bytes
}

/// Checks `member`'s signed advertisement against the roster; returns its X25519 key.
pub fn verify_exchange_key(
    committee: &Committee,
    member: MemberIndex,
    advertisement: &[u8],
) -> Result<[u8; 32], HeError> {
    if advertisement.len() != EXCHANGE_ADVERTISEMENT_LEN {
        return Err(HeError::Malformed {
            what: "exchange key advertisement",
            reason: "wrong length",
        });
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&advertisement[..32]);
    let signature =
        Signature::from_slice(&advertisement[32..]).map_err(|_| HeError::Malformed {
            what: "exchange key advertisement",
            reason: "bad signature encoding",
        })?;
    committee
        .verifying_key(member.0)?
        .verify(&signed_bytes(committee, member, &key), &signature)
        .map_err(|_| HeError::BadSignature {
            what: "exchange key advertisement",
        })?;
    Ok(key)
}

impl FragmentExchange {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Result<Self, HeError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        OsRng
            .try_fill_bytes(bytes.as_mut())
            .map_err(|_| HeError::Entropy)?;
        Ok(Self {
            secret: StaticSecret::from(*bytes),
        })
    }

    /// The public key signed by `member`, bound to its committee and seat.
    #[must_use]
    pub fn advertisement(&self, member: &CommitteeMember) -> Vec<u8> {
        let key = PublicKey::from(&self.secret).to_bytes();
        let signature = member
            .identity
            .sign(&signed_bytes(&member.committee, member.member, &key));
        let mut out = key.to_vec();
        out.extend_from_slice(&signature.to_bytes());
        out
    }

    fn cipher(
        &self,
        committee: &Committee,
        peer_key: &[u8; 32],
        dealer: MemberIndex,
        recipient: MemberIndex,
    ) -> Result<ChaCha20Poly1305, HeError> {
        let shared = self.secret.diffie_hellman(&PublicKey::from(*peer_key));
        if !shared.was_contributory() {
            return Err(HeError::Malformed {
                what: "exchange key",
                reason: "low-order X25519 point",
            });
        }
        let mut info = ENVELOPE_LABEL.to_vec();
        info.extend_from_slice(&committee.digest());
        info.extend_from_slice(&dealer.0.to_le_bytes());
        info.extend_from_slice(&recipient.0.to_le_bytes());
        let mut key = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(None, shared.as_bytes())
            .expand(&info, key.as_mut())
            .map_err(|_| HeError::InvalidPlan("HKDF output length"))?;
        Ok(ChaCha20Poly1305::new(Key::from_slice(key.as_ref())))
    }

    /// Seals `member`'s fragment for `recipient`, whose verified exchange key is `recipient_key`.
    pub fn seal(
        &self,
        member: &CommitteeMember,
        recipient: MemberIndex,
        recipient_key: &[u8; 32],
        fragment: &SecretFrame,
    ) -> Result<Vec<u8>, HeError> {
        let committee = &member.committee;
        let cipher = self.cipher(committee, recipient_key, member.member, recipient)?;
        let aad = committee.digest();
        cipher
            .encrypt(
                &Nonce::default(),
                Payload {
                    msg: fragment.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| HeError::InvalidPlan("fragment encryption failed"))
    }

    /// Opens a fragment `dealer` sealed for `member`; `dealer_key` is the dealer's verified
    /// exchange key. The plaintext is the signed fragment frame for
    /// [`CommitteeMember::accept_fragments`], which checks it again.
    pub fn open(
        &self,
        member: &CommitteeMember,
        dealer: MemberIndex,
        dealer_key: &[u8; 32],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, HeError> {
        if sealed.len() != sealed_fragment_len() {
            return Err(HeError::Malformed {
                what: "sealed fragment",
                reason: "wrong length",
            });
        }
        let committee = &member.committee;
        let cipher = self.cipher(committee, dealer_key, dealer, member.member)?;
        let aad = committee.digest();
        cipher
            .decrypt(
                &Nonce::default(),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| HeError::BadSignature {
                what: "sealed fragment (tampered, redirected or for another session)",
            })
    }
}

#[cfg(test)]
mod tests {
    use super::super::committee::CommitteeSeat;
    use super::super::params::{
        AggregationPlan, CommitteeSize, SlotCount, SummandCount, Threshold,
    };
    use super::super::random::NoiseSource;
    use super::*;
    use crate::secagg::{FederationId, ParticipantId};
    use ed25519_dalek::SigningKey;

    #[test]
    fn fragments_open_only_for_their_recipient_and_untampered() {
        let plan = AggregationPlan::widest(
            SummandCount(3),
            CommitteeSize(3),
            Threshold(2),
            SlotCount(10),
        )
        .unwrap();
        let keys: Vec<SigningKey> = (1..=3u8)
            .map(|i| SigningKey::from_bytes(&[i; 32]))
            .collect();
        let seats = keys
            .iter()
            .zip(1u32..)
            .map(|(k, id)| CommitteeSeat {
                participant: ParticipantId(id),
                verifying_key: k.verifying_key(),
            })
            .collect();
        let committee = Committee::new(FederationId([1; 16]), 7, plan, seats).unwrap();
        let mut noise = NoiseSource::from_seed(3);
        let mut members: Vec<CommitteeMember> = keys
            .iter()
            .zip(1u16..)
            .map(|(k, i)| {
                CommitteeMember::new(committee.clone(), MemberIndex(i), k.clone(), &mut noise)
                    .unwrap()
            })
            .collect();
        let exchanges: Vec<FragmentExchange> = (0..3)
            .map(|_| FragmentExchange::generate().unwrap())
            .collect();
        let peers: Vec<[u8; 32]> = members
            .iter()
            .zip(&exchanges)
            .map(|(m, x)| verify_exchange_key(&committee, m.member(), &x.advertisement(m)).unwrap())
            .collect();
        // An advertisement is bound to its seat.
        let advert = exchanges[0].advertisement(&members[0]);
        assert!(verify_exchange_key(&committee, MemberIndex(2), &advert).is_err());

        let dealt = members[0].deal(&mut noise).unwrap();
        let (to, fragment) = &dealt[1];
        assert_eq!(*to, MemberIndex(2));
        let sealed = exchanges[0]
            .seal(&members[0], *to, &peers[1], fragment)
            .unwrap();
        assert_eq!(sealed.len(), sealed_fragment_len());
        let opened = exchanges[1]
            .open(&members[1], MemberIndex(1), &peers[0], &sealed)
            .unwrap();
        assert_eq!(opened.as_slice(), fragment.as_bytes());
        // Another member cannot open it, nor can anyone claim another dealer.
        assert!(
            exchanges[2]
                .open(&members[2], MemberIndex(1), &peers[0], &sealed)
                .is_err()
        );
        assert!(
            exchanges[1]
                .open(&members[1], MemberIndex(3), &peers[2], &sealed)
                .is_err()
        );
        let mut tampered = sealed.clone();
        tampered[100] ^= 1;
        assert!(matches!(
            exchanges[1].open(&members[1], MemberIndex(1), &peers[0], &tampered),
            Err(HeError::BadSignature { .. })
        ));
    }
}
