//! Statistical and property tests: masked vectors look uniform, the wire encoding is canonical
//! and never panics, the fixed-point codec keeps its stated bound, Shamir needs t shares.

mod common;

use common::{Harness, params};
use crypto::secagg::shamir::{random_coefficients, reconstruct, split};
use crypto::secagg::simulation::{
    CHI2_255_Q, Dropout, SimulationConfig, byte_chi_square as chi_square, run,
};
use crypto::secagg::{
    KeyAdvertisement, KeyDirectory, MaskSeed, MaskedInput, Phase, RoundPlan, SecAggParams,
    ShareList, SignedMessage, UnmaskRequest, UnmaskResponse,
};
use crypto::{CryptoError, FixedPointCodec};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

// The masks come from fresh OS randomness, so a uniform vector fails the chi-square test once
// in a million runs, while the unmasked encoding scores more than 100 times higher.

#[test]
fn a_masked_vector_is_indistinguishable_from_uniform_bytes() {
    let len = 100_000u32;
    let codec = FixedPointCodec::new(1.0, 8).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    // A very non-uniform update: small values around zero.
    let update: Vec<f32> = (0..len).map(|_| rng.random_range(-0.01f32..0.01)).collect();
    let encoded = codec.encode(&update).unwrap();
    let plain: Vec<u8> = encoded.iter().flat_map(|w| w.to_le_bytes()).collect();
    assert!(
        chi_square(&plain) > 100.0 * CHI2_255_Q,
        "control: the encoding itself is far from uniform"
    );

    let (mut h, collecting) = Harness::open(8, params(len, 3, 2, 5), 10);
    let (_, ready) = h.run_until_ready(collecting);
    let (_, state) = ready.into_iter().next().unwrap();
    let (_, message) = state.mask(&encoded).unwrap();
    let masked = MaskedInput::word_bytes(message.payload()).unwrap();
    assert_eq!(masked.len(), 4 * len as usize);
    let statistic = chi_square(masked);
    assert!(
        statistic < CHI2_255_Q,
        "chi-square {statistic} over 255 dof"
    );
}

#[test]
fn moderate_dropout_rounds_mostly_complete() {
    let params = SecAggParams {
        vector_len: 32,
        neighbours: 6,
        threshold: 3,
        min_survivors: 8,
    };
    let dropout = Dropout {
        before_advertise: 0.05,
        before_sharing: 0.05,
        before_upload: 0.05,
        after_upload: 0.1,
    };
    let inputs: Vec<Vec<u32>> = (0..20).map(|i| vec![i; 32]).collect();
    let completed = (0..20)
        .filter(|&seed| {
            let config = SimulationConfig {
                participants: 20,
                params,
                dropout,
                seed,
                through_bytes: false,
            };
            run(&config, &inputs).is_ok_and(|outcome| outcome.result.is_ok())
        })
        .count();
    assert!(completed >= 18, "only {completed} of 20 rounds completed");
}

/// One real message of every phase, from a whole round.
fn sample_messages() -> Vec<SignedMessage> {
    let (mut h, mut collecting) = Harness::open(6, params(5, 3, 2, 4), 12);
    let mut out = vec![h.plan.clone()];
    let states = h.advertise(&mut collecting);
    let (_, advert) = h.join(0);
    out.push(advert);
    let (shares, sharing) = h.share(collecting, states);
    let (masked, ready) = h.relay(shares, sharing);
    let _ = masked;
    let (mut h2, collecting2) = Harness::open(6, params(5, 3, 2, 4), 12);
    let (unmask, awaiting) = h2.run_until_unmask(collecting2, |_| vec![3; 5]);
    let _ = unmask;
    let (_, state, request) = awaiting.into_iter().next().unwrap();
    let response = state.handle(&request).unwrap();
    let (_, first) = ready.into_iter().next().unwrap();
    let (_, masked_input) = first.mask(&[1, 2, 3, 4, 5]).unwrap();
    out.extend([request, response, masked_input]);
    // Directory, shares and relay of a fresh run.
    let (mut h3, mut c3) = Harness::open(6, params(5, 3, 2, 4), 13);
    let states = h3.advertise(&mut c3);
    let (mut shares, directories) = c3.close().unwrap();
    let mut sharing = Vec::new();
    for (directory, (_, state)) in directories.iter().zip(states) {
        let (next, message) = state.handle(directory).unwrap();
        shares.receive(&message).unwrap();
        out.push(message);
        sharing.push(next);
    }
    out.push(directories[0].clone());
    let (_, relays) = shares.close().unwrap();
    out.push(relays[0].clone());
    out
}

/// Decodes a payload by its phase and re-encodes it.
fn payload_round_trip(phase: Phase, payload: &[u8]) -> Result<Vec<u8>, CryptoError> {
    Ok(match phase {
        Phase::RoundPlan => RoundPlan::decode(payload)?.encode(),
        Phase::AdvertiseKeys => KeyAdvertisement::decode(payload)?.encode(),
        Phase::KeyDirectory => KeyDirectory::decode(payload)?.encode(),
        Phase::ShareKeys | Phase::ShareRelay => ShareList::decode(payload)?.encode(),
        Phase::MaskedInput => {
            let bytes = MaskedInput::word_bytes(payload)?;
            let words: Vec<u32> = bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            MaskedInput::encode(&words)
        }
        Phase::UnmaskRequest => UnmaskRequest::decode(payload)?.encode(),
        Phase::UnmaskResponse => UnmaskResponse::decode(payload)?.encode(),
    })
}

