//! Payloads of the protocol messages and their binary encodings (see `wire` for the rules).
//!
//! Lists of participant ids are strictly increasing on the wire, which makes their encoding
//! canonical and lets receivers search them.

use serde::{Deserialize, Serialize};

use super::envelope::SignedMessage;
use super::ids::{ParticipantId, SecretKind};
use super::params::SecAggParams;
use super::secret::ShamirShare;
use super::wire::{Reader, Writer};
use crate::CryptoError;

/// Largest nested message (a signed key advertisement) inside a key directory.
const NESTED_LIMIT: usize = 512;

/// One enrolled participant invited to the round and the Ed25519 key its messages verify under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterEntry {
    pub id: ParticipantId,
    pub verifying_key: [u8; 32],
}

/// Coordinator -> all: the round's parameters, roster and public seed of the neighbour graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundPlan {
    pub params: SecAggParams,
    pub graph_seed: [u8; 32],
    /// Strictly increasing by id.
    pub roster: Vec<RosterEntry>,
}

/// Participant -> coordinator: this round's public keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAdvertisement {
    /// X25519 key that share envelopes are encrypted under.
    pub cipher_public: [u8; 32],
    /// X25519 key that pairwise masks are agreed under.
    pub mask_public: [u8; 32],
    /// Hash commitment to the self-mask seed, checked when the coordinator rebuilds it.
    pub self_seed_commitment: [u8; 32],
}

/// Coordinator -> participant: everyone who advertised, and the recipient's neighbours' signed
/// advertisements (the recipient recomputes the neighbour graph itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyDirectory {
    pub advertised: Vec<ParticipantId>,
    pub neighbour_adverts: Vec<SignedMessage>,
}

/// An AEAD-encrypted bundle of two Shamir shares. `peer` is the recipient in a `ShareKeys`
/// message and the original sender in a `ShareRelay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedShare {
    pub peer: ParticipantId,
    pub ciphertext: Vec<u8>,
}

/// A list of encrypted shares, strictly increasing by peer: the payload of `ShareKeys` and
/// `ShareRelay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareList {
    pub shares: Vec<EncryptedShare>,
}

/// Coordinator -> participant: whose input is in the sum and who dropped after sharing keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmaskRequest {
    pub survivors: Vec<ParticipantId>,
    pub dropped: Vec<ParticipantId>,
}

/// One share of one secret of `owner`, revealed to the coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevealedShare {
    pub owner: ParticipantId,
    pub kind: SecretKind,
    pub share: ShamirShare,
}

/// Participant -> coordinator: the shares it reveals, strictly increasing by owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmaskResponse {
    pub shares: Vec<RevealedShare>,
}

fn write_ids(w: &mut Writer, ids: &[ParticipantId]) {
    w.len(ids.len());
    for id in ids {
        w.u32(id.0);
    }
}

fn read_ids(r: &mut Reader<'_>) -> Result<Vec<ParticipantId>, CryptoError> {
    let len = r.len(4)?;
    let ids = (0..len)
        .map(|_| r.u32().map(ParticipantId))
        .collect::<Result<Vec<_>, _>>()?;
    increasing(ids.iter().copied())?;
    Ok(ids)
}

fn increasing(ids: impl Iterator<Item = ParticipantId>) -> Result<(), CryptoError> {
    let mut previous: Option<ParticipantId> = None;
    for id in ids {
        if previous.is_some_and(|p| p >= id) {
            return Err(CryptoError::Malformed(
                "participant ids not strictly increasing",
            ));
        }
        previous = Some(id);
    }
    Ok(())
}

