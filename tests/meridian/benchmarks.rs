//! Every benchmark scenario smoke-run against the `meridian` Cargo built
//! for these tests, for a few seconds each, on blocks 127.210-217 (`disk`
//! on 127.251, and
//! `partition` on 127.27, its hosts in 198.20.0.0/16; `purge` on 127.225,
//! when `nats-server` is installed): the harness works
//! and each scenario measures something. Never how fast
//! anything is (CI machines are noisy; speed is what the full runs in
//! `bench/RESULTS.md` are for), and never correctness, which the other
//! tests check.

use crate::harness::bin;
use bench::coalesce::CoalesceOptions;
use bench::drill::DrillOptions;
use bench::http::Server;
use bench::loadgen::LoadChoice;
use bench::report::{ScenarioReport, render_table};
use bench::{coalesce, connections, disk, dns, dns_flood, http, memory, outage, partition, purge};
use std::path::Path;

fn show(report: &impl ScenarioReport) {
    println!("{}", render_table(&report.title(), &report.rows()));
}

/// Smoke-runs `module`'s scenario on block `block` (with these fields of
/// its options changed too) and shows its table: its options and report.
/// A macro because the scenarios share a shape, not a trait.
macro_rules! smoke {
    ($module:ident :: $options:ident, $($block:ident).+ = $number:expr $(, $field:ident: $value:expr)*) => {{
        let mut options = $module::$options {
            $($field: $value,)*
            ..$module::$options::smoke()
        };
        options.$($block).+ = $number;
        let report = $module::run(bin(), &options).await.unwrap();
        show(&report);
        (options, report)
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_coalesce_measures_origin_fetches() {
    let (options, report) = smoke!(coalesce::CoalesceOptions, launch.block = 210);
    assert_eq!(report.requests_sent, options.requests);
    assert_eq!(
        report.bodies_intact, options.requests,
        "{:?}",
        report.error_samples
    );
    assert_eq!(report.origin_fetches, 1, "{:?}", report.cache_status);
    // The requests really overlapped the fetch: had they run one after
    // another, all but the first would be quick hits.
    assert!(
        report.latency.p50_ms >= options.origin_delay_ms as f64 / 2.0,
        "{:?}",
        report.latency
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_connections_holds_idle_clients() {
    let (options, report) = smoke!(connections::ConnectionsOptions, launch.block = 211);
    assert_eq!(
        report.measured.held, options.connections,
        "{:?}",
        report.measured.error_samples
    );
    assert!(report.measured.new_client_ms.is_some());
    assert!(report.measured.loaded_rss > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_dns_measures_steered_answers() {
    let (options, report) = smoke!(dns::DnsOptions, launch.block = 212);
    let [meridian] = report.measurements.as_slice() else {
        panic!("one server measured: {:?}", report.measurements)
    };
    assert!(meridian.answers_per_second > 0.0, "{meridian:?}");
    assert_eq!(report.clients.len(), options.countries.len());
    assert!(report.ratio.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_dns_flood_measures_probes_under_a_flood() {
    let (_, report) = smoke!(dns_flood::DnsFloodOptions, block = 213);
    assert!(report.flood_sent > 0, "{report:?}");
    assert!(
        report.flood_replies > 0,
        "GeoDNS answered none of the flood"
    );
    assert!(
        report.udp.sent > 0 && report.udp.answered > 0,
        "{:?}",
        report.udp
    );
    assert!(
        report.tcp.sent > 0 && report.tcp.answered > 0,
        "{:?}",
        report.tcp
    );
    assert!(report.server_cpu_seconds.is_some());
}

async fn http_smoke(block: u8, load: LoadChoice) -> http::HttpReport {
    let (options, report) = smoke!(http::HttpOptions, launch.block = block, load: load);
    assert_eq!(report.measurements.len(), options.sizes.len());
    for m in &report.measurements {
        assert_eq!(m.server, Server::Meridian);
        assert!(m.median.requests > 0, "{m:?}");
        assert!(
            m.clean(),
            "every request is a cache hit without errors: {m:?}"
        );
    }
    assert!(report.comparisons.is_empty());
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_http_measures_hits_with_the_builtin_load() {
    let report = http_smoke(214, LoadChoice::Builtin).await;
    assert!(report.load_generator.starts_with("built-in"));
    if cfg!(target_os = "linux") {
        assert!(report.measurements[0].cpu_us_per_request.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_http_measures_hits_with_wrk_when_installed() {
    if bench::peers::find_program("wrk").is_none() {
        eprintln!("wrk is not installed (Debian package wrk): nothing to check");
        return;
    }
    let report = http_smoke(215, LoadChoice::Wrk).await;
    assert!(report.load_generator.starts_with("wrk"));
}

/// The `disk` scenario with the built-in load, then with wrk when it is
/// installed (one after the other: both use block 251).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_disk_serves_a_catalogue_larger_than_memory_and_restarts() {
    let wrk = bench::peers::find_program("wrk").is_some();
    let loads = [LoadChoice::Builtin]
        .into_iter()
        .chain(wrk.then_some(LoadChoice::Wrk));
    for load in loads {
        let (options, report) = smoke!(disk::DiskOptions, launch.block = 251, load: load);
        let [edge] = report.servers.as_slice() else {
            panic!("meridian alone: {:?}", report.servers)
        };
        let m = &edge.measurement;
        assert!(
            m.median.requests > 0 && m.median.errors == 0,
            "{load:?}: {m:?}"
        );
        assert!(edge.files_after_warmup >= options.objects, "{edge:?}");
        // Every object is on disk, and counted as a hit from either tier.
        assert!(edge.hit_ratio >= 0.95, "{load:?}: {edge:?}");
        assert!(m.median.hits.is_some(), "hits are counted: {m:?}");
        let restart = &report.restart;
        assert!(
            restart.first_hit_ms.is_some() && restart.responses > 0,
            "{restart:?}"
        );
        let rebuilt = restart.rebuild.as_deref().unwrap_or_default();
        assert!(rebuilt.contains("objects found"), "{restart:?}");
        assert!(report.index_bytes_per_object.is_some(), "{report:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_memory_fills_a_small_cache() {
    let (options, report) = smoke!(memory::MemoryOptions, launch.block = 216);
    assert_eq!(report.runs.len(), options.sizes.len());
    for run in &report.runs {
        assert_eq!(run.failed, 0, "{run:?}");
        assert!(run.full_rss > run.idle_rss, "filling takes memory: {run:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_outage_times_steering_through_every_phase() {
    let options = DrillOptions {
        block: 217,
        ..DrillOptions::smoke()
    };
    let report = outage::run(bin(), &options).await.unwrap();
    show(&report);
    let ran: Vec<&str> = report.phases.iter().map(|p| p.phase).collect();
    assert_eq!(ran, outage::PHASES);
    assert!(
        report.phases.iter().all(|p| p.requests > 0),
        "{:?}",
        report.phases
    );
    assert!(report.value("steer_away").is_some(), "{report:?}");
    assert!(report.value("steer_back").is_some(), "{report:?}");
}

/// The partition drill on `up --hosts` (block 27, 198.20.0.0/16): about
/// 25 s; it needs root on Linux and iproute2, and says when it is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_partition_measures_every_phase_on_hosts() {
    let options = DrillOptions {
        block: 27,
        ..partition::on_hosts(DrillOptions::smoke())
    };
    let report = partition::run(bin(), &options).await.unwrap();
    show(&report);
    if report.phases.is_empty() {
        eprintln!("skipped: {}", report.title);
        return;
    }
    let ran: Vec<&str> = report.phases.iter().map(|p| p.phase).collect();
    assert_eq!(ran, partition::PHASES);
    for measure in &report.measures {
        assert!(measure.value.is_some(), "{measure:?} in {report:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_purge_times_purges_through_the_bus() {
    if !kit::nats::NatsServer::installed() {
        eprintln!("skipped: nats-server is not installed (Debian: apt-get install nats-server)");
        return;
    }
    let (options, report) = smoke!(purge::PurgeOptions, block = 225);
    for metric in ["p50", "p99", "catch_up", "rate"] {
        assert!(report.value(metric).is_some(), "{metric}: {report:?}");
    }
    // Every object was in the stopped edge's cache, and none is after.
    assert_eq!(report.value("cached"), Some(options.purges as f64));
    assert_eq!(report.value("served_purged"), Some(0.0), "{report:?}");
}

#[tokio::test]
async fn bench_a_missing_binary_is_a_clear_error() {
    let missing = Path::new("/nonexistent/meridian");
    let error = outage::run(missing, &DrillOptions::smoke())
        .await
        .err()
        .unwrap();
    let message = error.to_string();
    assert!(
        message.contains("/nonexistent/meridian") && message.contains("cargo build"),
        "{message}"
    );
    let error = coalesce::run(missing, &CoalesceOptions::smoke())
        .await
        .err()
        .unwrap();
    assert!(
        error.to_string().contains("/nonexistent/meridian"),
        "{error}"
    );
}
