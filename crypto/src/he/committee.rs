//! The decryption committee: who holds key shares, under which plan, for which round.
//!
//! The roster is public configuration. Its digest binds every message of the key session (public
//! key shares, key share fragments, the collective key and through it every ciphertext and
//! partial decryption) to one federation, one round and one plan, so nothing can be replayed
//! from another session. The common random polynomial `a` is expanded from the digest: no party
//! chooses it.

use ed25519_dalek::VerifyingKey;

use super::HeError;
use super::params::{
    AggregationPlan, CommitteeSize, PlaintextBits, SlotCount, SummandCount, Threshold,
};
use super::random::expand_public;
use super::wire::{FrameKind, FrameReader, FrameWriter, digest};
use crate::secagg::{FederationId, ParticipantId};

/// Position of a member in the roster, 1-based: its Shamir evaluation point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct MemberIndex(pub u16);

/// One committee member: its participant id and Ed25519 identity key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitteeSeat {
    pub participant: ParticipantId,
    pub verifying_key: VerifyingKey,
}

/// The roster of one key session.
///
/// Invariant (upheld by [`Committee::new`] and [`Committee::decode`]): exactly
/// `plan.committee()` seats with distinct participants and distinct keys; `digest` is the
/// BLAKE3 digest of the canonical encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committee {
    federation: FederationId,
    round: u64,
    plan: AggregationPlan,
    seats: Vec<CommitteeSeat>,
    digest: [u8; 32],
}

const DIGEST_CONTEXT: &str = "gridfed he v1 committee digest";
const COMMON_POLYNOMIAL_CONTEXT: &str = "gridfed he v1 common polynomial seed";
const PLAN_LEN: usize = 1 + 4 + 2 + 2 + 8;
const SEAT_LEN: usize = 4 + 32;

impl Committee {
    pub fn new(
        federation: FederationId,
        round: u64,
        plan: AggregationPlan,
        seats: Vec<CommitteeSeat>,
    ) -> Result<Self, HeError> {
        if seats.len() != usize::from(plan.committee().0) {
            return Err(HeError::InvalidPlan(
                "roster size differs from the plan's committee size",
            ));
        }
        for (i, seat) in seats.iter().enumerate() {
            let duplicate = seats[..i].iter().any(|other| {
                other.participant == seat.participant || other.verifying_key == seat.verifying_key
            });
            if duplicate {
                return Err(HeError::InvalidPlan(
                    "a participant or key sits twice on the committee",
                ));
            }
        }
        let mut committee = Self {
            federation,
            round,
            plan,
            seats,
            digest: [0; 32],
        };
        let encoding = committee.encode();
        committee.digest = digest(DIGEST_CONTEXT, &[&encoding]);
        Ok(committee)
    }

    #[must_use]
    pub fn plan(&self) -> &AggregationPlan {
        &self.plan
    }

    #[must_use]
    pub fn seats(&self) -> &[CommitteeSeat] {
        &self.seats
    }

    #[must_use]
    pub fn federation(&self) -> FederationId {
        self.federation
    }

    #[must_use]
    pub fn round(&self) -> u64 {
        self.round
    }

    /// The digest that binds every message of this key session.
    #[must_use]
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// The member index of `participant`, if it sits on the committee.
    #[must_use]
    pub fn member_index(&self, participant: ParticipantId) -> Option<MemberIndex> {
        let position = self
            .seats
            .iter()
            .position(|seat| seat.participant == participant)?;
        Some(MemberIndex(position as u16 + 1))
    }

    /// The identity key of member `member`, or a peer-fault error for an index off the roster.
    pub(crate) fn verifying_key(&self, member: u16) -> Result<&VerifyingKey, HeError> {
        usize::from(member)
            .checked_sub(1)
            .and_then(|position| self.seats.get(position))
            .map(|seat| &seat.verifying_key)
            .ok_or(HeError::BadMember {
                member,
                reason: "not on the committee",
            })
    }

    /// The public polynomial `a` every member's key share is built on.
    pub(crate) fn common_polynomial(&self) -> Vec<u64> {
        let mut seed = [0u8; 16];
        seed.copy_from_slice(&digest(COMMON_POLYNOMIAL_CONTEXT, &[&self.digest])[..16]);
        let mut a = vec![0u64; super::params::POLYNOMIAL_SIZE];
        expand_public(seed, &mut a);
        a
    }

    /// The canonical (unsigned) encoding of the roster.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = FrameWriter::new(FrameKind::Committee, body_len(self.seats.len()));
        writer.put_bytes(&self.federation.0);
        writer.put_u64(self.round);
        writer.put_u8(self.plan.plaintext_bits().0 as u8);
        writer.put_u32(self.plan.max_summands().0);
        writer.put_u16(self.plan.committee().0);
        writer.put_u16(self.plan.threshold().0);
        writer.put_u64(self.plan.decryption_budget().0);
        for seat in &self.seats {
            writer.put_u32(seat.participant.0);
            writer.put_bytes(seat.verifying_key.as_bytes());
        }
        writer.finish()
    }

    /// Decodes a roster, re-checking the plan and the roster invariants.
    pub fn decode(frame: &[u8]) -> Result<Self, HeError> {
        // The seat count sits at a fixed offset; read it to know the exact size to expect.
        const COUNT_OFFSET: usize = 16 + 16 + 8 + 1 + 4;
        let seats = frame
            .get(COUNT_OFFSET..COUNT_OFFSET + 2)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
            .ok_or(HeError::Malformed {
                what: "committee",
                reason: "truncated",
            })?;
        let mut reader =
            FrameReader::open_unverified(frame, FrameKind::Committee, body_len(seats))?;
        let federation = FederationId(reader.array()?);
        let round = reader.u64()?;
        let plan = AggregationPlan::new(
            PlaintextBits(u32::from(reader.u8()?)),
            SummandCount(reader.u32()?),
            CommitteeSize(reader.u16()?),
            Threshold(reader.u16()?),
            SlotCount(reader.u64()?),
        )
        .map_err(|_| reader.malformed("plan outside the noise budget or limits"))?;
        let mut roster = Vec::with_capacity(seats);
        for _ in 0..seats {
            let participant = ParticipantId(reader.u32()?);
            let verifying_key = VerifyingKey::from_bytes(&reader.array()?)
                .map_err(|_| reader.malformed("invalid Ed25519 key"))?;
            roster.push(CommitteeSeat {
                participant,
                verifying_key,
            });
        }
        reader.finish()?;
        Self::new(federation, round, plan, roster).map_err(|_| HeError::Malformed {
            what: "committee",
            reason: "roster violates its invariants",
        })
    }
}

fn body_len(seats: usize) -> usize {
    16 + 8 + PLAN_LEN + seats * SEAT_LEN
}
