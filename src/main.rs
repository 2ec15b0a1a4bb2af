//! `gridfed`: the command-line front of the federated forecasting platform.
//!
//! One subcommand per user task. This binary is glue only: it parses arguments, calls the
//! library crates and prints their results.

mod commands;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "gridfed",
    version,
    about = "Federated, privacy-preserving load and PV forecasting"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a synthetic fleet, train forecasters and print the accuracy table.
    Demo(commands::demo::DemoArgs),
    /// Scaffold a runnable federation: `init local` (one machine, run by `gridfed up`), or
    /// `init coordinator` and `init participant` for separate machines.
    #[command(subcommand)]
    Init(commands::init::InitCommand),
    /// Run a project from `gridfed init local` (or `init coordinator`) on this machine: the
    /// coordinator, its model published, one participant daemon per site (logs in DIR/logs).
    Up(commands::up::UpArgs),
    /// Create, validate and import site telemetry.
    #[command(subcommand)]
    Datasets(commands::datasets::DatasetsCommand),
    /// Train forecasters on a fleet directory and report their accuracy.
    Train(commands::train::TrainArgs),
    /// Run the federation coordinator.
    #[command(subcommand)]
    Coordinator(commands::federation::CoordinatorCommand),
    /// Run or check a participant daemon.
    #[command(subcommand)]
    Participant(commands::federation::ParticipantCommand),
    /// The model registry of a running coordinator: publish, list, show, compare, promote,
    /// rollback, export.
    #[command(subcommand)]
    Models(commands::models::ModelsCommand),
    /// Quantile forecasts (kW) from a registered model, via the coordinator's Forecast service.
    Forecast(commands::forecast::ForecastArgs),
    /// Pictures (SVG and PNG): a model's accuracy per version, a version's forecasts for a
    /// site against its meter.
    #[command(subcommand)]
    Plot(commands::plot::PlotCommand),
    /// Simulations that consume the forecasts: the microgrid market.
    #[command(subcommand)]
    Simulate(commands::market::SimulateCommand),
    /// Benchmarks of the running system.
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
}

/// Rust ignores SIGPIPE, so printing into a closed pipe (`gridfed ... | head`) is an error that
/// `println!` turns into a panic; a command-line tool should just stop, as `cat` does.
#[cfg(unix)]
fn restore_sigpipe() {
    // SAFETY: called first thing in `main`, before any thread exists; SIG_DFL is always valid.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn restore_sigpipe() {}

fn main() -> std::process::ExitCode {
    restore_sigpipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => commands::demo::run(args),
        Command::Init(cmd) => commands::init::run(cmd),
        Command::Up(args) => commands::up::run(args),
        Command::Datasets(cmd) => commands::datasets::run(cmd),
        Command::Train(args) => commands::train::run(args),
        Command::Coordinator(cmd) => commands::federation::run_coordinator(cmd),
        Command::Participant(cmd) => commands::federation::run_participant(cmd),
        Command::Bench(cmd) => commands::bench::run(cmd),
        Command::Models(cmd) => commands::models::run(cmd),
        Command::Forecast(args) => commands::forecast::run(args),
        Command::Simulate(cmd) => commands::market::run(cmd),
        Command::Plot(cmd) => commands::plot::run(cmd),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", commands::error_report(&err));
            let refused = err
                .chain()
                .filter_map(|e| e.downcast_ref::<participant::ParticipantError>())
                .any(|e| e.is_permanent_refusal());
            if refused {
                std::process::ExitCode::from(commands::EXIT_REFUSED)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand and every argument a user can type says what it is in `--help`.
    #[test]
    fn every_command_and_argument_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" || arg.is_hide_set() {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() == "help" {
                    continue;
                }
                let sub_path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(format!("{sub_path} (command)"));
                }
                walk(sub, &sub_path, missing);
            }
        }
        let cli = super::Cli::command();
        cli.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cli, "gridfed", &mut missing);
        assert!(
            missing.is_empty(),
            "{} without help text:\n{}",
            missing.len(),
            missing.join("\n")
        );
    }
}
