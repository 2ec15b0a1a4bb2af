//! Names of the things a round talks about: federations, participants, parties, phases.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A participant's enrolled identity number, unique within a federation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ParticipantId(pub u32);

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A federation (one model spec and sector). Fixed-size so it binds cheaply into signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FederationId(pub [u8; 16]);

impl FederationId {
    /// The id of a federation named by a human-readable tag such as `residential-load`.
    #[must_use]
    pub fn from_name(name: &str) -> Self {
        let digest = blake3::derive_key("gridfed secagg v1 federation id", name.as_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        Self(id)
    }
}

/// One round of one federation: what every message, key derivation and share is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RoundId {
    pub federation: FederationId,
    pub round: u64,
}

impl RoundId {
    /// The 24 bytes that bind derivations and signatures to this round.
    pub(crate) fn binding(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..16].copy_from_slice(&self.federation.0);
        out[16..].copy_from_slice(&self.round.to_le_bytes());
        out
    }
}

/// Who sends or receives a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Party {
    Coordinator,
    Participant(ParticipantId),
    /// Every participant of the round (broadcasts: the round plan).
    AllParticipants,
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Coordinator => f.write_str("the coordinator"),
            Self::Participant(id) => write!(f, "participant {id}"),
            Self::AllParticipants => f.write_str("all participants"),
        }
    }
}

/// The step of the protocol a message belongs to; signed into every message so a message of one
/// step can never be accepted as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Phase {
    /// Coordinator -> all: parameters, roster, public round seed.
    RoundPlan = 1,
    /// Participant -> coordinator: per-round X25519 public keys.
    AdvertiseKeys = 2,
    /// Coordinator -> participant: who advertised, and the neighbours' signed advertisements.
    KeyDirectory = 3,
    /// Participant -> coordinator: Shamir shares encrypted to each neighbour.
    ShareKeys = 4,
    /// Coordinator -> participant: the shares addressed to it.
    ShareRelay = 5,
    /// Participant -> coordinator: the masked update.
    MaskedInput = 6,
    /// Coordinator -> participant: who uploaded and who dropped.
    UnmaskRequest = 7,
    /// Participant -> coordinator: one share per neighbour, of one secret kind each.
    UnmaskResponse = 8,
}

impl Phase {
    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => Self::RoundPlan,
            2 => Self::AdvertiseKeys,
            3 => Self::KeyDirectory,
            4 => Self::ShareKeys,
            5 => Self::ShareRelay,
            6 => Self::MaskedInput,
            7 => Self::UnmaskRequest,
            8 => Self::UnmaskResponse,
            _ => return None,
        })
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The two secrets of a participant that its neighbours hold shares of. The coordinator may learn
/// one of them per participant, never both: both together unmask that participant's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum SecretKind {
    /// The seed of the self mask: revealed when the participant's input is in the sum.
    SelfMaskSeed = 1,
    /// The X25519 key behind the pairwise masks: revealed when the participant dropped.
    PairwiseMaskKey = 2,
}

impl SecretKind {
    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::SelfMaskSeed),
            2 => Some(Self::PairwiseMaskKey),
            _ => None,
        }
    }
}

impl fmt::Display for SecretKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SelfMaskSeed => "self-mask seed",
            Self::PairwiseMaskKey => "pairwise mask key",
        })
    }
}
