//! Whole encrypted rounds through the public API: key generation, encryption, aggregation,
//! threshold decryption, with the frames every party would send.

#![cfg(feature = "he")]

use crypto::he::{
    AggregationPlan, Ciphertext, CommitteeSize, DecryptorSet, EncryptedAggregator, EncryptedCodec,
    HeError, InProcessKeys, MemberIndex, NoiseSource, PartialDecryption, SlotCount, SummandCount,
    Threshold, assert_public, combine, generate_keys_in_process,
};
use crypto::secagg::{FederationId, ParticipantId};
use ed25519_dalek::SigningKey;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

fn identity(seed: u64) -> SigningKey {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[31] = 0xA5;
    SigningKey::from_bytes(&bytes)
}

fn setup(summands: u32, committee: u16, threshold: u16, budget: u64) -> InProcessKeys {
    let plan = AggregationPlan::widest(
        SummandCount(summands),
        CommitteeSize(committee),
        Threshold(threshold),
        SlotCount(budget),
    )
    .expect("plan");
    let identities = (0..u64::from(committee))
        .map(|i| identity(1000 + i))
        .collect();
    generate_keys_in_process(
        FederationId::from_name("he-tests"),
        7,
        plan,
        identities,
        &mut NoiseSource::from_seed(42),
    )
    .expect("key generation")
}

fn threshold_decrypt(
    keys: &mut InProcessKeys,
    aggregate: &Ciphertext,
    set: &[u16],
    seed: u128,
) -> Result<Vec<u32>, HeError> {
    let plan = *keys.key.plan();
    let members: Vec<MemberIndex> = set.iter().map(|&m| MemberIndex(m)).collect();
    let decryptors = DecryptorSet::new(&plan, &members)?;
    let mut noise = NoiseSource::from_seed(seed);
    let mut partials = Vec::new();
    for &m in set {
        let frame = keys.members[usize::from(m) - 1].partial_decrypt(
            &keys.key,
            aggregate,
            &decryptors,
            &mut noise,
        )?;
        partials.push(PartialDecryption::open(
            &frame,
            &keys.committee,
            aggregate.len(),
        )?);
    }
    combine(&keys.key, aggregate, &partials)
}

#[test]
fn fifty_encrypted_updates_of_100k_values_decrypt_to_the_plaintext_sum() {
    const PARTICIPANTS: u32 = 50;
    const LENGTH: usize = 100_000;
    // Committee of 5, threshold 3; budget for two decryption attempts.
    let mut keys = setup(PARTICIPANTS, 5, 3, 2 * LENGTH as u64);
    let plan = *keys.key.plan();
    assert!(plan.plaintext_bits().0 >= 20, "{plan:?}");
    let codec = EncryptedCodec::new(&plan, 1.0, 1).unwrap();

    let coordinator = identity(1);
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let mut exact = vec![0f64; LENGTH];
    let mut expected_words = vec![0u32; LENGTH];
    let mut aggregator = EncryptedAggregator::new(&keys.key, LENGTH).unwrap();
    let mut noise = NoiseSource::from_seed(77);
    for p in 0..PARTICIPANTS {
        let values: Vec<f32> = (0..LENGTH)
            .map(|_| rng.random_range(-1.0f32..=1.0))
            .collect();
        exact
            .iter_mut()
            .zip(&values)
            .for_each(|(e, v)| *e += f64::from(*v));
        let words = codec.encode(&values, None).unwrap();
        expected_words
            .iter_mut()
            .zip(&words)
            .for_each(|(e, w)| *e = e.wrapping_add(*w));
        let participant = identity(2000 + u64::from(p));
        let frame = keys
            .key
            .encrypt(&words, &mut noise)
            .unwrap()
            .seal(&participant);
        assert_eq!(frame.len(), Ciphertext::frame_len(LENGTH));
        if p % 2 == 0 {
            // Straight from the frame: the coordinator never holds more than the running sum.
            aggregator
                .add_sealed(ParticipantId(p), &frame, &participant.verifying_key())
                .unwrap();
        } else {
            let ciphertext =
                Ciphertext::open(&frame, &participant.verifying_key(), &keys.key, LENGTH).unwrap();
            aggregator.add(ParticipantId(p), &ciphertext).unwrap();
        }
    }
    assert_eq!(aggregator.contributors().len(), PARTICIPANTS as usize);
    let aggregate_frame = aggregator.finish().unwrap().seal(&coordinator);
    let aggregate = Ciphertext::open(
        &aggregate_frame,
        &coordinator.verifying_key(),
        &keys.key,
        LENGTH,
    )
    .unwrap();
    assert_eq!(aggregate.summands(), PARTICIPANTS);

    // Member 2 has dropped out: members 1, 4 and 5 decrypt.
    let sum = threshold_decrypt(&mut keys, &aggregate, &[1, 4, 5], 9).unwrap();
    let mask = (1u32 << plan.plaintext_bits().0) - 1;
    let expected: Vec<u32> = expected_words.iter().map(|w| w & mask).collect();
    assert_eq!(sum, expected, "decryption is exact on the quantized words");

    let decoded = codec.decode_sum(&sum, PARTICIPANTS).unwrap();
    let bound = codec.codec().sum_error_bound(PARTICIPANTS);
    let worst = decoded
        .iter()
        .zip(&exact)
        .map(|(d, e)| (f64::from(*d) - e).abs())
        .fold(0.0, f64::max);
    assert!(
        worst <= bound,
        "worst error {worst} above the quantization bound {bound}"
    );

    // Another set decrypts the same aggregate to the same sum; then the budget is spent.
    assert_eq!(
        threshold_decrypt(&mut keys, &aggregate, &[2, 3, 4], 10).unwrap(),
        expected
    );
    assert!(matches!(
        threshold_decrypt(&mut keys, &aggregate, &[2, 4, 5], 11),
        Err(HeError::DecryptionBudgetExhausted {
            member: 4,
            used: 200_000,
            ..
        })
    ));
}

