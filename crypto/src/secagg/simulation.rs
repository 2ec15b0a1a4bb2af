//! A whole round in one process: the real participant and coordinator state machines, with
//! messages handed over in memory (optionally through their byte encoding) and chosen
//! participants dropping at each phase. Used by the tests, `examples/secagg_round.rs` and the
//! benchmarks; deterministic for a given seed.
//!
//! Dropouts: at each of the four phases, `floor(fraction * participants)` of those still in the
//! round (drawn from the seed) stop answering: before advertising keys, before sharing keys,
//! before uploading, and after uploading (they send no unmasking response).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;

use super::coordinator::CollectingAdvertisements;
use super::envelope::{DEFAULT_MESSAGE_LIMIT, SignedMessage};
use super::identity::{ParticipantIdentity, generate_signing_key};
use super::ids::{FederationId, ParticipantId, Party, RoundId, SecretKind};
use super::messages::UnmaskResponse;
use super::params::SecAggParams;
use super::participant::{AwaitingUnmask, ReadyToMask, join};
use super::unmask::AggregateResult;
use super::uploads::CollectingMaskedInputs;
use crate::CryptoError;

/// Fractions of the roster that drop at each phase.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Dropout {
    pub before_advertise: f64,
    pub before_sharing: f64,
    pub before_upload: f64,
    pub after_upload: f64,
}

/// One simulated round.
#[derive(Debug, Clone)]
pub struct SimulationConfig {
    /// Participants are numbered `0..participants`; `inputs[i]` belongs to `ParticipantId(i)`.
    pub participants: u32,
    pub params: SecAggParams,
    pub dropout: Dropout,
    pub seed: u64,
    /// Encode and decode every message, as a network would.
    pub through_bytes: bool,
}

/// What a round produced.
#[derive(Debug)]
pub struct RoundOutcome {
    pub result: Result<AggregateResult, CryptoError>,
    /// Wall time of all participants masking, excluding the other phases: the first one alone,
    /// then the others in parallel.
    pub masking: Duration,
    /// Wall time of the first participant masking alone (with all cores), as one site sees it.
    pub single_masking: Duration,
    /// Wall time of the coordinator: taking the masked inputs, the responses, and unmasking.
    pub unmasking: Duration,
    /// Participants whose masked input was sent, in increasing order.
    pub uploaded: Vec<ParticipantId>,
    /// Encoded bytes each participant sent over the whole round.
    pub bytes_sent: BTreeMap<ParticipantId, usize>,
    /// Every (owner, kind) of share revealed to the coordinator, once per responder.
    pub revealed: Vec<(ParticipantId, SecretKind)>,
}

fn carry(message: SignedMessage, through_bytes: bool) -> Result<SignedMessage, CryptoError> {
    if through_bytes {
        SignedMessage::from_bytes(&message.to_bytes(), DEFAULT_MESSAGE_LIMIT)
    } else {
        Ok(message)
    }
}

fn recipient(message: &SignedMessage) -> Option<ParticipantId> {
    match message.header().recipient {
        Party::Participant(id) => Some(id),
        _ => None,
    }
}

/// A round run up to the masking step: the live participants hold their masks.
pub struct PreparedRound {
    config: SimulationConfig,
    coordinator: CollectingMaskedInputs,
    ready: Vec<(ParticipantId, ReadyToMask)>,
    drop_after_upload: BTreeSet<ParticipantId>,
    bytes_sent: BTreeMap<ParticipantId, usize>,
}

/// Removes `floor(fraction * roster)` of `alive`, chosen by `rng`.
fn drop_some(
    alive: &mut Vec<ParticipantId>,
    fraction: f64,
    roster: u32,
    rng: &mut ChaCha20Rng,
) -> BTreeSet<ParticipantId> {
    let count = ((fraction.clamp(0.0, 1.0) * f64::from(roster)).floor() as usize).min(alive.len());
    alive.shuffle(rng);
    let dropped = alive.split_off(alive.len() - count).into_iter().collect();
    alive.sort_unstable();
    dropped
}

