//! The coordinator's last state: collect revealed shares, rebuild secrets, remove the masks.
//!
//! For every participant whose input is in the sum it rebuilds the self-mask seed; for every
//! participant that dropped after sharing keys (and had live neighbours) it rebuilds the pairwise
//! mask key and recomputes its masks with the survivors. It accepts only the kind of share that
//! matches each owner's status, so it never holds both secrets of anyone. Rebuilt secrets are
//! checked against what their owners committed to before any mask is removed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use rayon::prelude::*;
use x25519_dalek::{PublicKey, StaticSecret};

use super::coordinator::Round;
use super::envelope::SignedMessage;
use super::graph::NeighbourGraph;
use super::ids::{ParticipantId, Party, Phase, SecretKind};
use super::messages::{KeyAdvertisement, UnmaskResponse};
use super::prg::{MaskSign, MaskStream, apply_masks};
use super::secret::ShamirShare;
use super::{kdf, shamir};
use crate::{AbortReason, CryptoError};

/// The unmasked result of a round: the modular sum of the contributors' encoded updates.
#[derive(Clone, PartialEq, Eq)]
pub struct AggregateResult {
    pub sum: Vec<u32>,
    /// Participants whose input is in the sum.
    pub contributors: Vec<ParticipantId>,
    /// Participants that shared keys but did not upload; their input is not in the sum.
    pub dropped: Vec<ParticipantId>,
    /// PRG streams the coordinator generated to unmask (self masks plus the dropped
    /// participants' pairwise masks): the work that unmasking is compared with.
    pub mask_streams: usize,
}

impl fmt::Debug for AggregateResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AggregateResult")
            .field("len", &self.sum.len())
            .field("contributors", &self.contributors)
            .field("dropped", &self.dropped)
            .field("mask_streams", &self.mask_streams)
            .finish()
    }
}

/// Unmasking requests sent; collecting the revealed shares.
pub struct CollectingUnmaskResponses {
    round: Round,
    graph: NeighbourGraph,
    adverts: BTreeMap<ParticipantId, KeyAdvertisement>,
    live: BTreeSet<ParticipantId>,
    survivors: BTreeSet<ParticipantId>,
    sum: Vec<u32>,
    responders: BTreeSet<ParticipantId>,
    /// Shares per owner, all of the one kind the owner's status allows.
    shares: BTreeMap<ParticipantId, Vec<ShamirShare>>,
}

impl CollectingUnmaskResponses {
    pub(crate) fn new(
        round: Round,
        graph: NeighbourGraph,
        adverts: BTreeMap<ParticipantId, KeyAdvertisement>,
        live: BTreeSet<ParticipantId>,
        survivors: BTreeSet<ParticipantId>,
        sum: Vec<u32>,
    ) -> Self {
        Self {
            round,
            graph,
            adverts,
            live,
            survivors,
            sum,
            responders: BTreeSet::new(),
            shares: BTreeMap::new(),
        }
    }

    fn kind_of(&self, owner: ParticipantId) -> SecretKind {
        if self.survivors.contains(&owner) {
            SecretKind::SelfMaskSeed
        } else {
            SecretKind::PairwiseMaskKey
        }
    }

    /// Takes one survivor's revealed shares: exactly one per live neighbour, of the right kind
    /// and at the responder's evaluation point.
    pub fn receive(&mut self, message: &SignedMessage) -> Result<(), CryptoError> {
        let (id, response) = self.authenticate(message)?;
        self.store(id, response)
    }

    /// [`Self::receive`] for many messages, verifying and decoding them in parallel; one result
    /// per message, in order.
    pub fn receive_all(&mut self, messages: &[SignedMessage]) -> Vec<Result<(), CryptoError>> {
        let checked: Vec<_> = messages.par_iter().map(|m| self.authenticate(m)).collect();
        checked
            .into_iter()
            .map(|c| c.and_then(|(id, response)| self.store(id, response)))
            .collect()
    }

    fn authenticate(
        &self,
        message: &SignedMessage,
    ) -> Result<(ParticipantId, UnmaskResponse), CryptoError> {
        let id = self.round.sender(message, Phase::UnmaskResponse)?;
        if !self.survivors.contains(&id) {
            return Err(CryptoError::NotInRound(id));
        }
        if self.responders.contains(&id) {
            return Err(CryptoError::Duplicate {
                sender: Party::Participant(id),
                phase: Phase::UnmaskResponse,
            });
        }
        self.round.verify(message, id)?;
        let response = UnmaskResponse::decode(message.payload())?;
        let violation = |reason| CryptoError::ProtocolViolation {
            sender: Party::Participant(id),
            reason,
        };
        let owners: Vec<ParticipantId> = response.shares.iter().map(|s| s.owner).collect();
        let expected: Vec<ParticipantId> = self
            .graph
            .neighbours(id)
            .iter()
            .copied()
            .filter(|n| self.live.contains(n))
            .collect();
        if owners != expected {
            return Err(violation(
                "revealed shares do not cover exactly its live neighbours",
            ));
        }
        for revealed in &response.shares {
            if revealed.kind != self.kind_of(revealed.owner) {
                return Err(violation(
                    "share of the secret that the owner's status forbids",
                ));
            }
            let point = self
                .graph
                .neighbours(revealed.owner)
                .binary_search(&id)
                .map(|i| i + 1);
            if point != Ok(usize::from(revealed.share.x())) {
                return Err(violation("share at the wrong evaluation point"));
            }
        }
        Ok((id, response))
    }

