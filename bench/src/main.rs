//! `bench`: Meridian's benchmark scenarios, run against the real binary.
//!
//! `cargo run --release -p bench -- <scenario> [options]`. This file only
//! parses the command line and calls the library; each scenario lives in
//! its own module of the `bench` library.

use bench::coalesce::{self, CoalesceOptions};
use bench::report;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Meridian's benchmark harness.
///
/// Each scenario starts the `meridian` binary, measures it, prints a table,
/// and exits non-zero if a target was missed.
#[derive(Debug, Parser)]
#[command(name = "bench", version, about, long_about)]
struct Cli {
    /// The scenario to run.
    #[command(subcommand)]
    scenario: Scenario,
    /// Also write the results as JSON to FILE.
    #[arg(long, global = true, value_name = "FILE")]
    json: Option<PathBuf>,
    /// The `meridian` binary to benchmark [default: `meridian` next to
    /// this executable, e.g. target/release/meridian].
    #[arg(long, global = true, value_name = "PATH")]
    meridian: Option<PathBuf>,
    /// A small, quick run for CI (options given explicitly still apply).
    #[arg(long, global = true)]
    smoke: bool,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// N concurrent requests for one cold object through one edge must
    /// cause exactly one origin fetch (request coalescing).
    Coalesce(CoalesceArgs),
}

/// `bench coalesce`; unset options take the full (or --smoke) defaults.
#[derive(Debug, Args)]
struct CoalesceArgs {
    /// Concurrent requests [default: 1000; 50 with --smoke].
    #[arg(long, value_name = "N")]
    requests: Option<usize>,
    /// The object's size in bytes [default: 102400].
    #[arg(long, value_name = "BYTES")]
    size: Option<usize>,
    /// How long the origin waits before answering [default: 200; 100 with
    /// --smoke].
    #[arg(long, value_name = "MS")]
    origin_delay_ms: Option<u64>,
}

impl CoalesceArgs {
    fn options(&self, smoke: bool) -> CoalesceOptions {
        let defaults = if smoke {
            CoalesceOptions::smoke()
        } else {
            CoalesceOptions::full()
        };
        CoalesceOptions {
            requests: self.requests.unwrap_or(defaults.requests),
            body_bytes: self.size.unwrap_or(defaults.body_bytes),
            origin_delay_ms: self.origin_delay_ms.unwrap_or(defaults.origin_delay_ms),
            ..defaults
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(failures) if failures.is_empty() => ExitCode::SUCCESS,
        Ok(failures) => {
            eprintln!();
            for failure in failures {
                eprintln!("error: {failure}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the chosen scenario; returns the targets it missed.
fn run(cli: Cli) -> anyhow::Result<Vec<String>> {
    let meridian = bench::locate_meridian(cli.meridian.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let json = cli.json.as_deref();
    let failures = match cli.scenario {
        Scenario::Coalesce(args) => {
            let options = args.options(cli.smoke);
            let result = runtime.block_on(coalesce::run(&meridian, &options))?;
            report::finish(&result, json)?
        }
    };
    Ok(failures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn smoke_sets_defaults_that_explicit_options_override() {
        let cli =
            Cli::try_parse_from(["bench", "coalesce", "--smoke", "--requests", "70"]).unwrap();
        let Scenario::Coalesce(args) = &cli.scenario;
        let options = args.options(cli.smoke);
        assert_eq!(options.requests, 70);
        assert_eq!(options.origin_delay_ms, 100);
        assert!(options.smoke);

        let cli = Cli::try_parse_from([
            "bench",
            "--json",
            "out.json",
            "coalesce",
            "--size",
            "1024",
            "--origin-delay-ms",
            "500",
        ])
        .unwrap();
        let Scenario::Coalesce(args) = &cli.scenario;
        let options = args.options(cli.smoke);
        assert_eq!(
            options,
            CoalesceOptions {
                body_bytes: 1024,
                origin_delay_ms: 500,
                ..CoalesceOptions::full()
            }
        );
        assert_eq!(cli.json, Some(PathBuf::from("out.json")));
    }

    #[test]
    fn a_scenario_is_required() {
        assert!(Cli::try_parse_from(["bench"]).is_err());
        assert!(Cli::try_parse_from(["bench", "nope"]).is_err());
    }
}
