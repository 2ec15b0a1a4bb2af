//! The double auction on hand-checked books.

use market::{
    AggregateCurves, HourBids, HourBook, HourClearing, Order, PriceLadder, Pricing, Side,
    clear_hour,
};

fn ladder() -> PriceLadder {
    PriceLadder::new(0.0, 0.31, 32).unwrap()
}

fn bid(side: Side, level: u16, kwh: u32) -> Order {
    Order {
        side,
        level,
        quantity_wh: kwh * 1000,
    }
}

fn book(agents: Vec<Vec<Order>>) -> HourBook {
    HourBook {
        bids: agents
            .into_iter()
            .enumerate()
            .map(|(i, orders)| HourBids::new(orders, 32, i, 0).unwrap())
            .collect(),
    }
}

#[test]
fn a_simple_cross_clears_mid_plateau_and_rations_the_long_side() {
    // Buyer 5 kWh up to level 10, seller 3 kWh from level 5: 3 kWh trade anywhere in 5..=10,
    // the surplus is 2 everywhere, the middle of the six levels (lower one) is 7.
    let (c, a) = clear_hour(
        &book(vec![
            vec![bid(Side::Buy, 10, 5)],
            vec![bid(Side::Sell, 5, 3)],
        ]),
        &ladder(),
        Pricing::Uniform,
    )
    .unwrap();
    assert_eq!(c.level, Some(7));
    assert!((c.price.unwrap() - 0.07).abs() < 1e-12);
    assert_eq!(c.volume_wh, 3000);
    assert!((a[0].bought_kwh - 3.0).abs() < 1e-12);
    assert!((a[1].sold_kwh - 3.0).abs() < 1e-12);
    assert!((a[0].paid - 3.0 * 0.07).abs() < 1e-12);
    assert!((a[1].received - 3.0 * 0.07).abs() < 1e-12);
    // Gains from trade: 3 kWh valued 0.10 by the buyer and 0.05 by the seller.
    assert!((a[0].value + a[1].value - 3.0 * 0.05).abs() < 1e-12);
}

#[test]
fn ties_at_one_level_are_filled_pro_rata() {
    let (c, a) = clear_hour(
        &book(vec![
            vec![bid(Side::Buy, 12, 4)],
            vec![bid(Side::Buy, 12, 6)],
            vec![bid(Side::Sell, 4, 5)],
        ]),
        &ladder(),
        Pricing::Uniform,
    )
    .unwrap();
    assert_eq!(c.volume_wh, 5000);
    assert!((a[0].bought_kwh - 2.0).abs() < 1e-12);
    assert!((a[1].bought_kwh - 3.0).abs() < 1e-12);
    assert!((a[2].sold_kwh - 5.0).abs() < 1e-12);
}

#[test]
fn price_priority_fills_higher_bids_first() {
    // A 4 kWh at 20, B 4 kWh at 15, seller 6 kWh at 10: 6 kWh trade at 10..=15 (surplus 2),
    // price level 12; A is filled, B gets the remaining 2.
    let (c, a) = clear_hour(
        &book(vec![
            vec![bid(Side::Buy, 20, 4)],
            vec![bid(Side::Buy, 15, 4)],
            vec![bid(Side::Sell, 10, 6)],
        ]),
        &ladder(),
        Pricing::Uniform,
    )
    .unwrap();
    assert_eq!(c.level, Some(12));
    assert!((a[0].bought_kwh - 4.0).abs() < 1e-12);
    assert!((a[1].bought_kwh - 2.0).abs() < 1e-12);
    assert!((a[2].sold_kwh - 6.0).abs() < 1e-12);
}

#[test]
fn the_least_surplus_breaks_a_volume_tie() {
    // Buyers 5 kWh at 12; sellers 3 kWh at 8 and 2 kWh at 11: volume 5 at 11 and 12, both with
    // no surplus; the lower middle is 11.
    let (c, _) = clear_hour(
        &book(vec![
            vec![bid(Side::Buy, 12, 5)],
            vec![bid(Side::Sell, 8, 3)],
            vec![bid(Side::Sell, 11, 2)],
        ]),
        &ladder(),
        Pricing::Uniform,
    )
    .unwrap();
    assert_eq!((c.level, c.volume_wh), (Some(11), 5000));
}

#[test]
fn curves_that_do_not_cross_or_one_empty_side_trade_nothing() {
    for orders in [
        vec![vec![bid(Side::Buy, 3, 5)], vec![bid(Side::Sell, 8, 5)]],
        vec![vec![bid(Side::Buy, 3, 5)], vec![bid(Side::Buy, 9, 1)]],
        vec![vec![bid(Side::Sell, 3, 5)]],
        vec![vec![], vec![]],
    ] {
        let (c, a) = clear_hour(&book(orders), &ladder(), Pricing::Uniform).unwrap();
        assert_eq!((c.level, c.price, c.volume_wh), (None, None, 0));
        assert!(a.iter().all(|x| x.bought_kwh == 0.0 && x.sold_kwh == 0.0));
    }
}

#[test]
fn pay_as_bid_keeps_the_allocation_and_charges_each_limit() {
    let orders = vec![vec![bid(Side::Buy, 10, 5)], vec![bid(Side::Sell, 5, 3)]];
    let (_, uniform) = clear_hour(&book(orders.clone()), &ladder(), Pricing::Uniform).unwrap();
    let (_, pab) = clear_hour(&book(orders), &ladder(), Pricing::PayAsBid).unwrap();
    assert_eq!(uniform[0].bought_kwh, pab[0].bought_kwh);
    assert!((pab[0].paid - 3.0 * 0.10).abs() < 1e-12);
    assert!((pab[1].received - 3.0 * 0.05).abs() < 1e-12);
    assert!(
        pab[0].paid - pab[1].received > 0.0,
        "the operator keeps the spread"
    );
}

