//! Forged, tampered, truncated, misrouted and replayed frames of the encrypted mode are typed
//! errors, never panics or silent acceptance.

#![cfg(feature = "he")]

use crypto::he::{
    AggregationPlan, Ciphertext, Committee, CommitteeMember, CommitteeSeat, CommitteeSize,
    DecryptorSet, EncryptedAggregator, HeError, MemberIndex, NoiseSource, PartialDecryption,
    PublicKeyShare, ShareCommitments, SlotCount, SummandCount, Threshold, combine,
    generate_keys_in_process,
};
use crypto::secagg::{FederationId, ParticipantId};
use ed25519_dalek::SigningKey;

const LENGTH: usize = 3000;

fn identity(byte: u8) -> SigningKey {
    SigningKey::from_bytes(&[byte; 32])
}

fn plan() -> AggregationPlan {
    AggregationPlan::widest(
        SummandCount(10),
        CommitteeSize(3),
        Threshold(2),
        SlotCount(100_000),
    )
    .unwrap()
}

fn keys() -> crypto::he::InProcessKeys {
    let identities = vec![identity(1), identity(2), identity(3)];
    generate_keys_in_process(
        FederationId::from_name("tamper"),
        3,
        plan(),
        identities,
        &mut NoiseSource::from_seed(1),
    )
    .unwrap()
}

/// Flips one bit at each of a spread of positions (header, body, signature) and expects `check`
/// to refuse every variant.
fn every_flip_is_refused(frame: &[u8], check: impl Fn(&[u8]) -> Result<(), HeError>) {
    check(frame).expect("the untampered frame is accepted");
    let step = (frame.len() / 97).max(1);
    for position in (0..frame.len()).step_by(step).chain([frame.len() - 1]) {
        let mut tampered = frame.to_vec();
        tampered[position] ^= 0x04;
        let error = check(&tampered).expect_err("tampered frame accepted");
        assert!(
            error.is_peer_fault(),
            "flip at {position}: {error:?} blames the caller"
        );
    }
    for cut in [0, 1, 15, frame.len() / 2, frame.len() - 1] {
        assert!(check(&frame[..cut]).is_err(), "truncated to {cut} accepted");
    }
    let mut longer = frame.to_vec();
    longer.extend_from_slice(&[0; 8]);
    assert!(matches!(check(&longer), Err(HeError::TooLarge { .. })));
}

#[test]
fn tampered_ciphertexts_are_rejected() {
    let keys = keys();
    let sender = identity(9);
    let words: Vec<u32> = (0..LENGTH as u32).map(|i| i % 1000).collect();
    let frame = keys
        .key
        .encrypt(&words, &mut NoiseSource::from_seed(2))
        .unwrap()
        .seal(&sender);
    every_flip_is_refused(&frame, |f| {
        Ciphertext::open(f, &sender.verifying_key(), &keys.key, LENGTH).map(|_| ())
    });
    // Streaming aggregation refuses the same frames and adds nothing when it does.
    let mut aggregator = EncryptedAggregator::new(&keys.key, LENGTH).unwrap();
    let mut tampered = frame.clone();
    tampered[100] ^= 1;
    assert!(matches!(
        aggregator.add_sealed(ParticipantId(1), &tampered, &sender.verifying_key()),
        Err(HeError::BadSignature { .. })
    ));
    assert!(aggregator.contributors().is_empty());
    aggregator
        .add_sealed(ParticipantId(1), &frame, &sender.verifying_key())
        .unwrap();
    assert!(matches!(
        aggregator.add_sealed(ParticipantId(1), &frame, &sender.verifying_key()),
        Err(HeError::DuplicateContribution(_))
    ));
    let sum = aggregator.finish().unwrap();
    assert_eq!(
        sum,
        Ciphertext::open(&frame, &sender.verifying_key(), &keys.key, LENGTH).unwrap()
    );
    // Signed by someone else than the claimed sender.
    assert!(matches!(
        Ciphertext::open(&frame, &identity(10).verifying_key(), &keys.key, LENGTH),
        Err(HeError::BadSignature { .. })
    ));
    // A well-signed ciphertext of another length, or under another key.
    assert!(Ciphertext::open(&frame, &sender.verifying_key(), &keys.key, LENGTH - 1).is_err());
    let other = generate_keys_in_process(
        FederationId::from_name("tamper"),
        4,
        plan(),
        vec![identity(1), identity(2), identity(3)],
        &mut NoiseSource::from_seed(1),
    )
    .unwrap();
    assert!(matches!(
        Ciphertext::open(&frame, &sender.verifying_key(), &other.key, LENGTH),
        Err(HeError::WrongBinding { .. })
    ));
}

