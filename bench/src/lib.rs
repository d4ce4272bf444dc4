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
//! One module per scenario ([`http`], [`disk`], [`dns`], [`dns_flood`], [`coalesce`],
//! [`connections`], [`memory`], [`outage`], [`partition`], [`purge`]); the
//! others are the pieces they share, each described in its module.

pub mod coalesce;
pub mod connections;
pub mod cpu;
pub mod disk;
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
pub mod purge;
pub mod report;
pub mod stats;
pub mod targets;
pub mod turns;

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
    /// The cluster bus failed.
    #[error(transparent)]
    Bus(#[from] cluster::BusError),
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
