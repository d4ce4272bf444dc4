#![allow(clippy::unwrap_used)]
//! The `coalesce` scenario in smoke mode, against the debug `meridian`.
//!
//! Where the binary comes from: `env!("CARGO_BIN_EXE_meridian")` exists only
//! for binaries of the test's own package, and `meridian` belongs to the
//! root package. So the test looks for `<target>/debug/meridian` next to
//! its own `deps/` directory.
//!
//! Is it there? Checked with `cargo test --workspace --no-run
//! --message-format=json`: the workspace run builds the plain `meridian`
//! bin artifact (`target/debug/meridian`, not only its test harness),
//! because the root package has integration tests (`tests/meridian/`), and
//! Cargo builds a package's binaries for its integration tests. Every test
//! binary is compiled before any runs, so under `cargo test --workspace`
//! (CI's command) the binary always exists when this test starts, and its
//! absence is a real failure, not a reason to skip. `cargo test -p bench`
//! alone does not build it: run `cargo build -p meridian` first (or the
//! workspace tests); the test then uses whatever `meridian` was built last.

use bench::coalesce::{self, CoalesceOptions};
use bench::report::{ScenarioReport, render_table};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `<target>/debug/meridian`, found from this test executable's path
/// (`<target>/debug/deps/coalesce-HASH`).
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_make_one_origin_fetch() {
    let meridian = debug_meridian();
    let options = CoalesceOptions::smoke();
    let started = Instant::now();
    let report = coalesce::run(&meridian, &options).await.unwrap();
    let took = started.elapsed();
    println!("{}", render_table(&report.title(), &report.rows()));

    assert_eq!(report.requests_sent, options.requests);
    assert_eq!(
        report.responses_by_status.get("200"),
        Some(&options.requests),
        "every request gets a 200: {:?} {:?}",
        report.responses_by_status,
        report.error_samples
    );
    assert_eq!(report.bodies_right_length, options.requests);
    assert_eq!(report.bodies_intact, options.requests);
    assert_eq!(
        report.origin_fetches, 1,
        "one origin fetch for {} concurrent misses; Cache-Status seen: {:?}",
        options.requests, report.cache_status
    );
    assert!(report.passed, "{:?}", report.failures());
    // The requests really overlapped the fetch: had they run one after
    // another, all but the first would be quick hits.
    assert!(
        report.latency.p50_ms >= options.origin_delay_ms as f64 / 2.0,
        "most requests should wait for the origin: {:?}",
        report.latency
    );
    assert!(
        took < Duration::from_secs(10),
        "the smoke run took {took:?}"
    );
}

#[tokio::test]
async fn a_missing_binary_is_a_clear_error() {
    let err = coalesce::run(
        &PathBuf::from("/nonexistent/meridian"),
        &CoalesceOptions::smoke(),
    )
    .await
    .err()
    .unwrap();
    assert!(err.to_string().contains("/nonexistent/meridian"), "{err}");
}
