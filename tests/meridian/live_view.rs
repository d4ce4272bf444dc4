//! The live view of `meridian up` (its page at the control API's root and
//! the `/events` stream behind it): in a real headless Chromium, the page
//! follows an outage and a restore without being reloaded, says it is
//! stale when the stream drops and reconnects by itself, and draws where
//! a country's clients are sent (an arc and a line of text); the stream
//! itself (snapshots arrive with answers per region, requests per second
//! and purges, a reconnect starts from a whole snapshot, a
//! slow reader skips snapshots instead of piling them up, `up` stops with
//! a stream open); and the listener's rules for these routes (foreign
//! Host, foreign Origin, malformed and oversized requests); each GeoDNS
//! admin listener's own read-only view. Blocks 127.218 to 127.221.

use crate::harness::{blocking, dns, raw, up};
use hickory_proto::rr::RecordType;
use kit::browser::Browser;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const REGIONS: [&str; 3] = ["us-east", "eu-west", "ap-southeast"];

/// Every element with `data-region`, as `[region, health]` pairs.
const HEALTHS: &str = "[...document.querySelectorAll('[data-region]')]\
    .map(e => [e.dataset.region, e.dataset.health || null])";

/// The event log's entries, newest first, as `[kind, text]` pairs.
const EVENTS: &str =
    "[...document.querySelectorAll('#events li')].map(e => [e.dataset.kind, e.textContent])";

/// Where the screenshots go: `target/tmp/live-view/`.
fn artifact(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("live-view")
        .join(name)
}

/// Whether `healths` (from [`HEALTHS`]) draws `region` (twice: on the map
/// and as a card) and only as `health`, and every other region as `others`.
fn drawn(healths: &Value, region: &str, health: &str, others: &str) -> bool {
    let Some(pairs) = healths.as_array() else {
        return false;
    };
    REGIONS.iter().all(|name| {
        let want = if *name == region { health } else { others };
        let of: Vec<&Value> = pairs.iter().filter(|p| p[0] == *name).collect();
        of.len() >= 2 && of.iter().all(|p| p[1] == want)
    })
}

/// Whether the log (from [`EVENTS`]) has an entry of `kind` naming `what`.
fn logged(events: &Value, kind: &str, what: &str) -> bool {
    events.as_array().is_some_and(|entries| {
        entries
            .iter()
            .any(|e| e[0] == kind && e[1].as_str().is_some_and(|t| t.contains(what)))
    })
}

/// Waits until the page draws every region `up`, within `within`; what
/// [`HEALTHS`] then reads.
async fn draws_all_up(browser: &mut Browser, within: Duration) -> Value {
    browser
        .until(HEALTHS, within, |h| drawn(h, "eu-west", "up", "up"))
        .await
        .unwrap()
}

