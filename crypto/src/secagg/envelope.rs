//! Signed, bound messages: the unit a network shell carries as bytes.
//!
//! Every message is signed with Ed25519 over a domain tag, its header (federation, round, phase,
//! sender, recipient) and the BLAKE3 digest of its payload, so a message cannot be replayed in
//! another round or phase, redirected, or altered without failing verification.
//!
//! Encoding (all integers little-endian):
//!
//! ```text
//! version u8 = 1 | federation [16] | round u64 | phase u8 | sender party | recipient party
//! | payload_len u32 | payload | signature [64]
//! party = 0 (coordinator) | 1, participant u32 | 2 (all participants)
//! ```

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ids::{FederationId, ParticipantId, Party, Phase, RoundId};
use super::params::MAX_VECTOR_LEN;
use super::wire::{Reader, Writer};
use crate::CryptoError;

const VERSION: u8 = 1;
const SIGNING_DOMAIN: &[u8] = b"gridfed secagg v1 signed message\0";
/// Payloads above this size are hashed with both cores.
const PARALLEL_DIGEST_BYTES: usize = 1 << 17;
/// Largest encoded message accepted by default: a full-length masked vector plus headroom.
pub const DEFAULT_MESSAGE_LIMIT: usize = 4 * MAX_VECTOR_LEN as usize + (1 << 20);

/// What a message is bound to, besides its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageHeader {
    pub round: RoundId,
    pub phase: Phase,
    pub sender: Party,
    pub recipient: Party,
}

/// A signed protocol message. Construct with [`SignedMessage::sign`] or decode with
/// [`SignedMessage::from_bytes`]; a decoded message is only trusted after `verify`.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedMessage {
    header: MessageHeader,
    payload: Vec<u8>,
    signature: [u8; 64],
}

impl fmt::Debug for SignedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedMessage")
            .field("header", &self.header)
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

impl SignedMessage {
    /// Signs `payload` under `header` with the sender's key.
    #[must_use]
    pub fn sign(header: MessageHeader, payload: Vec<u8>, key: &SigningKey) -> Self {
        let signature = key.sign(&signed_bytes(&header, &payload)).to_bytes();
        Self {
            header,
            payload,
            signature,
        }
    }

    #[must_use]
    pub fn header(&self) -> &MessageHeader {
        &self.header
    }

