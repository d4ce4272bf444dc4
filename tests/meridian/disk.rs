//! The edge's disk tier: a catalogue larger than memory served from disk,
//! kept across restarts and `kill -9`, purges reaching it, and a bad
//! cache directory costing the tier, never the edge.

use crate::harness::{
    Cdn, Reply, Setup, Topology, ad_hoc, blocking, edge, eventually, metric, tempdir,
};
use crate::purge::{TOKEN, purge};
use nix::sys::signal::Signal;
use std::path::Path;
use std::time::Duration;

/// The body of catalogue object `i`: `len` bytes no other object shares.
fn body(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| ((j * 31 + i * 7) % 251) as u8).collect()
}

/// An origin of objects `/o/I` (100 KiB each), fresh for an hour.
fn catalogue(r: &crate::harness::Received) -> Reply {
    let i: usize = r.path.trim_start_matches("/o/").parse().unwrap_or(0);
    Reply::Respond(
        200,
        vec![("cache-control", "max-age=3600".into())],
        body(i, 100 * 1024),
    )
}

/// Object files the tier at `dir` holds.
fn files(dir: &Path) -> usize {
    let Ok(folders) = std::fs::read_dir(dir.join("v1").join("objects")) else {
        return 0;
    };
    folders
        .flatten()
        .filter_map(|f| std::fs::read_dir(f.path()).ok())
        .map(Iterator::count)
        .sum()
}

/// GETs `/o/0` … `/o/{n-1}` through `cdn`, checking every body; how many
/// were hits.
async fn round(cdn: &Cdn, n: usize) -> usize {
    let mut hits = 0;
    for i in 0..n {
        let answer = cdn.get(&format!("/o/{i}")).await;
        assert_eq!(answer.status, 200, "/o/{i}");
        assert!(answer.body == body(i, 100 * 1024), "/o/{i}: wrong body");
        hits += usize::from(answer.is_hit());
    }
    hits
}

/// An ad-hoc edge's cache: a memory budget and a disk tier in a scratch
/// directory.
struct Tiers {
    _scratch: tempfile::TempDir,
    dir: std::path::PathBuf,
    flags: [String; 6],
}

impl Tiers {
    fn new(memory: &str, disk: &str) -> Tiers {
        let scratch = tempdir();
        let dir = scratch.path().join("cache");
        let flags = [
            "--cache-bytes",
            memory,
            "--cache-dir",
            "",
            "--cache-disk-bytes",
            disk,
        ]
        .map(str::to_owned);
        let mut tiers = Tiers {
            _scratch: scratch,
            dir,
            flags,
        };
        tiers.flags[3] = tiers.dir.display().to_string();
        tiers
    }

    /// The edge's flags.
    fn flags(&self) -> Vec<&str> {
        self.flags.iter().map(String::as_str).collect()
    }
}

