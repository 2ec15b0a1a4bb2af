//! Errors of the encrypted-aggregation mode.
//!
//! Grouped by fault like [`crate::CryptoError`]: the caller misused the API, a peer sent
//! something malformed, forged or inconsistent, or the round cannot finish. Kept apart from
//! `CryptoError` only because `he` is an optional feature; it converts into it without loss of
//! the variant (see [`HeError::is_peer_fault`]).

use crate::CryptoError;

/// What went wrong in key generation, encryption, aggregation or threshold decryption.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeError {
    // --- API misuse: the caller's inputs or configuration ---
    /// A plan whose parameters cannot work (committee too large, threshold above it...).
    #[error("invalid encrypted-aggregation plan: {0}")]
    InvalidPlan(&'static str),
    /// The noise of a full aggregate would not stay below half a plaintext step.
    #[error(
        "noise budget exceeded: decryption noise bound 2^{bound_log2:.1} is not below half a \
         plaintext step 2^{half_step_log2} (use at most {max_bits} plaintext bits)"
    )]
    NoiseBudget {
        bound_log2: f64,
        half_step_log2: u32,
        max_bits: u32,
    },
    /// A plaintext word that does not fit the plan's plaintext space.
    #[error("word {word} at index {index} does not fit in {bits} plaintext bits")]
    WordOutOfRange { index: usize, word: u32, bits: u32 },
    /// A vector or ciphertext of the wrong length.
    #[error("length {actual}, expected {expected}")]
    LengthMismatch { expected: u64, actual: u64 },
    /// An empty vector: nothing to encrypt or aggregate.
    #[error("empty vector")]
    Empty,
    /// Adding this ciphertext would exceed the plan's summand count, beyond which the noise
    /// bound no longer guarantees a correct decryption.
    #[error("{summands} summands exceed the plan's maximum of {max}")]
    TooManySummands { summands: u64, max: u32 },
    /// A member has partially decrypted as many coefficients as the smudging noise was sized
    /// for; more would leak its key share.
    #[error("member {member} has used its decryption budget ({used} + {requested} > {budget})")]
    DecryptionBudgetExhausted {
        member: u16,
        used: u64,
        requested: u64,
        budget: u64,
    },
    /// A member asked to act in a decryption set it is not part of.
    #[error("member {0} is not in the decryption set")]
    NotADecryptor(u16),
    /// Fewer partial decryptions (or a smaller decryption set) than the threshold.
    #[error("need {need} partial decryptions from distinct members, got {have}")]
    BelowThreshold { need: usize, have: usize },
    /// Key shares were requested before every member's fragment was accepted.
    #[error("key generation is not complete: {0}")]
    KeyGenerationIncomplete(&'static str),
    /// The operating system's randomness source is unavailable.
    #[error("randomness source unavailable")]
    Entropy,
    /// The fixed-point codec refused a value or a parameter.
    #[error("fixed-point codec: {0}")]
    Codec(#[source] Box<CryptoError>),

    // --- Peer misbehaviour: what arrived over the wire ---
    /// Bytes that are not a well-formed frame of the expected kind.
    #[error("malformed {what}: {reason}")]
    Malformed {
        what: &'static str,
        reason: &'static str,
    },
    /// A frame larger than the decoder accepts.
    #[error("{what} of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    /// A frame of another format version or parameter set.
    #[error("unsupported format version {version} or parameter set {parameter_set}")]
    Unsupported { version: u8, parameter_set: u16 },
    /// The signature does not verify: forged or tampered.
    #[error("signature on {what} does not verify (forged or tampered)")]
    BadSignature { what: &'static str },
    /// A message bound to another committee, key or ciphertext than the one at hand.
    #[error("{what} belongs to another {binding}")]
    WrongBinding {
        what: &'static str,
        binding: &'static str,
    },
    /// A second ciphertext from one participant in one aggregate.
    #[error("participant {0} already contributed to this aggregate")]
    DuplicateContribution(crate::secagg::ParticipantId),
    /// A member index outside the committee, or one message twice from one member.
    #[error("member {member}: {reason}")]
    BadMember { member: u16, reason: &'static str },
}

impl HeError {
    /// True when the error blames the sender of a message rather than our caller.
    #[must_use]
    pub fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            Self::Malformed { .. }
                | Self::TooLarge { .. }
                | Self::Unsupported { .. }
                | Self::BadSignature { .. }
                | Self::WrongBinding { .. }
                | Self::BadMember { .. }
                | Self::DuplicateContribution(_)
        )
    }
}

impl From<CryptoError> for HeError {
    fn from(error: CryptoError) -> Self {
        Self::Codec(Box::new(error))
    }
}
