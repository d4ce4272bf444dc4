//! Edge health, as GeoDNS sees it.
//!
//! GeoDNS probes every edge itself, on the data-plane listener clients use
//! (an HTTP GET of `edge.health_path` on the edge's HTTP port), like gdnsd's
//! `http_status` monitor and Route 53's health checks: a region is only as
//! healthy as what its users would reach. Each edge's state changes only
//! after `down_after` consecutive failures or `up_after` consecutive
//! successes ([`config::Hysteresis`]), so one lost probe does not move traffic.
//!
//! The probers write into a shared [`HealthView`]; the DNS handler reads it
//! with plain atomic loads on every steered query.

use config::Hysteresis;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The health of every edge, shared between the probers and the handler.
#[derive(Debug)]
pub struct HealthView {
    /// `[region][edge]`, aligned with the config's `edge_addresses`.
    regions: Vec<Vec<EdgeHealth>>,
    /// Region names, for reports.
    names: Vec<String>,
    /// Bumped after every change of any edge's state, so that answers
    /// remembered under one generation are never served under another
    /// (see [`crate::answer_cache`]).
    generation: AtomicU64,
}

#[derive(Debug)]
struct EdgeHealth {
    addr: SocketAddr,
    up: AtomicBool,
}

/// One edge's state, for reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EdgeStatus {
    /// The probed address.
    pub addr: SocketAddr,
    /// Whether GeoDNS considers it up.
    pub up: bool,
}

/// One region's state, for reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RegionStatus {
    /// The region's name.
    pub region: String,
    /// Whether any of its edges is up.
    pub up: bool,
    /// Its edges.
    pub edges: Vec<EdgeStatus>,
}

impl HealthView {
    /// Every edge of `config`, all up.
    pub fn from_config(config: &config::Config) -> Arc<Self> {
        let regions = config
            .regions
            .iter()
            .map(|region| {
                region
                    .edge_http_addrs(&config.edge)
                    .into_iter()
                    .map(|addr| EdgeHealth {
                        addr,
                        up: AtomicBool::new(true),
                    })
                    .collect()
            })
            .collect();
        let names = config.regions.iter().map(|r| r.name.clone()).collect();
        Arc::new(HealthView {
            regions,
            names,
            generation: AtomicU64::new(0),
        })
    }

    /// Whether edge `edge` of region `region` is up (unknown ones are not).
    pub fn edge_up(&self, region: usize, edge: usize) -> bool {
        self.regions
            .get(region)
            .and_then(|edges| edges.get(edge))
            .is_some_and(|e| e.up.load(Ordering::Relaxed))
    }

    /// Whether any edge of `region` is up.
    pub fn region_up(&self, region: usize) -> bool {
        self.regions
            .get(region)
            .is_some_and(|edges| edges.iter().any(|e| e.up.load(Ordering::Relaxed)))
    }

