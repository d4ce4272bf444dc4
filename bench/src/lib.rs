//! Meridian's benchmark harness.
//!
//! Servers are started and talked to with the test kit (the `kit` crate,
//! `tests/kit/`), which the end-to-end tests and the GeoDNS fuzz test
//! share.
//!
//! Every claim in the product brief's performance table is measured here,
//! against the real `meridian` binary started as a child process, never
//! against library code in-process: what users run is what gets measured.
//! Each scenario is one module that takes its options, runs, and returns a
//! result struct; [`report`] prints it as a table and writes it as JSON,
//! judging it by the one table of [`targets`]. Scenarios measure; whether
//! answers are right is what the tests in `tests/` check.
//!
//! Scenarios:
//! - [`http`]: cache hits per second, latency and CPU per request through
//!   one edge on one core; with `--compare`, nginx and Varnish ([`peers`]).
//! - [`dns`]: steered answers with ECS per server CPU-second; with
//!   `--compare`, gdnsd ([`gdnsd`]).
//! - [`dns_flood`]: the share of probes GeoDNS still answers while flooded
//!   from one core.
//! - [`coalesce`]: origin fetches for N concurrent requests for one cold
//!   object through one edge.
//! - [`connections`]: 10,000 idle keep-alive clients on one edge, with
//!   bounded memory.
//! - [`memory`]: resident memory of a cache filled twice over, against its
//!   byte budget.
//! - [`outage`]: how fast GeoDNS steers around a dead region, under load.
//! - [`partition`]: issue 15's drill on separate network hosts: an edge,
//!   a nameserver and a region lost, under load, and a regional fill.
//!
//! The shared pieces: [`drill`] runs both drills, [`process`] starts servers, [`pinning`] puts them
//! on one core and the load on another, [`cpu`] reads their CPU time,
//! [`loadgen`] and [`dnsload`] generate HTTP and DNS load, [`progress`]
//! draws the progress bar, [`limits`] raises the open-file limit,
//! [`stats`] computes percentiles, [`report`] prints the tables.

pub mod coalesce;
pub mod connections;
pub mod cpu;
pub mod dns;
pub mod dns_flood;
pub mod dnsload;
pub mod drill;
pub mod gdnsd;
pub mod http;
pub mod limits;
pub mod loadgen;
pub mod memory;
pub mod outage;
pub mod partition;
pub mod peers;
pub mod pinning;
pub mod process;
pub mod progress;
pub mod report;
pub mod stats;
pub mod targets;

use std::path::{Path, PathBuf};

/// Why a scenario could not run (as opposed to ran and missed its target,
/// which is a result, see [`report::ScenarioReport::failures`]).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The `meridian` binary to benchmark is not there.
    #[error(
        "no meridian binary at {}: build it first with `cargo build --release` \
         (or `cargo build` for a debug build), or name one with --meridian PATH",
        path.display()
    )]
    MissingMeridian {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The bench executable cannot say where it is.
    #[error("cannot locate the bench executable: {0}")]
    CurrentExe(#[source] std::io::Error),
    /// A server could not be started, or did not get ready.
    #[error(transparent)]
    Kit(#[from] kit::KitError),
    /// A scenario option cannot be used.
    #[error("invalid {name}: {reason}")]
    InvalidOption {
        /// The option.
        name: &'static str,
        /// Why not.
        reason: String,
    },
    /// A local socket or other OS operation failed.
    #[error("cannot {action}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// The results could not be written.
    #[error("cannot write {}: {source}", path.display())]
    WriteJson {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The results could not be encoded.
    #[error("cannot encode the results as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl BenchError {
    /// [`BenchError::InvalidOption`]: `name` cannot be used, `reason` says
    /// why.
    pub fn invalid(name: &'static str, reason: impl std::fmt::Display) -> BenchError {
        let reason = reason.to_string();
        BenchError::InvalidOption { name, reason }
    }

    /// The error of an OS operation, for `map_err`: `action` says what
    /// was being done.
    pub fn io(action: &'static str) -> impl FnOnce(std::io::Error) -> BenchError {
        move |source| BenchError::Io { action, source }
    }
}

/// Seconds from the command line (`2.5`) as milliseconds (negative: 0).
pub fn parse_seconds_as_ms(text: &str) -> Result<u64, std::num::ParseFloatError> {
    Ok((text.parse::<f64>()?.max(0.0) * 1000.0) as u64)
}

/// The `meridian` binary a bench run uses: `explicit` if given, else the
/// `meridian` executable next to the running bench executable (so
/// `target/release/bench` uses `target/release/meridian`). Fails with a
/// message saying how to build it when it does not exist.
pub fn locate_meridian(explicit: Option<&Path>) -> Result<PathBuf, BenchError> {
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe()
            .map_err(BenchError::CurrentExe)?
            .with_file_name("meridian"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(BenchError::MissingMeridian { path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_says_how_to_build_it() {
        let err = locate_meridian(Some(Path::new("/nonexistent/meridian"))).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("/nonexistent/meridian"), "{message}");
        assert!(message.contains("cargo build --release"), "{message}");
    }
}
