#![allow(clippy::unwrap_used)]
//! Every benchmark scenario, smoke-run against the debug `meridian`: a few
//! seconds each, checking that the harness works and what the scenario
//! measures is right, never how fast anything is (CI machines are noisy;
//! speed is what the full runs in `bench/RESULTS.md` are for).
//!
//! One test binary for all scenarios, so CI links one.
//!
//! Where the binary comes from: `env!("CARGO_BIN_EXE_meridian")` exists only
//! for binaries of the test's own package, and `meridian` belongs to the
//! root package. So the tests look for `<target>/debug/meridian` next to
//! their own `deps/` directory.
//!
//! Is it there? Checked with `cargo test --workspace --no-run
//! --message-format=json`: the workspace run builds the plain `meridian`
//! bin artifact (`target/debug/meridian`, not only its test harness),
//! because the root package has integration tests (`tests/meridian/`), and
//! Cargo builds a package's binaries for its integration tests. Every test
//! binary is compiled before any runs, so under `cargo test --workspace`
//! (CI's command) the binary always exists when these tests start, and its
//! absence is a real failure, not a reason to skip. `cargo test -p bench`
//! alone does not build it: run `cargo build -p meridian` first (or the
//! workspace tests); the tests then use whatever `meridian` was built last.

mod coalesce;
mod connections;
mod dns;
mod dns_flood;
mod http;
mod memory;
mod outage;

use std::path::PathBuf;

/// `<target>/debug/meridian`, found from this test executable's path
/// (`<target>/debug/deps/smoke-HASH`).
fn debug_meridian() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let path = deps.parent().unwrap().join("meridian");
    assert!(
        path.is_file(),
        "{} is missing: `cargo test --workspace` builds it; with `cargo test -p bench`, \
         run `cargo build -p meridian` first",
        path.display()
    );
    path
}
