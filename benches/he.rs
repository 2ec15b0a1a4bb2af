//! Encrypted aggregation benchmarks (packed RLWE, t-of-m decryption), with the plaintext sum of
//! the same vectors as baseline in the same run. See docs/he.md for the table.
//!
//! ```text
//! cargo bench --bench he
//! ```

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use crypto::he::{
    AggregationPlan, Ciphertext, CommitteeSize, DecryptorSet, EncryptedAggregator, InProcessKeys,
    MemberIndex, NoiseSource, PartialDecryption, SigningKey, SlotCount, SummandCount, Threshold,
    combine, generate_keys_in_process,
};
use crypto::secagg::{FederationId, ParticipantId};

const LENGTH: usize = 1_000_000;
const PARTICIPANTS: u32 = 50;
const COMMITTEE: u16 = 5;
const THRESHOLD: u16 = 3;

fn keys() -> InProcessKeys {
    let plan = AggregationPlan::widest(
        SummandCount(PARTICIPANTS),
        CommitteeSize(COMMITTEE),
        Threshold(THRESHOLD),
        // Criterion repeats decryption; the budget covers every iteration (docs/he.md explains
        // why a deployment sizes it to one or two decryptions).
        SlotCount(LENGTH as u64 * 1_000),
    )
    .expect("plan");
    let identities = (0..COMMITTEE)
        .map(|i| SigningKey::from_bytes(&[i as u8 + 1; 32]))
        .collect();
    generate_keys_in_process(
        FederationId::from_name("bench"),
        1,
        plan,
        identities,
        &mut NoiseSource::from_seed(1),
    )
    .expect("keys")
}

fn words(seed: u32, bits: u32) -> Vec<u32> {
    (0..LENGTH as u32)
        .map(|i| i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> (32 - bits))
        .collect()
}

fn partials(
    keys: &mut InProcessKeys,
    aggregate: &Ciphertext,
    noise: &mut NoiseSource,
) -> Vec<PartialDecryption> {
    let plan = *keys.key.plan();
    let members: Vec<MemberIndex> = (1..=THRESHOLD).map(MemberIndex).collect();
    let set = DecryptorSet::new(&plan, &members).expect("set");
    members
        .iter()
        .map(|m| {
            let frame = keys.members[usize::from(m.0) - 1]
                .partial_decrypt(&keys.key, aggregate, &set, noise)
                .expect("partial");
            PartialDecryption::open(&frame, &keys.committee, LENGTH).expect("open")
        })
        .collect()
}

fn encrypted_aggregation(c: &mut Criterion) {
    let mut keys = keys();
    let bits = keys.key.plan().plaintext_bits().0;
    let mut noise = NoiseSource::from_seed(2);
    let plain: Vec<Vec<u32>> = (0..PARTICIPANTS).map(|p| words(p, bits)).collect();
    let ciphertexts: Vec<Ciphertext> = plain
        .iter()
        .map(|w| keys.key.encrypt(w, &mut noise).expect("encrypt"))
        .collect();
    let sender = SigningKey::from_bytes(&[99; 32]);
    let frame = ciphertexts[0].seal(&sender);
    eprintln!(
        "he: plaintext bits {bits}, ciphertext {:.3} bytes/param, partial {:.3} bytes/param",
        frame.len() as f64 / LENGTH as f64,
        PartialDecryption::frame_len(usize::from(THRESHOLD), LENGTH) as f64 / LENGTH as f64
    );

    let mut group = c.benchmark_group("he_1M");
    group.sample_size(10);
    group.throughput(Throughput::Elements(LENGTH as u64));

    group.bench_function("plain_sum_50", |b| {
        b.iter(|| {
            let mut sum = vec![0u32; LENGTH];
            for w in &plain {
                sum.iter_mut()
                    .zip(w)
                    .for_each(|(s, x)| *s = s.wrapping_add(*x));
            }
            sum
        })
    });
    group.bench_function("encrypt", |b| {
        b.iter(|| keys.key.encrypt(&plain[0], &mut noise).expect("encrypt"))
    });
    group.bench_function("seal_ciphertext", |b| {
        b.iter(|| ciphertexts[0].seal(&sender))
    });
    group.bench_function("open_ciphertext", |b| {
        b.iter(|| {
            Ciphertext::open(&frame, &sender.verifying_key(), &keys.key, LENGTH).expect("open")
        })
    });
    group.bench_function("add_50", |b| {
        b.iter(|| {
            let mut aggregator = EncryptedAggregator::new(&keys.key, LENGTH).expect("aggregator");
            let batch: Vec<(ParticipantId, &Ciphertext)> = ciphertexts
                .iter()
                .zip(0u32..)
                .map(|(c, p)| (ParticipantId(p), c))
                .collect();
            aggregator.add_batch(&batch).expect("add");
            aggregator.finish().expect("sum")
        })
    });
    let frames: Vec<Vec<u8>> = ciphertexts.iter().map(|c| c.seal(&sender)).collect();
    group.bench_function("verify_and_add_50_sealed", |b| {
        b.iter(|| {
            let mut aggregator = EncryptedAggregator::new(&keys.key, LENGTH).expect("aggregator");
            for (frame, p) in frames.iter().zip(0u32..) {
                aggregator
                    .add_sealed(ParticipantId(p), frame, &sender.verifying_key())
                    .expect("add");
            }
            aggregator.finish().expect("sum")
        })
    });
    drop(frames);
    let mut aggregator = EncryptedAggregator::new(&keys.key, LENGTH).expect("aggregator");
    let batch: Vec<(ParticipantId, &Ciphertext)> = ciphertexts
        .iter()
        .zip(0u32..)
        .map(|(c, p)| (ParticipantId(p), c))
        .collect();
    aggregator.add_batch(&batch).expect("add");
    let aggregate = aggregator.finish().expect("sum");

    group.bench_function("partial_decrypt_one_member", |b| {
        let set = DecryptorSet::new(
            keys.key.plan(),
            &(1..=THRESHOLD).map(MemberIndex).collect::<Vec<_>>(),
        )
        .expect("set");
        b.iter(|| {
            keys.members[0]
                .partial_decrypt(&keys.key, &aggregate, &set, &mut noise)
                .expect("partial")
        })
    });
    let opened = partials(&mut keys, &aggregate, &mut noise);
    group.bench_function("combine_3", |b| {
        b.iter(|| combine(&keys.key, &aggregate, &opened).expect("combine"))
    });
    group.bench_function("threshold_decrypt_3_of_5", |b| {
        b.iter(|| {
            let opened = partials(&mut keys, &aggregate, &mut noise);
            combine(&keys.key, &aggregate, &opened).expect("combine")
        })
    });
    group.bench_function("pipeline_encrypt_aggregate50_decrypt", |b| {
        b.iter_batched(
            || (),
            |()| {
                let fresh = keys.key.encrypt(&plain[0], &mut noise).expect("encrypt");
                let mut aggregator =
                    EncryptedAggregator::new(&keys.key, LENGTH).expect("aggregator");
                let mut batch: Vec<(ParticipantId, &Ciphertext)> = ciphertexts[1..]
                    .iter()
                    .zip(1u32..)
                    .map(|(c, p)| (ParticipantId(p), c))
                    .collect();
                batch.push((ParticipantId(0), &fresh));
                aggregator.add_batch(&batch).expect("add");
                let aggregate = aggregator.finish().expect("sum");
                let opened = partials(&mut keys, &aggregate, &mut noise);
                combine(&keys.key, &aggregate, &opened).expect("combine")
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, encrypted_aggregation);
criterion_main!(benches);
