//! t-of-m: any t members decrypt, fewer are refused, and members refuse what they must not do.

#![cfg(feature = "he")]

use crypto::he::{
    AggregationPlan, CommitteeSize, DecryptorSet, HeError, MemberIndex, NoiseSource,
    PartialDecryption, SlotCount, SummandCount, Threshold, combine, generate_keys_in_process,
};
use crypto::secagg::FederationId;
use ed25519_dalek::SigningKey;
use proptest::prelude::*;

fn keys(
    committee: u16,
    threshold: u16,
    summands: u32,
    budget: u64,
    seed: u128,
) -> crypto::he::InProcessKeys {
    let plan = AggregationPlan::widest(
        SummandCount(summands),
        CommitteeSize(committee),
        Threshold(threshold),
        SlotCount(budget),
    )
    .unwrap();
    let identities = (0..committee)
        .map(|i| SigningKey::from_bytes(&[i as u8 + 40; 32]))
        .collect();
    generate_keys_in_process(
        FederationId::from_name("threshold"),
        1,
        plan,
        identities,
        &mut NoiseSource::from_seed(seed),
    )
    .unwrap()
}

#[test]
fn fewer_than_t_members_are_refused_everywhere() {
    let mut keys = keys(5, 3, 4, 100_000, 1);
    let plan = *keys.key.plan();
    let mut noise = NoiseSource::from_seed(2);
    let words: Vec<u32> = (0..4000).collect();
    let aggregate = keys.key.encrypt(&words, &mut noise).unwrap();

    // A decryption set must have exactly t distinct members on the roster.
    let set = |members: &[u16]| {
        DecryptorSet::new(
            &plan,
            &members.iter().map(|&m| MemberIndex(m)).collect::<Vec<_>>(),
        )
    };
    assert!(matches!(
        set(&[1, 2]),
        Err(HeError::BelowThreshold { need: 3, have: 2 })
    ));
    assert!(matches!(
        set(&[1, 2, 2]),
        Err(HeError::BelowThreshold { need: 3, have: 2 })
    ));
    assert!(matches!(
        set(&[1, 2, 6]),
        Err(HeError::BadMember { member: 6, .. })
    ));
    assert!(set(&[1, 2, 3, 4]).is_err());

    let decryptors = set(&[2, 3, 5]).unwrap();
    // Member 1 is not in the set and refuses.
    assert!(matches!(
        keys.members[0].partial_decrypt(&keys.key, &aggregate, &decryptors, &mut noise),
        Err(HeError::NotADecryptor(1))
    ));
    let partials: Vec<PartialDecryption> = [2u16, 3, 5]
        .iter()
        .map(|&m| {
            let frame = keys.members[usize::from(m) - 1]
                .partial_decrypt(&keys.key, &aggregate, &decryptors, &mut noise)
                .unwrap();
            PartialDecryption::open(&frame, &keys.committee, words.len()).unwrap()
        })
        .collect();
    for take in 0..3 {
        assert!(matches!(
            combine(&keys.key, &aggregate, &partials[..take]),
            Err(HeError::BelowThreshold { need: 3, have }) if have == take
        ));
    }
    assert_eq!(combine(&keys.key, &aggregate, &partials).unwrap(), words);
}

#[test]
fn members_refuse_aggregates_of_another_key() {
    let mut keys = keys(3, 2, 2, 100_000, 3);
    let other = keys_with_round(4);
    let mut noise = NoiseSource::from_seed(4);
    let plan = *keys.key.plan();
    let decryptors = DecryptorSet::new(&plan, &[MemberIndex(1), MemberIndex(2)]).unwrap();
    let foreign = other.key.encrypt(&[1, 2, 3], &mut noise).unwrap();
    assert!(matches!(
        keys.members[0].partial_decrypt(&keys.key, &foreign, &decryptors, &mut noise),
        Err(HeError::WrongBinding { .. })
    ));
    assert!(matches!(
        keys.members[0].partial_decrypt(&other.key, &foreign, &decryptors, &mut noise),
        Err(HeError::WrongBinding { .. })
    ));
}

fn keys_with_round(round: u64) -> crypto::he::InProcessKeys {
    let plan = AggregationPlan::widest(
        SummandCount(2),
        CommitteeSize(3),
        Threshold(2),
        SlotCount(100_000),
    )
    .unwrap();
    let identities = (0..3)
        .map(|i| SigningKey::from_bytes(&[i as u8 + 40; 32]))
        .collect();
    generate_keys_in_process(
        FederationId::from_name("threshold"),
        round,
        plan,
        identities,
        &mut NoiseSource::from_seed(5),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Packed-RLWE sum then threshold decryption equals the plaintext sum, for any committee,
    /// threshold, decryption set, vector length and words.
    #[test]
    fn sum_then_threshold_decrypt_equals_the_plaintext_sum(
        committee in 1u16..=6,
        threshold_seed in 0u16..100,
        summands in 1u32..=6,
        length in 1usize..5000,
        set_seed in any::<u64>(),
        word_seed in any::<u32>(),
        seed in any::<u64>(),
    ) {
        let threshold = 1 + threshold_seed % committee;
        let mut keys = keys(committee, threshold, summands, 10_000, u128::from(seed));
        let plan = *keys.key.plan();
        let bits = plan.plaintext_bits().0;
        let mask = if bits == 32 { u32::MAX } else { (1u32 << bits) - 1 };
        let mut noise = NoiseSource::from_seed(u128::from(seed) + 1);
        let mut expected = vec![0u32; length];
        let mut aggregator = crypto::he::EncryptedAggregator::new(&keys.key, length).unwrap();
        for k in 0..summands {
            let words: Vec<u32> = (0..length as u32)
                .map(|i| i.wrapping_mul(2_654_435_761).wrapping_add(word_seed.wrapping_mul(k + 1)) & mask)
                .collect();
            expected.iter_mut().zip(&words).for_each(|(e, w)| *e = e.wrapping_add(*w) & mask);
            aggregator.add(crypto::secagg::ParticipantId(k), &keys.key.encrypt(&words, &mut noise).unwrap()).unwrap();
        }
        let aggregate = aggregator.finish().unwrap();
        // A pseudo-random subset of `threshold` members.
        let mut members: Vec<u16> = (1..=committee).collect();
        let mut state = set_seed;
        for i in (1..members.len()).rev() {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            members.swap(i, (state >> 33) as usize % (i + 1));
        }
        members.truncate(usize::from(threshold));
        let indices: Vec<MemberIndex> = members.iter().map(|&m| MemberIndex(m)).collect();
        let decryptors = DecryptorSet::new(&plan, &indices).unwrap();
        let partials: Vec<PartialDecryption> = members
            .iter()
            .map(|&m| {
                let frame = keys.members[usize::from(m) - 1]
                    .partial_decrypt(&keys.key, &aggregate, &decryptors, &mut noise)
                    .unwrap();
                PartialDecryption::open(&frame, &keys.committee, length).unwrap()
            })
            .collect();
        prop_assert_eq!(combine(&keys.key, &aggregate, &partials).unwrap(), expected);
    }
}
