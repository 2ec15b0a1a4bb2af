//! Messages that must be refused: tampered, forged, replayed, reordered, misaddressed, and
//! unmasking requests that would reveal both secrets of a participant.

mod common;

use common::{Harness, params, recipient};
use crypto::secagg::{
    FederationId, MaskedInput, NeighbourGraph, ParticipantId, ParticipantRound, Party, Phase,
    RoundId, RoundPlan, SecretKind, ShareList, SignedMessage, UnmaskRequest, UnmaskResponse,
    generate_signing_key,
};
use crypto::{AbortReason, CryptoError};

fn tamper(message: &SignedMessage, byte: usize) -> SignedMessage {
    let mut bytes = message.to_bytes();
    let at = bytes.len() - 64 - 1 - byte;
    bytes[at] ^= 0x40;
    SignedMessage::from_bytes(&bytes, 1 << 20).expect("still well formed")
}

#[test]
fn coordinator_refuses_tampered_forged_replayed_and_out_of_phase_messages() {
    let (mut h, mut collecting) = Harness::open(8, params(16, 3, 2, 5), 1);
    let (_, advert) = h.join(0);
    assert!(matches!(
        collecting.receive(&tamper(&advert, 3)),
        Err(CryptoError::BadSignature { .. })
    ));

    // A message claiming to be from participant 0 but signed with another key.
    let stranger = generate_signing_key(&mut h.rng);
    let forged = SignedMessage::sign(*advert.header(), advert.payload().to_vec(), &stranger);
    assert!(matches!(
        collecting.receive(&forged),
        Err(CryptoError::BadSignature { .. })
    ));

    // The refusals changed nothing: the genuine message is still accepted, once.
    collecting.receive(&advert).unwrap();
    let replay = collecting.receive(&advert).unwrap_err();
    assert!(
        matches!(
            replay,
            CryptoError::Duplicate {
                phase: Phase::AdvertiseKeys,
                ..
            }
        ),
        "{replay:?}"
    );
    assert!(replay.is_peer_fault());

    // The same advertisement signed for another round is a replay from elsewhere.
    let mut header = *advert.header();
    header.round = RoundId {
        round: 2,
        ..header.round
    };
    let old = SignedMessage::sign(header, advert.payload().to_vec(), &h.keys[0]);
    assert!(matches!(
        collecting.receive(&old),
        Err(CryptoError::WrongRound)
    ));
    header.round = RoundId {
        federation: FederationId::from_name("rooftop-pv"),
        ..advert.header().round
    };
    let elsewhere = SignedMessage::sign(header, advert.payload().to_vec(), &h.keys[0]);
    assert!(matches!(
        collecting.receive(&elsewhere),
        Err(CryptoError::WrongRound)
    ));

    // A share message during the advertisement phase.
    let mut early = *advert.header();
    early.phase = Phase::ShareKeys;
    let early = SignedMessage::sign(early, ShareList { shares: vec![] }.encode(), &h.keys[0]);
    assert!(matches!(
        collecting.receive(&early),
        Err(CryptoError::UnexpectedPhase {
            expected: Phase::AdvertiseKeys,
            got: Phase::ShareKeys
        })
    ));
    // An unknown participant.
    let mut outsider = *advert.header();
    outsider.sender = Party::Participant(ParticipantId(99));
    let outsider = SignedMessage::sign(outsider, advert.payload().to_vec(), &stranger);
    assert!(matches!(
        collecting.receive(&outsider),
        Err(CryptoError::NotInRound(ParticipantId(99)))
    ));
}

