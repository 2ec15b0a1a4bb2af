//! The agent-based simulation: balances, batteries, perfect foresight, scenarios, determinism
//! and configuration errors.

mod common;

use market::battery::{HourPrices, schedule};
use market::{BatterySpec, BidStrategy, ClearingMode, MarketConfig, Scenario, simulate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

#[test]
fn perfect_foresight_has_no_imbalance_beyond_the_bid_resolution() {
    let inputs = common::microgrid(12, 10, 1);
    for strategy in [BidStrategy::Naive, BidStrategy::Newsvendor] {
        let mut config = MarketConfig::default();
        config.bidding.strategy = strategy;
        let report = simulate(&inputs, &config, Scenario::None, ClearingMode::Plain).unwrap();
        let perfect = report.sources.last().unwrap();
        assert_eq!(perfect.source, "perfect foresight");
        // Positions are whole Wh: at most 0.5 Wh off per agent-hour.
        let bound = 0.0005 * 12.0 * 24.0 * 10.0;
        assert!(perfect.imbalance_kwh <= bound, "{}", perfect.imbalance_kwh);
        let worst_penalty = config.short_penalty(0).max(config.long_penalty());
        assert!(
            perfect.imbalance_cost <= bound * worst_penalty,
            "{}",
            perfect.imbalance_cost
        );
        let others = &report.sources[..report.sources.len() - 1];
        assert!(
            others
                .iter()
                .all(|s| s.imbalance_cost > 100.0 * perfect.imbalance_cost.max(1e-6))
        );
    }
}

#[test]
fn every_scenario_settles_with_balanced_energy_and_batteries_within_limits() {
    // `simulate` checks the energy balance of every agent and hour, the market balance of
    // every hour and every battery schedule, and fails on the first violation.
    let inputs = common::microgrid(10, 12, 2);
    let config = MarketConfig::default();
    for scenario in Scenario::ALL {
        let report = simulate(&inputs, &config, scenario, ClearingMode::Plain).unwrap();
        assert_eq!(report.battery_agents, 3);
        for source in &report.sources {
            assert_eq!(source.daily_imbalance_cost.len(), 12);
            assert_eq!(source.hourly_price.len(), 12 * 24);
            assert!((0.0..=1.0).contains(&source.pv_consumed_locally));
            assert!(
                source.local_traded_kwh > 0.0,
                "{scenario:?} {}",
                source.source
            );
        }
    }
}

#[test]
fn stress_scenarios_cost_more_than_calm_days() {
    let inputs = common::microgrid(10, 12, 3);
    let config = MarketConfig::default();
    let cost = |scenario| {
        let report = simulate(&inputs, &config, scenario, ClearingMode::Plain).unwrap();
        report.sources[1].imbalance_cost
    };
    let calm = cost(Scenario::None);
    for scenario in [
        Scenario::CloudFront,
        Scenario::HeatWave,
        Scenario::ForecastOutage,
        Scenario::RogueBidder,
    ] {
        assert!(cost(scenario) > calm, "{scenario:?}");
    }
    let rogue = simulate(&inputs, &config, Scenario::RogueBidder, ClearingMode::Plain).unwrap();
    let calm_run = simulate(&inputs, &config, Scenario::None, ClearingMode::Plain).unwrap();
    let worst = |r: &market::MarketReport| {
        r.sources[1]
            .imbalance_cost_per_agent
            .iter()
            .copied()
            .fold(0.0, f64::max)
    };
    assert!(
        worst(&rogue) > 2.0 * worst(&calm_run),
        "the rogue bidder pays for its bids"
    );
    let outage = simulate(
        &inputs,
        &config,
        Scenario::ForecastOutage,
        ClearingMode::Plain,
    )
    .unwrap();
    assert_eq!(
        outage.sources[1].fallbacks,
        2 * 12,
        "two of ten agents on persistence"
    );
}

#[test]
fn a_better_forecast_costs_less_imbalance_and_newsvendor_beats_the_median() {
    let inputs = common::microgrid(12, 15, 4);
    let mut config = MarketConfig::default();
    let report = simulate(&inputs, &config, Scenario::None, ClearingMode::Plain).unwrap();
    let (persistence, model) = (&report.sources[0], &report.sources[1]);
    assert!(model.imbalance_cost < 0.5 * persistence.imbalance_cost);
    assert!(model.cvar95_daily_imbalance_cost >= model.imbalance_cost / 15.0);
    config.bidding.strategy = BidStrategy::Naive;
    let naive = simulate(&inputs, &config, Scenario::None, ClearingMode::Plain).unwrap();
    assert!(model.imbalance_cost < naive.sources[1].imbalance_cost);
}

#[test]
fn private_simulation_matches_plain_and_runs_are_deterministic() {
    let inputs = common::microgrid(8, 3, 5);
    let config = MarketConfig::default();
    let plain = simulate(&inputs, &config, Scenario::None, ClearingMode::Plain).unwrap();
    let private = simulate(&inputs, &config, Scenario::None, ClearingMode::Private).unwrap();
    let summary = private.private.as_ref().unwrap();
    assert_eq!(summary.rounds, 3 * 3);
    assert_eq!(summary.mismatches, 0);
    let json = |r: &market::MarketReport| serde_json::to_string(&r.sources).unwrap();
    assert_eq!(json(&plain), json(&private));
    let again = simulate(&inputs, &config, Scenario::None, ClearingMode::Plain).unwrap();
    assert_eq!(json(&plain), json(&again));
    let mut reseeded = config.clone();
    reseeded.seed = 8;
    let other = simulate(&inputs, &reseeded, Scenario::None, ClearingMode::Plain).unwrap();
    assert_ne!(
        json(&plain),
        json(&other),
        "the seed draws the agents' private limits"
    );
}

#[test]
fn battery_schedules_never_break_their_limits() {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    for case in 0..300 {
        let spec = BatterySpec {
            capacity_kwh: rng.random_range(1.0..20.0),
            max_charge_kw: rng.random_range(0.2..10.0),
            max_discharge_kw: rng.random_range(0.2..10.0),
            round_trip_efficiency: rng.random_range(0.6..1.0),
            soc_min: rng.random_range(0.0..0.3),
            soc_max: rng.random_range(0.7..1.0),
            initial_soc: 0.5,
        };
        spec.validate("battery").unwrap();
        let net: Vec<f64> = (0..24).map(|_| rng.random_range(-6.0..6.0)).collect();
        let prices: Vec<HourPrices> = (0..24)
            .map(|_| {
                let feed_in = rng.random_range(0.0..0.2);
                HourPrices {
                    import: feed_in + rng.random_range(0.0..0.4),
                    feed_in,
                }
            })
            .collect();
        let start = rng.random_range(spec.min_kwh()..=spec.max_kwh());
        let plan = schedule(&spec, start, &net, &prices);
        plan.check(&spec, case).unwrap();
        assert_eq!(plan.charge_kw.len(), 24);
        // It never does worse than idling on the expected prices.
        let cost = |extra: &dyn Fn(usize) -> f64| -> f64 {
            (0..24)
                .map(|h| {
                    let p = net[h] + extra(h);
                    p * if p >= 0.0 {
                        prices[h].import
                    } else {
                        prices[h].feed_in
                    }
                })
                .sum()
        };
        assert!(
            cost(&|h| plan.net_kw(h)) <= cost(&|_| 0.0) + 1e-9,
            "case {case}"
        );
    }
    // A schedule that breaks a limit is caught.
    let spec = BatterySpec {
        capacity_kwh: 10.0,
        max_charge_kw: 2.0,
        max_discharge_kw: 2.0,
        round_trip_efficiency: 1.0,
        soc_min: 0.0,
        soc_max: 1.0,
        initial_soc: 0.5,
    };
    let mut plan = market::BatterySchedule::idle(2, 5.0);
    plan.charge_kw[1] = 3.0;
    plan.soc_kwh[2] = 8.0;
    let err = plan.check(&spec, 4).unwrap_err();
    assert!(err.to_string().contains("agent 4 at hour 1"), "{err}");
}

#[test]
fn malformed_market_configs_name_the_field() {
    let cases = [
        (
            "[ladder]\nfloor = 0.0\nceiling = 0.5\nlevels = 1\n",
            "ladder.levels",
        ),
        (
            "[tariff]\nimport = 0.1\nimport_peak = 0.2\npeak_hours = [18]\nfeed_in = 0.15\n",
            "tariff.feed_in",
        ),
        (
            "[tariff]\nimport = 0.1\nimport_peak = 0.2\npeak_hours = [24]\nfeed_in = 0.05\n",
            "tariff.peak_hours",
        ),
        (
            "[imbalance]\nshort_price = 0.1\nlong_price = 0.0\n",
            "imbalance.short_price",
        ),
        (
            "[batteries]\nshare = 0.5\nhours = 2.0\nc_rate = 0.5\nround_trip_efficiency = 0.9\nsoc_min = 0.5\nsoc_max = 0.4\ninitial_soc = 0.5\n",
            "batteries.soc_max",
        ),
        (
            "[bidding]\nstrategy = \"newsvendor\"\nflexible_share = 1.5\n",
            "bidding.flexible_share",
        ),
        (
            "[bidding]\nstrategy = \"psychic\"\nflexible_share = 0.5\n",
            "psychic",
        ),
        (
            "[tariff]\nimport = 0.1\nimport_peak = 0.2\npeak_hours = []\nfeed_in = 0.05\nexport = 1\n",
            "export",
        ),
    ];
    let defaults = MarketConfig::default();
    for (section, field) in cases {
        // Start from the defaults and replace one section.
        let text = with_section(&defaults, section);
        let err = MarketConfig::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains(field), "expected `{field}` in: {err}");
    }
    MarketConfig::from_toml(&with_section(&defaults, "")).unwrap();
    // A file names only what it changes.
    let partial =
        MarketConfig::from_toml("pricing = \"pay_as_bid\"\n[tariff]\nfeed_in = 0.1\n").unwrap();
    assert_eq!(partial.pricing, market::Pricing::PayAsBid);
    assert_eq!(partial.tariff.feed_in, 0.1);
    assert_eq!(partial.tariff.import, defaults.tariff.import);
    assert_eq!(partial.batteries, defaults.batteries);
}

