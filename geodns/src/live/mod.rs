//! The live view: one page (`/`) that draws a Meridian topology and keeps
//! itself current over Server-Sent Events (`/events`), with `/snapshot`
//! for the newest state once. Served by the control API of `meridian up`
//! (with outage and restore buttons, from everything `up` collects) and,
//! read-only, by each GeoDNS server's admin listener (from what that
//! server knows: [`server`]).
//!
//! Whoever serves it publishes whole JSON snapshots on a `watch` channel
//! ([`channel`]); each `/events` client reads that channel and gets the
//! newest snapshot when it can take one, so a slow client skips snapshots
//! instead of piling them up, and a client that reconnects (`Last-Event-ID`
//! or not) starts again from the newest, which is whole (the event log
//! included). When the publisher stops, every stream ends.

pub mod answers;
pub mod flows;
pub mod log;
mod page;
pub mod server;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures::Stream;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// How often a publisher collects: the page is at most this much (plus
/// the collection's time) behind.
pub const INTERVAL: Duration = Duration::from_millis(500);

/// Samples a minute of collections holds (sparklines, answer shares).
pub const SAMPLES: usize = 120;

/// How long the page waits for a snapshot before it says its data is
/// stale (a few intervals, so a slow collection is not called stale).
pub const STALE_AFTER: Duration = Duration::from_millis(2500);

/// How long a browser waits before reconnecting a dropped stream.
const RECONNECT: Duration = Duration::from_secs(1);

/// The kernel's send buffer of each connection of a listener that serves
/// the live view. A stream's reader that stops reading fills it (and the
/// HTTP server's queue of a few writes), then the stream is no longer
/// polled and skips to the newest snapshot when it is; without it the
/// kernel would grow the buffer to megabytes and keep every snapshot for
/// such a reader.
const SEND_BUFFER: usize = 16 * 1024;

/// Bounds the send buffer of a connection (see [`SEND_BUFFER`]); a failure
/// leaves the kernel's default.
pub fn bound_send_buffer(connection: &mut tokio::net::TcpStream) {
    let socket = socket2::SockRef::from(&*connection);
    if let Err(error) = socket.set_send_buffer_size(SEND_BUFFER) {
        tracing::debug!(%error, "cannot bound a connection's send buffer");
    }
}

/// One published snapshot: its number (from 1) and its JSON.
#[derive(Debug, Default)]
pub struct Published {
    /// Increases by one per snapshot; 0 before the first.
    pub seq: u64,
    /// The snapshot.
    pub json: String,
}

/// What the routes read: the newest snapshot.
#[derive(Clone)]
pub struct Feed {
    snapshots: watch::Receiver<Arc<Published>>,
}

/// A publisher's end and the routes' end of one live view.
pub fn channel() -> (watch::Sender<Arc<Published>>, Feed) {
    let (publish, snapshots) = watch::channel(Arc::new(Published::default()));
    (publish, Feed { snapshots })
}

/// What every snapshot starts with: its number, when it was made, and how
/// often they come (so the page knows when its data is stale).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Stamp {
    seq: u64,
    at_ms: u64,
    interval_ms: u64,
    stale_after_ms: u64,
}

impl Stamp {
    /// Snapshot number `seq`, made at `at_ms` (see [`now_ms`]).
    pub fn new(seq: u64, at_ms: u64) -> Stamp {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Stamp {
            seq,
            at_ms,
            interval_ms: millis(INTERVAL),
            stale_after_ms: millis(STALE_AFTER),
        }
    }
}

/// A GeoDNS server as a snapshot lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerEntry {
    /// Its name (`ns1`).
    pub server: String,
    /// Its admin listener.
    pub admin: std::net::SocketAddr,
    /// Whether it answered when last asked.
    pub answered: bool,
}

/// Milliseconds since the Unix epoch, as snapshots and log entries say
/// when they were made.
pub fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH);
    since.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The live view's routes, unguarded (the caller puts them behind
/// `config::admin_access` with its listener's other routes).
pub fn routes(feed: Feed) -> Router {
    Router::new()
        .route("/", get(page::page))
        .route("/snapshot", get(newest))
        .route("/events", get(stream))
        .with_state(feed)
}

/// `GET /snapshot`: the newest snapshot, once (what the page polls while
/// it starts; see `page.html`).
async fn newest(State(feed): State<Feed>) -> impl IntoResponse {
    let mut rx = feed.snapshots;
    if rx.borrow().seq == 0 {
        // Not collected yet; the publisher stopping ends the wait too.
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
async fn stream(State(feed): State<Feed>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let events = futures::stream::unfold((feed.snapshots, true), |(mut rx, first)| async move {
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
