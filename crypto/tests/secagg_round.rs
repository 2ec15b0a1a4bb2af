//! Whole in-process rounds: the sum over the survivors, dropouts at every phase, aborts.

use std::collections::{BTreeMap, BTreeSet};

use crypto::secagg::simulation::{Dropout, RoundOutcome, SimulationConfig, plain_sum, run};
use crypto::secagg::{ParticipantId, Phase, SecAggParams, SecretKind};
use crypto::{AbortReason, CryptoError, FixedPointCodec};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

fn never_both_secrets(outcome: &RoundOutcome) {
    let mut kinds: BTreeMap<ParticipantId, BTreeSet<SecretKind>> = BTreeMap::new();
    for (owner, kind) in &outcome.revealed {
        kinds.entry(*owner).or_default().insert(*kind);
    }
    for (owner, kinds) in kinds {
        assert_eq!(kinds.len(), 1, "both secrets of {owner} were revealed");
    }
}

fn word_inputs(n: u32, len: u32, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| (0..len).map(|_| rng.random()).collect())
        .collect()
}

fn contributors_sum(inputs: &[Vec<u32>], contributors: &[ParticipantId]) -> Vec<u32> {
    let vectors: Vec<&[u32]> = contributors
        .iter()
        .map(|id| inputs[id.0 as usize].as_slice())
        .collect();
    plain_sum(&vectors)
}

#[test]
fn hundred_participants_with_a_tenth_dropping_at_each_phase() {
    let (n, len) = (100u32, 100_000u32);
    let codec = FixedPointCodec::new(1.0, n).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let updates: Vec<Vec<f32>> = (0..n)
        .map(|_| (0..len).map(|_| rng.random_range(-1.0f32..=1.0)).collect())
        .collect();
    let inputs: Vec<Vec<u32>> = updates.iter().map(|u| codec.encode(u).unwrap()).collect();
    let params = SecAggParams::suggested(n as usize, len).unwrap();
    let dropout = Dropout {
        before_advertise: 0.1,
        before_sharing: 0.1,
        before_upload: 0.1,
        after_upload: 0.1,
    };
    let config = SimulationConfig {
        participants: n,
        params,
        dropout,
        seed: 5,
        through_bytes: true,
    };
    let outcome = run(&config, &inputs).unwrap();
    let result = outcome.result.as_ref().expect("round completes");

    // Ten dropped before each of the first three phases; ten more after uploading, whose
    // inputs are still in the sum because their neighbours unmask them.
    assert_eq!(result.contributors, outcome.uploaded);
    assert_eq!(result.contributors.len(), 70);
    assert_eq!(result.dropped.len(), 10);
    assert_eq!(result.sum, contributors_sum(&inputs, &result.contributors));

    let count = result.contributors.len() as u32;
    let decoded = codec.decode_sum(&result.sum, count).unwrap();
    let bound = codec.sum_error_bound(count);
    let mut worst = 0.0f64;
    for (i, got) in decoded.iter().enumerate() {
        let exact: f64 = result
            .contributors
            .iter()
            .map(|id| f64::from(updates[id.0 as usize][i]))
            .sum();
        worst = worst.max((f64::from(*got) - exact).abs());
    }
    assert!(
        worst <= bound,
        "error {worst} above the stated bound {bound}"
    );
    never_both_secrets(&outcome);
    assert!(
        outcome
            .revealed
            .iter()
            .any(|(_, k)| *k == SecretKind::PairwiseMaskKey)
    );
}