#[test]
fn every_sample_message_round_trips_exactly() {
    let samples = sample_messages();
    let phases: std::collections::BTreeSet<u8> =
        samples.iter().map(|m| m.header().phase as u8).collect();
    assert_eq!(phases.len(), 8, "a sample of every phase");
    for message in samples {
        let bytes = message.to_bytes();
        let decoded = SignedMessage::from_bytes(&bytes, 1 << 20).unwrap();
        assert_eq!(decoded.to_bytes(), bytes);
        assert_eq!(
            payload_round_trip(message.header().phase, message.payload()).unwrap(),
            message.payload()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Mutated or random bytes never panic the decoders, and whatever decodes re-encodes to the
    /// same bytes (the encoding is canonical).
    #[test]
    fn decode_then_encode_gives_the_same_bytes(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in prop::option::of(any::<prop::sample::Index>()),
        extra in prop::collection::vec(any::<u8>(), 0..3),
        random in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        thread_local!(static SAMPLES: Vec<SignedMessage> = sample_messages());
        let message = SAMPLES.with(|s| pick.get(s).clone());
        let mut bytes = message.to_bytes();
        for (at, value) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *value;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        bytes.extend(&extra);
        for candidate in [&bytes, &random] {
            if let Ok(decoded) = SignedMessage::from_bytes(candidate, 1 << 20) {
                prop_assert_eq!(&decoded.to_bytes(), candidate);
            }
        }
        // Payload decoders on the mutated payload of the same phase and on random bytes.
        let mut payload = message.payload().to_vec();
        for (at, value) in &edits {
            if !payload.is_empty() {
                let i = at.index(payload.len());
                payload[i] = *value;
            }
        }
        for candidate in [&payload, &random] {
            if let Ok(encoded) = payload_round_trip(message.header().phase, candidate) {
                prop_assert_eq!(&encoded, candidate);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn quantised_sums_stay_within_the_stated_bound(
        clip in 0.01f32..100.0,
        max_participants in 1u32..5000,
        units in prop::collection::vec(prop::collection::vec(-1.0f32..=1.0, 16), 1..40),
    ) {
        let n = (units.len() as u32).min(max_participants);
        let codec = FixedPointCodec::new(clip, max_participants).unwrap();
        let updates: Vec<Vec<f32>> = units.iter().take(n as usize)
            .map(|u| u.iter().map(|x| (x * clip).clamp(-clip, clip)).collect()).collect();
        let mut sum = vec![0u32; 16];
        for update in &updates {
            for (s, w) in sum.iter_mut().zip(codec.encode(update).unwrap()) {
                *s = s.wrapping_add(w);
            }
        }
        let decoded = codec.decode_sum(&sum, n).unwrap();
        for (i, got) in decoded.iter().enumerate() {
            let exact: f64 = updates.iter().map(|u| f64::from(u[i])).sum();
            prop_assert!((f64::from(*got) - exact).abs() <= codec.sum_error_bound(n));
        }
    }

    #[test]
    fn weighted_means_stay_within_the_stated_bound(
        rows in prop::collection::vec((prop::collection::vec(-2.0f32..=2.0, 8), 1u32..=500), 1..30),
    ) {
        let codec = FixedPointCodec::weighted(2.0, 30, 500).unwrap();
        let mut sum = vec![0u32; 9];
        for (update, weight) in &rows {
            for (s, w) in sum.iter_mut().zip(codec.encode_weighted(update, *weight).unwrap()) {
                *s = s.wrapping_add(w);
            }
        }
        let mean = codec.decode_weighted_mean(&sum, rows.len() as u32).unwrap();
        let total: u64 = rows.iter().map(|(_, w)| u64::from(*w)).sum();
        prop_assert_eq!(mean.total_weight, total);
        for (i, got) in mean.mean.iter().enumerate() {
            let exact: f64 = rows.iter().map(|(u, w)| f64::from(u[i]) * f64::from(*w)).sum::<f64>() / total as f64;
            prop_assert!((f64::from(*got) - exact).abs() <= codec.mean_error_bound());
        }
    }

    #[test]
    fn any_t_shares_rebuild_and_t_minus_one_do_not(
        seed in any::<u64>(),
        holders in 2usize..30,
        t_pick in any::<prop::sample::Index>(),
        order in any::<prop::sample::Index>(),
    ) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let t = 1 + t_pick.index(holders);
        let secret = MaskSeed::random(&mut rng);
        let mut shares = split(&secret, &random_coefficients(t, &mut rng), t, holders).unwrap();
        shares.rotate_left(order.index(holders));
        prop_assert_eq!(reconstruct(&shares[..t], t).unwrap(), secret.clone());
        let short = reconstruct(&shares[..t - 1], t);
        prop_assert!(
            matches!(short, Err(CryptoError::InsufficientShares { .. })),
            "t-1 shares must be refused"
        );
        // A wrong share among t gives a different secret (the commitment check catches it).
        if t >= 2 {
            let mut bad = shares[..t].to_vec();
            let y = *bad[0].y();
            let mut flipped = y;
            flipped[0] ^= 1;
            bad[0] = crypto::secagg::ShamirShare::new(bad[0].x(), flipped);
            prop_assert_ne!(reconstruct(&bad, t).unwrap(), secret);
        }
    }
}
