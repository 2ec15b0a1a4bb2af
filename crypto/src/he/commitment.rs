//! Commit-then-reveal of public key shares, against rogue keys.
//!
//! If a member could choose `b_m` after seeing the others' shares, it could publish
//! `b_m = -a*s' + e' - sum_{i != m} b_i` and own the whole collective key `(a, -a*s' + e')`. So
//! key generation runs in two steps: every member first signs a commitment to its share (the
//! BLAKE3 digest its signature will cover), and a member reveals its share only once it holds
//! all `m` commitments ([`super::CommitteeMember::reveal_public_share`]). A share is accepted
//! only if it matches its member's commitment ([`super::PublicKeyShare::open`]), so no share can
//! depend on an honest one.

use super::HeError;
use super::committee::{Committee, MemberIndex};
use super::wire::{FrameKind, FrameReader, FrameWriter};

pub(crate) const COMMITMENT_BODY_LEN: usize = 32 + 2 + 32;

/// One verified commitment per committee member, in member order.
///
/// Invariant (upheld by [`ShareCommitments::collect`], the only constructor): exactly one
/// signed commitment from every member of the committee named by `committee`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareCommitments {
    pub(crate) committee: [u8; 32],
    pub(crate) digests: Vec<[u8; 32]>,
}

impl ShareCommitments {
    /// Verifies the signed commitment frames of every member.
    pub fn collect(committee: &Committee, frames: &[&[u8]]) -> Result<Self, HeError> {
        let members = usize::from(committee.plan().committee().0);
        let mut digests: Vec<Option<[u8; 32]>> = vec![None; members];
        for frame in frames {
            let mut reader = FrameReader::open_unverified(
                frame,
                FrameKind::ShareCommitment,
                COMMITMENT_BODY_LEN,
            )?;
            let session: [u8; 32] = reader.array()?;
            let member = reader.u16()?;
            reader.verify(frame, committee.verifying_key(member)?)?;
            if session != committee.digest() {
                return Err(HeError::WrongBinding {
                    what: "commitment",
                    binding: "committee",
                });
            }
            let digest = reader.array()?;
            reader.finish()?;
            if digests[usize::from(member) - 1].replace(digest).is_some() {
                return Err(HeError::BadMember {
                    member,
                    reason: "two commitments",
                });
            }
        }
        let digests = digests.into_iter().collect::<Option<Vec<_>>>().ok_or(
            HeError::KeyGenerationIncomplete("a member's commitment is missing"),
        )?;
        Ok(Self {
            committee: committee.digest(),
            digests,
        })
    }
}

/// The signed commitment frame of `member` to the share frame whose signed content has digest
/// `content`.
pub(crate) fn commit(
    committee: &Committee,
    member: MemberIndex,
    content: [u8; 32],
    signer: &ed25519_dalek::SigningKey,
) -> Vec<u8> {
    let mut writer = FrameWriter::new(FrameKind::ShareCommitment, COMMITMENT_BODY_LEN);
    writer.put_bytes(&committee.digest());
    writer.put_u16(member.0);
    writer.put_bytes(&content);
    writer.sign(signer)
}
