//! The coordinator's side: adding ciphertexts without any key material.
//!
//! "The coordinator holds no secret" is checked by the compiler: [`PublicMaterial`] is
//! implemented only for types without secret key material, and [`public_state!`] declares a
//! struct whose every field must implement it. [`EncryptedAggregator`] is declared that way, so
//! giving it a key share, a member, or a noise source is a compile error:
//!
//! ```
//! crypto::he::assert_public::<crypto::he::EncryptedAggregator>();
//! ```
//!
//! ```compile_fail
//! crypto::he::assert_public::<crypto::he::CommitteeMember>();
//! ```
//!
//! ```compile_fail
//! crypto::he::assert_public::<crypto::he::NoiseSource>();
//! ```

use std::collections::BTreeSet;

use ed25519_dalek::VerifyingKey;

use super::HeError;
use super::ciphertext::Ciphertext;
use super::committee::{Committee, MemberIndex};
use super::keys::{CollectivePublicKey, PublicKeyShare};
use super::params::{
    AggregationPlan, CommitteeSize, PlaintextBits, SlotCount, SummandCount, Threshold,
};
use super::partial::{DecryptorSet, PartialDecryption};
use crate::secagg::{FederationId, ParticipantId};

/// Values that contain no secret key material and may sit in the coordinator's state.
///
/// Secret types ([`super::CommitteeMember`], [`super::NoiseSource`]) never implement it; key
/// shares and secret polynomials are private types that cannot be named outside this module.
pub trait PublicMaterial {}

/// Compiles only for public types; use it in tests and static assertions.
pub const fn assert_public<T: PublicMaterial + ?Sized>() {}

/// Declares a struct whose fields must all be [`PublicMaterial`] (checked at compile time), and
/// implements [`PublicMaterial`] for it.
#[macro_export]
macro_rules! public_state {
    ($(#[$meta:meta])* $vis:vis struct $name:ident {
        $($(#[$field_meta:meta])* $field_vis:vis $field:ident : $ty:ty),* $(,)?
    }) => {
        $(#[$meta])* $vis struct $name { $($(#[$field_meta])* $field_vis $field: $ty),* }
        impl $crate::he::PublicMaterial for $name {}
        const _: () = { $($crate::he::assert_public::<$ty>();)* };
    };
}

macro_rules! public_types {
    ($($ty:ty),* $(,)?) => { $(impl PublicMaterial for $ty {})* };
}

public_types!(
    u8,
    u16,
    u32,
    u64,
    usize,
    bool,
    [u8; 32],
    str,
    String,
    ParticipantId,
    FederationId,
    MemberIndex,
    AggregationPlan,
    PlaintextBits,
    SummandCount,
    CommitteeSize,
    Threshold,
    SlotCount,
    Committee,
    PublicKeyShare,
    CollectivePublicKey,
    Ciphertext,
    PartialDecryption,
    DecryptorSet,
);
impl<T: PublicMaterial> PublicMaterial for Vec<T> {}
impl<T: PublicMaterial> PublicMaterial for Option<T> {}
impl<T: PublicMaterial> PublicMaterial for BTreeSet<T> {}
impl<T: PublicMaterial> PublicMaterial for [T] {}

public_state! {
    /// Sums the encrypted updates of one round under one collective key.
    ///
    /// Invariant: `sum` has the key's id, the plan's plaintext bits and `length` slots, and its
    /// summand count equals `contributors.len()`, which never exceeds the plan's maximum.
    pub struct EncryptedAggregator {
        plan: AggregationPlan,
        sum: Ciphertext,
        contributors: BTreeSet<ParticipantId>,
    }
}

impl EncryptedAggregator {
    /// An empty sum of vectors of `length` slots under `key`.
    pub fn new(key: &CollectivePublicKey, length: usize) -> Result<Self, HeError> {
        if length == 0 {
            return Err(HeError::Empty);
        }
        let plan = *key.plan();
        Ok(Self {
            sum: Ciphertext::zero(key.id(), plan.plaintext_bits().0, length),
            plan,
            contributors: BTreeSet::new(),
        })
    }

    /// Adds one participant's fresh ciphertext.
    pub fn add(
        &mut self,
        contributor: ParticipantId,
        ciphertext: &Ciphertext,
    ) -> Result<(), HeError> {
        self.add_batch(&[(contributor, ciphertext)])
    }

    /// Adds several ciphertexts in one cache-friendly pass (the sum's blocks stay in cache while
    /// the addends stream through). All are checked before any is added.
    pub fn add_batch(&mut self, batch: &[(ParticipantId, &Ciphertext)]) -> Result<(), HeError> {
        let mut incoming = BTreeSet::new();
        for (contributor, ciphertext) in batch {
            self.check(ciphertext)?;
            if self.contributors.contains(contributor) || !incoming.insert(*contributor) {
                return Err(HeError::DuplicateContribution(*contributor));
            }
        }
        let summands = u64::from(self.sum.summands())
            + batch
                .iter()
                .map(|(_, c)| u64::from(c.summands()))
                .sum::<u64>();
        if summands > u64::from(self.plan.max_summands().0) {
            return Err(HeError::TooManySummands {
                summands,
                max: self.plan.max_summands().0,
            });
        }
        let addends: Vec<&Ciphertext> = batch.iter().map(|(_, c)| *c).collect();
        self.sum.accumulate(&addends);
        self.contributors.extend(incoming);
        Ok(())
    }

    /// Verifies and adds one participant's sealed ciphertext straight from its frame: the
    /// coordinator's memory stays at one running sum however many participants send.
    pub fn add_sealed(
        &mut self,
        contributor: ParticipantId,
        frame: &[u8],
        sender: &VerifyingKey,
    ) -> Result<(), HeError> {
        if self.contributors.contains(&contributor) {
            return Err(HeError::DuplicateContribution(contributor));
        }
        let summands = u64::from(self.sum.summands()) + 1;
        if summands > u64::from(self.plan.max_summands().0) {
            return Err(HeError::TooManySummands {
                summands,
                max: self.plan.max_summands().0,
            });
        }
        self.sum.accumulate_frame(frame, sender)?;
        self.contributors.insert(contributor);
        Ok(())
    }

    fn check(&self, ciphertext: &Ciphertext) -> Result<(), HeError> {
        if ciphertext.key_id() != self.sum.key_id() {
            return Err(HeError::WrongBinding {
                what: "ciphertext",
                binding: "collective key",
            });
        }
        if ciphertext.len() != self.sum.len() {
            return Err(HeError::LengthMismatch {
                expected: self.sum.len() as u64,
                actual: ciphertext.len() as u64,
            });
        }
        if ciphertext.summands() != 1 {
            return Err(HeError::WrongBinding {
                what: "ciphertext",
                binding: "fresh update (it is already a sum)",
            });
        }
        Ok(())
    }

    /// Who has contributed so far.
    #[must_use]
    pub fn contributors(&self) -> &BTreeSet<ParticipantId> {
        &self.contributors
    }

    /// The encrypted sum, to be sent (sealed) to the decryption committee.
    pub fn finish(self) -> Result<Ciphertext, HeError> {
        if self.contributors.is_empty() {
            return Err(HeError::Empty);
        }
        Ok(self.sum)
    }
}
