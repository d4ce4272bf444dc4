//! The live view of `meridian up`: one page at the control API's root
//! (`/`) that draws the topology and keeps itself current over
//! Server-Sent Events (`/events`).
//!
//! A collector asks the roles every [`INTERVAL`] (the same
//! [`control::gather`] as `GET /status`), keeps a minute of each edge's
//! counters ([`history`]) and a bounded event log ([`events`]), and
//! publishes the whole state as one JSON snapshot on a `watch` channel.
//! Each `/events` client reads that channel: it gets the newest snapshot
//! when it can take one, so a slow client skips snapshots instead of
//! piling them up, and a client that reconnects (`Last-Event-ID` or not)
//! starts again from the newest, which is whole (the log included).
//! `GET /snapshot` answers the newest snapshot once.
//! When `up` stops, the collector ends, and with it every stream, so
//! the control listener's graceful shutdown is not held by open pages.

mod answers;
mod events;
mod history;
mod page;
mod view;

use super::control::{self, Shared};
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures::Stream;
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

/// How often the collector asks the roles: the page is at most this
/// much (plus the roles' answer time) behind.
pub const INTERVAL: Duration = Duration::from_millis(500);

/// How long the page waits for a snapshot before it says its data is
/// stale (a few intervals, so a slow collection is not called stale).
const STALE_AFTER: Duration = Duration::from_millis(2500);

/// How long a browser waits before reconnecting a dropped stream.
const RECONNECT: Duration = Duration::from_secs(1);

/// The kernel's send buffer of each control API connection. A stream's
/// reader that stops reading fills it (and the HTTP server's queue of a
/// few writes), then the stream is no longer polled and skips to the
/// newest snapshot when it is; without it the kernel would grow the
/// buffer to megabytes and keep every snapshot for such a reader.
const SEND_BUFFER: usize = 16 * 1024;

/// Bounds the send buffer of a control API connection (see
/// [`SEND_BUFFER`]); a failure leaves the kernel's default.
pub fn bound_send_buffer(connection: &mut tokio::net::TcpStream) {
    let socket = socket2::SockRef::from(&*connection);
    if let Err(error) = socket.set_send_buffer_size(SEND_BUFFER) {
        tracing::debug!(%error, "cannot bound a control connection's send buffer");
    }
}

/// One published snapshot: its number and its JSON.
#[derive(Debug, Default)]
pub struct Published {
    seq: u64,
    json: String,
}

/// The live view's routes' state: the newest snapshot.
#[derive(Clone)]
pub struct Live {
    snapshots: watch::Receiver<Arc<Published>>,
}

/// What a snapshot holds (see the page's script for how it is drawn).
#[derive(Serialize)]
struct Snapshot<'a> {
    seq: u64,
    at_ms: u64,
    interval_ms: u64,
    stale_after_ms: u64,
    /// Whether the page may offer outage and restore buttons.
    controls: bool,
    dns_available: bool,
    geodns: Vec<GeoDnsServer>,
    regions: Vec<view::RegionView>,
    /// Where GeoDNS sent clients in the last minute, per region.
    answers: Vec<answers::RegionShare>,
    events: &'a std::collections::VecDeque<events::Entry>,
}

#[derive(Serialize)]
struct GeoDnsServer {
    server: String,
    admin: std::net::SocketAddr,
    answered: bool,
}

fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH);
    since.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Starts the collector over `supervisor`, whose regions are placed by
/// `config`; it runs until `stop` fires (or is dropped).
pub fn start(supervisor: Shared, config: &config::Config, stop: oneshot::Receiver<()>) -> Live {
    let places: Vec<view::Place> = config
        .regions
        .iter()
        .map(|r| view::Place {
            name: r.name.clone(),
            city: r.city.clone(),
            latitude: r.latitude,
            longitude: r.longitude,
        })
        .collect();
    let (publish, snapshots) = watch::channel(Arc::new(Published::default()));
    let config = config.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = collect(supervisor, config, places, publish) => {}
            _ = stop => {}
        }
    });
    Live { snapshots }
}

/// Collects every [`INTERVAL`] and publishes; returns only if nobody can
/// read any more (never while the routes are served).
async fn collect(
    supervisor: Shared,
    config: config::Config,
    places: Vec<view::Place>,
    publish: watch::Sender<Arc<Published>>,
) {
    let http = match reqwest::Client::builder().no_proxy().build() {
        Ok(http) => http,
        Err(error) => {
            tracing::error!(%error, "cannot build the live view's HTTP client");
            return;
        }
    };
    let mut steering = answers::Steering::new(places.iter().map(|p| p.name.clone()).collect());
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut history = history::History::default();
    let mut log = events::Log::default();
    let mut last = Instant::now();
    let mut seq = 0;
    loop {
        ticks.tick().await;
        let (status, counters) = tokio::join!(
            control::gather(&supervisor),
            answers::ask_all(&http, &config)
        );
        steering.record(&counters);
        let now = Instant::now();
        history.record(&status, now - last);
        last = now;
        let health: Vec<_> = status
            .regions
            .iter()
            .map(|r| view::region_health(r, status.dns_view_available))
            .collect();
        let at_ms = now_ms();
        log.observe(events::Observed::of(&status, &health, &counters), at_ms);
        seq += 1;
        let snapshot = Snapshot {
            seq,
            at_ms,
            interval_ms: INTERVAL.as_millis() as u64,
            stale_after_ms: STALE_AFTER.as_millis() as u64,
            controls: true,
            dns_available: status.dns_view_available,
            geodns: status
                .geodns
                .iter()
                .map(|v| GeoDnsServer {
                    server: v.server.clone(),
                    admin: v.admin,
                    answered: v.regions.is_some(),
                })
                .collect(),
            regions: view::regions(&status, &places, &history),
            answers: steering.shares(),
            events: log.entries(),
        };
        let json = match serde_json::to_string(&snapshot) {
            Ok(json) => json,
            Err(error) => {
                // Plain data (no maps with non-string keys): cannot fail,
                // but a failure must not end the view.
                tracing::error!(%error, "cannot encode the live view");
                continue;
            }
        };
        if publish.send(Arc::new(Published { seq, json })).is_err() {
            return;
        }
    }
}

/// The live view's routes, unguarded (the caller puts them behind
/// `config::admin_access` with the control API's).
pub fn routes(live: Live) -> Router {
    Router::new()
        .route("/", get(page::page))
        .route("/snapshot", get(newest))
        .route("/events", get(stream))
        .with_state(live)
}

/// `GET /snapshot`: the newest snapshot, once (what the page polls while
/// it starts; see `page.html`).
async fn newest(State(live): State<Live>) -> impl IntoResponse {
    let mut rx = live.snapshots;
    if rx.borrow().seq == 0 {
        // Not collected yet; the collector stopping ends the wait too.
        let _ = rx.changed().await;
    }
    let snapshot = rx.borrow_and_update().clone();
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        snapshot.json.clone(),
    )
}

/// `GET /events`: the newest snapshot now, then each newer one as the
/// client takes it.
async fn stream(State(live): State<Live>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let events = futures::stream::unfold((live.snapshots, true), |(mut rx, first)| async move {
        // The first snapshot may not be published yet (seq 0): wait for it.
        if !first || rx.borrow().seq == 0 {
            rx.changed().await.ok()?;
        }
        let snapshot = rx.borrow_and_update().clone();
        let mut event = Event::default()
            .event("snapshot")
            .id(snapshot.seq.to_string())
            .data(&snapshot.json);
        if first {
            event = event.retry(RECONNECT);
        }
        Some((Ok(event), (rx, false)))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}
