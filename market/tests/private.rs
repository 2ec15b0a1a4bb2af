//! Private clearing through secure aggregation: the same outcome as plain clearing, masked
//! curves that look random, and agents that drop.

use crypto::secagg::simulation::{
    CHI2_255_Q, Dropout, PreparedRound, SimulationConfig, byte_chi_square as chi_square,
};
use crypto::secagg::{MaskedInput, SecAggParams};
use market::private::encode_day;
use market::{
    HourBids, HourBook, Order, PriceLadder, Pricing, PrivateRound, Side, clear_day_private,
    clear_hour,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

const LEVELS: u16 = 64;
const HOURS: usize = 4;

fn ladder() -> PriceLadder {
    PriceLadder::new(0.0, 0.63, LEVELS).unwrap()
}

/// Random step curves: each agent buys or sells a few tranches per hour.
fn random_days(agents: usize, seed: u64) -> Vec<Vec<HourBids>> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    (0..agents)
        .map(|a| {
            (0..HOURS)
                .map(|h| {
                    let side = if rng.random_bool(0.5) {
                        Side::Buy
                    } else {
                        Side::Sell
                    };
                    let orders: Vec<Order> = (0..rng.random_range(0..4))
                        .map(|_| Order {
                            side,
                            level: rng.random_range(0..LEVELS),
                            quantity_wh: rng.random_range(1..20_000),
                        })
                        .collect();
                    HourBids::new(orders, LEVELS, a, h).unwrap()
                })
                .collect()
        })
        .collect()
}

fn plain(
    days: &[Vec<HourBids>],
    pricing: Pricing,
) -> Vec<(market::HourClearing, Vec<market::Allocation>)> {
    (0..HOURS)
        .map(|h| {
            let book = HourBook {
                bids: days.iter().map(|d| d[h].clone()).collect(),
            };
            clear_hour(&book, &ladder(), pricing).unwrap()
        })
        .collect()
}

#[test]
fn private_clearing_equals_plain_clearing_on_random_books() {
    for seed in 0..6 {
        let pricing = if seed % 2 == 0 {
            Pricing::Uniform
        } else {
            Pricing::PayAsBid
        };
        let days = random_days(10 + seed as usize, seed);
        let round = PrivateRound {
            seed,
            through_bytes: seed == 0,
            ..PrivateRound::default()
        };
        let private = clear_day_private(&days, &ladder(), pricing, &round).unwrap();
        let plain = plain(&days, pricing);
        for (h, (clearing, allocations)) in plain.iter().enumerate() {
            assert_eq!(&private.clearings[h], clearing, "seed {seed} hour {h}");
            for (a, allocation) in allocations.iter().enumerate() {
                assert_eq!(
                    private.allocations[a].as_ref().unwrap()[h],
                    *allocation,
                    "seed {seed} hour {h} agent {a}"
                );
            }
        }
        assert!(
            plain.iter().any(|(c, _)| c.volume_wh > 0),
            "some hour trades"
        );
    }
}

#[test]
fn agents_dropping_before_upload_leave_the_book_and_clearing_still_runs() {
    let days = random_days(16, 11);
    let round = PrivateRound {
        seed: 5,
        dropout: Dropout {
            before_upload: 0.25,
            ..Dropout::default()
        },
        through_bytes: false,
    };
    let private = clear_day_private(&days, &ladder(), Pricing::Uniform, &round).unwrap();
    let gone: Vec<usize> = (0..16)
        .filter(|&a| private.allocations[a].is_none())
        .collect();
    assert_eq!(gone.len(), 4, "a quarter of the agents dropped");
    // The plain auction on the book without them gives the same result.
    let remaining: Vec<Vec<HourBids>> = days
        .iter()
        .enumerate()
        .map(|(a, d)| {
            if gone.contains(&a) {
                vec![HourBids::default(); HOURS]
            } else {
                d.clone()
            }
        })
        .collect();
    for (h, (clearing, allocations)) in plain(&remaining, Pricing::Uniform).iter().enumerate() {
        assert_eq!(&private.clearings[h], clearing);
        for (a, allocation) in allocations.iter().enumerate() {
            if let Some(own) = &private.allocations[a] {
                assert_eq!(own[h], *allocation);
            }
        }
    }
}

#[test]
fn agents_dropping_after_upload_stay_in_the_book() {
    let days = random_days(16, 12);
    let round = PrivateRound {
        seed: 6,
        dropout: Dropout {
            after_upload: 0.2,
            ..Dropout::default()
        },
        through_bytes: false,
    };
    let private = clear_day_private(&days, &ladder(), Pricing::Uniform, &round).unwrap();
    for (h, (clearing, _)) in plain(&days, Pricing::Uniform).iter().enumerate() {
        assert_eq!(&private.clearings[h], clearing);
    }
    assert!(private.allocations.iter().all(Option::is_some));
}

#[test]
fn too_few_agents_or_oversized_bids_are_refused_clearly() {
    let err = clear_day_private(
        &random_days(3, 1),
        &ladder(),
        Pricing::Uniform,
        &PrivateRound::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("at least 4 agents"), "{err}");
    let mut days = random_days(8, 2);
    days[5][1] = HourBids::new(
        [Order {
            side: Side::Buy,
            level: 3,
            quantity_wh: u32::MAX / 4,
        }],
        LEVELS,
        5,
        1,
    )
    .unwrap();
    let err = clear_day_private(&days, &ladder(), Pricing::Uniform, &PrivateRound::default())
        .unwrap_err();
    assert!(err.to_string().contains("agent 5 for hour 1"), "{err}");
}

#[test]
fn the_operator_sees_one_agents_masked_curve_as_uniform_bytes() {
    let mut days = random_days(8, 21);
    // A full day on the real ladder size: mostly zeros, a very non-uniform vector.
    let levels = 256usize;
    days.iter_mut().for_each(|d| d.truncate(HOURS));
    let words = encode_day(&days[0], levels);
    let plain_bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    assert!(
        chi_square(&plain_bytes) > 100.0 * CHI2_255_Q,
        "control: the curve is far from uniform"
    );
    let config = SimulationConfig {
        participants: 8,
        params: SecAggParams::suggested(8, words.len() as u32).unwrap(),
        dropout: Dropout::default(),
        seed: 4,
        through_bytes: true,
    };
    let ready = PreparedRound::prepare(&config).unwrap().into_ready();
    let (_, state) = ready.into_iter().next().unwrap();
    let (_, message) = state.mask(&words).unwrap();
    let masked = MaskedInput::word_bytes(message.payload()).unwrap();
    assert_eq!(masked.len(), plain_bytes.len());
    let statistic = chi_square(masked);
    assert!(
        statistic < CHI2_255_Q,
        "chi-square {statistic} over 255 dof"
    );
}