#[test]
fn participant_refuses_out_of_phase_misaddressed_and_tampered_messages_and_survives() {
    let (mut h, mut collecting) = Harness::open(8, params(16, 3, 2, 5), 2);
    let (plan, key) = (h.plan.clone(), h.coordinator_key.verifying_key());
    let (mut round, advert) =
        ParticipantRound::join(h.identity(0), key, &plan, &mut h.rng).unwrap();
    collecting.receive(&advert).unwrap();
    for i in 1..8 {
        collecting.receive(&h.join(i).1).unwrap();
    }
    let (_, directories) = collecting.close().unwrap();
    let mine = directories
        .iter()
        .find(|d| recipient(d) == ParticipantId(0))
        .unwrap();
    let other = directories
        .iter()
        .find(|d| recipient(d) == ParticipantId(1))
        .unwrap();

    assert!(matches!(
        round.handle(other),
        Err(CryptoError::Misaddressed { .. })
    ));
    assert!(matches!(
        round.handle(&tamper(mine, 10)),
        Err(CryptoError::BadSignature { .. })
    ));
    // A message of a later phase arriving first (reordered).
    let mut later = *mine.header();
    later.phase = Phase::ShareRelay;
    let later = SignedMessage::sign(
        later,
        ShareList { shares: vec![] }.encode(),
        &h.coordinator_key,
    );
    assert!(matches!(
        round.handle(&later),
        Err(CryptoError::UnexpectedPhase {
            expected: Phase::KeyDirectory,
            got: Phase::ShareRelay
        })
    ));
    assert!(matches!(
        round.mask(&[0; 16]),
        Err(CryptoError::UnexpectedPhase { .. })
    ));
    // None of that disturbed the state: the genuine directory is taken.
    assert_eq!(round.expected_phase(), Some(Phase::KeyDirectory));
    let shares = round
        .handle(mine)
        .unwrap()
        .expect("encrypted shares to send");
    assert_eq!(ShareList::decode(shares.payload()).unwrap().shares.len(), 3);
    assert_eq!(round.expected_phase(), Some(Phase::ShareRelay));
    // Replaying the directory now is out of phase.
    assert!(matches!(
        round.handle(mine),
        Err(CryptoError::UnexpectedPhase { .. })
    ));
}

#[test]
fn a_share_altered_by_the_relay_fails_authentication() {
    let (mut h, mut collecting) = Harness::open(8, params(16, 3, 2, 5), 3);
    let states = h.advertise(&mut collecting);
    let (shares, mut sharing) = h.share(collecting, states);
    let (_, relays) = shares.close().unwrap();
    let relay = &relays[0];
    let id = recipient(relay);
    let mut list = ShareList::decode(relay.payload()).unwrap();
    list.shares[0].ciphertext[7] ^= 1;
    let altered = h.coordinator_resign(relay, list.encode());
    let at = sharing.iter().position(|(i, _)| *i == id).unwrap();
    let (_, state) = sharing.swap_remove(at);
    let rejected = state.handle(&altered).unwrap_err();
    assert!(
        matches!(rejected.error, CryptoError::ShareAuthentication { recipient, .. } if recipient == id)
    );
    // The state came back intact and accepts the genuine relay.
    assert!(rejected.state.handle(relay).is_ok());
}

