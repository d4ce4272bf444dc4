//! Geo databases GeoDNS must refuse, and refuse promptly: a valid file
//! whose search tree shares subtrees (2^depth networks in a kilobyte), a
//! device that never ends, a FIFO that never opens. At start, on SIGHUP,
//! and in `meridian config check`. Each test has its own block,
//! 127.152–155.x.y.

use crate::dns::{addresses, ecs, metric, udp};
use crate::harness::{GeoDns, Ran, Topology, bin, meridian, tcp_listening, tempdir};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use kit::mmdb::shared_subtrees;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A database with shared subtrees ([`shared_subtrees`]) written to
/// `dir/shared.mmdb`.
fn shared_database(dir: &Path, ip_version: u16, depth: u32) -> PathBuf {
    let path = dir.join("shared.mmdb");
    std::fs::write(&path, shared_subtrees(ip_version, depth)).unwrap();
    path
}

/// The demo on 127.`block`.x.y with `geo_database` as its database, and
/// health checks that never probe during a test (the edges do not exist).
fn with_database(block: u8, geo_database: &Path) -> Topology {
    Topology::demo(block)
        .quiet_health()
        .geo_database(geo_database)
}

/// Runs `meridian ARGS CONFIG` to its end; a failure if it has not
/// exited within a minute (it should exit at once).
fn run_within_a_minute(args: &[&str], config: &Path) -> Ran {
    let child = meridian()
        .args(args)
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(child.wait_with_output());
    });
    match receive.recv_timeout(Duration::from_secs(60)) {
        Ok(output) => Ran::from(output.unwrap()),
        Err(_) => {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("meridian {args:?} was still running after a minute");
        }
    }
}

/// A FIFO at `path`: opening it for reading blocks until a writer comes.
fn make_fifo(path: &Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success());
}

/// The log lines so far that contain `text`.
fn lines(geodns: &GeoDns, text: &str) -> Vec<String> {
    geodns
        .process
        .lines()
        .into_iter()
        .filter(|l| l.contains(text))
        .collect()
}

#[test]
fn a_database_with_shared_subtrees_stops_geodns_at_start_with_its_path() {
    let block = 152;
    let dir = tempdir();
    let database = shared_database(dir.path(), 6, 128);
    let config = with_database(block, &database).write(dir.path()).unwrap();

    let stderr = run_within_a_minute(&["geodns", "--server", "ns1", "--config"], &config).fails();
    let expected = format!("error: {} is not a usable geo database", database.display());
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("share subtrees"), "{stderr}");
    let dns = SocketAddr::from((Ipv4Addr::new(127, block, 0, 1), 5353));
    assert!(!tcp_listening(dns), "nothing listens");
}

#[test]
fn a_reload_to_a_database_with_shared_subtrees_is_refused_and_signals_still_work() {
    let block = 153;
    let mut geodns = GeoDns::start(bin(), &Topology::demo(block).quiet_health()).unwrap();
    let gb = || {
        let (reply, _) = udp(
            geodns.dns(),
            &ecs("cdn.meridian.test.", RecordType::A, "81.2.69.0/24"),
        );
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        // Sorted: the order of eu-west's two edges turns by query.
        let mut addresses = addresses(&reply);
        addresses.sort();
        addresses
    };
    let before = gb();
    assert_eq!(before.len(), 2);

    let database = shared_database(geodns.config_path().parent().unwrap(), 6, 128);
    geodns.rewrite(&with_database(block, &database)).unwrap();
    let failures = |geodns: &GeoDns| {
        metric(
            &geodns.metrics().unwrap(),
            "meridian_dns_reload_failures_total",
        )
    };
    for n in 1..=2 {
        geodns.hang_up();
        let deadline = Instant::now() + Duration::from_secs(60);
        while failures(&geodns) < n {
            assert!(
                Instant::now() < deadline,
                "SIGHUP {n}: the reload was never refused"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(gb(), before, "the old configuration keeps answering");
    }
    assert_eq!(failures(&geodns), 2);
    assert_eq!(
        metric(&geodns.metrics().unwrap(), "meridian_dns_reloads_total"),
        0
    );
    // The metric counts a refusal just before it is logged.
    let deadline = Instant::now() + Duration::from_secs(30);
    while lines(&geodns, "reload refused").len() < 2 {
        assert!(Instant::now() < deadline, "{:#?}", geodns.process.lines());
        std::thread::sleep(Duration::from_millis(20));
    }
    let hangups = lines(&geodns, "SIGHUP: reloading the configuration");
    assert_eq!(hangups.len(), 2, "every SIGHUP is logged: {hangups:#?}");
    let refused = lines(&geodns, "reload refused");
    assert_eq!(refused.len(), 2, "{refused:#?}");
    assert!(
        refused
            .iter()
            .all(|l| l.contains(&database.display().to_string()) && l.contains("share subtrees")),
        "{refused:#?}"
    );

    geodns.terminate();
    let status = geodns
        .process
        .exit_within(Duration::from_secs(30))
        .expect("SIGTERM stops geodns");
    assert!(status.success(), "{status}");
}

#[test]
fn config_check_loads_the_geo_database_too() {
    let block = 154;
    let dir = tempdir();
    let shared = shared_database(dir.path(), 4, 32);
    let fifo = dir.path().join("fifo.mmdb");
    make_fifo(&fifo);
    for (database, reason) in [
        (shared.as_path(), "share subtrees"),
        (
            Path::new("/dev/zero"),
            "is not a regular file (it is a character device)",
        ),
        (fifo.as_path(), "is not a regular file (it is a FIFO)"),
    ] {
        let config = with_database(block, database).write(dir.path()).unwrap();
        let stderr = run_within_a_minute(&["config", "check"], &config).fails();
        let expected = format!("{}: geodns.geo_database: ", config.display());
        assert!(stderr.contains(&expected), "{stderr}");
        assert!(
            stderr.contains(&database.display().to_string()) && stderr.contains(reason),
            "{stderr}"
        );
    }
    // The embedded database checks, and says what it is.
    let config = Topology::demo(block).write(dir.path()).unwrap();
    let stdout = run_within_a_minute(&["config", "check"], &config).succeeds();
    assert!(stdout.contains("geo database GeoIP2-Country"), "{stdout}");
}

#[test]
fn a_device_or_fifo_as_the_database_stops_geodns_at_start() {
    let block = 155;
    let dir = tempdir();
    let fifo = dir.path().join("fifo.mmdb");
    make_fifo(&fifo);
    for (database, reason) in [
        (Path::new("/dev/zero"), "(it is a character device)"),
        (fifo.as_path(), "(it is a FIFO)"),
    ] {
        let config = with_database(block, database).write(dir.path()).unwrap();
        let stderr =
            run_within_a_minute(&["geodns", "--server", "ns1", "--config"], &config).fails();
        let expected = format!(
            "error: the geo database {} is not a regular file {reason}",
            database.display()
        );
        assert!(stderr.contains(&expected), "{stderr}");
    }
}
