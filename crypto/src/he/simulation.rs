//! A whole key generation in one process, for simulations, tests, examples and benchmarks.
//!
//! In a deployment every step runs on a different machine and the frames travel through the
//! coordinator; here they are handed over directly, through the same signed frames and checks.

use ed25519_dalek::SigningKey;

use super::HeError;
use super::commitment::ShareCommitments;
use super::committee::{Committee, CommitteeSeat, MemberIndex};
use super::keys::{CollectivePublicKey, PublicKeyShare};
use super::member::CommitteeMember;
use super::params::AggregationPlan;
use super::random::NoiseSource;
use crate::secagg::{FederationId, ParticipantId};

/// Committee members (with their key shares) and the collective public key.
pub struct InProcessKeys {
    pub committee: Committee,
    pub members: Vec<CommitteeMember>,
    pub key: CollectivePublicKey,
}

/// Runs key generation for a committee of `identities.len()` members (participant ids
/// `1..=m`) under `plan`.
pub fn generate_keys_in_process(
    federation: FederationId,
    round: u64,
    plan: AggregationPlan,
    identities: Vec<SigningKey>,
    noise: &mut NoiseSource,
) -> Result<InProcessKeys, HeError> {
    let seats = identities
        .iter()
        .zip(1u32..)
        .map(|(identity, id)| CommitteeSeat {
            participant: ParticipantId(id),
            verifying_key: identity.verifying_key(),
        })
        .collect();
    let committee = Committee::new(federation, round, plan, seats)?;
    let mut members = identities
        .into_iter()
        .zip(1u16..)
        .map(|(identity, index)| {
            CommitteeMember::new(committee.clone(), MemberIndex(index), identity, noise)
        })
        .collect::<Result<Vec<_>, _>>()?;

    let commitment_frames: Vec<&[u8]> = members.iter().map(|m| m.commitment()).collect();
    let commitments = ShareCommitments::collect(&committee, &commitment_frames)?;
    let shares = members
        .iter()
        .map(|member| {
            let frame = member.reveal_public_share(&commitments)?;
            PublicKeyShare::open(frame, &committee, &commitments)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let key = CollectivePublicKey::combine(&committee, &shares)?;

    let mut inboxes: Vec<Vec<_>> = members.iter().map(|_| Vec::new()).collect();
    for member in &mut members {
        for (recipient, frame) in member.deal(noise)? {
            inboxes[usize::from(recipient.0) - 1].push(frame);
        }
    }
    for (member, inbox) in members.iter_mut().zip(&inboxes) {
        let frames: Vec<&[u8]> = inbox.iter().map(|frame| frame.as_bytes()).collect();
        member.accept_fragments(&frames)?;
    }
    Ok(InProcessKeys {
        committee,
        members,
        key,
    })
}