    fn store(&mut self, id: ParticipantId, response: UnmaskResponse) -> Result<(), CryptoError> {
        // Checked again: a batch may hold the same sender twice.
        if !self.responders.insert(id) {
            return Err(CryptoError::Duplicate {
                sender: Party::Participant(id),
                phase: Phase::UnmaskResponse,
            });
        }
        for revealed in response.shares {
            self.shares
                .entry(revealed.owner)
                .or_default()
                .push(revealed.share);
        }
        Ok(())
    }

    /// Survivors whose response has not arrived.
    #[must_use]
    pub fn pending(&self) -> Vec<ParticipantId> {
        self.survivors
            .difference(&self.responders)
            .copied()
            .collect()
    }

    /// Rebuilds the needed secrets and removes every remaining mask. Aborts with no sum when a
    /// secret lacks `threshold` shares. Owners are handled in parallel (rayon).
    pub fn finish(mut self) -> Result<AggregateResult, CryptoError> {
        let owners: Vec<ParticipantId> = self.live.iter().copied().collect();
        let streams: Vec<MaskStream> = owners
            .par_iter()
            .map(|&owner| self.owner_streams(owner))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
        apply_masks(&mut self.sum, &streams);
        Ok(AggregateResult {
            mask_streams: streams.len(),
            sum: std::mem::take(&mut self.sum),
            contributors: self.survivors.iter().copied().collect(),
            dropped: self.live.difference(&self.survivors).copied().collect(),
        })
    }

    /// The streams to remove for `owner`: its self mask if it contributed, else its pairwise
    /// masks with the contributors among its neighbours.
    fn owner_streams(&self, owner: ParticipantId) -> Result<Vec<MaskStream>, CryptoError> {
        let round = self.round.id;
        let kind = self.kind_of(owner);
        let holders: Vec<ParticipantId> = self
            .graph
            .neighbours(owner)
            .iter()
            .copied()
            .filter(|n| self.survivors.contains(n))
            .collect();
        if kind == SecretKind::PairwiseMaskKey && holders.is_empty() {
            return Ok(Vec::new());
        }
        let shares = self.shares.get(&owner).map_or(&[][..], Vec::as_slice);
        let need = self.round.threshold();
        if shares.len() < need {
            return Err(AbortReason::TooFewShares {
                owner,
                kind,
                have: shares.len(),
                need,
            }
            .into());
        }
        let secret = shamir::reconstruct(shares, need)?;
        let advert = self
            .adverts
            .get(&owner)
            .ok_or(CryptoError::NotInRound(owner))?;
        let mismatch = CryptoError::ReconstructionMismatch { owner, kind };
        if kind == SecretKind::SelfMaskSeed {
            if kdf::self_seed_commitment(&secret, &round, owner) != advert.self_seed_commitment {
                return Err(mismatch);
            }
            let key = kdf::self_mask_key(&secret, &round, owner);
            return Ok(vec![MaskStream {
                key,
                sign: MaskSign::Subtract,
            }]);
        }
        let mask_secret = StaticSecret::from(*secret.expose());
        if PublicKey::from(&mask_secret).to_bytes() != advert.mask_public {
            return Err(mismatch);
        }
        holders
            .into_iter()
            .map(|survivor| {
                let public = &self
                    .adverts
                    .get(&survivor)
                    .ok_or(CryptoError::NotInRound(survivor))?
                    .mask_public;
                let shared = kdf::agree(&mask_secret, public, survivor)?;
                // The survivor added this mask if its id is the smaller one: undo it.
                let sign = if survivor < owner {
                    MaskSign::Subtract
                } else {
                    MaskSign::Add
                };
                Ok(MaskStream {
                    key: kdf::pairwise_mask_key(&shared, &round, owner, survivor),
                    sign,
                })
            })
            .collect()
    }
}

impl fmt::Debug for CollectingUnmaskResponses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CollectingUnmaskResponses")
            .field("round", &self.round.id)
            .finish_non_exhaustive()
    }
}
