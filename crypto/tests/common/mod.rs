//! A round driven step by step through the public API, so tests can intercept any message.
#![allow(dead_code)]

use crypto::secagg::participant::{AdvertisedKeys, AwaitingUnmask, ReadyToMask, SharedKeys, join};
use crypto::secagg::{
    CollectingAdvertisements, CollectingMaskedInputs, CollectingShares, CollectingUnmaskResponses,
    FederationId, ParticipantId, ParticipantIdentity, Party, RoundId, SecAggParams, SignedMessage,
    generate_signing_key,
};
use ed25519_dalek::SigningKey;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

pub struct Harness {
    pub round: RoundId,
    pub params: SecAggParams,
    pub coordinator_key: SigningKey,
    pub keys: Vec<SigningKey>,
    pub plan: SignedMessage,
    pub rng: ChaCha20Rng,
}

pub fn recipient(message: &SignedMessage) -> ParticipantId {
    match message.header().recipient {
        Party::Participant(id) => id,
        other => panic!("not addressed to a participant: {other:?}"),
    }
}

fn take<S>(states: &mut Vec<(ParticipantId, S)>, id: ParticipantId) -> S {
    let at = states
        .iter()
        .position(|(i, _)| *i == id)
        .expect("state of the recipient");
    states.swap_remove(at).1
}

impl Harness {
    /// A round plan over `participants` and the coordinator that sent it.
    pub fn open(
        participants: u32,
        params: SecAggParams,
        seed: u64,
    ) -> (Self, CollectingAdvertisements) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let coordinator_key = generate_signing_key(&mut rng);
        let keys: Vec<SigningKey> = (0..participants)
            .map(|_| generate_signing_key(&mut rng))
            .collect();
        let round = RoundId {
            federation: FederationId::from_name("residential-load"),
            round: 3,
        };
        let roster = (0..participants)
            .map(|i| {
                ParticipantIdentity::new(ParticipantId(i), keys[i as usize].clone()).roster_entry()
            })
            .collect();
        let (collecting, plan) = CollectingAdvertisements::open(
            coordinator_key.clone(),
            round,
            params,
            roster,
            [seed as u8; 32],
        )
        .expect("valid plan");
        (
            Self {
                round,
                params,
                coordinator_key,
                keys,
                plan,
                rng,
            },
            collecting,
        )
    }

    pub fn identity(&self, i: u32) -> ParticipantIdentity {
        ParticipantIdentity::new(ParticipantId(i), self.keys[i as usize].clone())
    }

    pub fn join(&mut self, i: u32) -> (AdvertisedKeys, SignedMessage) {
        join(
            self.identity(i),
            self.coordinator_key.verifying_key(),
            &self.plan,
            &mut self.rng,
        )
        .expect("join")
    }

    /// Every participant advertises keys.
    pub fn advertise(
        &mut self,
        collecting: &mut CollectingAdvertisements,
    ) -> Vec<(ParticipantId, AdvertisedKeys)> {
        (0..self.keys.len() as u32)
            .map(|i| {
                let (state, advert) = self.join(i);
                collecting.receive(&advert).expect("advert accepted");
                (ParticipantId(i), state)
            })
            .collect()
    }

    /// Every participant shares keys.
    pub fn share(
        &mut self,
        collecting: CollectingAdvertisements,
        mut states: Vec<(ParticipantId, AdvertisedKeys)>,
    ) -> (CollectingShares, Vec<(ParticipantId, SharedKeys)>) {
        let (mut shares, directories) = collecting.close().expect("close adverts");
        let mut sharing = Vec::new();
        for directory in directories {
            let id = recipient(&directory);
            let (next, message) = take(&mut states, id)
                .handle(&directory)
                .expect("directory accepted");
            shares.receive(&message).expect("shares accepted");
            sharing.push((id, next));
        }
        (shares, sharing)
    }

    /// Every participant takes its relayed shares.
    pub fn relay(
        &mut self,
        shares: CollectingShares,
        mut states: Vec<(ParticipantId, SharedKeys)>,
    ) -> (CollectingMaskedInputs, Vec<(ParticipantId, ReadyToMask)>) {
        let (collecting, relays) = shares.close().expect("close shares");
        let mut ready: Vec<_> = relays
            .iter()
            .map(|relay| {
                let id = recipient(relay);
                (
                    id,
                    take(&mut states, id).handle(relay).expect("relay accepted"),
                )
            })
            .collect();
        ready.sort_by_key(|(id, _)| *id);
        (collecting, ready)
    }

    /// Runs up to the point where every participant is ready to mask.
    pub fn run_until_ready(
        &mut self,
        mut collecting: CollectingAdvertisements,
    ) -> (CollectingMaskedInputs, Vec<(ParticipantId, ReadyToMask)>) {
        let states = self.advertise(&mut collecting);
        let (shares, sharing) = self.share(collecting, states);
        self.relay(shares, sharing)
    }

    /// Runs up to the unmasking requests, every participant uploading `input(id)`.
    pub fn run_until_unmask(
        &mut self,
        collecting: CollectingAdvertisements,
        input: impl Fn(ParticipantId) -> Vec<u32>,
    ) -> (
        CollectingUnmaskResponses,
        Vec<(ParticipantId, AwaitingUnmask, SignedMessage)>,
    ) {
        let (mut masked, ready) = self.run_until_ready(collecting);
        let mut awaiting = Vec::new();
        for (id, state) in ready {
            let (next, message) = state.mask(&input(id)).expect("mask");
            masked.receive(&message).expect("masked input accepted");
            awaiting.push((id, next));
        }
        let (unmask, requests) = masked.close().expect("close uploads");
        let out = awaiting
            .into_iter()
            .map(|(id, state)| {
                let request = requests
                    .iter()
                    .find(|r| recipient(r) == id)
                    .expect("request")
                    .clone();
                (id, state, request)
            })
            .collect();
        (unmask, out)
    }

    /// Re-signs a coordinator message with a new payload (a curious coordinator's forgery).
    pub fn coordinator_resign(&self, message: &SignedMessage, payload: Vec<u8>) -> SignedMessage {
        SignedMessage::sign(*message.header(), payload, &self.coordinator_key)
    }

    /// Re-signs a participant message with a new payload (a malicious participant).
    pub fn participant_resign(&self, message: &SignedMessage, payload: Vec<u8>) -> SignedMessage {
        let Party::Participant(id) = message.header().sender else {
            panic!("not from a participant")
        };
        SignedMessage::sign(*message.header(), payload, &self.keys[id.0 as usize])
    }
}

pub fn params(
    vector_len: u32,
    neighbours: u32,
    threshold: u32,
    min_survivors: u32,
) -> SecAggParams {
    SecAggParams {
        vector_len,
        neighbours,
        threshold,
        min_survivors,
    }
}
