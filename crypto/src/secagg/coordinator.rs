//! The coordinator's side of a round: one type per state, messages in, messages out.
//!
//! Each `Collecting*` state takes messages with `receive` (a refused message changes nothing) and
//! moves on with `close`, which the shell calls when everyone answered or the phase's deadline
//! passed; whoever has not answered by then has dropped. Every outgoing message names its
//! recipient in its header. The coordinator holds no participant secret until unmasking, and
//! then at most one of the two secrets of each participant.
//!
//! [`CollectingAdvertisements`] -> [`CollectingShares`] -> [`CollectingMaskedInputs`] ->
//! [`CollectingUnmaskResponses`](super::unmask::CollectingUnmaskResponses) -> sum.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use ed25519_dalek::{SigningKey, VerifyingKey};
use rayon::prelude::*;

use super::envelope::{MessageHeader, SignedMessage};
use super::graph::NeighbourGraph;
use super::identity::roster_keys;
use super::ids::{ParticipantId, Party, Phase, RoundId, SecretKind};
use super::messages::{
    EncryptedShare, KeyAdvertisement, KeyDirectory, MaskedInput, RosterEntry, RoundPlan, ShareList,
    UnmaskRequest,
};
use super::params::SecAggParams;
use super::prg::le_words;
use super::share_box::SEALED_LEN;
use super::unmask::CollectingUnmaskResponses;
use crate::{AbortReason, CryptoError};

/// Words added per rayon task when accumulating masked inputs.
const ADD_CHUNK_WORDS: usize = 1 << 16;

/// What every coordinator state knows.
pub(crate) struct Round {
    key: SigningKey,
    pub(crate) id: RoundId,
    pub(crate) params: SecAggParams,
    roster: HashMap<ParticipantId, VerifyingKey>,
}

impl Round {
    pub(crate) fn sign(&self, phase: Phase, recipient: Party, payload: Vec<u8>) -> SignedMessage {
        let header = MessageHeader {
            round: self.id,
            phase,
            sender: Party::Coordinator,
            recipient,
        };
        SignedMessage::sign(header, payload, &self.key)
    }

    /// The sender of a message of `phase` addressed to us, if it is on the roster.
    pub(crate) fn sender(
        &self,
        message: &SignedMessage,
        phase: Phase,
    ) -> Result<ParticipantId, CryptoError> {
        let Party::Participant(id) = message.header().sender else {
            return Err(CryptoError::Misaddressed {
                sender: message.header().sender,
                recipient: Party::Coordinator,
            });
        };
        if !self.roster.contains_key(&id) {
            return Err(CryptoError::NotInRound(id));
        }
        message.check_binding(&self.id, phase, Party::Participant(id), Party::Coordinator)?;
        Ok(id)
    }

    pub(crate) fn verify(
        &self,
        message: &SignedMessage,
        id: ParticipantId,
    ) -> Result<(), CryptoError> {
        let key = self.roster.get(&id).ok_or(CryptoError::NotInRound(id))?;
        message.verify(key)
    }

    pub(crate) fn threshold(&self) -> usize {
        self.params.threshold as usize
    }

    fn require(&self, phase: Phase, have: usize) -> Result<(), CryptoError> {
        let need = self.params.min_survivors as usize;
        if have < need {
            return Err(AbortReason::TooFewParticipants { phase, have, need }.into());
        }
        Ok(())
    }
}

fn duplicate(id: ParticipantId, phase: Phase) -> CryptoError {
    CryptoError::Duplicate {
        sender: Party::Participant(id),
        phase,
    }
}

/// Round planned; collecting the participants' key advertisements.
pub struct CollectingAdvertisements {
    round: Round,
    graph_seed: [u8; 32],
    adverts: BTreeMap<ParticipantId, (SignedMessage, KeyAdvertisement)>,
}

impl CollectingAdvertisements {
    /// Opens a round over `roster` and returns the signed plan to broadcast. `graph_seed` must be
    /// fresh and unpredictable to participants before the plan (e.g. from the OS).
    pub fn open(
        key: SigningKey,
        round: RoundId,
        params: SecAggParams,
        mut roster: Vec<RosterEntry>,
        graph_seed: [u8; 32],
    ) -> Result<(Self, SignedMessage), CryptoError> {
        params.validate(roster.len())?;
        roster.sort_unstable_by_key(|entry| entry.id);
        let keys = roster_keys(&roster)?;
        let plan = RoundPlan {
            params,
            graph_seed,
            roster,
        };
        let round = Round {
            key,
            id: round,
            params,
            roster: keys,
        };
        let message = round.sign(Phase::RoundPlan, Party::AllParticipants, plan.encode());
        Ok((
            Self {
                round,
                graph_seed,
                adverts: BTreeMap::new(),
            },
            message,
        ))
    }

    /// Takes one participant's key advertisement.
    pub fn receive(&mut self, message: &SignedMessage) -> Result<(), CryptoError> {
        let id = self.round.sender(message, Phase::AdvertiseKeys)?;
        if self.adverts.contains_key(&id) {
            return Err(duplicate(id, Phase::AdvertiseKeys));
        }
        self.round.verify(message, id)?;
        let advert = KeyAdvertisement::decode(message.payload())?;
        self.adverts.insert(id, (message.clone(), advert));
        Ok(())
    }

