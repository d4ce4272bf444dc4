//! The `dns-flood` scenario in smoke mode: 2 s of a gentler flood against
//! the debug GeoDNS. It checks that every kind of datagram was sent, that
//! probes were made over both protocols and none was answered wrongly,
//! that no response was answered, and that GeoDNS survived; how many
//! probes got through in time is the full run's verdict, not this test's.

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

    let flood = &report.flood;
    assert!(flood.sent > 0, "{flood:?}");
    for kind in FloodKind::ALL {
        assert!(flood.kinds[&kind].sent > 0, "no {kind:?} sent: {flood:?}");
    }
    assert!(flood.replied() > 0, "GeoDNS answered none of the flood");
    assert_eq!(flood.replies_to_responses, 0, "a response was answered");

    assert!(
        report.udp.sent > 0 && report.udp.correct > 0,
        "{:?}",
        report.udp
    );
    assert_eq!(report.udp.wrong, 0, "{:?}", report.udp.wrong_samples);
    assert!(
        report.tcp.sent > 0 && report.tcp.correct > 0,
        "{:?}",
        report.tcp
    );
    assert_eq!(report.tcp.wrong, 0, "{:?}", report.tcp.samples);
    assert!(report.after.ok(), "{:?}", report.after);
    assert!(flood.server_cpu_seconds.is_some());
}