#[test]
fn weighted_updates_give_the_sample_weighted_mean_with_hidden_counts() {
    const LENGTH: usize = 5_000;
    let mut keys = setup(10, 3, 2, LENGTH as u64 + 1);
    let plan = *keys.key.plan();
    let codec = EncryptedCodec::new(&plan, 2.0, 1_000).unwrap();
    let mut noise = NoiseSource::from_seed(3);
    let mut aggregator = EncryptedAggregator::new(&keys.key, LENGTH + 1).unwrap();
    let updates = [
        (vec![1.5f32; LENGTH], 300u32),
        (vec![-0.5f32; LENGTH], 100),
        (vec![0.25; LENGTH], 600),
    ];
    for (p, (values, weight)) in updates.iter().enumerate() {
        let ciphertext = codec
            .encrypt_update(&keys.key, values, Some(*weight), &mut noise)
            .unwrap();
        aggregator
            .add(ParticipantId(p as u32), &ciphertext)
            .unwrap();
    }
    let aggregate = aggregator.finish().unwrap();
    let sum = threshold_decrypt(&mut keys, &aggregate, &[1, 3], 4).unwrap();
    let mean = codec.decode_weighted_mean(&sum, 3).unwrap();
    assert_eq!(mean.total_weight, 1_000);
    let exact = (1.5 * 300.0 - 0.5 * 100.0 + 0.25 * 600.0) / 1000.0;
    let bound = codec.codec().mean_error_bound();
    assert!(
        mean.mean
            .iter()
            .all(|m| (f64::from(*m) - exact).abs() <= bound)
    );
}

#[test]
fn the_aggregator_refuses_what_would_break_the_noise_bound_or_the_round() {
    let keys = setup(3, 2, 2, 10_000);
    // Another plan, hence another committee digest and another key.
    let other = setup(3, 2, 2, 10_001);
    let mut noise = NoiseSource::from_seed(8);
    let words = vec![1u32; 100];
    let mut aggregator = EncryptedAggregator::new(&keys.key, 100).unwrap();
    let fresh = |noise: &mut NoiseSource| keys.key.encrypt(&words, noise).unwrap();
    let first = fresh(&mut noise);
    aggregator.add(ParticipantId(1), &first).unwrap();
    assert!(matches!(
        aggregator.add(ParticipantId(1), &fresh(&mut noise)),
        Err(HeError::DuplicateContribution(_))
    ));
    let foreign = other.key.encrypt(&words, &mut noise).unwrap();
    assert!(matches!(
        aggregator.add(ParticipantId(2), &foreign),
        Err(HeError::WrongBinding { .. })
    ));
    let short = keys.key.encrypt(&words[..99], &mut noise).unwrap();
    assert!(matches!(
        aggregator.add(ParticipantId(2), &short),
        Err(HeError::LengthMismatch { .. })
    ));
    aggregator
        .add(ParticipantId(2), &fresh(&mut noise))
        .unwrap();
    aggregator
        .add(ParticipantId(3), &fresh(&mut noise))
        .unwrap();
    assert!(matches!(
        aggregator.add(ParticipantId(4), &fresh(&mut noise)),
        Err(HeError::TooManySummands {
            summands: 4,
            max: 3
        })
    ));
    let bits = keys.key.plan().plaintext_bits().0;
    assert!(matches!(
        keys.key.encrypt(&[0, 1 << bits], &mut noise),
        Err(HeError::WordOutOfRange { index: 1, .. })
    ));
    assert!(matches!(
        keys.key.encrypt(&[], &mut noise),
        Err(HeError::Empty)
    ));
}

#[test]
fn the_coordinator_state_holds_no_secret_by_type() {
    // Compiles only because every field of the aggregator is public material; the compile_fail
    // doctests in `crypto::he` show that members and noise sources are not.
    const _: () = assert_public::<EncryptedAggregator>();
    assert_public::<crypto::he::CollectivePublicKey>();
    assert_public::<PartialDecryption>();
}