/// Resident memory of process `pid`, in bytes.
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn a_catalogue_four_times_memory_is_served_from_disk_and_after_a_restart() {
    let tiers = Tiers::new("4MiB", "1GiB");
    let (dir, flags) = (&tiers.dir, tiers.flags());
    let s = Setup::ad_hoc(231, &flags, catalogue);
    assert_eq!(round(&s.cdn, 200).await, 0, "a cold cache");
    // Writes go to disk behind the requests; wait for them rather than
    // race them.
    let written = blocking(|| eventually(Duration::from_secs(60), || files(dir) == 200));
    assert!(written, "{} of 200 objects written", files(dir));
    let hits = round(&s.cdn, 200).await;
    assert!(hits >= 190, "second round: {hits} of 200 hits");
    let resident = resident_bytes(s.edge.process.pid());
    assert!(
        resident < (64 << 20) + (4 << 20),
        "resident {resident} bytes, beyond 64 MiB and the memory budget"
    );

    // A clean stop, and a start on the same directory.
    s.edge.signal(Signal::SIGTERM);
    drop(s.edge);
    let again = ad_hoc(231, &flags);
    let hits = round(&Cdn::at(again.addr), 200).await;
    assert!(hits >= 190, "after the restart: {hits} of 200 hits");
    let fetched = s.origin.received().len();
    assert!(fetched <= 220, "{fetched} origin fetches for 200 objects");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_stop_finishes_the_writes_still_queued() {
    let tiers = Tiers::new("2MiB", "256MiB");
    let flags = tiers.flags();
    let s = Setup::ad_hoc(252, &flags, catalogue);
    // 120 objects fetched at once: their writes queue behind one writer,
    // and the stop comes right after the last answer, without waiting.
    let fetches: Vec<_> = (0..120)
        .map(|i| {
            let cdn = s.cdn.clone();
            tokio::spawn(async move { cdn.get(&format!("/o/{i}")).await.status })
        })
        .collect();
    for fetch in fetches {
        assert_eq!(fetch.await.unwrap(), 200);
    }
    let mut stopped = s.edge;
    stopped.signal(Signal::SIGTERM);
    let status = blocking(|| stopped.process.exit_within(Duration::from_secs(20)));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert_eq!(files(&tiers.dir), 120, "every queued write was finished");
    let again = ad_hoc(252, &flags);
    assert_eq!(round(&Cdn::at(again.addr), 120).await, 120);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_9_while_writing_never_serves_a_wrong_or_short_body_after() {
    let tiers = Tiers::new("2MiB", "256MiB");
    let (dir, flags) = (&tiers.dir, tiers.flags());
    let origin = crate::harness::ScriptedOrigin::start("127.234.0.2:8000", catalogue).unwrap();
    for kill in 0..4 {
        let edge = ad_hoc(234, &flags);
        let cdn = Cdn::at(edge.addr);
        // Every object so far must come back whole, from disk or origin;
        // then new ones, and a kill -9 while they are being written.
        let total = 40 * (kill + 1);
        let requests: Vec<_> = (0..total)
            .map(|i| {
                let cdn = cdn.clone();
                tokio::spawn(async move {
                    let answer = cdn.get(&format!("/o/{i}")).await;
                    assert_eq!(answer.status, 200);
                    assert!(answer.body == body(i, 100 * 1024), "/o/{i}: wrong body");
                })
            })
            .collect();
        // Kill once some of this round's new objects are on their way.
        let writing =
            blocking(|| eventually(Duration::from_secs(30), || files(dir) > total - 40 + 5));
        assert!(writing, "round {kill}: {} files", files(dir));
        let mut edge = edge;
        edge.process.kill();
        for request in requests {
            // A request cut off by the kill fails; one answered was whole.
            let _ = request.await;
        }
    }
    let edge = ad_hoc(234, &flags);
    let hits = round(&Cdn::at(edge.addr), 160).await;
    assert!(hits > 0, "nothing survived four kills");
    drop(origin);
}

/// eu-west's single edge on `topology`, with a client of it and of its
/// admin listener, once its disk tier has found what it holds (objects not
/// reached yet are misses, which would make a test's count race the
/// rebuild).
async fn eu_west(topology: &Topology) -> (crate::harness::Edge, Cdn, Cdn) {
    let edge = edge(topology, 2);
    let cdn = Cdn::via(edge.addr);
    let admin = Cdn::at(topology.edge_admin(2));
    for _ in 0..200 {
        let status = admin.get("/status").await.json();
        if status["tiers"]["disk"]["rebuilding"] == false {
            return (edge, cdn, admin);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the disk tier's rebuild did not end in 10 s");
}

#[tokio::test(flavor = "multi_thread")]
async fn purges_reach_the_disk_and_hold_across_restarts() {
    let scratch = tempdir();
    let topology = Topology::demo(232).disk_cache(scratch.path(), 64 << 20);
    let s = Setup::eu_west(&topology, |r| {
        // `/red/1` is tagged `red`, `/blue/1` `blue`; 40 KiB each.
        let tag = r.path.split('/').nth(1).unwrap_or_default().to_owned();
        let i = r.path.len();
        Reply::Respond(
            200,
            vec![
                ("cache-control", "max-age=3600".into()),
                ("surrogate-key", tag),
            ],
            body(i, 40 * 1024),
        )
    });
    let paths = ["/red/1", "/red/2", "/blue/1", "/blue/22"];
    for path in paths {
        assert!(!s.get(path).await.is_hit());
    }
    let edge_dir = scratch.path().join(topology.edge(2).ip().to_string());
    let written = blocking(|| eventually(Duration::from_secs(30), || files(&edge_dir) == 4));
    assert!(written, "{} files", files(&edge_dir));

    // After a restart memory is empty: the hits are the disk's.
    s.edge.signal(Signal::SIGTERM);
    drop(s.edge);
    let (edge, cdn, admin) = eu_west(&topology).await;
    let answer = cdn.get("/blue/1").await;
    assert!(answer.is_hit(), "{}", answer.cache_status());
    assert!(answer.body == body("/blue/1".len(), 40 * 1024));
    let metrics = admin.get("/metrics").await.text();
    let disk_hits = metric(&metrics, "meridian_edge_cache_tier_hits{tier=\"disk\"}");
    assert_eq!(disk_hits, Some(1), "{metrics}");
    assert_eq!(metric(&metrics, "meridian_edge_disk_objects"), Some(4));

    // Purges of objects only on disk: by tag and by URL.
    let answer = purge(&admin, r#"{"tags": ["red"]}"#, Some(TOKEN)).await;
    assert_eq!(answer.text(), r#"{"purged":2}"#);
    let url = r#"{"urls": ["http://cdn.meridian.test:8080/blue/22"]}"#;
    assert_eq!(
        purge(&admin, url, Some(TOKEN)).await.text(),
        r#"{"purged":1}"#
    );
    // A purge is on disk when it is answered: a kill -9 right after must
    // not bring the objects back.
    let mut edge = edge;
    edge.process.kill();
    drop(edge);
    let (_edge, cdn, admin) = eu_west(&topology).await;
    for path in ["/red/1", "/red/2", "/blue/22"] {
        let answer = cdn
            .get_with(path, &[("cache-control", "only-if-cached")])
            .await;
        assert_eq!(answer.status, 504, "{path} came back after its purge");
    }
    assert!(cdn.get("/blue/1").await.is_hit());
    let status = admin.get("/status").await.json();
    let disk = &status["tiers"]["disk"];
    assert_eq!(disk["objects"], 1, "{status}");
    assert!(disk["failing"].is_null(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unusable_cache_directory_leaves_the_edge_serving_from_memory() {
    let scratch = tempdir();
    // A file where the directory should be: nothing can be made in it.
    let not_a_dir = scratch.path().join("not-a-directory");
    std::fs::write(&not_a_dir, "x").unwrap();
    let topology = Topology::demo(233).disk_cache(&not_a_dir, 64 << 20);
    let s = Setup::eu_west(&topology, |_| {
        Reply::Respond(
            200,
            vec![("cache-control", "max-age=60".into())],
            body(1, 1024),
        )
    });
    assert!(!s.get("/a").await.is_hit());
    assert!(s.get("/a").await.is_hit(), "memory still caches");
    let admin = Cdn::at(topology.edge_admin(2));
    let status = admin.get("/status").await.json();
    let failing = status["tiers"]["disk"]["failing"]
        .as_str()
        .unwrap_or_default();
    assert!(failing.contains("not-a-directory"), "{status}");
    let metrics = admin.get("/metrics").await.text();
    assert_eq!(
        metric(&metrics, "meridian_edge_disk_failing"),
        Some(1),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purge_sent_on_the_bus_while_the_edge_was_down_reaches_its_disk() {
    if !kit::nats::NatsServer::installed() {
        eprintln!("skipped: nats-server is not installed (Debian: apt-get install nats-server)");
        return;
    }
    let (scratch, state, store) = (tempdir(), tempdir(), tempdir());
    let bus_addr = std::net::SocketAddr::from(([127, 235, 0, 4], 4222));
    let _bus = blocking(|| kit::nats::NatsServer::start(bus_addr, store.path()).unwrap());
    let topology = Topology::demo(235)
        .cluster(bus_addr, state.path(), Duration::from_secs(2))
        .disk_cache(scratch.path(), 64 << 20);
    let s = Setup::eu_west(&topology, |r| {
        Reply::Respond(
            200,
            vec![("cache-control", "max-age=3600".into())],
            body(r.path.len(), 40 * 1024),
        )
    });
    // Verified: the edge has reached the bus and kept its place.
    let verified = async {
        for _ in 0..100 {
            let answer = s.get("/a").await;
            if answer.is_hit() && !answer.cache_status().contains("unverified") {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    assert!(verified.await, "the edge never verified its cache");
    s.get("/bb").await;
    let edge_dir = scratch.path().join(topology.edge(2).ip().to_string());
    let written = blocking(|| eventually(Duration::from_secs(30), || files(&edge_dir) == 2));
    assert!(written, "{} files", files(&edge_dir));
    let mut stopped = s.edge;
    stopped.signal(Signal::SIGTERM);
    let exited = blocking(|| stopped.process.exit_within(Duration::from_secs(10)));
    assert!(exited.is_some(), "the edge did not stop");

    // Purged while the edge is down: stored on the bus, applied by no one.
    let url = "http://cdn.meridian.test:8080/a";
    let mut purge = crate::harness::meridian();
    let config = stopped.config_path().unwrap();
    purge.args(["purge", "--config"]).arg(config).arg(url);
    let ran = blocking(|| crate::harness::RunToEnd::ran(&mut purge));
    assert!(ran.success(), "{ran:?}");
    drop(stopped);

    let (_edge, cdn, _admin) = eu_west(&topology).await;
    let mut purged = false;
    for _ in 0..100 {
        let answer = cdn
            .get_with("/a", &[("cache-control", "only-if-cached")])
            .await;
        assert!(
            answer.status == 504 || answer.cache_status().contains("unverified"),
            "the purged object served as verified: {}",
            answer.cache_status()
        );
        if answer.status == 504 {
            purged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(purged, "the purge never reached the disk");
    let kept = cdn
        .get_with("/bb", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(kept.status, 200, "the object not purged is still on disk");
}