#[test]
fn tampered_or_misbound_partial_decryptions_are_rejected() {
    let mut keys = keys();
    let words = vec![5u32; LENGTH];
    let mut noise = NoiseSource::from_seed(3);
    let aggregate = keys.key.encrypt(&words, &mut noise).unwrap();
    let other_aggregate = keys.key.encrypt(&words, &mut noise).unwrap();
    let plan = *keys.key.plan();
    let set = DecryptorSet::new(&plan, &[MemberIndex(1), MemberIndex(3)]).unwrap();
    let frame_1 = keys.members[0]
        .partial_decrypt(&keys.key, &aggregate, &set, &mut noise)
        .unwrap();
    let frame_3 = keys.members[2]
        .partial_decrypt(&keys.key, &aggregate, &set, &mut noise)
        .unwrap();
    every_flip_is_refused(&frame_1, |f| {
        PartialDecryption::open(f, &keys.committee, LENGTH).map(|_| ())
    });

    let p1 = PartialDecryption::open(&frame_1, &keys.committee, LENGTH).unwrap();
    let p3 = PartialDecryption::open(&frame_3, &keys.committee, LENGTH).unwrap();
    assert_eq!(
        combine(&keys.key, &aggregate, &[p1.clone(), p3.clone()]).unwrap(),
        words
    );
    // The same partials against another ciphertext, or one partial twice.
    assert!(matches!(
        combine(&keys.key, &other_aggregate, &[p1.clone(), p3.clone()]),
        Err(HeError::WrongBinding {
            what: "partial decryption",
            ..
        })
    ));
    assert!(matches!(
        combine(&keys.key, &aggregate, &[p1.clone(), p1.clone()]),
        Err(HeError::BadMember { member: 1, .. })
    ));
    // Partials of two different decryption sets do not combine.
    let other_set = DecryptorSet::new(&plan, &[MemberIndex(2), MemberIndex(3)]).unwrap();
    let frame_2 = keys.members[1]
        .partial_decrypt(&keys.key, &aggregate, &other_set, &mut noise)
        .unwrap();
    let p2 = PartialDecryption::open(&frame_2, &keys.committee, LENGTH).unwrap();
    assert!(matches!(
        combine(&keys.key, &aggregate, &[p1, p2]),
        Err(HeError::WrongBinding {
            binding: "decryption set",
            ..
        })
    ));
    // A frame signed by member 1's key but relabelled as member 2's does not verify.
    let mut relabelled = frame_1.clone();
    relabelled[16 + 64] = 2;
    assert!(matches!(
        PartialDecryption::open(&relabelled, &keys.committee, LENGTH),
        Err(HeError::BadSignature { .. })
    ));
}

