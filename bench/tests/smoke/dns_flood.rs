//! The `dns-flood` scenario in smoke mode: 2 s of a gentler flood against
//! the debug GeoDNS. It checks that every kind of datagram was sent, that
//! probes were made over both protocols and none was answered wrongly,
//! that no response was answered, and that GeoDNS survived; how many
//! probes got through in time is the full run's verdict, not this test's.
//! It runs without `--compare`: gdnsd's turn would double the test's time
//! and make it depend on gdnsd being installed.

use bench::dns_flood::{self, DnsFloodOptions, FloodKind};
use bench::report::{ScenarioReport, render_table};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_stay_right_while_flooded() {
    let options = DnsFloodOptions::smoke();
    let report = dns_flood::run(&super::debug_meridian(), &options)
        .await
        .unwrap();
    println!("{}", render_table(&report.title(), &report.rows()));
    for note in report.notes() {
        println!("{note}");
    }

    let flood = &report.geodns.flood;
    assert!(flood.sent > 0, "{flood:?}");
    for kind in FloodKind::ALL {
        assert!(flood.kinds[&kind].sent > 0, "no {kind:?} sent: {flood:?}");
    }
    assert!(flood.replied() > 0, "GeoDNS answered none of the flood");
    assert_eq!(flood.replies_to_responses, 0, "a response was answered");

    assert!(
        report.geodns.udp.sent > 0 && report.geodns.udp.correct > 0,
        "{:?}",
        report.geodns.udp
    );
    assert_eq!(
        report.geodns.udp.wrong, 0,
        "{:?}",
        report.geodns.udp.wrong_samples
    );
    assert!(
        report.geodns.tcp.sent > 0 && report.geodns.tcp.correct > 0,
        "{:?}",
        report.geodns.tcp
    );
    assert_eq!(
        report.geodns.tcp.wrong, 0,
        "{:?}",
        report.geodns.tcp.samples
    );
    assert!(report.geodns.after.ok(), "{:?}", report.geodns.after);
    assert!(flood.server_cpu_seconds.is_some());
}
