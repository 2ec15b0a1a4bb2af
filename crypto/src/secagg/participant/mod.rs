//! The participant's side of a round: one type per state, as in rustls' handshake.
//!
//! [`join`] answers the coordinator's round plan with signed key advertisements and returns
//! [`AdvertisedKeys`]; each state's `handle` consumes it and returns the next state and the
//! message to send, so a message can only land in the state that expects it. On a bad message
//! the state comes back unharmed inside [`Rejected`]: a forged or replayed message injected by
//! the network does not kill the round. Nothing here does I/O.
//!
//! advertise keys -> [`AdvertisedKeys`] -(key directory)-> [`SharedKeys`] -(share relay)->
//! [`ReadyToMask`] -(local update)-> [`AwaitingUnmask`] -(unmask request)-> done.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use ed25519_dalek::VerifyingKey;
use rand::CryptoRng;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::envelope::{MessageHeader, SignedMessage};
use super::graph::NeighbourGraph;
use super::identity::{ParticipantIdentity, roster_keys};
use super::ids::{ParticipantId, Party, Phase, RoundId};
use super::messages::{EncryptedShare, KeyAdvertisement, KeyDirectory, RoundPlan, ShareList};
use super::params::SecAggParams;
use super::prg::{MaskSign, MaskStream};
use super::secret::MaskSeed;
use super::share_box::{self, ShareBundle};
use super::{kdf, shamir};
use crate::{AbortReason, CryptoError};

macro_rules! redacted_debug {
    ($($state:ident),*) => {$(
        impl fmt::Debug for $state {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($state))
                    .field("participant", &self.ctx.me())
                    .field("round", &self.ctx.round)
                    .finish_non_exhaustive()
            }
        }
    )*};
}

mod masking;

pub use masking::{AwaitingUnmask, ReadyToMask};

/// A refused message or input: the error, and the state it left untouched.
pub struct Rejected<S> {
    /// Boxed: states are large, and errors travel up `Result`s.
    pub state: Box<S>,
    pub error: CryptoError,
}

impl<S> fmt::Debug for Rejected<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejected")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// What every state knows: who we are, whom we trust, and the round's public plan.
struct Context {
    identity: ParticipantIdentity,
    coordinator: VerifyingKey,
    round: RoundId,
    params: SecAggParams,
    graph_seed: [u8; 32],
    roster: HashMap<ParticipantId, VerifyingKey>,
}

impl Context {
    fn me(&self) -> ParticipantId {
        self.identity.id()
    }

    fn expect_from_coordinator(
        &self,
        message: &SignedMessage,
        phase: Phase,
    ) -> Result<(), CryptoError> {
        message.expect(
            &self.round,
            phase,
            Party::Coordinator,
            Party::Participant(self.me()),
            &self.coordinator,
        )
    }

    fn sign(&self, phase: Phase, payload: Vec<u8>) -> SignedMessage {
        let header = MessageHeader {
            round: self.round,
            phase,
            sender: Party::Participant(self.me()),
            recipient: Party::Coordinator,
        };
        SignedMessage::sign(header, payload, self.identity.signing_key())
    }

    fn threshold(&self) -> usize {
        self.params.threshold as usize
    }

    fn violation(reason: &'static str) -> CryptoError {
        CryptoError::ProtocolViolation {
            sender: Party::Coordinator,
            reason,
        }
    }
}

fn random_secret(rng: &mut impl CryptoRng) -> StaticSecret {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(bytes.as_mut());
    StaticSecret::from(*bytes)
}

