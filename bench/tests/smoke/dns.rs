//! The `dns` scenario in smoke mode: Meridian's GeoDNS alone.

use bench::dns::{self, DnsOptions};
use bench::report::{ScenarioReport, render_table};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steered_answers_are_measured_and_right() {
    let options = DnsOptions::smoke();
    let report = dns::run(&super::debug_meridian(), &options).await.unwrap();
    println!("{}", render_table(&report.title(), &report.rows()));
    let [meridian] = report.measurements.as_slice() else {
        panic!("one server measured: {:?}", report.measurements)
    };
    assert!(meridian.answers_per_second > 0.0, "{meridian:?}");
    assert_eq!(meridian.bad, 0);
    // Every simulated country got the answer Meridian's steering gives it.
    assert_eq!(report.clients.len(), options.countries.len());
    for client in &report.clients {
        let seen = &meridian.answers[&client.country];
        assert_eq!(
            seen.keys().collect::<Vec<_>>(),
            [&client.expected],
            "{}",
            client.country
        );
    }
    assert!(report.ratio.is_none());
    assert!(report.passed, "{:?}", report.failures);
}