/// Waits until the page draws eu-west as `health` (every other region
/// `up`) within `within`, and then, within 3 s, its log has all `events`
/// (kind, text).
async fn draws_eu_west(
    browser: &mut Browser,
    health: &str,
    within: Duration,
    events: &[(&str, &str)],
) {
    browser
        .until(HEALTHS, within, |h| drawn(h, "eu-west", health, "up"))
        .await
        .unwrap();
    browser
        .until(EVENTS, Duration::from_secs(3), |e| {
            events.iter().all(|(kind, what)| logged(e, kind, what))
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_follows_outages_restores_and_a_lost_stream_without_reloading() {
    let mut browser = match Browser::start().await {
        Ok(browser) => browser,
        Err(why) => {
            eprintln!("SKIPPED the live view's browser test: no browser can start: {why}");
            return;
        }
    };
    let up = up(218);
    let page = format!("http://{}/", up.topology.control());
    browser.open(&page, 1280, 800).await.unwrap();

    // Every region drawn up, on the map and as a card, with words too.
    let regions = draws_all_up(&mut browser, Duration::from_secs(20)).await;
    assert_eq!(regions.as_array().unwrap().len(), 6, "{regions}");
    let badge = "document.querySelector('article[data-region=\"eu-west\"] .badge').textContent";
    assert_eq!(browser.evaluate(badge).await.unwrap(), "up");
    // The page goes over to the stream; from then on nothing polls.
    browser
        .until("document.body.dataset.live", Duration::from_secs(10), |v| {
            v == "stream"
        })
        .await
        .unwrap();
    // A mark in this document: a reload would lose it.
    browser.evaluate("window.loadedOnce = true").await.unwrap();
    browser.screenshot(&artifact("1-all-up.png")).await.unwrap();

    // Clients in GB are sent to eu-west: an arc from GB to eu-west on the
    // map, and the same in words.
    blocking(|| {
        for _ in 0..3 {
            let query = dns::ecs("cdn.meridian.test.", RecordType::A, "81.2.69.0/24");
            dns::udp(up.dns(), &query).unwrap();
        }
    });
    let flow = "[document.querySelectorAll('#flows path[data-country=\"GB\"][data-flow-region=\"eu-west\"]').length, \
                document.querySelector('#flow-list li[data-country=\"GB\"][data-flow-region=\"eu-west\"]')?.textContent]";
    browser
        .until(flow, Duration::from_secs(10), |v| {
            v[0] == 1
                && v[1]
                    .as_str()
                    .is_some_and(|t| t.starts_with("GB → eu-west 100 %"))
        })
        .await
        .unwrap();
    browser.screenshot(&artifact("1b-flows.png")).await.unwrap();

    // An outage from the page's own button (the control API, with the
    // header its fetch sends, from its own origin).
    let button = "document.querySelector('article[data-region=\"eu-west\"] \
                  button[data-action=\"outage-all\"]').click()";
    let clicked = Instant::now();
    browser.evaluate(button).await.unwrap();
    let events = [("outage", "edge eu-west"), ("health", "eu-west: up → down")];
    draws_eu_west(&mut browser, "down", Duration::from_secs(3), &events).await;
    let took = clicked.elapsed();
    assert_eq!(browser.evaluate(badge).await.unwrap(), "down");
    let result = "document.querySelector('article[data-region=\"eu-west\"] .result').textContent";
    let said = browser
        .until(result, Duration::from_secs(5), |v| {
            v.as_str().is_some_and(|t| t.contains("origin eu-west"))
        })
        .await
        .unwrap();
    assert!(!said.as_str().unwrap().contains("failed"), "{said}");
    let stale = browser
        .evaluate("document.body.dataset.stale")
        .await
        .unwrap();
    assert_eq!(stale, "false");
    browser
        .screenshot(&artifact("2-eu-west-down.png"))
        .await
        .unwrap();

    // A restore through the control API, as the CLI sends it. GeoDNS
    // takes the region back once its probes see it up again.
    let restored = blocking(|| up.command(&["restore", "eu-west"]).unwrap());
    assert!(restored.success(), "{}", restored.stderr);
    let events = [
        ("restore", "edge eu-west"),
        ("health", "eu-west: down → up"),
    ];
    draws_eu_west(&mut browser, "up", Duration::from_secs(15), &events).await;
    let same_document = browser
        .evaluate("window.loadedOnce === true")
        .await
        .unwrap();
    assert_eq!(same_document, true, "the page was reloaded");
    browser
        .screenshot(&artifact("3-restored.png"))
        .await
        .unwrap();

    // Each GeoDNS server's admin listener serves the same page, read-only:
    // its own view, no buttons.
    let ns1 = format!("http://{}/", up.topology.geodns_admin_of(0));
    browser.open(&ns1, 1280, 800).await.unwrap();
    draws_all_up(&mut browser, Duration::from_secs(10)).await;
    let buttons = browser
        .evaluate("document.querySelectorAll('button').length")
        .await
        .unwrap();
    assert_eq!(buttons, 0);
    let summary = browser
        .evaluate("document.getElementById('summary').textContent")
        .await
        .unwrap();
    assert!(
        summary.as_str().unwrap().contains("GeoDNS ns1"),
        "{summary}"
    );
    browser
        .screenshot(&artifact("3b-geodns-ns1.png"))
        .await
        .unwrap();

    // At phone width the same page fits: no sideways scrolling of it.
    browser.open(&page, 390, 844).await.unwrap();
    draws_all_up(&mut browser, Duration::from_secs(10)).await;
    let overflow = "document.documentElement.scrollWidth <= window.innerWidth";
    assert_eq!(browser.evaluate(overflow).await.unwrap(), true);
    browser.screenshot(&artifact("4-phone.png")).await.unwrap();

    // The stream drops (`up` stops): the page says its data is stale.
    // When `up` is back, it reconnects by itself, unreloaded.
    browser.evaluate("window.loadedOnce = true").await.unwrap();
    let mut up = up;
    up.process.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(up.process.exit_within(Duration::from_secs(30)).is_some());
    let connection =
        "[document.body.dataset.stale, document.getElementById('connection').textContent]";
    let stale = browser
        .until(connection, Duration::from_secs(10), |v| v[0] == "true")
        .await
        .unwrap();
    assert!(stale[1].as_str().unwrap().contains("stale"), "{stale}");
    browser.screenshot(&artifact("5-stale.png")).await.unwrap();
    drop(up);
    let _back = crate::harness::up(218);
    browser
        .until(connection, Duration::from_secs(20), |v| v[0] == "false")
        .await
        .unwrap();
    draws_all_up(&mut browser, Duration::from_secs(10)).await;
    let same_document = browser
        .evaluate("window.loadedOnce === true")
        .await
        .unwrap();
    assert_eq!(same_document, true, "the page was reloaded");
    eprintln!(
        "outage drawn {took:?} after the click; screenshots in {}",
        artifact("").display()
    );
}

/// A streaming GET of `path` from `addr`, with `fields`; the socket,
/// after the request is sent.
fn open_stream(
    addr: SocketAddr,
    path: &str,
    fields: &[&str],
    receive_buffer: Option<usize>,
) -> TcpStream {
    let mut stream = connect(addr, receive_buffer);
    let request = raw::request("GET", path, &addr.to_string(), fields, "");
    stream.write_all(request.as_bytes()).unwrap();
    stream
}

/// A TCP connection to `addr`, with a small receive buffer when asked
/// (set before connecting, so the window it advertises is small).
fn connect(addr: SocketAddr, receive_buffer: Option<usize>) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(size) = receive_buffer {
            socket.set_recv_buffer_size(size as u32).unwrap();
        }
        let stream = socket.connect(addr).await.unwrap();
        stream.into_std().unwrap()
    })
}

