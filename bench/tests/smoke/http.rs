//! The `http` scenario in smoke mode: one edge, every size, both load
//! generators.

use bench::http::{self, HttpOptions, Server};
use bench::loadgen::LoadChoice;
use bench::report::{ScenarioReport, render_table};

async fn smoke(load: LoadChoice) -> http::HttpReport {
    let options = HttpOptions {
        load,
        ..HttpOptions::smoke()
    };
    let report = http::run(&super::debug_meridian(), &options).await.unwrap();
    println!("{}", render_table(&report.title(), &report.rows()));
    assert_eq!(report.measurements.len(), options.sizes.len());
    for m in &report.measurements {
        assert_eq!(m.server, Server::Meridian);
        assert!(m.median.requests > 0, "{m:?}");
        assert!(
            m.clean(),
            "every request is a cache hit without errors: {m:?}"
        );
        assert!(m.median.p50_ms <= m.median.p99_ms, "{m:?}");
    }
    // Without --compare there is nothing to compare, so nothing to miss.
    assert!(report.comparisons.is_empty());
    assert!(report.passed, "{:?}", report.failures);
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builtin_load_generator_measures_hits() {
    let report = smoke(LoadChoice::Builtin).await;
    assert!(report.load_generator.starts_with("built-in"));
    // The server's CPU time is read from /proc on Linux.
    if cfg!(target_os = "linux") {
        assert!(report.measurements[0].cpu_us_per_request.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrk_measures_hits_when_installed() {
    if bench::peers::find_program("wrk").is_none() {
        eprintln!("wrk is not installed (Debian package wrk): this test has nothing to check");
        return;
    }
    let report = smoke(LoadChoice::Wrk).await;
    assert!(report.load_generator.starts_with("wrk"));
}
