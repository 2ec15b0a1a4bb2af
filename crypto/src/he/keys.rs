//! Public key material: each member's public key share and the collective public key.
//!
//! Member `i` publishes `b_i = -a * s_i + e_i` over the common polynomial `a` (binary `s_i`,
//! TUniform(17) `e_i`: one RLWE sample with tfhe's compact-public-key parameters), signed with its
//! Ed25519 identity. Anyone holding the roster sums the `m` verified shares into the collective
//! key `(a, b = sum b_i) = (a, -a * s + e)` with `s = sum s_i`, a secret nobody holds. The key is
//! as hard to break as any single honest member's share: `b` is `b_h` plus terms the adversary
//! knows, and `b_h` is pseudorandom under RLWE.

use std::sync::Arc;

use super::HeError;
use super::commitment::ShareCommitments;
use super::committee::{Committee, MemberIndex};
use super::params::{AggregationPlan, POLYNOMIAL_SIZE};
use super::ring::{Ring, Spectrum};
use super::wire::{FrameKind, FrameReader, digest};

const KEY_ID_CONTEXT: &str = "gridfed he v1 collective key id";
pub(crate) const SHARE_BODY_LEN: usize = 32 + 2 + POLYNOMIAL_SIZE * 8;

/// A member's verified public key share. Only [`PublicKeyShare::open`] makes one, after checking
/// the member's signature against the roster and the share against the member's commitment.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKeyShare {
    member: MemberIndex,
    b: Vec<u64>,
}

impl std::fmt::Debug for PublicKeyShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKeyShare")
            .field("member", &self.member)
            .finish_non_exhaustive()
    }
}

impl PublicKeyShare {
    #[must_use]
    pub fn member(&self) -> MemberIndex {
        self.member
    }

    /// Decodes a signed share frame, verifies it against `committee`, and checks that it is the
    /// share its member committed to before seeing anyone else's.
    pub fn open(
        frame: &[u8],
        committee: &Committee,
        commitments: &ShareCommitments,
    ) -> Result<Self, HeError> {
        let mut reader =
            FrameReader::open_unverified(frame, FrameKind::PublicKeyShare, SHARE_BODY_LEN)?;
        let session: [u8; 32] = reader.array()?;
        let member = reader.u16()?;
        reader.verify(frame, committee.verifying_key(member)?)?;
        if commitments.committee != committee.digest() {
            return Err(HeError::WrongBinding {
                what: "commitments",
                binding: "committee",
            });
        }
        if reader.content_digest() != commitments.digests.get(usize::from(member) - 1).copied() {
            return Err(HeError::WrongBinding {
                what: "public key share",
                binding: "commitment",
            });
        }
        if session != committee.digest() {
            return Err(HeError::WrongBinding {
                what: "public key share",
                binding: "committee",
            });
        }
        let b = reader.words(POLYNOMIAL_SIZE, 0)?;
        reader.finish()?;
        Ok(Self {
            member: MemberIndex(member),
            b,
        })
    }
}

/// The collective public key `(a, b)`: public, shared by participants (to encrypt), the
/// coordinator (to check what it aggregates) and committee members (to check what they decrypt).
#[derive(Clone)]
pub struct CollectivePublicKey {
    committee: [u8; 32],
    plan: AggregationPlan,
    id: [u8; 32],
    b: Vec<u64>,
    /// NTT spectra of `a` and `b`, computed once per key (see `ring`).
    spectra: Arc<[Spectrum; 2]>,
}

impl std::fmt::Debug for CollectivePublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectivePublicKey")
            .field("id", &self.id)
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

impl CollectivePublicKey {
    /// Sums one verified share from every member of `committee`.
    pub fn combine(committee: &Committee, shares: &[PublicKeyShare]) -> Result<Self, HeError> {
        let members = usize::from(committee.plan().committee().0);
        let mut seen = vec![false; members];
        let mut b = vec![0u64; POLYNOMIAL_SIZE];
        for share in shares {
            let slot = usize::from(share.member.0)
                .checked_sub(1)
                .and_then(|position| seen.get_mut(position))
                .ok_or(HeError::BadMember {
                    member: share.member.0,
                    reason: "not on the committee",
                })?;
            if std::mem::replace(slot, true) {
                return Err(HeError::BadMember {
                    member: share.member.0,
                    reason: "two key shares",
                });
            }
            b.iter_mut()
                .zip(&share.b)
                .for_each(|(sum, x)| *sum = sum.wrapping_add(*x));
        }
        if seen.iter().any(|&present| !present) {
            return Err(HeError::KeyGenerationIncomplete(
                "a member's public key share is missing",
            ));
        }
        let a = committee.common_polynomial();
        let bytes: Vec<u8> = b.iter().flat_map(|x| x.to_le_bytes()).collect();
        let id = digest(KEY_ID_CONTEXT, &[&committee.digest(), &bytes]);
        let ring = Ring::get();
        Ok(Self {
            committee: committee.digest(),
            plan: *committee.plan(),
            id,
            spectra: Arc::new([ring.forward(&a), ring.forward(&b)]),
            b,
        })
    }

    /// Identifier bound into every ciphertext and partial decryption under this key.
    #[must_use]
    pub fn id(&self) -> [u8; 32] {
        self.id
    }

    #[must_use]
    pub fn plan(&self) -> &AggregationPlan {
        &self.plan
    }

    /// Digest of the committee that generated the key.
    #[must_use]
    pub fn committee_digest(&self) -> [u8; 32] {
        self.committee
    }

    /// The `b` polynomial (the `a` polynomial follows from the committee digest).
    #[must_use]
    pub fn b(&self) -> &[u64] {
        &self.b
    }

    pub(crate) fn spectra(&self) -> &[Spectrum; 2] {
        &self.spectra
    }
}
