//! Dropout-tolerant secure aggregation (Bonawitz et al. 2017, with the SecAgg+ neighbour graph
//! of Bell et al. 2020): the coordinator learns the sum of the participants' masked updates and
//! nothing else, even when participants drop before or after uploading.
//!
//! Plain synchronous code with no I/O: a network shell moves [`SignedMessage`]s between the
//! [`ParticipantRound`] (or the typed states in [`participant`]) and the coordinator's
//! `Collecting*` states. The protocol, threat model and parameters are in docs/secagg.md.

mod coordinator;
mod envelope;
mod graph;
pub mod hierarchy;
mod identity;
mod ids;
mod kdf;
mod messages;
mod params;
pub mod participant;
mod participant_round;
pub mod prg;
mod secret;
pub mod shamir;
mod share_box;
pub mod simulation;
mod unmask;
mod uploads;
mod wire;

pub use coordinator::{CollectingAdvertisements, CollectingShares};
pub use envelope::{DEFAULT_MESSAGE_LIMIT, MessageHeader, SignedMessage};
pub use graph::NeighbourGraph;
pub use identity::{ParticipantIdentity, generate_signing_key};
pub use ids::{FederationId, ParticipantId, Party, Phase, RoundId, SecretKind};
pub use messages::{
    EncryptedShare, KeyAdvertisement, KeyDirectory, MaskedInput, RevealedShare, RosterEntry,
    RoundPlan, ShareList, UnmaskRequest, UnmaskResponse,
};
pub use params::{MAX_NEIGHBOURS, MAX_ROSTER, MAX_VECTOR_LEN, SecAggParams};
pub use participant::Rejected;
pub use participant_round::ParticipantRound;
pub use secret::{MaskSeed, ShamirShare};
pub use unmask::{AggregateResult, CollectingUnmaskResponses};
pub use uploads::CollectingMaskedInputs;