    /// Roster members not heard from yet.
    #[must_use]
    pub fn pending(&self) -> Vec<ParticipantId> {
        let mut ids: Vec<_> = self
            .round
            .roster
            .keys()
            .filter(|id| !self.adverts.contains_key(id))
            .copied()
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Ends the phase: returns one key directory per participant that advertised.
    pub fn close(self) -> Result<(CollectingShares, Vec<SignedMessage>), CryptoError> {
        let advertised: Vec<ParticipantId> = self.adverts.keys().copied().collect();
        self.round.require(Phase::AdvertiseKeys, advertised.len())?;
        let graph =
            NeighbourGraph::new(&self.graph_seed, &advertised, self.round.params.neighbours);
        // Signing one message per participant: spread over the cores.
        let directories = advertised
            .par_iter()
            .map(|&id| {
                let neighbour_adverts = graph
                    .neighbours(id)
                    .iter()
                    .map(|n| self.adverts[n].0.clone())
                    .collect();
                let directory = KeyDirectory {
                    advertised: advertised.clone(),
                    neighbour_adverts,
                };
                self.round.sign(
                    Phase::KeyDirectory,
                    Party::Participant(id),
                    directory.encode(),
                )
            })
            .collect();
        let adverts = self
            .adverts
            .into_iter()
            .map(|(id, (_, advert))| (id, advert))
            .collect();
        Ok((
            CollectingShares {
                round: self.round,
                graph,
                adverts,
                lists: BTreeMap::new(),
            },
            directories,
        ))
    }
}

/// Key directories sent; collecting each participant's encrypted shares.
pub struct CollectingShares {
    round: Round,
    graph: NeighbourGraph,
    adverts: BTreeMap<ParticipantId, KeyAdvertisement>,
    lists: BTreeMap<ParticipantId, ShareList>,
}

impl CollectingShares {
    /// Takes one participant's encrypted shares: exactly one well-sized envelope per neighbour.
    pub fn receive(&mut self, message: &SignedMessage) -> Result<(), CryptoError> {
        let id = self.round.sender(message, Phase::ShareKeys)?;
        if !self.graph.contains(id) {
            return Err(CryptoError::NotInRound(id));
        }
        if self.lists.contains_key(&id) {
            return Err(duplicate(id, Phase::ShareKeys));
        }
        self.round.verify(message, id)?;
        let list = ShareList::decode(message.payload())?;
        let peers: Vec<ParticipantId> = list.shares.iter().map(|s| s.peer).collect();
        let violation = |reason| CryptoError::ProtocolViolation {
            sender: Party::Participant(id),
            reason,
        };
        if peers != self.graph.neighbours(id) {
            return Err(violation("shares not addressed to exactly its neighbours"));
        }
        if list.shares.iter().any(|s| s.ciphertext.len() != SEALED_LEN) {
            return Err(violation("share envelope of the wrong size"));
        }
        self.lists.insert(id, list);
        Ok(())
    }

    /// Participants that advertised keys but have not sent shares yet.
    #[must_use]
    pub fn pending(&self) -> Vec<ParticipantId> {
        self.adverts
            .keys()
            .filter(|id| !self.lists.contains_key(id))
            .copied()
            .collect()
    }

    /// Ends the phase: returns one share relay per live participant. A participant left with
    /// fewer live neighbours than the threshold could never be unmasked, so it is dropped here
    /// (repeatedly, as dropping it weakens its neighbours) before anyone masks with it.
    pub fn close(self) -> Result<(CollectingMaskedInputs, Vec<SignedMessage>), CryptoError> {
        let t = self.round.threshold();
        let mut live: BTreeSet<ParticipantId> = self.lists.keys().copied().collect();
        loop {
            let weak: Vec<ParticipantId> = live
                .iter()
                .filter(|&&id| {
                    self.graph
                        .neighbours(id)
                        .iter()
                        .filter(|n| live.contains(n))
                        .count()
                        < t
                })
                .copied()
                .collect();
            if weak.is_empty() {
                break;
            }
            weak.iter().for_each(|id| {
                live.remove(id);
            });
        }
        self.round.require(Phase::ShareKeys, live.len())?;
        let recipients: Vec<ParticipantId> = live.iter().copied().collect();
        let relays = recipients
            .par_iter()
            .map(|&recipient| {
                let shares = self
                    .graph
                    .neighbours(recipient)
                    .iter()
                    .copied()
                    .filter(|sender| live.contains(sender))
                    .filter_map(|sender| {
                        let list = &self.lists[&sender].shares;
                        let at = list.binary_search_by_key(&recipient, |s| s.peer).ok()?;
                        Some(EncryptedShare {
                            peer: sender,
                            ciphertext: list[at].ciphertext.clone(),
                        })
                    })
                    .collect();
                self.round.sign(
                    Phase::ShareRelay,
                    Party::Participant(recipient),
                    ShareList { shares }.encode(),
                )
            })
            .collect();
        let sum = vec![0u32; self.round.params.vector_len as usize];
        let next = CollectingMaskedInputs {
            round: self.round,
            graph: self.graph,
            adverts: self.adverts,
            live,
            sum,
            uploaded: BTreeSet::new(),
        };
        Ok((next, relays))
    }
}

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

macro_rules! round_debug {
    ($($state:ident),*) => {$(
        impl fmt::Debug for $state {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($state)).field("round", &self.round.id).finish_non_exhaustive()
            }
        }
    )*};
}

round_debug!(
    CollectingAdvertisements,
    CollectingShares,
    CollectingMaskedInputs
);
