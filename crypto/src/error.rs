//! The crate's one error type.
//!
//! Variants are grouped by fault, as rustls does: our caller misused the API (bad parameters, an
//! input of the wrong shape), a peer misbehaved (a forged, replayed, out-of-phase or malformed
//! message), or the round cannot finish (too many dropouts). `is_peer_fault` lets a network shell
//! tell a misbehaving participant from its own bug without matching every variant.

use crate::secagg::{ParticipantId, Party, Phase, SecretKind};

/// Why a secure-aggregation round stopped without producing any sum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AbortReason {
    /// Fewer participants than the plan's minimum are still in the round after a phase.
    #[error("only {have} participants remain after {phase}, the plan needs {need}")]
    TooFewParticipants {
        phase: Phase,
        have: usize,
        need: usize,
    },
    /// A secret of `owner` cannot be rebuilt: fewer than `threshold` of its neighbours answered.
    #[error("only {have} of the {need} shares needed to rebuild the {kind} of participant {owner}")]
    TooFewShares {
        owner: ParticipantId,
        kind: SecretKind,
        have: usize,
        need: usize,
    },
    /// The survivors fall apart into several groups of the neighbour graph; unmasking would
    /// reveal each group's sum on its own.
    #[error("the survivors form {components} disconnected groups in the neighbour graph")]
    SurvivorsDisconnected { components: usize },
    /// This participant kept fewer live neighbours than the threshold, so its own secrets could
    /// not be rebuilt later; it stops before uploading anything.
    #[error("participant {participant} has {have} live neighbours, the threshold is {need}")]
    TooFewNeighbours {
        participant: ParticipantId,
        have: usize,
        need: usize,
    },
}

/// Errors of the `crypto` crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    // --- API misuse: the caller's inputs or configuration ---
    /// Codec parameters that cannot work (clip not positive, capacity too large for 32 bits...).
    #[error("invalid fixed-point codec parameters: {0}")]
    InvalidCodec(&'static str),
    /// An update value outside the codec's clipping range (or not finite).
    #[error("value {value} at index {index} is outside the clipping range [-{clip}, {clip}]")]
    ValueOutOfRange { index: usize, value: f32, clip: f32 },
    /// A sample weight outside `1..=max`.
    #[error("sample weight {weight} is outside 1..={max}")]
    WeightOutOfRange { weight: u32, max: u32 },
    /// More participants than the codec was sized for (their sum could wrap).
    #[error("{participants} participants: the codec is sized for 1..={max}")]
    ParticipantCapacity { participants: u32, max: u32 },
    /// A decoded aggregate word that no sum of `participants` in-range updates can produce.
    #[error("aggregate word {index} is out of reach of {participants} in-range updates")]
    AggregateOutOfRange { index: usize, participants: u32 },
    /// A vector of the wrong length.
    #[error("vector of length {actual}, expected {expected}")]
    LengthMismatch { expected: usize, actual: usize },
    /// Secure-aggregation parameters that violate the protocol's constraints.
    #[error("invalid secure aggregation parameters: {0}")]
    InvalidParams(String),
    /// The operating system's randomness source failed.
    #[error("randomness source failed: {0}")]
    Entropy(String),

    // --- Peer misbehaviour: what arrived over the wire ---
    /// Bytes that are not a well-formed message.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// A message larger than the decoder accepts.
    #[error("message of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    /// The signature does not verify: forged or tampered.
    #[error("signature of {sender} does not verify (forged or tampered message)")]
    BadSignature { sender: Party },
    /// A message bound to another federation or round (a replay from elsewhere).
    #[error("message bound to another federation or round (replayed)")]
    WrongRound,
    /// A message of another phase than the one this state accepts.
    #[error("expected a {expected} message, got {got}")]
    UnexpectedPhase { expected: Phase, got: Phase },
    /// A message whose sender or recipient is not who this state expects.
    #[error("message from {sender} to {recipient} is misaddressed")]
    Misaddressed { sender: Party, recipient: Party },
    /// A second message of one phase from one sender (a replay within the round).
    #[error("duplicate {phase} message from {sender}")]
    Duplicate { sender: Party, phase: Phase },
    /// A sender that is not on the round's roster or no longer in the round.
    #[error("participant {0} is not in this round")]
    NotInRound(ParticipantId),
    /// A message whose content contradicts the round's state.
    #[error("protocol violation by {sender}: {reason}")]
    ProtocolViolation { sender: Party, reason: &'static str },
    /// An encrypted share that does not authenticate under the pairwise key.
    #[error("share from participant {sender} to {recipient} fails authentication")]
    ShareAuthentication {
        sender: ParticipantId,
        recipient: ParticipantId,
    },
    /// A key agreement with a low-order (non-contributory) public key.
    #[error("public key of participant {0} gives a non-contributory key agreement")]
    WeakPublicKey(ParticipantId),
    /// A rebuilt secret that does not match what its owner committed to.
    #[error("rebuilt {kind} of participant {owner} does not match its commitment")]
    ReconstructionMismatch {
        owner: ParticipantId,
        kind: SecretKind,
    },
    /// A participant refused an unmasking request that would reveal too much.
    #[error("participant {participant} refuses to unmask: {reason}")]
    RefusedReveal {
        participant: ParticipantId,
        reason: &'static str,
    },

    // --- The round cannot finish ---
    /// The round stopped; no sum, partial or otherwise, is produced.
    #[error("round aborted: {0}")]
    Aborted(#[from] AbortReason),
    /// Fewer Shamir shares than the threshold (or repeated evaluation points).
    #[error("need {need} distinct shares, got {have}")]
    InsufficientShares { need: usize, have: usize },
}

impl CryptoError {
    /// True when the error blames the sender of a message rather than our caller or the round.
    #[must_use]
    pub fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            Self::Malformed(_)
                | Self::TooLarge { .. }
                | Self::BadSignature { .. }
                | Self::WrongRound
                | Self::UnexpectedPhase { .. }
                | Self::Misaddressed { .. }
                | Self::Duplicate { .. }
                | Self::NotInRound(_)
                | Self::ProtocolViolation { .. }
                | Self::ShareAuthentication { .. }
                | Self::WeakPublicKey(_)
                | Self::ReconstructionMismatch { .. }
        )
    }
}
