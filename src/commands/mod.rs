//! One module per subcommand.

pub mod bench;
pub mod bench_chaos;
pub mod bench_fleet;
pub mod bench_forecast;
pub mod bench_market;
pub mod bench_replicas;
pub mod datasets;
pub mod demo;
mod demo_plots;
pub mod demo_privacy;
pub mod federated;
pub mod federation;
pub mod fleet;
pub mod forecast;
pub mod init;
pub mod market;
pub mod market_plots;
pub mod market_report;
pub mod models;
mod models_view;
mod participant_forecast;
pub mod plot;
pub mod plots;
pub mod report;
pub mod runtime;
pub mod train;
pub mod up;

/// Exit status of a permanent refusal (bad enrollment token, revoked key, unknown federation, a
/// configuration the federation cannot use): restarting without a change would fail again.
/// Other errors exit 1.
pub const EXIT_REFUSED: u8 = 3;

/// The message of an error and its causes, `: `-separated, leaving out a cause whose text the
/// message already shows: many library errors print their source in their own message
/// (`site data: {0}`) and also expose it as `source()`, which would repeat it.
pub fn error_report(err: &anyhow::Error) -> String {
    let mut report = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if report.contains(&text) {
            continue;
        }
        if !report.is_empty() {
            report.push_str(": ");
        }
        report.push_str(&text);
    }
    report
}

#[cfg(test)]
mod report_tests {
    /// Shows its source in its message and exposes it as `source()`, as thiserror's
    /// `#[error("site data: {0}")] Data(#[from] E)` does.
    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "site data: {}", self.0)
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let inner = std::io::Error::other("data/site-1.parquet: row 7: load_kw is NaN");
        let err = anyhow::Error::new(Outer(inner)).context("participant check failed");
        assert_eq!(
            super::error_report(&err),
            "participant check failed: site data: data/site-1.parquet: row 7: load_kw is NaN"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::error_report(&plain), "outer: inner");
    }
}
