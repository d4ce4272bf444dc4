//! The live view of `meridian up`, served at the control API's root (the
//! page, its stream and the routes are `geodns::live`'s, which GeoDNS's
//! admin listeners serve read-only too).
//!
//! A collector asks the roles every [`INTERVAL`] (the same
//! [`control::gather`] as `GET /status`, and every GeoDNS server's
//! `/counters`), keeps a minute of each edge's counters ([`history`]) and
//! an event log of what changed ([`events`]), and publishes the whole
//! state as one JSON snapshot. When `up` stops, the collector ends, and
//! with it every stream, so the control listener's graceful shutdown is
//! not held by open pages.

mod answers;
mod events;
mod history;
mod revisions;
mod view;

use super::control::{self, Shared};
use geodns::live::answers::{RegionShare, Steering};
use geodns::live::flows::{FlowShare, Flows};
use geodns::live::{Feed, INTERVAL, Published, ServerEntry, Stamp, now_ms};
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

/// What a snapshot holds (see the page's script for how it is drawn).
#[derive(Serialize)]
struct Snapshot<'a> {
    #[serde(flatten)]
    stamp: Stamp,
    /// Whether the page may offer outage and restore buttons.
    controls: bool,
    /// Whether edges carry their process state and series.
    edge_metrics: bool,
    dns_available: bool,
    geodns: Vec<ServerEntry>,
    regions: Vec<view::RegionView>,
    /// Where GeoDNS sent clients in the last minute, per region.
    answers: Vec<RegionShare>,
    /// Where GeoDNS sent each country's clients in the last minute.
    flows: Vec<FlowShare>,
    events: &'a std::collections::VecDeque<geodns::live::log::Entry>,
}

/// Starts the collector over `supervisor`, whose regions are placed by
/// `config`; it runs until `stop` fires (or is dropped).
pub fn start(supervisor: Shared, config: &config::Config, stop: oneshot::Receiver<()>) -> Feed {
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
    let (publish, feed) = geodns::live::channel();
    let config = config.clone();
    let (roles, follow) = revisions::follow(config.cluster.clone());
    tokio::spawn(async move {
        tokio::select! {
            () = collect(supervisor, config, places, roles, publish) => {}
            () = follow => {}
            _ = stop => {}
        }
    });
    feed
}

/// Collects every [`INTERVAL`] and publishes; returns only if nobody can
/// read any more (never while the routes are served).
async fn collect(
    supervisor: Shared,
    config: config::Config,
    places: Vec<view::Place>,
    roles: revisions::Latest,
    publish: watch::Sender<Arc<Published>>,
) {
    let http = match reqwest::Client::builder().no_proxy().build() {
        Ok(http) => http,
        Err(error) => {
            tracing::error!(%error, "cannot build the live view's HTTP client");
            return;
        }
    };
    let names: Vec<String> = places.iter().map(|p| p.name.clone()).collect();
    let mut steering = Steering::new(names.clone());
    let mut flows = Flows::new(names);
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut history = history::History::default();
    let mut log = events::Changes::default();
    let mut last = Instant::now();
    let mut seq = 0;
    loop {
        ticks.tick().await;
        let (status, counters) = tokio::join!(
            control::gather(&supervisor),
            answers::ask_all(&http, &config)
        );
        let servers: Vec<_> = counters.iter().map(|s| s.counters.as_ref()).collect();
        steering.record(&servers);
        flows.record(&servers);
        let now = Instant::now();
        history.record(&status, now - last);
        last = now;
        let health: Vec<_> = status
            .regions
            .iter()
            .map(|r| view::region_health(r, status.dns_view_available))
            .collect();
        let at_ms = now_ms();
        let roles = roles.borrow().clone();
        log.observe(
            events::Observed::of(&status, &health, &counters, roles),
            at_ms,
        );
        seq += 1;
        let snapshot = Snapshot {
            stamp: Stamp::new(seq, at_ms),
            controls: true,
            edge_metrics: true,
            dns_available: status.dns_view_available,
            geodns: status
                .geodns
                .iter()
                .map(|v| ServerEntry {
                    server: v.server.clone(),
                    admin: v.admin,
                    answered: v.regions.is_some(),
                })
                .collect(),
            regions: view::regions(&status, &places, &history),
            answers: steering.shares(),
            flows: flows.shares(),
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
