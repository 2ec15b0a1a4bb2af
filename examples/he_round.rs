//! One whole encrypted round in process: committee key generation, encryption by every
//! participant, aggregation by the coordinator, threshold decryption, printed as JSON.
//!
//! ```text
//! cargo run --release --example he_round -- --participants 50 --length 100000 \
//!     --committee 5 --threshold 3 --seed 1
//! ```
//!
//! The first `threshold` members that did not drop decrypt; `--dropped` members (the first ones)
//! are offline during decryption.

use std::time::Instant;

use clap::Parser;
use crypto::he::{
    AggregationPlan, CommitteeSize, DecryptorSet, EncryptedAggregator, EncryptedCodec, MemberIndex,
    NoiseSource, PARAMETER_SET_NAME, PartialDecryption, SigningKey, SlotCount, SummandCount,
    Threshold, combine, generate_keys_in_process,
};
use crypto::secagg::{FederationId, ParticipantId};
use serde_json::json;

#[derive(Parser)]
#[command(about = "One in-process round of encrypted aggregation (packed RLWE, t-of-m decryption)")]
struct Args {
    #[arg(long, default_value_t = 50)]
    participants: u32,
    #[arg(long, default_value_t = 100_000)]
    length: usize,
    #[arg(long, default_value_t = 5)]
    committee: u16,
    #[arg(long, default_value_t = 3)]
    threshold: u16,
    /// Committee members offline at decryption time (at most committee - threshold).
    #[arg(long, default_value_t = 1)]
    dropped: u16,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Deterministic values in [-1, 1] (splitmix64), so a seed reproduces the whole round.
fn update(seed: u64, length: usize) -> Vec<f32> {
    let mut state = seed;
    (0..length)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn identity(seed: u64, role: u64, index: u64) -> SigningKey {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&role.to_le_bytes());
    bytes[16..24].copy_from_slice(&index.to_le_bytes());
    SigningKey::from_bytes(&bytes)
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.dropped > args.committee.saturating_sub(args.threshold) {
        return Err("--dropped must leave at least --threshold members".into());
    }
    let length = args.length;
    let plan = AggregationPlan::widest(
        SummandCount(args.participants),
        CommitteeSize(args.committee),
        Threshold(args.threshold),
        SlotCount(length as u64),
    )?;
    let codec = EncryptedCodec::new(&plan, 1.0, 1)?;
    let mut noise = NoiseSource::from_seed(u128::from(args.seed));

    let start = Instant::now();
    let identities = (0..u64::from(args.committee))
        .map(|i| identity(args.seed, 1, i))
        .collect();
    let federation = FederationId::from_name("he-round-example");
    let mut keys = generate_keys_in_process(federation, args.seed, plan, identities, &mut noise)?;
    let keygen_ms = ms(start);

    let mut exact = vec![0f64; length];
    let mut encrypt_ms = Vec::new();
    let mut frames = Vec::new();
    let senders: Vec<SigningKey> = (0..u64::from(args.participants))
        .map(|p| identity(args.seed, 2, p))
        .collect();
    let updates: Vec<Vec<f32>> = (0..args.participants)
        .map(|p| update(args.seed ^ (u64::from(p) << 32), length))
        .collect();
    for (values, sender) in updates.iter().zip(&senders) {
        exact
            .iter_mut()
            .zip(values)
            .for_each(|(e, v)| *e += f64::from(*v));
        let start = Instant::now();
        let ciphertext = codec.encrypt_update(&keys.key, values, None, &mut noise)?;
        encrypt_ms.push(ms(start));
        frames.push(ciphertext.seal(sender));
    }
    let plain_start = Instant::now();
    let mut plain_sum = vec![0f32; length];
    for values in &updates {
        plain_sum.iter_mut().zip(values).for_each(|(s, v)| *s += v);
    }
    let plain_sum_ms = ms(plain_start);

    // The coordinator verifies each signed frame and adds it into one running sum.
    let start = Instant::now();
    let mut aggregator = EncryptedAggregator::new(&keys.key, length)?;
    for ((frame, sender), p) in frames.iter().zip(&senders).zip(0u32..) {
        aggregator.add_sealed(ParticipantId(p), frame, &sender.verifying_key())?;
    }
    let aggregate = aggregator.finish()?;
    let aggregate_ms = ms(start);

    let decryptors: Vec<MemberIndex> = (args.dropped + 1..=args.committee)
        .take(usize::from(args.threshold))
        .map(MemberIndex)
        .collect();
    let set = DecryptorSet::new(&plan, &decryptors)?;
    let mut partial_ms = Vec::new();
    let mut partials = Vec::new();
    let mut partial_bytes = 0;
    for member in &decryptors {
        let start = Instant::now();
        let frame = keys.members[usize::from(member.0) - 1]
            .partial_decrypt(&keys.key, &aggregate, &set, &mut noise)?;
        partial_ms.push(ms(start));
        partial_bytes = frame.len();
        partials.push(PartialDecryption::open(&frame, &keys.committee, length)?);
    }
    let start = Instant::now();
    let sum = combine(&keys.key, &aggregate, &partials)?;
    let decoded = codec.decode_sum(&sum, args.participants)?;
    let combine_ms = ms(start);

    let bound = codec.codec().sum_error_bound(args.participants);
    let worst = decoded
        .iter()
        .zip(&exact)
        .map(|(d, e)| (f64::from(*d) - e).abs())
        .fold(0.0, f64::max);
    let budget = plan.noise_budget();
    let total_encrypt: f64 = encrypt_ms.iter().sum();
    let report = json!({
        "parameters": {
            "participants": args.participants, "length": length, "committee": args.committee,
            "threshold": args.threshold, "dropped": args.dropped, "seed": args.seed,
            "parameter_set": PARAMETER_SET_NAME,
            "plaintext_bits": plan.plaintext_bits().0,
            "noise": budget,
            "value_precision_bits": (1.0 / codec.codec().scale()).log2().abs(),
        },
        "key_generation_ms": keygen_ms,
        "encryption_ms": {
            "mean_per_participant": total_encrypt / f64::from(args.participants),
            "max_per_participant": encrypt_ms.iter().copied().fold(0.0, f64::max),
            "total": total_encrypt,
        },
        "aggregation_ms": { "verify_and_add_all": aggregate_ms, "per_participant": aggregate_ms / f64::from(args.participants) },
        "partial_decryption_ms": partial_ms,
        "combination_ms": combine_ms,
        "plain_sum_ms": plain_sum_ms,
        "bytes_per_parameter": {
            "ciphertext": frames[0].len() as f64 / length as f64,
            "partial_decryption": partial_bytes as f64 / length as f64,
        },
        "decryptors": decryptors.iter().map(|m| m.0).collect::<Vec<_>>(),
        "max_error": worst,
        "quantization_bound": bound,
        "matches_plaintext_sum": worst <= bound,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if worst > bound {
        return Err("decrypted sum differs from the plaintext sum".into());
    }
    Ok(())
}