#[test]
fn tampered_key_generation_messages_are_rejected() {
    let plan = plan();
    let seats = (1..=3u8)
        .map(|i| CommitteeSeat {
            participant: ParticipantId(u32::from(i)),
            verifying_key: identity(i).verifying_key(),
        })
        .collect();
    let committee = Committee::new(FederationId::from_name("tamper"), 5, plan, seats).unwrap();
    assert_eq!(Committee::decode(&committee.encode()).unwrap(), committee);
    let mut noise = NoiseSource::from_seed(4);
    let mut members: Vec<CommitteeMember> = (1..=3u8)
        .map(|i| {
            CommitteeMember::new(
                committee.clone(),
                MemberIndex(u16::from(i)),
                identity(i),
                &mut noise,
            )
            .unwrap()
        })
        .collect();
    let commitment_frames: Vec<&[u8]> = members.iter().map(|m| m.commitment()).collect();
    assert!(matches!(
        ShareCommitments::collect(&committee, &commitment_frames[..2]),
        Err(HeError::KeyGenerationIncomplete(_))
    ));
    every_flip_is_refused(commitment_frames[0], |f| {
        let mut frames = commitment_frames.clone();
        frames[0] = f;
        ShareCommitments::collect(&committee, &frames).map(|_| ())
    });
    let commitments = ShareCommitments::collect(&committee, &commitment_frames).unwrap();
    let share = members[0]
        .reveal_public_share(&commitments)
        .unwrap()
        .to_vec();
    every_flip_is_refused(&share, |f| {
        PublicKeyShare::open(f, &committee, &commitments).map(|_| ())
    });

    // Rogue key: a validly signed share other than the committed one is refused, and an honest
    // member's library does not reveal against commitments that do not hold its own.
    let rogue =
        CommitteeMember::new(committee.clone(), MemberIndex(3), identity(3), &mut noise).unwrap();
    let rogue_commitments = ShareCommitments::collect(
        &committee,
        &[
            commitment_frames[0],
            commitment_frames[1],
            rogue.commitment(),
        ],
    )
    .unwrap();
    let rogue_share = rogue.reveal_public_share(&rogue_commitments).unwrap();
    assert!(matches!(
        PublicKeyShare::open(rogue_share, &committee, &commitments),
        Err(HeError::WrongBinding {
            binding: "commitment",
            ..
        })
    ));
    assert!(matches!(
        members[2].reveal_public_share(&rogue_commitments),
        Err(HeError::WrongBinding {
            binding: "commitment",
            ..
        })
    ));

    // A share or commitments of another committee (another round) are refused.
    let seats_6 = committee.seats().to_vec();
    let committee_6 = Committee::new(FederationId::from_name("tamper"), 6, plan, seats_6).unwrap();
    assert!(matches!(
        PublicKeyShare::open(&share, &committee_6, &commitments),
        Err(HeError::WrongBinding { .. })
    ));
    assert!(matches!(
        ShareCommitments::collect(&committee_6, &commitment_frames),
        Err(HeError::WrongBinding { .. })
    ));
    // A member whose identity is not its roster seat cannot even start.
    assert!(
        CommitteeMember::new(committee.clone(), MemberIndex(1), identity(2), &mut noise).is_err()
    );

    let dealt: Vec<Vec<(MemberIndex, crypto::he::SecretFrame)>> = members
        .iter_mut()
        .map(|m| m.deal(&mut noise).unwrap())
        .collect();
    assert!(
        members[0].deal(&mut noise).is_err(),
        "a secret is dealt only once"
    );
    let inbox = |recipient: u16| -> Vec<Vec<u8>> {
        dealt
            .iter()
            .flat_map(|frames| frames.iter())
            .filter(|(to, _)| to.0 == recipient)
            .map(|(_, frame)| frame.as_bytes().to_vec())
            .collect()
    };
    let frames = inbox(1);
    // A fragment addressed to member 2 delivered to member 1 is refused.
    let misrouted = inbox(2);
    let mut mixed: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    mixed[1] = &misrouted[1];
    assert!(matches!(
        members[0].accept_fragments(&mixed),
        Err(HeError::WrongBinding {
            binding: "recipient",
            ..
        })
    ));
    // A flipped bit in a fragment, a missing fragment, a duplicated one.
    let mut flipped = frames[2].clone();
    flipped[1000] ^= 1;
    let mut with_flip: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    with_flip[2] = &flipped;
    assert!(matches!(
        members[0].accept_fragments(&with_flip),
        Err(HeError::BadSignature { .. })
    ));
    let two: Vec<&[u8]> = frames[..2].iter().map(Vec::as_slice).collect();
    assert!(matches!(
        members[0].accept_fragments(&two),
        Err(HeError::KeyGenerationIncomplete(_))
    ));
    let doubled: Vec<&[u8]> = vec![&frames[0], &frames[0], &frames[1]];
    assert!(matches!(
        members[0].accept_fragments(&doubled),
        Err(HeError::BadMember { .. })
    ));
    let all: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    members[0].accept_fragments(&all).unwrap();
}

#[test]
fn a_committee_frame_with_a_changed_plan_is_another_committee_or_refused() {
    let seats = (1..=3u8)
        .map(|i| CommitteeSeat {
            participant: ParticipantId(u32::from(i)),
            verifying_key: identity(i).verifying_key(),
        })
        .collect();
    let committee = Committee::new(FederationId::from_name("tamper"), 5, plan(), seats).unwrap();
    let frame = committee.encode();
    for position in 16..frame.len() {
        let mut tampered = frame.clone();
        tampered[position] ^= 0x01;
        // Either refused, or a different committee whose digest binds nothing of this one.
        if let Ok(decoded) = Committee::decode(&tampered) {
            assert_ne!(decoded.digest(), committee.digest(), "flip at {position}");
        }
    }
}