#[test]
fn one_agents_orders_at_a_level_merge_and_bad_levels_are_refused() {
    let bids = HourBids::new([bid(Side::Buy, 3, 1), bid(Side::Buy, 3, 2)], 32, 0, 0).unwrap();
    assert_eq!(bids.steps().len(), 1);
    assert_eq!(bids.total_wh(Side::Buy), 3000);
    let err = HourBids::new([bid(Side::Sell, 32, 1)], 32, 4, 7).unwrap_err();
    assert!(err.to_string().contains("agent 4 for hour 7"), "{err}");
}

/// The largest volume equals what greedy matching of sorted orders trades (a classic result),
/// checked on random books against an independent implementation.
#[test]
fn cleared_volume_equals_greedy_matching_on_random_books() {
    use rand::{Rng, SeedableRng};
    let ladder = ladder();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
    for _ in 0..500 {
        let mut buys: Vec<(u16, u64)> = Vec::new();
        let mut sells: Vec<(u16, u64)> = Vec::new();
        let mut agents = Vec::new();
        for _ in 0..rng.random_range(1..8) {
            let side = if rng.random_bool(0.5) {
                Side::Buy
            } else {
                Side::Sell
            };
            let o = Order {
                side,
                level: rng.random_range(0..32),
                quantity_wh: rng.random_range(1..5000),
            };
            match side {
                Side::Buy => buys.push((o.level, u64::from(o.quantity_wh))),
                Side::Sell => sells.push((o.level, u64::from(o.quantity_wh))),
            }
            agents.push(vec![o]);
        }
        buys.sort_by_key(|b| std::cmp::Reverse(b.0));
        sells.sort_by_key(|s| s.0);
        let (mut i, mut j, mut traded) = (0, 0, 0u64);
        while i < buys.len() && j < sells.len() && buys[i].0 >= sells[j].0 {
            let q = buys[i].1.min(sells[j].1);
            traded += q;
            buys[i].1 -= q;
            sells[j].1 -= q;
            if buys[i].1 == 0 {
                i += 1;
            }
            if sells[j].1 == 0 {
                j += 1;
            }
        }
        let b = book(agents);
        let curves = AggregateCurves::from_book(&b, 32);
        let c = HourClearing::clear(&curves, &ladder).unwrap();
        assert_eq!(c.volume_wh, traded);
        if let Some(level) = c.level {
            // Nobody trades against their limit.
            let (_, alloc) = clear_hour(&b, &ladder, Pricing::Uniform).unwrap();
            for (bids, a) in b.bids.iter().zip(&alloc) {
                for s in bids.steps() {
                    let filled = match s.side {
                        Side::Buy => a.bought_kwh > 0.0 && s.level < level,
                        Side::Sell => a.sold_kwh > 0.0 && s.level > level,
                    };
                    assert!(!filled, "a step beyond the price was filled");
                }
            }
        }
    }
}

#[test]
fn plain_bid_messages_round_trip_and_bad_bytes_are_refused() {
    use market::wire::{decode_day_bids, encode_day_bids};
    let day = vec![
        HourBids::new([bid(Side::Buy, 3, 2), bid(Side::Buy, 9, 1)], 32, 0, 0).unwrap(),
        HourBids::default(),
        HourBids::new([bid(Side::Sell, 31, 4)], 32, 0, 2).unwrap(),
    ];
    let bytes = encode_day_bids(&day);
    assert_eq!(decode_day_bids(&bytes, 3, 32, 0).unwrap(), day);
    for cut in 0..bytes.len() {
        assert!(
            decode_day_bids(&bytes[..cut], 3, 32, 0).is_err(),
            "cut at {cut}"
        );
    }
    let mut bad_side = bytes.clone();
    bad_side[2] = 7;
    let err = decode_day_bids(&bad_side, 3, 32, 5)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("agent 5 for hour 0") && err.contains("side byte 7"),
        "{err}"
    );
    let err = decode_day_bids(&bytes, 3, 8, 1).unwrap_err().to_string();
    assert!(err.contains("off the ladder"), "{err}");
    let mut long = bytes.clone();
    long.push(0);
    assert!(decode_day_bids(&long, 3, 32, 0).is_err());
    // One book, one encoding: a zero step, two steps at one level, or unsorted steps (all of
    // which merge into a valid book) are refused, not normalized. Found by fuzzing
    // (fuzz/corpus/market_bids/crash-*).
    let step = |side: u8, level: u16, wh: u32| {
        let mut s = vec![side];
        s.extend_from_slice(&level.to_le_bytes());
        s.extend_from_slice(&wh.to_le_bytes());
        s
    };
    let hour = |steps: &[Vec<u8>]| {
        let mut h = (steps.len() as u16).to_le_bytes().to_vec();
        h.extend(steps.concat());
        h
    };
    for steps in [
        vec![step(0, 3, 0)],
        vec![step(0, 3, 2), step(0, 3, 1)],
        vec![step(1, 4, 1), step(0, 3, 2)],
        vec![step(0, 9, 1), step(0, 3, 2)],
    ] {
        let bytes = [hour(&steps), hour(&[]), hour(&[])].concat();
        let err = decode_day_bids(&bytes, 3, 32, 0).unwrap_err().to_string();
        assert!(err.contains("not canonical"), "{err}");
    }
    let canonical = [
        hour(&[step(0, 3, 2000), step(0, 9, 1000)]),
        hour(&[]),
        hour(&[step(1, 31, 4000)]),
    ]
    .concat();
    assert_eq!(canonical, encode_day_bids(&day));
}
