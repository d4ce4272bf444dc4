//! The `memory` scenario in smoke mode: a 4 MiB cache filled twice over.

use bench::memory::{self, MemoryOptions};
use bench::report::{ScenarioReport, render_table};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_cache_is_filled_and_measured() {
    let options = MemoryOptions::smoke();
    let report = memory::run(&super::debug_meridian(), &options)
        .await
        .unwrap();
    println!("{}", render_table(&report.title(), &report.rows()));
    assert_eq!(report.runs.len(), options.sizes.len());
    for run in &report.runs {
        assert_eq!(run.failed, 0, "{run:?}");
        assert!(run.full_rss > run.idle_rss, "filling takes memory: {run:?}");
        // The cache evicted: no more than its budget's share is left.
        assert!(
            run.sampled_hits <= run.allowed_hits(options.fill_factor),
            "{run:?}"
        );
    }
}