#[test]
fn flower_setting_without_dropouts_gives_the_exact_sum() {
    let params = SecAggParams {
        vector_len: 1000,
        neighbours: 3,
        threshold: 2,
        min_survivors: 10,
    };
    let inputs = word_inputs(50, 1000, 1);
    let config = SimulationConfig {
        participants: 50,
        params,
        dropout: Dropout::default(),
        seed: 2,
        through_bytes: true,
    };
    let outcome = run(&config, &inputs).unwrap();
    let result = outcome.result.unwrap();
    assert_eq!(result.contributors.len(), 50);
    assert_eq!(
        result.sum,
        plain_sum(&inputs.iter().map(Vec::as_slice).collect::<Vec<_>>())
    );
    // Masked input (4 KB of words) dominates; shares add 3 envelopes of 81 bytes.
    let per_participant = outcome.bytes_sent.values().sum::<usize>() / 50;
    assert!(
        (4000..5500).contains(&per_participant),
        "{per_participant} bytes"
    );
}

#[test]
fn too_many_dropouts_after_upload_abort_without_a_sum() {
    let params = SecAggParams {
        vector_len: 100,
        neighbours: 4,
        threshold: 3,
        min_survivors: 10,
    };
    let inputs = word_inputs(30, 100, 3);
    let dropout = Dropout {
        after_upload: 0.5,
        ..Dropout::default()
    };
    let config = SimulationConfig {
        participants: 30,
        params,
        dropout,
        seed: 4,
        through_bytes: false,
    };
    let outcome = run(&config, &inputs).unwrap();
    match outcome.result {
        Err(CryptoError::Aborted(AbortReason::TooFewShares { have, need: 3, .. })) => {
            assert!(have < 3)
        }
        other => panic!("expected an abort, got {other:?}"),
    }
}

#[test]
fn too_few_participants_abort_at_the_phase_where_they_vanish() {
    let params = SecAggParams {
        vector_len: 10,
        neighbours: 4,
        threshold: 3,
        min_survivors: 15,
    };
    let inputs = word_inputs(20, 10, 5);
    let dropout = Dropout {
        before_advertise: 0.3,
        ..Dropout::default()
    };
    let config = SimulationConfig {
        participants: 20,
        params,
        dropout,
        seed: 6,
        through_bytes: false,
    };
    match run(&config, &inputs) {
        Err(CryptoError::Aborted(AbortReason::TooFewParticipants {
            phase: Phase::AdvertiseKeys,
            have: 14,
            need: 15,
        })) => {}
        other => panic!("expected an abort, got {other:?}"),
    }
    let dropout = Dropout {
        before_upload: 0.3,
        ..Dropout::default()
    };
    let config = SimulationConfig { dropout, ..config };
    let outcome = run(&config, &inputs).unwrap();
    assert!(matches!(
        outcome.result,
        Err(CryptoError::Aborted(AbortReason::TooFewParticipants {
            phase: Phase::MaskedInput,
            have: 14,
            need: 15
        }))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// Whatever drops, a round either returns exactly the survivors' sum or aborts: never a
    /// wrong or partial sum.
    #[test]
    fn masks_cancel_for_any_dropouts_or_the_round_aborts(
        n in 6u32..18,
        k in 2u32..6,
        t_offset in 0u32..4,
        fractions in prop::array::uniform4(0.0f64..0.25),
        seed in any::<u64>(),
    ) {
        let t = (2 + t_offset).min(k);
        let params = SecAggParams { vector_len: 64, neighbours: k, threshold: t, min_survivors: t + 1 };
        prop_assume!(params.validate(n as usize).is_ok());
        let inputs = word_inputs(n, 64, seed);
        let dropout = Dropout {
            before_advertise: fractions[0],
            before_sharing: fractions[1],
            before_upload: fractions[2],
            after_upload: fractions[3],
        };
        let config = SimulationConfig { participants: n, params, dropout, seed, through_bytes: true };
        let outcome = match run(&config, &inputs) {
            Ok(outcome) => outcome,
            Err(CryptoError::Aborted(_)) => return Ok(()),
            Err(other) => panic!("unexpected error {other:?}"),
        };
        never_both_secrets(&outcome);
        match outcome.result {
            Ok(result) => {
                prop_assert_eq!(&result.contributors, &outcome.uploaded);
                prop_assert_eq!(result.sum, contributors_sum(&inputs, &result.contributors));
            }
            Err(CryptoError::Aborted(_)) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
}