    /// Takes over what `old` knows: every edge here that `old` also has
    /// (same region name, same address) gets its state; new edges stay up,
    /// as at startup. Used when a reload replaces the view.
    pub fn carry_over(&self, old: &HealthView) {
        for (edges, name) in self.regions.iter().zip(&self.names) {
            let Some(old_edges) = old
                .names
                .iter()
                .position(|n| n == name)
                .and_then(|i| old.regions.get(i))
            else {
                continue;
            };
            for edge in edges {
                if let Some(old_edge) = old_edges.iter().find(|e| e.addr == edge.addr) {
                    edge.up
                        .store(old_edge.up.load(Ordering::Relaxed), Ordering::Relaxed);
                }
                self.generation.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// Sets one edge's state.
    pub fn set_edge(&self, region: usize, edge: usize, up: bool) {
        if let Some(e) = self.regions.get(region).and_then(|edges| edges.get(edge))
            && e.up.swap(up, Ordering::SeqCst) != up
        {
            // After the state: whoever sees the new generation sees the
            // new state.
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The current generation: it changes whenever any edge's state does.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Every region's state, in config order.
    pub fn snapshot(&self) -> Vec<RegionStatus> {
        self.regions
            .iter()
            .zip(&self.names)
            .map(|(edges, name)| {
                let edges: Vec<EdgeStatus> = edges
                    .iter()
                    .map(|e| EdgeStatus {
                        addr: e.addr,
                        up: e.up.load(Ordering::Relaxed),
                    })
                    .collect();
                RegionStatus {
                    region: name.clone(),
                    up: edges.iter().any(|e| e.up),
                    edges,
                }
            })
            .collect()
    }
}

/// The running health checks of one view, until stopped (a reload stops
/// them and starts new ones on the new view).
pub struct Checks {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Checks {
    /// Starts probing every edge of `view` as `config` says.
    pub fn start(view: Arc<HealthView>, config: &config::Config) -> Checks {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run_checks(
            view,
            config.health.clone(),
            config.edge.health_path.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        Checks { stop, task }
    }

    /// Stops every prober and waits until they are gone, so none writes
    /// into the view afterwards.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Probes every edge of `view` until `shutdown` resolves.
pub async fn run_checks(
    view: Arc<HealthView>,
    settings: config::Health,
    health_path: String,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let client = match reqwest::Client::builder()
        .no_proxy()
        // A fresh connection per probe: the check is that the edge accepts
        // connections now, not that an old one is still open.
        .pool_max_idle_per_host(0)
        .timeout(settings.timeout)
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the health-check client; edges are assumed up");
            return;
        }
    };
    let mut probers = tokio::task::JoinSet::new();
    for (region, edges) in view.regions.iter().enumerate() {
        for (edge, health) in edges.iter().enumerate() {
            let url = format!("http://{}{health_path}", health.addr);
            probers.spawn(probe_edge(
                view.clone(),
                region,
                edge,
                url,
                client.clone(),
                settings.clone(),
            ));
        }
    }
    shutdown.await;
    probers.shutdown().await;
}

async fn probe_edge(
    view: Arc<HealthView>,
    region: usize,
    edge: usize,
    url: String,
    client: reqwest::Client,
    settings: config::Health,
) {
    let mut state = resumed(view.edge_up(region, edge), &settings);
    let mut ticks = tokio::time::interval(settings.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let name = view.names.get(region).cloned().unwrap_or_default();
    loop {
        ticks.tick().await;
        let result = probe(&client, &url, settings.timeout).await;
        if let Some(up) = state.record(result.is_ok(), settings.down_after, settings.up_after) {
            view.set_edge(region, edge, up);
            match (&result, up) {
                (_, true) => tracing::info!(region = %name, %url, "edge is up"),
                (Err(reason), false) => {
                    tracing::warn!(region = %name, %url, %reason, "edge is down")
                }
                (Ok(()), false) => {}
            }
        }
    }
}

/// A checker's state machine starting from `up`: a prober started after a
/// reload continues from what the view says, so an edge that was down needs
/// `up_after` good probes, as it would have without the reload.
fn resumed(up: bool, settings: &config::Health) -> Hysteresis {
    let mut state = Hysteresis::new_up();
    if !up {
        // `Hysteresis` starts up; the failures that take it down get it there.
        for _ in 0..settings.down_after.max(1) {
            state.record(false, settings.down_after, settings.up_after);
        }
    }
    state
}

async fn probe(client: &reqwest::Client, url: &str, timeout: Duration) -> Result<(), String> {
    let response = tokio::time::timeout(timeout, client.get(url).send())
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("answered {}", response.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_reports_regions_and_edges() {
        let view = HealthView::from_config(&config::Config::demo());
        assert!(view.region_up(1));
        view.set_edge(1, 0, false);
        assert!(!view.edge_up(1, 0));
        assert!(view.region_up(1), "its other edge is up");
        view.set_edge(1, 1, false);
        assert!(!view.region_up(1));
        assert!(view.region_up(0));
        assert!(!view.edge_up(7, 0), "unknown edges are not up");
        let snapshot = view.snapshot();
        assert_eq!(snapshot[1].region, "eu-west");
        assert!(!snapshot[1].up);
        assert_eq!(snapshot[1].edges[0].addr, "127.0.2.1:8080".parse().unwrap());
    }

    #[test]
    fn a_reload_keeps_the_state_of_edges_that_remain() {
        let old = HealthView::from_config(&config::Config::demo());
        old.set_edge(1, 0, false);
        old.set_edge(2, 0, false);
        // eu-west keeps 127.0.2.1 and gains 127.0.2.9; ap-southeast moves.
        let text = config::DEMO_TOML
            .replace(
                "[\"127.0.2.1\", \"127.0.2.3\"]",
                "[\"127.0.2.9\", \"127.0.2.1\"]",
            )
            .replace("[\"127.0.3.1\", \"127.0.3.3\"]", "[\"127.0.3.7\"]");
        let config = config::Config::from_toml(&text, config::ConfigSource::Embedded).unwrap();
        let new = HealthView::from_config(&config);
        new.carry_over(&old);
        assert!(new.edge_up(1, 0), "a new edge starts up");
        assert!(!new.edge_up(1, 1), "127.0.2.1 stays down");
        assert!(new.edge_up(2, 0), "a different address is a different edge");
        assert!(new.edge_up(0, 0));
    }

    #[test]
    fn a_resumed_checker_continues_from_the_view() {
        let settings = config::Config::demo().health;
        let mut down = resumed(false, &settings);
        assert!(!down.is_up());
        assert_eq!(down.record(true, 2, 2), None);
        assert_eq!(down.record(true, 2, 2), Some(true));
        assert!(resumed(true, &settings).is_up());
    }

    #[tokio::test]
    async fn probes_mark_a_dead_edge_down_and_a_live_one_up() {
        // A live "edge": answers 200 to every request.
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_addr = live.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = live.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 1024];
                    let _ = socket.read(&mut buf).await;
                    let _ = socket
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n")
                        .await;
                });
            }
        });
        // A dead one: a port nobody listens on.
        let dead_addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let view = Arc::new(HealthView {
            regions: vec![
                vec![EdgeHealth {
                    addr: live_addr,
                    up: AtomicBool::new(true),
                }],
                vec![EdgeHealth {
                    addr: dead_addr,
                    up: AtomicBool::new(true),
                }],
            ],
            names: vec!["live".into(), "dead".into()],
            generation: AtomicU64::new(0),
        });
        let settings = config::Health {
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(500),
            down_after: 2,
            up_after: 1,
            fail_open: true,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let checks = tokio::spawn(run_checks(
            view.clone(),
            settings,
            "/health".into(),
            async {
                let _ = stopped.await;
            },
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while view.region_up(1) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the dead edge never went down"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Meanwhile the live edge, probed just as often, stayed up.
        assert!(view.region_up(0));
        // The change moved the generation, once per change.
        assert_eq!(view.generation(), 1);
        view.set_edge(1, 0, false);
        assert_eq!(view.generation(), 1, "no change, no new generation");
        let _ = stop.send(());
        checks.await.unwrap();
    }
}