/// Joins the round announced by `plan` (verified under the coordinator's key): draws this round's
/// secrets and returns the signed key advertisement to send.
pub fn join(
    identity: ParticipantIdentity,
    coordinator: VerifyingKey,
    plan: &SignedMessage,
    rng: &mut impl CryptoRng,
) -> Result<(AdvertisedKeys, SignedMessage), CryptoError> {
    let round = plan.header().round;
    plan.expect(
        &round,
        Phase::RoundPlan,
        Party::Coordinator,
        Party::AllParticipants,
        &coordinator,
    )?;
    let decoded = RoundPlan::decode(plan.payload())?;
    decoded.params.validate(decoded.roster.len())?;
    let roster = roster_keys(&decoded.roster)?;
    if roster.get(&identity.id()) != Some(&identity.verifying_key()) {
        return Err(CryptoError::NotInRound(identity.id()));
    }
    let ctx = Context {
        identity,
        coordinator,
        round,
        params: decoded.params,
        graph_seed: decoded.graph_seed,
        roster,
    };
    let cipher_secret = random_secret(rng);
    let mask_secret = random_secret(rng);
    let self_seed = MaskSeed::random(rng);
    let advert = KeyAdvertisement {
        cipher_public: PublicKey::from(&cipher_secret).to_bytes(),
        mask_public: PublicKey::from(&mask_secret).to_bytes(),
        self_seed_commitment: kdf::self_seed_commitment(&self_seed, &round, ctx.me()),
    };
    let message = ctx.sign(Phase::AdvertiseKeys, advert.encode());
    let threshold = ctx.threshold();
    let state = AdvertisedKeys {
        self_seed_coefficients: shamir::random_coefficients(threshold, rng),
        mask_key_coefficients: shamir::random_coefficients(threshold, rng),
        ctx,
        cipher_secret,
        mask_secret,
        self_seed,
    };
    Ok((state, message))
}

/// Keys advertised; waiting for the key directory.
pub struct AdvertisedKeys {
    ctx: Context,
    cipher_secret: StaticSecret,
    mask_secret: StaticSecret,
    self_seed: MaskSeed,
    /// Drawn at join so that later steps need no randomness source.
    self_seed_coefficients: Zeroizing<Vec<u8>>,
    mask_key_coefficients: Zeroizing<Vec<u8>>,
}

type Neighbours = BTreeMap<ParticipantId, KeyAdvertisement>;

impl AdvertisedKeys {
    /// Takes the key directory; returns the encrypted shares of this participant's two secrets,
    /// one bundle per neighbour.
    pub fn handle(
        self,
        directory: &SignedMessage,
    ) -> Result<(SharedKeys, SignedMessage), Rejected<Self>> {
        match self.share_keys(directory) {
            Ok((graph, neighbours, message)) => {
                let next = SharedKeys {
                    ctx: self.ctx,
                    cipher_secret: self.cipher_secret,
                    mask_secret: self.mask_secret,
                    self_seed: self.self_seed,
                    graph,
                    neighbours,
                };
                Ok((next, message))
            }
            Err(error) => Err(Rejected {
                state: Box::new(self),
                error,
            }),
        }
    }

    fn share_keys(
        &self,
        directory: &SignedMessage,
    ) -> Result<(NeighbourGraph, Neighbours, SignedMessage), CryptoError> {
        let ctx = &self.ctx;
        let me = ctx.me();
        ctx.expect_from_coordinator(directory, Phase::KeyDirectory)?;
        let dir = KeyDirectory::decode(directory.payload())?;
        if let Some(&stranger) = dir
            .advertised
            .iter()
            .find(|id| !ctx.roster.contains_key(id))
        {
            return Err(CryptoError::NotInRound(stranger));
        }
        if dir.advertised.binary_search(&me).is_err() {
            return Err(Context::violation("key directory omits its recipient"));
        }
        let need = ctx.params.min_survivors as usize;
        if dir.advertised.len() < need {
            let have = dir.advertised.len();
            return Err(AbortReason::TooFewParticipants {
                phase: Phase::AdvertiseKeys,
                have,
                need,
            }
            .into());
        }
        let graph = NeighbourGraph::new(&ctx.graph_seed, &dir.advertised, ctx.params.neighbours);
        let hood = graph.neighbours(me);
        let mut neighbours = Neighbours::new();
        for nested in &dir.neighbour_adverts {
            let Party::Participant(id) = nested.header().sender else {
                return Err(Context::violation("advertisement not from a participant"));
            };
            let key = ctx.roster.get(&id).ok_or(CryptoError::NotInRound(id))?;
            if hood.binary_search(&id).is_err() {
                return Err(Context::violation("advertisement of a non-neighbour"));
            }
            nested.expect(
                &ctx.round,
                Phase::AdvertiseKeys,
                Party::Participant(id),
                Party::Coordinator,
                key,
            )?;
            let advert = KeyAdvertisement::decode(nested.payload())?;
            if neighbours.insert(id, advert).is_some() {
                return Err(CryptoError::Duplicate {
                    sender: Party::Participant(id),
                    phase: Phase::AdvertiseKeys,
                });
            }
        }
        if neighbours.len() != hood.len() {
            return Err(Context::violation(
                "key directory lacks a neighbour's advertisement",
            ));
        }
        let t = ctx.threshold();
        if hood.len() < t {
            return Err(AbortReason::TooFewNeighbours {
                participant: me,
                have: hood.len(),
                need: t,
            }
            .into());
        }
        let seed_shares =
            shamir::split(&self.self_seed, &self.self_seed_coefficients, t, hood.len())?;
        let mask_key = MaskSeed::from_bytes(self.mask_secret.to_bytes());
        let key_shares = shamir::split(&mask_key, &self.mask_key_coefficients, t, hood.len())?;
        let mut shares = Vec::with_capacity(hood.len());
        for ((peer, advert), (self_seed, mask_key)) in neighbours
            .iter()
            .zip(seed_shares.into_iter().zip(key_shares))
        {
            let shared = kdf::agree(&self.cipher_secret, &advert.cipher_public, *peer)?;
            let key = kdf::share_key(&shared, &ctx.round, me, *peer);
            let bundle = ShareBundle {
                self_seed,
                mask_key,
            };
            let ciphertext = share_box::seal(&key, &ctx.round, me, *peer, &bundle)?;
            shares.push(EncryptedShare {
                peer: *peer,
                ciphertext,
            });
        }
        let message = ctx.sign(Phase::ShareKeys, ShareList { shares }.encode());
        Ok((graph, neighbours, message))
    }
}

