//! A committee member's secrets: its key share, its Shamir dealing, its share of the collective
//! secret.
//!
//! Key generation, per member `i`:
//! 1. sample a binary `s_i`, compute `b_i = -a*s_i + e_i` ([`CommitteeMember::new`]), publish a
//!    signed commitment to it, and reveal it once every member has committed
//!    ([`CommitteeMember::reveal_public_share`], see `commitment`);
//! 2. Shamir-share every coefficient of `s_i` with threshold `t` over GR(2^64, 8) and send
//!    fragment `f_i(x_j)` to member `j`, signed ([`CommitteeMember::deal`]; `s_i` is wiped);
//! 3. sum the `m` fragments it received into `S_j = sum_i f_i(x_j)`, its Shamir share of the
//!    collective secret `s = sum_i s_i` ([`CommitteeMember::accept_fragments`]).
//!
//! Fragments are secret: the transport must encrypt them to their recipient (e.g. with the
//! pairwise AEAD of secure aggregation's share relay). Fewer than `t` shares of `s` are
//! independent of `s` (Shamir over a Galois ring with unit differences is perfectly private).

use ed25519_dalek::SigningKey;
use rayon::prelude::*;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::HeError;
use super::commitment::{ShareCommitments, commit};
use super::committee::{Committee, MemberIndex};
use super::galois::{DEGREE, GaloisElement};
use super::keys::{PublicKeyShare, SHARE_BODY_LEN};
use super::params::POLYNOMIAL_SIZE;
use super::random::NoiseSource;
use super::ring::Ring;
use super::wire::{FrameKind, FrameReader, FrameWriter};

pub(crate) const FRAGMENT_BODY_LEN: usize = 32 + 2 + 2 + POLYNOMIAL_SIZE * DEGREE * 8;

/// A binary secret polynomial (a member's `s_i`), wiped when dropped.
#[derive(Zeroize, ZeroizeOnDrop)]
struct SecretPolynomial(Vec<u64>);

/// A member's Shamir share of the collective secret, one ring element per coefficient.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct KeyShare(pub(crate) Vec<GaloisElement>);

/// A signed fragment frame. Secret: send it to its recipient only, encrypted. Wiped on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SecretFrame(Vec<u8>);

impl std::fmt::Debug for SecretFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretFrame({} bytes)", self.0.len())
    }
}

impl SecretFrame {
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// One committee member. Holds secrets: never `Clone`, redacted `Debug`, wiped on drop.
pub struct CommitteeMember {
    pub(crate) committee: Committee,
    pub(crate) member: MemberIndex,
    pub(crate) identity: SigningKey,
    /// `Some` until [`Self::deal`] has shared it.
    secret: Option<SecretPolynomial>,
    public_share: Vec<u8>,
    commitment: Vec<u8>,
    /// `Some` once every member's fragment was accepted.
    pub(crate) key_share: Option<KeyShare>,
    /// Slots partially decrypted so far, against the plan's decryption budget.
    pub(crate) released: u64,
}

impl std::fmt::Debug for CommitteeMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitteeMember")
            .field("member", &self.member)
            .finish_non_exhaustive()
    }
}

impl CommitteeMember {
    /// Samples this member's secret and signs its public key share.
    pub fn new(
        committee: Committee,
        member: MemberIndex,
        identity: SigningKey,
        noise: &mut NoiseSource,
    ) -> Result<Self, HeError> {
        if committee.verifying_key(member.0)? != &identity.verifying_key() {
            return Err(HeError::InvalidPlan(
                "identity key differs from the member's roster seat",
            ));
        }
        let mut secret = SecretPolynomial(vec![0u64; POLYNOMIAL_SIZE]);
        noise.fill_binary(&mut secret.0);

        let ring = Ring::get();
        let mut b = vec![0u64; POLYNOMIAL_SIZE];
        ring.multiply(
            &ring.forward(&committee.common_polynomial()),
            &ring.forward(&secret.0),
            &mut b,
        );
        b.iter_mut().for_each(|x| *x = x.wrapping_neg());
        noise.add_tuniform(&mut b);

        let mut writer = FrameWriter::new(FrameKind::PublicKeyShare, SHARE_BODY_LEN);
        writer.put_bytes(&committee.digest());
        writer.put_u16(member.0);
        writer.put_words(&b, 0);
        let content = writer.content_digest_of_signed();
        let public_share = writer.sign(&identity);
        let commitment = commit(&committee, member, content, &identity);
        Ok(Self {
            committee,
            member,
            identity,
            secret: Some(secret),
            public_share,
            commitment,
            key_share: None,
            released: 0,
        })
    }

    #[must_use]
    pub fn member(&self) -> MemberIndex {
        self.member
    }

    #[must_use]
    pub fn committee(&self) -> &Committee {
        &self.committee
    }