/// One side of an SSE stream: the response head, and each event's id and
/// data (JSON).
struct Reader {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Reader {
    fn new(stream: TcpStream) -> Reader {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Reader {
            stream,
            buffer: Vec::new(),
        }
    }

    /// Reads until `enough(events so far)` or `within`; every complete
    /// event so far, as (id, data).
    fn read(
        &mut self,
        within: Duration,
        enough: impl Fn(&[(u64, Value)]) -> bool,
    ) -> Vec<(u64, Value)> {
        let deadline = Instant::now() + within;
        loop {
            let events = self.events();
            if enough(&events) || Instant::now() > deadline {
                return events;
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return self.events(),
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("reading the stream: {e}"),
            }
        }
    }

    /// The head, once read.
    fn head(&self) -> String {
        let text = String::from_utf8_lossy(&self.buffer);
        text.split("\r\n\r\n").next().unwrap_or_default().to_owned()
    }

    /// The complete events read so far. The body is chunked: chunk sizes
    /// are lines of their own, which no SSE field starts with.
    fn events(&self) -> Vec<(u64, Value)> {
        let text = String::from_utf8_lossy(&self.buffer);
        let Some((_, body)) = text.split_once("\r\n\r\n") else {
            return Vec::new();
        };
        let mut events = Vec::new();
        let mut id = None;
        let mut data = String::new();
        for line in body.split('\n').map(|l| l.trim_end_matches('\r')) {
            if let Some(value) = line.strip_prefix("id: ") {
                id = value.parse().ok();
            } else if let Some(value) = line.strip_prefix("data: ") {
                data.push_str(value);
            } else if line.is_empty() && !data.is_empty() {
                match (id.take(), serde_json::from_str(&data)) {
                    (Some(id), Ok(json)) => events.push((id, json)),
                    // Cut in the middle by the end of what was read.
                    _ => break,
                }
                data.clear();
            }
        }
        events
    }
}

#[test]
fn the_stream_sends_snapshots_starts_whole_on_reconnect_and_skips_for_slow_readers() {
    let mut up = up(219);
    let control = up.topology.control();

    // Snapshots arrive, each whole: every region, the log from its start.
    let mut first = Reader::new(open_stream(control, "/events", &[], None));
    let events = first.read(Duration::from_secs(10), |e| e.len() >= 3);
    let head = first.head();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    assert!(events.len() >= 3, "{events:?}");
    let ids: Vec<u64> = events.iter().map(|(id, _)| *id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let (last_id, snapshot) = events.last().unwrap();
    let names: Vec<&str> = snapshot["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, REGIONS);
    assert_eq!(
        snapshot["events"][0]["kind"], "start",
        "{}",
        snapshot["events"]
    );

    // Where GeoDNS sends clients: clients in GB are answered with
    // eu-west, and the last minute's answers say so.
    for _ in 0..5 {
        let query = dns::edns(
            dns::question("cdn.meridian.test.", RecordType::A),
            1232,
            Some("81.2.69.0/24"),
        );
        dns::udp(up.dns(), &query).unwrap();
    }
    let answered = |e: &[(u64, Value)]| {
        e.last().is_some_and(|(_, s)| {
            s["answers"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|r| r["region"] == "eu-west" && r["answers"].as_u64() >= Some(5))
            })
        })
    };
    let seen = first.read(Duration::from_secs(10), answered);
    assert!(answered(&seen), "{}", seen.last().unwrap().1["answers"]);

    // Requests to an edge become its requests per second; a purge is
    // logged, edge by edge.
    let edge = up.edge(1);
    for _ in 0..10 {
        let answer = raw::get(edge, "/assets/1k.bin", "cdn.meridian.test").unwrap();
        assert_eq!(answer.status(), 200);
    }
    let busy = |e: &[(u64, Value)]| {
        e.last().is_some_and(|(_, s)| {
            let rps = &s["regions"][0]["edges"][0]["series"]["rps"];
            rps.as_array()
                .is_some_and(|r| r.iter().any(|v| v.as_f64() > Some(1.0)))
        })
    };
    let seen = first.read(Duration::from_secs(10), busy);
    assert!(
        busy(&seen),
        "{}",
        seen.last().unwrap().1["regions"][0]["edges"][0]
    );
    up.command(&["purge", "--all"]).unwrap().succeeds();
    let purged = |e: &[(u64, Value)]| {
        e.last().is_some_and(|(_, s)| {
            let log = s["events"].as_array().unwrap();
            let edge = format!("edge us-east {}", edge.ip());
            log.iter()
                .any(|e| e["kind"] == "purge" && e["text"].as_str().unwrap().starts_with(&edge))
        })
    };
    let seen = first.read(Duration::from_secs(10), purged);
    assert!(purged(&seen), "{}", seen.last().unwrap().1["events"]);

    // A reconnect (as EventSource makes it, with the last id it saw)
    // starts from the newest snapshot, as whole as the first.
    let last_event_id = format!("Last-Event-ID: {last_id}");
    let mut again = Reader::new(open_stream(control, "/events", &[&last_event_id], None));
    let resumed = again.read(Duration::from_secs(10), |e| !e.is_empty());
    let (id, snapshot) = resumed.first().expect("a snapshot on reconnect");
    assert!(id >= last_id, "{id} after {last_id}");
    assert_eq!(snapshot["events"][0]["kind"], "start");
    assert_eq!(snapshot["regions"].as_array().unwrap().len(), 3);
    drop(again);

    // A reader that stops reading: the server keeps no queue for it; when
    // it reads again it gets the newest snapshots, the ones between
    // skipped, not every one it missed.
    let mut slow = Reader::new(open_stream(control, "/events", &[], Some(4096)));
    let start = slow.read(Duration::from_secs(10), |e| !e.is_empty());
    let from = start.last().unwrap().0;
    // Not reading while the collector publishes 40 more (about 20 s).
    let newest_seq = || -> u64 {
        let answer = raw::get(control, "/snapshot", &control.to_string()).unwrap();
        let snapshot: Value = serde_json::from_str(&answer.text()).unwrap();
        snapshot["seq"].as_u64().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut newest = newest_seq();
    while newest < from + 40 {
        assert!(
            Instant::now() < deadline,
            "the collector stalled at {newest}"
        );
        std::thread::sleep(Duration::from_millis(500));
        newest = newest_seq();
    }
    let caught_up = slow.read(Duration::from_secs(15), |e| {
        e.last().is_some_and(|(id, _)| *id >= newest)
    });
    let ids: Vec<u64> = caught_up.iter().map(|(id, _)| *id).collect();
    assert!(ids.last().unwrap() >= &newest, "never caught up: {ids:?}");
    let received = ids.iter().filter(|id| **id > from).count() as u64;
    let published = ids.last().unwrap() - from;
    eprintln!("the slow reader got {received} of {published} snapshots: {ids:?}");
    assert!(
        received < published,
        "every snapshot was queued for the slow reader: {received} of {published}: {ids:?}"
    );

    // `up` stops with streams open, one of them (the first) not read for
    // a while, its buffers full: they end with it, the stalled one cut.
    let _open = Reader::new(open_stream(control, "/events", &[], None));
    up.process.signal(nix::sys::signal::Signal::SIGTERM);
    let status = up.process.exit_within(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "up did not stop: {status:?}"
    );
    let ended = first.read(Duration::from_secs(5), |_| false);
    assert!(!ended.is_empty());
}

#[test]
fn each_geodns_admin_listener_streams_its_own_view() {
    let up = up(221);
    let admin = up.topology.geodns_admin_of(1);
    let mut stream = Reader::new(open_stream(admin, "/events", &[], None));
    let first = stream.read(Duration::from_secs(10), |e| {
        e.last().is_some_and(|(_, s)| drawn_up(s))
    });
    let (_, snapshot) = first.last().unwrap();
    assert!(drawn_up(snapshot), "{snapshot}");
    assert_eq!(snapshot["controls"], false);
    assert_eq!(snapshot["geodns"][0]["server"], "ns2");
    // ns2 steers away from a region whose edges are gone, and logs it.
    up.command(&["outage", "eu-west"]).unwrap().succeeds();
    let steered_away = |e: &[(u64, Value)]| {
        e.last().is_some_and(|(_, s)| {
            let eu = &s["regions"][1];
            let log = s["events"].as_array().unwrap();
            eu["name"] == "eu-west"
                && eu["health"] == "down"
                && log.iter().any(|e| {
                    e["text"]
                        .as_str()
                        .unwrap()
                        .starts_with("eu-west: up → down")
                })
        })
    };
    let seen = stream.read(Duration::from_secs(10), steered_away);
    assert!(steered_away(&seen), "{}", seen.last().unwrap().1);
    // Its listener's rules: a foreign Host or Origin gets nothing.
    let host = admin.to_string();
    for (host, fields, status) in [
        ("attacker.example:9153", &[][..], 421),
        (host.as_str(), &["Origin: http://attacker.example"][..], 403),
    ] {
        let request = raw::request("GET", "/events", host, fields, "");
        let answer = raw::exchange(admin, request.as_bytes(), Duration::from_secs(5)).unwrap();
        assert_eq!(answer.status(), status, "Host {host} {fields:?}");
    }
}

/// Whether every region of `snapshot` is up.
fn drawn_up(snapshot: &Value) -> bool {
    snapshot["regions"]
        .as_array()
        .is_some_and(|r| r.len() == 3 && r.iter().all(|r| r["health"] == "up"))
}

#[test]
fn the_live_routes_follow_the_listeners_rules() {
    let up = up(220);
    let control = up.topology.control();
    let host = control.to_string();
    for path in ["/", "/events", "/snapshot"] {
        // A rebound name, another origin, a cross-site fetch: refused
        // before anything is streamed.
        for (fields, host, status) in [
            (&[][..], "attacker.example:9000", 421),
            (&["Origin: http://attacker.example"][..], host.as_str(), 403),
            (&["Sec-Fetch-Site: cross-site"][..], host.as_str(), 403),
        ] {
            let request = raw::request("GET", path, host, fields, "");
            let answer =
                raw::exchange(control, request.as_bytes(), Duration::from_secs(5)).unwrap();
            assert_eq!(answer.status(), status, "GET {path} Host {host} {fields:?}");
        }
    }
    // The page, as a browser gets it: never cached, never framed.
    let page = raw::get(control, "/", &host).unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.field("cache-control"), Some("no-store"));
    assert_eq!(page.field("x-frame-options"), Some("DENY"));
    let policy = page.field("content-security-policy").unwrap_or_default();
    assert!(
        policy.contains("frame-ancestors 'none'") && policy.contains("connect-src 'self'"),
        "{policy}"
    );
    // Malformed framing and an oversized head: answered with an error,
    // and the listener goes on.
    for (request, status) in [
        (
            "GET / HTTP/1.1\r\nHost: {host}\r\nContent-Length: x\r\n\r\n".to_owned(),
            400,
        ),
        ("BLAH\r\n\r\n".to_owned(), 400),
        (
            format!(
                "GET / HTTP/1.1\r\nHost: {host}\r\nX-Big: {}\r\n\r\n",
                "a".repeat(1 << 20)
            ),
            431,
        ),
    ] {
        let request = request.replace("{host}", &host);
        let answer = raw::exchange(control, request.as_bytes(), Duration::from_secs(5)).unwrap();
        assert_eq!(
            answer.status(),
            status,
            "{}",
            &request[..request.len().min(60)]
        );
    }
    assert_eq!(raw::get(control, "/snapshot", &host).unwrap().status(), 200);
}