#[test]
fn participants_never_reveal_both_secrets_of_a_neighbour() {
    let (mut h, collecting) = Harness::open(8, params(16, 3, 2, 5), 4);
    let (_, mut awaiting) = h.run_until_unmask(collecting, |_| vec![1; 16]);
    let (id, state, request) = awaiting.remove(0);
    let genuine = UnmaskRequest::decode(request.payload()).unwrap();
    let plan = RoundPlan::decode(h.plan.payload()).unwrap();
    let everyone: Vec<ParticipantId> = plan.roster.iter().map(|e| e.id).collect();
    let neighbour = NeighbourGraph::new(&plan.graph_seed, &everyone, 3).neighbours(id)[0];

    // A curious coordinator lists a neighbour both as survivor and as dropped.
    let both = UnmaskRequest {
        survivors: genuine.survivors.clone(),
        dropped: vec![neighbour],
    };
    let rejected = state
        .handle(&h.coordinator_resign(&request, both.encode()))
        .unwrap_err();
    assert!(
        matches!(rejected.error, CryptoError::RefusedReveal { .. }),
        "{:?}",
        rejected.error
    );
    let state = *rejected.state;

    // ...or leaves the recipient out of the survivors, or a neighbour's status open.
    let without_me: Vec<_> = genuine
        .survivors
        .iter()
        .copied()
        .filter(|s| *s != id)
        .collect();
    let excluded = UnmaskRequest {
        survivors: without_me.clone(),
        dropped: vec![],
    };
    let rejected = state
        .handle(&h.coordinator_resign(&request, excluded.encode()))
        .unwrap_err();
    assert!(matches!(rejected.error, CryptoError::RefusedReveal { .. }));
    let state = *rejected.state;
    let partial: Vec<_> = genuine
        .survivors
        .iter()
        .copied()
        .filter(|s| *s != neighbour)
        .collect();
    let open = UnmaskRequest {
        survivors: partial,
        dropped: vec![],
    };
    let rejected = state
        .handle(&h.coordinator_resign(&request, open.encode()))
        .unwrap_err();
    assert!(matches!(rejected.error, CryptoError::RefusedReveal { .. }));

    // The genuine request gets exactly one share per neighbour, all of self-mask seeds.
    let response = rejected.state.handle(&request).unwrap();
    let revealed = UnmaskResponse::decode(response.payload()).unwrap();
    assert_eq!(revealed.shares.len(), 3);
    assert!(
        revealed
            .shares
            .iter()
            .all(|s| s.kind == SecretKind::SelfMaskSeed)
    );
}

#[test]
fn the_driver_answers_one_unmasking_request_per_round() {
    let (mut h, mut collecting) = Harness::open(6, params(8, 3, 2, 4), 5);
    let (plan, key) = (h.plan.clone(), h.coordinator_key.verifying_key());
    let mut rounds: Vec<ParticipantRound> = Vec::new();
    for i in 0..6 {
        let (round, advert) =
            ParticipantRound::join(h.identity(i), key, &plan, &mut h.rng).unwrap();
        collecting.receive(&advert).unwrap();
        rounds.push(round);
    }
    let (mut shares, directories) = collecting.close().unwrap();
    for d in &directories {
        let reply = rounds[recipient(d).0 as usize].handle(d).unwrap().unwrap();
        shares.receive(&reply).unwrap();
    }
    let (mut masked, relays) = shares.close().unwrap();
    for r in &relays {
        assert!(rounds[recipient(r).0 as usize].handle(r).unwrap().is_none());
    }
    for round in &mut rounds {
        masked.receive(&round.mask(&[7; 8]).unwrap()).unwrap();
    }
    let (mut unmask, requests) = masked.close().unwrap();
    for r in &requests {
        let round = &mut rounds[recipient(r).0 as usize];
        unmask.receive(&round.handle(r).unwrap().unwrap()).unwrap();
        // A second request, even a genuine one, is refused: the round is finished.
        assert!(matches!(
            round.handle(r),
            Err(CryptoError::ProtocolViolation { .. })
        ));
    }
    assert_eq!(unmask.finish().unwrap().sum, vec![42; 8]);
}

#[test]
fn coordinator_refuses_a_share_of_the_forbidden_secret() {
    let (mut h, collecting) = Harness::open(8, params(16, 3, 2, 5), 6);
    let (mut unmask, awaiting) = h.run_until_unmask(collecting, |_| vec![0; 16]);
    let (_, state, request) = awaiting.into_iter().next().unwrap();
    let response = state.handle(&request).unwrap();
    // A malicious participant relabels its self-seed shares as pairwise-key shares.
    let mut revealed = UnmaskResponse::decode(response.payload()).unwrap();
    for share in &mut revealed.shares {
        share.kind = SecretKind::PairwiseMaskKey;
    }
    let relabelled = h.participant_resign(&response, revealed.encode());
    assert!(matches!(
        unmask.receive(&relabelled),
        Err(CryptoError::ProtocolViolation { .. })
    ));
    unmask.receive(&response).unwrap();
    assert!(matches!(
        unmask.receive(&response),
        Err(CryptoError::Duplicate { .. })
    ));
}

