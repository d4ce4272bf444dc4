//! The `connections` scenario in smoke mode: 500 idle clients.

use bench::connections::{self, ConnectionsOptions};
use bench::report::{ScenarioReport, render_table};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_idle_clients_are_all_served_and_held() {
    let options = ConnectionsOptions::smoke();
    let report = connections::run(&super::debug_meridian(), &options)
        .await
        .unwrap();
    println!("{}", render_table(&report.title(), &report.rows()));
    assert_eq!(
        report.held, options.connections,
        "{:?}",
        report.error_samples
    );
    assert!(report.new_client_ms.is_some());
    assert!(report.loaded_rss > 0);
}
