//! One market day of 1,000 agents, cleared plainly and through secure aggregation.
//!
//! `cargo run --release --example market_day -- [AGENTS]`

use std::time::Instant;

use market::{MarketConfig, PrivateRound, clear_day, clear_day_private, workload};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let agents: usize = std::env::args().nth(1).map_or(Ok(1000), |a| a.parse())?;
    let config = MarketConfig::default();
    let day = workload::random_day(agents, &config, 1)?;
    let started = Instant::now();
    let plain = clear_day(&day, &config.ladder, config.pricing)?;
    let plain_time = started.elapsed();
    let private = clear_day_private(
        &day,
        &config.ladder,
        config.pricing,
        &PrivateRound::default(),
    )?;
    let same = private.equals(&plain);
    let t = private.timings;
    println!(
        "{agents} agents x 24 h, ladder of {} levels",
        config.ladder.levels
    );
    println!(
        "plain clearing          {:8.2} ms",
        plain_time.as_secs_f64() * 1e3
    );
    println!(
        "private: key setup      {:8.2} ms (before gate closure)",
        t.setup.as_secs_f64() * 1e3
    );
    println!(
        "private: all masking    {:8.2} ms (one agent: {:.2} ms)",
        t.masking.as_secs_f64() * 1e3,
        t.single_masking.as_secs_f64() * 1e3
    );
    println!(
        "private: unmasking      {:8.2} ms",
        t.unmasking.as_secs_f64() * 1e3
    );
    println!(
        "private: clearing       {:8.2} ms",
        t.clearing.as_secs_f64() * 1e3
    );
    println!("private equals plain: {same}");
    for h in [6, 12, 19] {
        let c = &plain.clearings[h];
        println!(
            "hour {h:2}: price {:?} per kWh, {:.1} kWh traded locally",
            c.price,
            c.volume_wh as f64 / 1000.0
        );
    }
    Ok(())
}
