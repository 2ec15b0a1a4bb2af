//! The coordinator's side of a round: one type per state, messages in, messages out.
//!
//! Each `Collecting*` state takes messages with `receive` (a refused message changes nothing) and
//! moves on with `close`, which the shell calls when everyone answered or the phase's deadline
//! passed; whoever has not answered by then has dropped. Every outgoing message names its
//! recipient in its header. The coordinator holds no participant secret until unmasking, and
//! then at most one of the two secrets of each participant.
//!
//! [`CollectingAdvertisements`] -> [`CollectingShares`] ->
//! [`CollectingMaskedInputs`](super::uploads::CollectingMaskedInputs) ->
//! [`CollectingUnmaskResponses`](super::unmask::CollectingUnmaskResponses) -> sum.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use ed25519_dalek::{SigningKey, VerifyingKey};
use rayon::prelude::*;

use super::envelope::{MessageHeader, SignedMessage};
use super::graph::NeighbourGraph;
use super::identity::roster_keys;
use super::ids::{ParticipantId, Party, Phase, RoundId};
use super::messages::{
    EncryptedShare, KeyAdvertisement, KeyDirectory, RosterEntry, RoundPlan, ShareList,
};
use super::params::SecAggParams;
use super::share_box::SEALED_LEN;
use super::uploads::CollectingMaskedInputs;
use crate::{AbortReason, CryptoError};

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

    pub(crate) fn require(&self, phase: Phase, have: usize) -> Result<(), CryptoError> {
        let need = self.params.min_survivors as usize;
        if have < need {
            return Err(AbortReason::TooFewParticipants { phase, have, need }.into());
        }
        Ok(())
    }
}

pub(crate) fn duplicate(id: ParticipantId, phase: Phase) -> CryptoError {
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
        let next = CollectingMaskedInputs::new(self.round, self.graph, self.adverts, live);
        Ok((next, relays))
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

round_debug!(CollectingAdvertisements, CollectingShares);