/// The default config as TOML, with `section` (a whole `[table]`) replacing its namesake.
fn with_section(defaults: &MarketConfig, section: &str) -> String {
    let d = defaults;
    let tables = [
        ("ladder", format!("[ladder]\nfloor = {}\nceiling = {}\nlevels = {}\n", d.ladder.floor, d.ladder.ceiling, d.ladder.levels)),
        ("tariff", format!("[tariff]\nimport = {}\nimport_peak = {}\npeak_hours = {:?}\nfeed_in = {}\n", d.tariff.import, d.tariff.import_peak, d.tariff.peak_hours, d.tariff.feed_in)),
        ("imbalance", format!("[imbalance]\nshort_price = {}\nlong_price = {}\n", d.imbalance.short_price, d.imbalance.long_price)),
        ("batteries", "[batteries]\nshare = 0.3\nhours = 2.0\nc_rate = 0.5\nround_trip_efficiency = 0.9\nsoc_min = 0.1\nsoc_max = 0.95\ninitial_soc = 0.5\n".to_string()),
        ("bidding", "[bidding]\nstrategy = \"newsvendor\"\nflexible_share = 0.4\n".to_string()),
    ];
    let mut text = "pricing = \"uniform\"\nseed = 7\n".to_string();
    for (name, table) in tables {
        if section.starts_with(&format!("[{name}]")) {
            text.push_str(section);
        } else {
            text.push_str(&table);
        }
    }
    text
}