    /// The signed commitment to this member's public key share, to publish first.
    #[must_use]
    pub fn commitment(&self) -> &[u8] {
        &self.commitment
    }

    /// The signed public key share frame, released only against every member's commitment (so
    /// that no member's share can be chosen after seeing this one).
    pub fn reveal_public_share(&self, commitments: &ShareCommitments) -> Result<&[u8], HeError> {
        if commitments.committee != self.committee.digest() {
            return Err(HeError::WrongBinding {
                what: "commitments",
                binding: "committee",
            });
        }
        // Our own commitment must be the one the others hold.
        PublicKeyShare::open(&self.public_share, &self.committee, commitments)?;
        Ok(&self.public_share)
    }

    /// Shamir-shares the secret: one signed fragment per member (this one included), then wipes
    /// the secret. Can be called once.
    pub fn deal(
        &mut self,
        noise: &mut NoiseSource,
    ) -> Result<Vec<(MemberIndex, SecretFrame)>, HeError> {
        let secret = self.secret.take().ok_or(HeError::KeyGenerationIncomplete(
            "this member has already dealt its shares",
        ))?;
        let threshold = usize::from(self.committee.plan().threshold().0);
        let members = self.committee.plan().committee().0;
        // f(x) = s + r_1 x + ... + r_{t-1} x^{t-1}, coefficient by coefficient.
        let mut random = vec![0u64; (threshold - 1) * POLYNOMIAL_SIZE * DEGREE];
        noise.fill_uniform(&mut random);
        let coefficients: Vec<GaloisElement> = random
            .chunks_exact(DEGREE)
            .map(|c| GaloisElement(std::array::from_fn(|i| c[i])))
            .collect();
        random.zeroize();

        let frames = (1..=members)
            .into_par_iter()
            .map(|recipient| {
                let point = GaloisElement::point(recipient);
                let mut writer = FrameWriter::new(FrameKind::KeyShareFragment, FRAGMENT_BODY_LEN);
                writer.put_bytes(&self.committee.digest());
                writer.put_u16(self.member.0);
                writer.put_u16(recipient);
                let mut words = Vec::with_capacity(POLYNOMIAL_SIZE * DEGREE);
                for (slot, &s) in secret.0.iter().enumerate() {
                    // Horner from the highest coefficient down to the secret.
                    let mut value = GaloisElement::ZERO;
                    for degree in (1..threshold).rev() {
                        let r = &coefficients[(degree - 1) * POLYNOMIAL_SIZE + slot];
                        value = value.add(r).mul(&point);
                    }
                    value = value.add(&GaloisElement::constant(s));
                    words.extend_from_slice(&value.0);
                    value.zeroize();
                }
                writer.put_words(&words, 0);
                words.zeroize();
                (
                    MemberIndex(recipient),
                    SecretFrame(writer.sign(&self.identity)),
                )
            })
            .collect();
        let mut coefficients = coefficients;
        coefficients.zeroize();
        drop(secret);
        Ok(frames)
    }

    /// Verifies and sums the fragments addressed to this member, one from every member.
    pub fn accept_fragments(&mut self, frames: &[&[u8]]) -> Result<(), HeError> {
        if self.key_share.is_some() {
            return Err(HeError::KeyGenerationIncomplete(
                "fragments were already accepted",
            ));
        }
        let members = usize::from(self.committee.plan().committee().0);
        let mut seen = vec![false; members];
        let mut share = KeyShare(vec![GaloisElement::ZERO; POLYNOMIAL_SIZE]);
        for frame in frames {
            let mut reader = FrameReader::open_unverified(
                frame,
                FrameKind::KeyShareFragment,
                FRAGMENT_BODY_LEN,
            )?;
            let session: [u8; 32] = reader.array()?;
            let dealer = reader.u16()?;
            reader.verify(frame, self.committee.verifying_key(dealer)?)?;
            if session != self.committee.digest() {
                return Err(HeError::WrongBinding {
                    what: "key share fragment",
                    binding: "committee",
                });
            }
            if reader.u16()? != self.member.0 {
                return Err(HeError::WrongBinding {
                    what: "key share fragment",
                    binding: "recipient",
                });
            }
            if std::mem::replace(&mut seen[usize::from(dealer) - 1], true) {
                return Err(HeError::BadMember {
                    member: dealer,
                    reason: "two fragments",
                });
            }
            let mut words = reader.words(POLYNOMIAL_SIZE * DEGREE, 0)?;
            reader.finish()?;
            for (sum, fragment) in share.0.iter_mut().zip(words.chunks_exact(DEGREE)) {
                *sum = sum.add(&GaloisElement(std::array::from_fn(|i| fragment[i])));
            }
            words.zeroize();
        }
        if seen.iter().any(|&present| !present) {
            return Err(HeError::KeyGenerationIncomplete(
                "a member's fragment is missing",
            ));
        }
        self.key_share = Some(share);
        Ok(())
    }
}
