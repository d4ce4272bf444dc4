//! The `coalesce` scenario in smoke mode.

use bench::coalesce::{self, CoalesceOptions};
use bench::report::{ScenarioReport, render_table};
use std::path::PathBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_make_one_origin_fetch() {
    let meridian = super::debug_meridian();
    let options = CoalesceOptions::smoke();
    let report = coalesce::run(&meridian, &options).await.unwrap();
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
