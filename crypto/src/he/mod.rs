//! Encrypted aggregation: packed RLWE under a collective key, threshold decryption.
//!
//! The second protection mode. Participants encrypt quantized updates under a collective public
//! key that a committee generated together; the coordinator adds ciphertexts and can decrypt
//! nothing; `t` of the `m` committee members jointly decrypt only the aggregate. No party ever
//! holds the secret key.
//!
//! Built on tfhe-rs's lattice layer (`tfhe::core_crypto`: its compact public-key parameter set,
//! TUniform noise, binary secrets, AES-CTR CSPRNG, and the `tfhe-ntt` negacyclic transforms).
//! See `docs/he.md` for the parameters, the protocol, the threat model and the measurements.
//!
//! A round:
//! 1. [`Committee::new`] fixes the roster and the [`AggregationPlan`]; each member runs
//!    [`CommitteeMember::new`], publishes its [`CommitteeMember::commitment`], then
//!    [`CommitteeMember::reveal_public_share`] against all [`ShareCommitments`],
//!    [`CommitteeMember::deal`] (Shamir fragments) and [`CommitteeMember::accept_fragments`];
//!    everyone combines the verified [`PublicKeyShare`]s into the [`CollectivePublicKey`].
//! 2. Participants [`CollectivePublicKey::encrypt`] (or [`EncryptedCodec::encrypt_update`]) and
//!    [`Ciphertext::seal`]; the coordinator [`Ciphertext::open`]s and adds them in an
//!    [`EncryptedAggregator`], which by type holds no secret.
//! 3. `t` members [`CommitteeMember::partial_decrypt`] the aggregate for one [`DecryptorSet`];
//!    anyone [`combine`]s the opened [`PartialDecryption`]s into the plaintext sum.

mod aggregate;
mod ciphertext;
mod codec;
mod combine;
mod commitment;
mod committee;
mod error;
mod galois;
mod keys;
mod limbs;
mod member;
mod noise;
mod params;
mod partial;
mod random;
mod ring;
mod simulation;
mod transport;
mod wire;

pub use aggregate::{EncryptedAggregator, PublicMaterial, assert_public};
pub use ciphertext::Ciphertext;
pub use codec::EncryptedCodec;
pub use combine::combine;
pub use commitment::ShareCommitments;
pub use committee::{Committee, CommitteeSeat, MemberIndex};
/// The Ed25519 identity types the API signs and verifies with.
pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use error::HeError;
pub use keys::{CollectivePublicKey, PublicKeyShare};
pub use limbs::LimbCodec;
pub use member::{CommitteeMember, SecretFrame};
pub use noise::NoiseBudget;
pub use params::{
    AggregationPlan, CIPHERTEXT_DROPPED_BITS, CommitteeSize, MAX_COMMITTEE, NOISE_BOUND_LOG2,
    PARAMETER_SET_ID, PARAMETER_SET_NAME, PARTIAL_DROPPED_BITS, POLYNOMIAL_SIZE, PlaintextBits,
    SlotCount, SummandCount, Threshold,
};
pub use partial::{DecryptorSet, PartialDecryption};
pub use random::NoiseSource;
pub use simulation::{InProcessKeys, generate_keys_in_process};
pub use transport::{
    EXCHANGE_ADVERTISEMENT_LEN, FragmentExchange, sealed_fragment_len, verify_exchange_key,
};