/// The ring order of the members (independent of k): walk the degree-2 graph of the same seed.
fn ring_order(plan: &RoundPlan) -> Vec<ParticipantId> {
    let everyone: Vec<ParticipantId> = plan.roster.iter().map(|e| e.id).collect();
    let cycle = NeighbourGraph::new(&plan.graph_seed, &everyone, 2);
    let mut ring = vec![everyone[0]];
    while ring.len() < everyone.len() {
        let last = *ring.last().unwrap();
        let next = cycle
            .neighbours(last)
            .iter()
            .copied()
            .find(|n| !ring.contains(n))
            .unwrap();
        ring.push(next);
    }
    ring
}

#[test]
fn survivors_split_into_two_groups_abort_before_any_share_is_revealed() {
    // k = 4 on a ring of 12: removing two opposite pairs leaves two arcs of four, in which
    // everyone still has two live neighbours (the threshold), yet the arcs do not touch.
    let (mut h, collecting) = Harness::open(12, params(8, 4, 2, 6), 7);
    let ring = ring_order(&RoundPlan::decode(h.plan.payload()).unwrap());
    let gone = [ring[0], ring[1], ring[6], ring[7]];
    let (mut masked, ready) = h.run_until_ready(collecting);
    for (id, state) in ready {
        if !gone.contains(&id) {
            masked.receive(&state.mask(&[1; 8]).unwrap().1).unwrap();
        }
    }
    assert!(matches!(
        masked.close(),
        Err(CryptoError::Aborted(AbortReason::SurvivorsDisconnected {
            components: 2
        }))
    ));
}

#[test]
fn participants_refuse_to_unmask_a_split_group() {
    let (mut h, collecting) = Harness::open(12, params(8, 4, 2, 6), 8);
    let ring = ring_order(&RoundPlan::decode(h.plan.payload()).unwrap());
    let (_, awaiting) = h.run_until_unmask(collecting, |_| vec![0; 8]);
    let (_, state, request) = awaiting
        .into_iter()
        .find(|(id, _, _)| *id == ring[3])
        .unwrap();
    let mut dropped = vec![ring[0], ring[1], ring[6], ring[7]];
    dropped.sort();
    let survivors: Vec<ParticipantId> = RoundPlan::decode(h.plan.payload())
        .unwrap()
        .roster
        .iter()
        .map(|e| e.id)
        .filter(|id| !dropped.contains(id))
        .collect();
    let split = UnmaskRequest { survivors, dropped };
    let rejected = state
        .handle(&h.coordinator_resign(&request, split.encode()))
        .unwrap_err();
    assert!(
        matches!(rejected.error, CryptoError::RefusedReveal { reason, .. } if reason.contains("connected")),
        "{:?}",
        rejected.error
    );
    assert!(rejected.state.handle(&request).is_ok());
}

#[test]
fn batched_uploads_refuse_wrong_lengths_and_in_batch_replays_individually() {
    let (mut h, collecting) = Harness::open(6, params(8, 3, 2, 4), 9);
    let (mut masked, ready) = h.run_until_ready(collecting);
    let mut messages: Vec<SignedMessage> = ready
        .into_iter()
        .map(|(_, state)| state.mask(&[5; 8]).unwrap().1)
        .collect();
    let short = h.participant_resign(&messages[1], MaskedInput::encode(&[5; 7]));
    let replay = messages[0].clone();
    messages[1] = short;
    messages.push(replay);
    let results = masked.receive_all(&messages);
    assert!(results[0].is_ok());
    assert!(matches!(
        results[1],
        Err(CryptoError::ProtocolViolation { .. })
    ));
    assert!(results[2..6].iter().all(Result::is_ok));
    assert!(matches!(
        results[6],
        Err(CryptoError::Duplicate {
            phase: Phase::MaskedInput,
            ..
        })
    ));
    // Participant 1's genuine input never arrived: it counts as dropped after sharing keys.
    assert_eq!(masked.pending().len(), 1);
}