/// Decodes a whole payload with `read`, refusing trailing bytes.
fn decode_all<T>(
    bytes: &[u8],
    read: impl FnOnce(&mut Reader<'_>) -> Result<T, CryptoError>,
) -> Result<T, CryptoError> {
    let mut r = Reader::new(bytes);
    let value = read(&mut r)?;
    r.finish()?;
    Ok(value)
}

impl RoundPlan {
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let p = &self.params;
        let mut w = Writer::with_capacity(56 + 36 * self.roster.len());
        w.u32(p.vector_len)
            .u32(p.neighbours)
            .u32(p.threshold)
            .u32(p.min_survivors);
        w.raw(&self.graph_seed).len(self.roster.len());
        for entry in &self.roster {
            w.u32(entry.id.0).raw(&entry.verifying_key);
        }
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CryptoError> {
        decode_all(bytes, |r| {
            let params = SecAggParams {
                vector_len: r.u32()?,
                neighbours: r.u32()?,
                threshold: r.u32()?,
                min_survivors: r.u32()?,
            };
            let graph_seed = r.array()?;
            let len = r.len(36)?;
            let roster = (0..len)
                .map(|_| {
                    Ok(RosterEntry {
                        id: ParticipantId(r.u32()?),
                        verifying_key: r.array()?,
                    })
                })
                .collect::<Result<Vec<_>, CryptoError>>()?;
            increasing(roster.iter().map(|e| e.id))?;
            Ok(Self {
                params,
                graph_seed,
                roster,
            })
        })
    }
}

impl KeyAdvertisement {
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(96);
        w.raw(&self.cipher_public)
            .raw(&self.mask_public)
            .raw(&self.self_seed_commitment);
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CryptoError> {
        decode_all(bytes, |r| {
            Ok(Self {
                cipher_public: r.array()?,
                mask_public: r.array()?,
                self_seed_commitment: r.array()?,
            })
        })
    }
}

impl KeyDirectory {
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        write_ids(&mut w, &self.advertised);
        w.len(self.neighbour_adverts.len());
        for advert in &self.neighbour_adverts {
            w.bytes(&advert.to_bytes());
        }
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CryptoError> {
        decode_all(bytes, |r| {
            let advertised = read_ids(r)?;
            let len = r.len(4)?;
            let neighbour_adverts = (0..len)
                .map(|_| SignedMessage::from_bytes(r.bytes()?, NESTED_LIMIT))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Self {
                advertised,
                neighbour_adverts,
            })
        })
    }
}

impl ShareList {
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.len(self.shares.len());
        for share in &self.shares {
            w.u32(share.peer.0).bytes(&share.ciphertext);
        }
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CryptoError> {
        decode_all(bytes, |r| {
            let len = r.len(8)?;
            let shares = (0..len)
                .map(|_| {
                    Ok(EncryptedShare {
                        peer: ParticipantId(r.u32()?),
                        ciphertext: r.bytes()?.to_vec(),
                    })
                })
                .collect::<Result<Vec<_>, CryptoError>>()?;
            increasing(shares.iter().map(|s| s.peer))?;
            Ok(Self { shares })
        })
    }
}

/// The masked update: a word list. Encoded from a slice; the coordinator adds the words straight
/// from the payload bytes.
pub struct MaskedInput;

impl MaskedInput {
    /// Bytes before the first word: the `u32` word count.
    pub const HEADER_LEN: usize = 4;

    #[must_use]
    pub fn encode(words: &[u32]) -> Vec<u8> {
        let mut w = Writer::with_capacity(4 + 4 * words.len());
        w.words(words);
        w.finish()
    }

    /// A payload of `len` zero words, to be filled in place (see `ReadyToMask::mask`).
    #[must_use]
    pub(crate) fn zeroed(len: usize) -> Vec<u8> {
        let mut payload = vec![0u8; Self::HEADER_LEN + 4 * len];
        let count = u32::try_from(len).unwrap_or(u32::MAX);
        payload[..Self::HEADER_LEN].copy_from_slice(&count.to_le_bytes());
        payload
    }

    /// The little-endian word bytes of a masked-input payload.
    pub fn word_bytes(bytes: &[u8]) -> Result<&[u8], CryptoError> {
        let mut r = Reader::new(bytes);
        let words = r.word_bytes()?;
        r.finish()?;
        Ok(words)
    }
}

impl UnmaskRequest {
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        write_ids(&mut w, &self.survivors);
        write_ids(&mut w, &self.dropped);
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CryptoError> {
        decode_all(bytes, |r| {
            Ok(Self {
                survivors: read_ids(r)?,
                dropped: read_ids(r)?,
            })
        })
    }
}

impl UnmaskResponse {
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(4 + 38 * self.shares.len());
        w.len(self.shares.len());
        for revealed in &self.shares {
            w.u32(revealed.owner.0)
                .u8(revealed.kind as u8)
                .u8(revealed.share.x())
                .raw(revealed.share.y());
        }
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CryptoError> {
        decode_all(bytes, |r| {
            let len = r.len(38)?;
            let shares = (0..len)
                .map(|_| {
                    let owner = ParticipantId(r.u32()?);
                    let kind = SecretKind::from_byte(r.u8()?)
                        .ok_or(CryptoError::Malformed("secret kind"))?;
                    let share = ShamirShare::new(r.u8()?, r.array()?);
                    Ok(RevealedShare { owner, kind, share })
                })
                .collect::<Result<Vec<_>, CryptoError>>()?;
            increasing(shares.iter().map(|s| s.owner))?;
            Ok(Self { shares })
        })
    }
}