/// Shares sent; waiting for the shares the live neighbours sent to us.
pub struct SharedKeys {
    ctx: Context,
    cipher_secret: StaticSecret,
    mask_secret: StaticSecret,
    self_seed: MaskSeed,
    graph: NeighbourGraph,
    neighbours: Neighbours,
}

impl SharedKeys {
    /// Takes the relayed shares; the senders are the live neighbours this participant masks with.
    pub fn handle(self, relay: &SignedMessage) -> Result<ReadyToMask, Rejected<Self>> {
        match self.open_relay(relay) {
            Ok((streams, held)) => Ok(ReadyToMask {
                ctx: self.ctx,
                graph: self.graph,
                streams,
                held,
            }),
            Err(error) => Err(Rejected {
                state: Box::new(self),
                error,
            }),
        }
    }

    fn open_relay(
        &self,
        relay: &SignedMessage,
    ) -> Result<(Vec<MaskStream>, BTreeMap<ParticipantId, ShareBundle>), CryptoError> {
        let ctx = &self.ctx;
        let me = ctx.me();
        ctx.expect_from_coordinator(relay, Phase::ShareRelay)?;
        let list = ShareList::decode(relay.payload())?;
        let mut held = BTreeMap::new();
        for share in &list.shares {
            let advert = self
                .neighbours
                .get(&share.peer)
                .ok_or(Context::violation("share from a non-neighbour"))?;
            let shared = kdf::agree(&self.cipher_secret, &advert.cipher_public, share.peer)?;
            let key = kdf::share_key(&shared, &ctx.round, share.peer, me);
            let bundle = share_box::open(&key, &ctx.round, share.peer, me, &share.ciphertext)?;
            let point = self
                .graph
                .neighbours(share.peer)
                .binary_search(&me)
                .map(|i| i + 1);
            if point != Ok(usize::from(bundle.self_seed.x()))
                || bundle.self_seed.x() != bundle.mask_key.x()
            {
                return Err(CryptoError::ProtocolViolation {
                    sender: Party::Participant(share.peer),
                    reason: "share at the wrong evaluation point",
                });
            }
            held.insert(share.peer, bundle);
        }
        let t = ctx.threshold();
        if held.len() < t {
            return Err(AbortReason::TooFewNeighbours {
                participant: me,
                have: held.len(),
                need: t,
            }
            .into());
        }
        let mut streams = vec![MaskStream {
            key: kdf::self_mask_key(&self.self_seed, &ctx.round, me),
            sign: MaskSign::Add,
        }];
        for peer in held.keys() {
            let shared = kdf::agree(&self.mask_secret, &self.neighbours[peer].mask_public, *peer)?;
            let sign = if me < *peer {
                MaskSign::Add
            } else {
                MaskSign::Subtract
            };
            streams.push(MaskStream {
                key: kdf::pairwise_mask_key(&shared, &ctx.round, me, *peer),
                sign,
            });
        }
        Ok((streams, held))
    }
}

redacted_debug!(AdvertisedKeys, SharedKeys);