    #[must_use]
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Checks the signature against the sender's key (strict Ed25519: no malleable encodings).
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), CryptoError> {
        let signature = Signature::from_bytes(&self.signature);
        key.verify_strict(&signed_bytes(&self.header, &self.payload), &signature)
            .map_err(|_| CryptoError::BadSignature {
                sender: self.header.sender,
            })
    }

    /// Checks that the message belongs to `round` and `phase` and is addressed from `sender` to
    /// `recipient` (no cryptography: cheap enough to run before anything else).
    pub(crate) fn check_binding(
        &self,
        round: &RoundId,
        phase: Phase,
        sender: Party,
        recipient: Party,
    ) -> Result<(), CryptoError> {
        let h = &self.header;
        if h.round != *round {
            return Err(CryptoError::WrongRound);
        }
        if h.phase != phase {
            return Err(CryptoError::UnexpectedPhase {
                expected: phase,
                got: h.phase,
            });
        }
        if h.sender != sender || h.recipient != recipient {
            return Err(CryptoError::Misaddressed {
                sender: h.sender,
                recipient: h.recipient,
            });
        }
        Ok(())
    }

    /// [`Self::check_binding`], then the signature under `key`: junk is refused before a large
    /// payload is hashed.
    pub(crate) fn expect(
        &self,
        round: &RoundId,
        phase: Phase,
        sender: Party,
        recipient: Party,
        key: &VerifyingKey,
    ) -> Result<(), CryptoError> {
        self.check_binding(round, phase, sender, recipient)?;
        self.verify(key)
    }

    /// Length of [`Self::to_bytes`] without building it.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        1 + 16
            + 8
            + 1
            + party_len(self.header.sender)
            + party_len(self.header.recipient)
            + 4
            + self.payload.len()
            + 64
    }

    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.encoded_len());
        w.u8(VERSION);
        write_header(&mut w, &self.header);
        w.bytes(&self.payload).raw(&self.signature);
        w.finish()
    }

    /// Decodes a message of at most `limit` bytes. Never panics on arbitrary input.
    pub fn from_bytes(bytes: &[u8], limit: usize) -> Result<Self, CryptoError> {
        if bytes.len() > limit {
            return Err(CryptoError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        let mut r = Reader::new(bytes);
        if r.u8()? != VERSION {
            return Err(CryptoError::Malformed("unknown message version"));
        }
        let round = RoundId {
            federation: FederationId(r.array()?),
            round: r.u64()?,
        };
        let phase = Phase::from_byte(r.u8()?).ok_or(CryptoError::Malformed("unknown phase"))?;
        let sender = read_party(&mut r)?;
        let recipient = read_party(&mut r)?;
        let payload = r.bytes()?.to_vec();
        let signature = r.array()?;
        r.finish()?;
        Ok(Self {
            header: MessageHeader {
                round,
                phase,
                sender,
                recipient,
            },
            payload,
            signature,
        })
    }
}

fn party_len(party: Party) -> usize {
    match party {
        Party::Coordinator | Party::AllParticipants => 1,
        Party::Participant(_) => 5,
    }
}

fn write_party(w: &mut Writer, party: Party) {
    match party {
        Party::Coordinator => w.u8(0),
        Party::Participant(id) => w.u8(1).u32(id.0),
        Party::AllParticipants => w.u8(2),
    };
}

fn read_party(r: &mut Reader<'_>) -> Result<Party, CryptoError> {
    match r.u8()? {
        0 => Ok(Party::Coordinator),
        1 => Ok(Party::Participant(ParticipantId(r.u32()?))),
        2 => Ok(Party::AllParticipants),
        _ => Err(CryptoError::Malformed("unknown party tag")),
    }
}

fn write_header(w: &mut Writer, header: &MessageHeader) {
    w.raw(&header.round.federation.0)
        .u64(header.round.round)
        .u8(header.phase as u8);
    write_party(w, header.sender);
    write_party(w, header.recipient);
}

fn signed_bytes(header: &MessageHeader, payload: &[u8]) -> Vec<u8> {
    let mut hasher = blake3::Hasher::new();
    if payload.len() >= PARALLEL_DIGEST_BYTES {
        hasher.update_rayon(payload);
    } else {
        hasher.update(payload);
    }
    let mut w = Writer::with_capacity(SIGNING_DOMAIN.len() + 80);
    w.raw(SIGNING_DOMAIN);
    write_header(&mut w, header);
    w.u64(payload.len() as u64)
        .raw(hasher.finalize().as_bytes());
    w.finish()
}

/// Serde carries a message as its binary encoding (decoded under [`DEFAULT_MESSAGE_LIMIT`]).
impl Serialize for SignedMessage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.to_bytes())
    }
}

impl<'de> Deserialize<'de> for SignedMessage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = <Vec<u8>>::deserialize(deserializer)?;
        Self::from_bytes(&bytes, DEFAULT_MESSAGE_LIMIT).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (SignedMessage, SigningKey) {
        let key = SigningKey::from_bytes(&[4; 32]);
        let header = MessageHeader {
            round: RoundId {
                federation: FederationId([2; 16]),
                round: 9,
            },
            phase: Phase::MaskedInput,
            sender: Party::Participant(ParticipantId(5)),
            recipient: Party::Coordinator,
        };
        (SignedMessage::sign(header, vec![1, 2, 3], &key), key)
    }

    #[test]
    fn encoding_round_trips_and_verifies() {
        let (message, key) = sample();
        let bytes = message.to_bytes();
        assert_eq!(bytes.len(), message.encoded_len());
        let decoded = SignedMessage::from_bytes(&bytes, 1 << 10).unwrap();
        assert_eq!(decoded, message);
        decoded.verify(&key.verifying_key()).unwrap();
        assert!(matches!(
            SignedMessage::from_bytes(&bytes, 10),
            Err(CryptoError::TooLarge { .. })
        ));
    }

    #[test]
    fn any_flipped_bit_fails_decoding_or_verification() {
        let (message, key) = sample();
        let bytes = message.to_bytes();
        for bit in 0..bytes.len() * 8 {
            let mut tampered = bytes.clone();
            tampered[bit / 8] ^= 1 << (bit % 8);
            let accepted = SignedMessage::from_bytes(&tampered, 1 << 10)
                .and_then(|m| m.verify(&key.verifying_key()));
            assert!(accepted.is_err(), "bit {bit} flipped yet accepted");
        }
    }
}
