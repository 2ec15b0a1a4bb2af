//! The coordinator's upload phase: masked inputs are verified and added up as they arrive.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use rayon::prelude::*;

use super::coordinator::{Round, duplicate};
use super::envelope::SignedMessage;
use super::graph::NeighbourGraph;
use super::ids::{ParticipantId, Party, Phase, SecretKind};
use super::messages::{KeyAdvertisement, MaskedInput, UnmaskRequest};
use super::prg::le_words;
use super::unmask::CollectingUnmaskResponses;
use crate::{AbortReason, CryptoError};

/// Words added per rayon task when accumulating masked inputs.
const ADD_CHUNK_WORDS: usize = 1 << 16;

/// Shares relayed; collecting masked inputs, which are added up as they arrive (memory stays
/// one vector, whatever the number of participants).
pub struct CollectingMaskedInputs {
    round: Round,
    graph: NeighbourGraph,
    adverts: BTreeMap<ParticipantId, KeyAdvertisement>,
    live: BTreeSet<ParticipantId>,
    sum: Vec<u32>,
    uploaded: BTreeSet<ParticipantId>,
}

impl CollectingMaskedInputs {
    pub(crate) fn new(
        round: Round,
        graph: NeighbourGraph,
        adverts: BTreeMap<ParticipantId, KeyAdvertisement>,
        live: BTreeSet<ParticipantId>,
    ) -> Self {
        // Written now (malloc + fill rather than calloc's lazy zero pages), so the page faults
        // are paid while waiting for uploads, not while adding the first one.
        let len = round.params.vector_len as usize;
        #[allow(clippy::slow_vector_initialization, reason = "fault the pages in now")]
        let mut sum = Vec::with_capacity(len);
        sum.resize(len, 0u32);
        Self {
            round,
            graph,
            adverts,
            live,
            sum,
            uploaded: BTreeSet::new(),
        }
    }

    /// Takes one masked input and adds it to the running sum (on all rayon threads).
    pub fn receive(&mut self, message: &SignedMessage) -> Result<(), CryptoError> {
        let id = self.authenticate(message)?;
        self.add(id, message)
    }

    /// [`Self::receive`] for many messages, verifying their signatures in parallel; one result
    /// per message, in order.
    pub fn receive_all(&mut self, messages: &[SignedMessage]) -> Vec<Result<(), CryptoError>> {
        let checked: Vec<_> = messages.par_iter().map(|m| self.authenticate(m)).collect();
        messages
            .iter()
            .zip(checked)
            .map(|(m, id)| id.and_then(|id| self.add(id, m)))
            .collect()
    }

    /// Everything that needs no mutation: addressing, membership, length, signature.
    fn authenticate(&self, message: &SignedMessage) -> Result<ParticipantId, CryptoError> {
        let id = self.round.sender(message, Phase::MaskedInput)?;
        if !self.live.contains(&id) {
            return Err(CryptoError::NotInRound(id));
        }
        if self.uploaded.contains(&id) {
            return Err(duplicate(id, Phase::MaskedInput));
        }
        let words = MaskedInput::word_bytes(message.payload())?;
        if words.len() != self.sum.len() * 4 {
            return Err(CryptoError::ProtocolViolation {
                sender: Party::Participant(id),
                reason: "masked input of the wrong length",
            });
        }
        self.round.verify(message, id)?;
        Ok(id)
    }

    fn add(&mut self, id: ParticipantId, message: &SignedMessage) -> Result<(), CryptoError> {
        // Checked again: a batch may hold the same sender twice.
        if !self.uploaded.insert(id) {
            return Err(duplicate(id, Phase::MaskedInput));
        }
        add_le_words(&mut self.sum, MaskedInput::word_bytes(message.payload())?);
        Ok(())
    }

    /// Live participants whose masked input has not arrived.
    #[must_use]
    pub fn pending(&self) -> Vec<ParticipantId> {
        self.live.difference(&self.uploaded).copied().collect()
    }

    /// Ends the phase: returns one unmasking request per participant whose input is in the sum.
    /// Aborts, before anyone reveals a share, when some secret could not be rebuilt because
    /// fewer than `threshold` of its holders are left.
    pub fn close(self) -> Result<(CollectingUnmaskResponses, Vec<SignedMessage>), CryptoError> {
        let survivors: Vec<ParticipantId> = self.uploaded.iter().copied().collect();
        self.round.require(Phase::MaskedInput, survivors.len())?;
        let dropped: Vec<ParticipantId> = self.live.difference(&self.uploaded).copied().collect();
        let t = self.round.threshold();
        for &owner in self.live.iter() {
            let holders = self
                .graph
                .neighbours(owner)
                .iter()
                .copied()
                .filter(|n| self.uploaded.contains(n))
                .count();
            let needed = self.uploaded.contains(&owner) || holders > 0;
            if needed && holders < t {
                let kind = if self.uploaded.contains(&owner) {
                    SecretKind::SelfMaskSeed
                } else {
                    SecretKind::PairwiseMaskKey
                };
                return Err(AbortReason::TooFewShares {
                    owner,
                    kind,
                    have: holders,
                    need: t,
                }
                .into());
            }
        }
        let components = self.graph.components(&survivors);
        if components != 1 {
            return Err(AbortReason::SurvivorsDisconnected { components }.into());
        }
        let request = UnmaskRequest {
            survivors: survivors.clone(),
            dropped: dropped.clone(),
        }
        .encode();
        let requests = survivors
            .par_iter()
            .map(|&id| {
                self.round.sign(
                    Phase::UnmaskRequest,
                    Party::Participant(id),
                    request.clone(),
                )
            })
            .collect();
        let next = CollectingUnmaskResponses::new(
            self.round,
            self.graph,
            self.adverts,
            self.live,
            self.uploaded,
            self.sum,
        );
        Ok((next, requests))
    }
}

/// Adds little-endian words to `sum` on all rayon threads.
fn add_le_words(sum: &mut [u32], bytes: &[u8]) {
    let chunks = sum.par_chunks_mut(ADD_CHUNK_WORDS);
    if let Some(words) = le_words(bytes) {
        chunks
            .zip(words.par_chunks(ADD_CHUNK_WORDS))
            .for_each(|(sum, words)| {
                sum.iter_mut()
                    .zip(words)
                    .for_each(|(s, w)| *s = s.wrapping_add(*w));
            });
    } else {
        chunks
            .zip(bytes.par_chunks(ADD_CHUNK_WORDS * 4))
            .for_each(|(sum, bytes)| {
                for (s, le) in sum.iter_mut().zip(bytes.chunks_exact(4)) {
                    *s = s.wrapping_add(u32::from_le_bytes([le[0], le[1], le[2], le[3]]));
                }
            });
    }
}

impl fmt::Debug for CollectingMaskedInputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CollectingMaskedInputs")
            .field("round", &self.round.id)
            .finish_non_exhaustive()
    }
}