impl PreparedRound {
    /// Runs the plan, key advertisement and key sharing phases.
    pub fn prepare(config: &SimulationConfig) -> Result<Self, CryptoError> {
        let mut rng = ChaCha20Rng::seed_from_u64(config.seed);
        let round = RoundId {
            federation: FederationId::from_name("simulation"),
            round: config.seed,
        };
        let coordinator_key = generate_signing_key(&mut rng);
        let coordinator_vk: VerifyingKey = coordinator_key.verifying_key();
        let identities: Vec<ParticipantIdentity> = (0..config.participants)
            .map(|i| ParticipantIdentity::generate(ParticipantId(i), &mut rng))
            .collect();
        let roster = identities
            .iter()
            .map(ParticipantIdentity::roster_entry)
            .collect();
        let mut graph_seed = [0u8; 32];
        rng.fill_bytes(&mut graph_seed);
        let (mut collecting, plan) = CollectingAdvertisements::open(
            coordinator_key,
            round,
            config.params,
            roster,
            graph_seed,
        )?;
        let plan = carry(plan, config.through_bytes)?;
        let mut bytes_sent = BTreeMap::new();
        let mut tally = |message: &SignedMessage| {
            if let Party::Participant(id) = message.header().sender {
                *bytes_sent.entry(id).or_insert(0) += message.encoded_len();
            }
        };

        let n = config.participants;
        let mut alive: Vec<ParticipantId> =
            identities.iter().map(ParticipantIdentity::id).collect();
        drop_some(&mut alive, config.dropout.before_advertise, n, &mut rng);
        let seeds: BTreeMap<ParticipantId, u64> =
            alive.iter().map(|&id| (id, rng.next_u64())).collect();
        let joined: Vec<_> = identities
            .into_par_iter()
            .filter(|identity| seeds.contains_key(&identity.id()))
            .map(|identity| {
                let mut own_rng = ChaCha20Rng::seed_from_u64(seeds[&identity.id()]);
                let id = identity.id();
                join(identity, coordinator_vk, &plan, &mut own_rng)
                    .map(|(state, advert)| (id, state, advert))
            })
            .collect::<Result<_, _>>()?;
        let mut advertised = BTreeMap::new();
        for (id, state, advert) in joined {
            let advert = carry(advert, config.through_bytes)?;
            tally(&advert);
            collecting.receive(&advert)?;
            advertised.insert(id, state);
        }
        let (mut collecting, directories) = collecting.close()?;

        drop_some(&mut alive, config.dropout.before_sharing, n, &mut rng);
        let mut directories: BTreeMap<ParticipantId, SignedMessage> = directories
            .into_iter()
            .filter_map(|m| Some((recipient(&m)?, m)))
            .collect();
        let work: Vec<_> = alive
            .iter()
            .filter_map(|id| Some((*id, advertised.remove(id)?, directories.remove(id)?)))
            .collect();
        let shared: Vec<_> = work
            .into_par_iter()
            .map(|(id, state, directory)| {
                let directory = carry(directory, config.through_bytes)?;
                state
                    .handle(&directory)
                    .map(|(next, out)| (id, next, out))
                    .map_err(|r| r.error)
            })
            .collect::<Result<_, CryptoError>>()?;
        let mut sharing = BTreeMap::new();
        for (id, state, shares) in shared {
            let shares = carry(shares, config.through_bytes)?;
            tally(&shares);
            collecting.receive(&shares)?;
            sharing.insert(id, state);
        }
        let (coordinator, relays) = collecting.close()?;

        drop_some(&mut alive, config.dropout.before_upload, n, &mut rng);
        let alive_set: BTreeSet<ParticipantId> = alive.iter().copied().collect();
        let mut ready = Vec::new();
        for relay in relays {
            let Some(id) = recipient(&relay).filter(|id| alive_set.contains(id)) else {
                continue;
            };
            let Some(state) = sharing.remove(&id) else {
                continue;
            };
            let relay = carry(relay, config.through_bytes)?;
            ready.push((id, state.handle(&relay).map_err(|r| r.error)?));
        }
        let mut uploaders: Vec<ParticipantId> = ready.iter().map(|(id, _)| *id).collect();
        let drop_after_upload = drop_some(&mut uploaders, config.dropout.after_upload, n, &mut rng);
        Ok(Self {
            config: config.clone(),
            coordinator,
            ready,
            drop_after_upload,
            bytes_sent,
        })
    }

    /// Participants that will upload.
    #[must_use]
    pub fn uploaders(&self) -> Vec<ParticipantId> {
        self.ready.iter().map(|(id, _)| *id).collect()
    }

    /// The participants' states, ready to mask (for benchmarks of one participant's masking).
    #[must_use]
    pub fn into_ready(self) -> Vec<(ParticipantId, ReadyToMask)> {
        self.ready
    }

    /// Every uploader masks `inputs[id]`: the first alone, then the rest in parallel; the times
    /// are recorded.
    pub fn mask(self, inputs: &[Vec<u32>]) -> Result<MaskedRound, CryptoError> {
        let mask_one = |(id, state): (ParticipantId, ReadyToMask)| {
            let input = inputs
                .get(id.0 as usize)
                .ok_or(CryptoError::NotInRound(id))?;
            state
                .mask(input)
                .map(|(next, out)| (id, next, out))
                .map_err(|r| r.error)
        };
        let mut ready = self.ready.into_iter();
        let start = Instant::now();
        let first = ready.next().map(mask_one).transpose()?;
        let single_masking = start.elapsed();
        let rest: Vec<_> = ready.collect();
        let mut masked: Vec<(ParticipantId, AwaitingUnmask, SignedMessage)> = rest
            .into_par_iter()
            .map(mask_one)
            .collect::<Result<_, _>>()?;
        let masking = start.elapsed();
        masked.extend(first);
        Ok(MaskedRound {
            config: self.config,
            coordinator: self.coordinator,
            masked,
            drop_after_upload: self.drop_after_upload,
            bytes_sent: self.bytes_sent,
            masking,
            single_masking,
        })
    }
}

/// A round whose masked inputs are ready to be sent.
pub struct MaskedRound {
    config: SimulationConfig,
    coordinator: CollectingMaskedInputs,
    masked: Vec<(ParticipantId, AwaitingUnmask, SignedMessage)>,
    drop_after_upload: BTreeSet<ParticipantId>,
    bytes_sent: BTreeMap<ParticipantId, usize>,
    masking: Duration,
    single_masking: Duration,
}

impl MaskedRound {
    /// The coordinator takes the masked inputs, asks for unmasking and removes the masks.
    pub fn unmask(self) -> RoundOutcome {
        let mut outcome = RoundOutcome {
            result: Err(CryptoError::InvalidParams("round not run".into())),
            masking: self.masking,
            single_masking: self.single_masking,
            unmasking: Duration::ZERO,
            uploaded: {
                let mut ids: Vec<ParticipantId> =
                    self.masked.iter().map(|(id, _, _)| *id).collect();
                ids.sort_unstable();
                ids
            },
            bytes_sent: BTreeMap::new(),
            revealed: Vec::new(),
        };
        outcome.result = self.finish_round(&mut outcome);
        outcome
    }

    fn finish_round(self, outcome: &mut RoundOutcome) -> Result<AggregateResult, CryptoError> {
        let Self {
            config,
            mut coordinator,
            masked,
            drop_after_upload,
            mut bytes_sent,
            ..
        } = self;
        let mut awaiting = BTreeMap::new();
        let mut messages = Vec::with_capacity(masked.len());
        for (id, state, message) in masked {
            *bytes_sent.entry(id).or_insert(0) += message.encoded_len();
            awaiting.insert(id, state);
            messages.push(carry(message, config.through_bytes)?);
        }
        outcome.bytes_sent.clone_from(&bytes_sent);
        let start = Instant::now();
        coordinator
            .receive_all(&messages)
            .into_iter()
            .collect::<Result<(), _>>()?;
        drop(messages);
        let (mut collecting, requests) = coordinator.close()?;
        outcome.unmasking += start.elapsed();
        let mut responses = Vec::new();
        for request in requests {
            let Some(id) = recipient(&request).filter(|id| !drop_after_upload.contains(id)) else {
                continue;
            };
            let Some(state) = awaiting.remove(&id) else {
                continue;
            };
            let request = carry(request, config.through_bytes)?;
            let response = carry(
                state.handle(&request).map_err(|r| r.error)?,
                config.through_bytes,
            )?;
            *outcome.bytes_sent.entry(id).or_insert(0) += response.encoded_len();
            for revealed in UnmaskResponse::decode(response.payload())?.shares {
                outcome.revealed.push((revealed.owner, revealed.kind));
            }
            responses.push(response);
        }
        let start = Instant::now();
        collecting
            .receive_all(&responses)
            .into_iter()
            .collect::<Result<(), _>>()?;
        let result = collecting.finish();
        outcome.unmasking += start.elapsed();
        result
    }
}

/// Runs a whole round.
pub fn run(config: &SimulationConfig, inputs: &[Vec<u32>]) -> Result<RoundOutcome, CryptoError> {
    Ok(PreparedRound::prepare(config)?.mask(inputs)?.unmask())
}

/// Deterministic synthetic f32 updates, uniform in `[-clip, clip]`, one per participant.
#[must_use]
pub fn synthetic_updates(participants: u32, len: usize, clip: f32, seed: u64) -> Vec<Vec<f32>> {
    (0..participants)
        .into_par_iter()
        .map(|i| {
            let mut rng = ChaCha20Rng::seed_from_u64(seed ^ (u64::from(i) << 32));
            (0..len).map(|_| rng.random_range(-clip..=clip)).collect()
        })
        .collect()
}

/// The plain modular sum of `vectors` with the same parallel layout as the coordinator: the
/// baseline that unmasking is compared with.
#[must_use]
pub fn plain_sum(vectors: &[&[u32]]) -> Vec<u32> {
    let len = vectors.first().map_or(0, |v| v.len());
    let mut sum = vec![0u32; len];
    for vector in vectors {
        sum.par_chunks_mut(1 << 16)
            .zip(vector.par_chunks(1 << 16))
            .for_each(|(s, v)| {
                for (a, b) in s.iter_mut().zip(v) {
                    *a = a.wrapping_add(*b);
                }
            });
    }
    sum
}

/// Pearson's chi-square statistic of byte frequencies against the uniform distribution: how
/// the tests tell a masked vector from its plaintext (see [`CHI2_255_Q`]).
#[must_use]
pub fn byte_chi_square(bytes: &[u8]) -> f64 {
    let mut counts = [0u64; 256];
    bytes.iter().for_each(|b| counts[usize::from(*b)] += 1);
    let expected = bytes.len() as f64 / 256.0;
    counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum()
}

/// The 1 - 1e-6 quantile of chi-square with 255 degrees of freedom (Wilson-Hilferty): uniform
/// bytes exceed it once in a million draws.
pub const CHI2_255_Q: f64 = 377.2;
