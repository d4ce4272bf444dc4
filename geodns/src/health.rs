//! Edge health, as GeoDNS sees it and decides it.
//!
//! GeoDNS probes every edge itself, on the data-plane listener clients use
//! (an HTTP GET of `edge.health_path` on the edge's HTTP port), like gdnsd's
//! `http_status` monitor and Route 53's health checks: a region is only as
//! healthy as what its users would reach. Each edge's probed state changes
//! only after `down_after` consecutive failures or `up_after` consecutive
//! successes ([`config::Hysteresis`]), so one lost probe does not move
//! traffic.
//!
//! Its own probes are one vantage point. The others — the other GeoDNS
//! servers, the edges — report what they see ([`crate::vantage`]), and an
//! edge leaves the answers only when a quorum of the vantage points that
//! reported recently sees it down ([`config::Quorum`]): a nameserver cut off
//! from a region does not steer the world away from it. A GeoDNS that hears
//! from no one decides on its own probes.
//!
//! The probers and the vantage exchange write into a shared [`HealthView`];
//! the DNS handler reads the decided state with plain atomic loads on every
//! steered query.

use crate::vantage::{Board, Report};
use config::report::SeenEdge;
use config::{Hysteresis, Quorum};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How this server's own probes are named among the vantage points, in
/// reports and logs.
pub const OWN_PROBES: &str = "this server's probes";

/// The health of every edge, shared between the probers, the vantage
/// exchange and the handler.
#[derive(Debug)]
pub struct HealthView {
    /// `[region][edge]`, aligned with the config's `edge_addresses`.
    regions: Vec<Vec<EdgeHealth>>,
    /// Region names, for reports.
    names: Vec<String>,
    /// Bumped after every change of any edge's decided state, so that
    /// answers remembered under one generation are never served under
    /// another (see [`crate::answer_cache`]).
    generation: AtomicU64,
    /// What the other vantage points said, and when; decisions are made
    /// under this lock, so that they are made one at a time.
    board: Mutex<Board>,
    quorum: Quorum,
    silent_after: Duration,
}

#[derive(Debug)]
struct EdgeHealth {
    addr: SocketAddr,
    /// Whether the edge is in the answers: the quorum's decision.
    up: AtomicBool,
    /// Whether this server's own probes see it up.
    probed: AtomicBool,
}

/// One edge's state, for reports (`/health`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EdgeStatus {
    /// The probed address.
    pub addr: SocketAddr,
    /// Whether GeoDNS answers with it (the vantage points' decision).
    pub up: bool,
    /// Whether this server's own probes see it up: what the other GeoDNS
    /// servers count as this one's view.
    pub probed_up: bool,
    /// What the other vantage points that count see of it.
    pub seen_by: Vec<Seen>,
}

/// What one vantage point sees of an edge.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Seen {
    /// Who: `geodns ns2`, `edge 127.0.2.3:9080`.
    pub vantage: String,
    /// Whether it sees the edge up.
    pub up: bool,
}

/// One region's state, for reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RegionStatus {
    /// The region's name.
    pub region: String,
    /// Whether any of its edges is up.
    pub up: bool,
    /// Its edges.
    pub edges: Vec<EdgeStatus>,
}

fn lock(board: &Mutex<Board>) -> MutexGuard<'_, Board> {
    // The board is only ever replaced whole or changed by methods that
    // cannot panic half-way, so a poisoned lock still holds a whole board.
    board.lock().unwrap_or_else(PoisonError::into_inner)
}

impl HealthView {
    /// Every edge of `config`, all up, no one else heard from yet.
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
                        probed: AtomicBool::new(true),
                    })
                    .collect()
            })
            .collect();
        let names = config.regions.iter().map(|r| r.name.clone()).collect();
        Arc::new(HealthView {
            regions,
            names,
            generation: AtomicU64::new(0),
            board: Mutex::new(Board::default()),
            quorum: config.health.quorum,
            silent_after: config.health.silent_after,
        })
    }

    fn edge(&self, region: usize, edge: usize) -> Option<&EdgeHealth> {
        self.regions.get(region).and_then(|edges| edges.get(edge))
    }

    /// Whether edge `edge` of region `region` is in the answers (unknown
    /// ones are not).
    pub fn edge_up(&self, region: usize, edge: usize) -> bool {
        self.edge(region, edge)
            .is_some_and(|e| e.up.load(Ordering::Relaxed))
    }

    /// Whether this server's own probes see edge `edge` of `region` up.
    pub fn edge_probed_up(&self, region: usize, edge: usize) -> bool {
        self.edge(region, edge)
            .is_some_and(|e| e.probed.load(Ordering::Relaxed))
    }

    /// Whether any edge of `region` is up.
    pub fn region_up(&self, region: usize) -> bool {
        self.regions
            .get(region)
            .is_some_and(|edges| edges.iter().any(|e| e.up.load(Ordering::Relaxed)))
    }

    /// Takes over what `old` knows: every edge here that `old` also has
    /// (same region name, same address) gets its probed and decided state,
    /// and what the other vantage points said is kept; new edges stay up,
    /// as at startup. Then decides again, under this view's rule. Used
    /// when a reload replaces the view.
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
                    edge.probed
                        .store(old_edge.probed.load(Ordering::Relaxed), Ordering::Relaxed);
                }
                self.generation.fetch_add(1, Ordering::SeqCst);
            }
        }
        let heard = lock(&old.board).clone();
        let mut board = lock(&self.board);
        *board = heard;
        self.decide(&board);
    }

    /// Sets one edge's decided state: whether answers carry it. The
    /// quorum calls it; tests set states directly.
    pub fn set_edge(&self, region: usize, edge: usize, up: bool) {
        if let Some(e) = self.edge(region, edge)
            && e.up.swap(up, Ordering::SeqCst) != up
        {
            // After the state: whoever sees the new generation sees the
            // new state.
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Sets what this server's own probes see of one edge, and decides
    /// again.
    pub fn set_probed(&self, region: usize, edge: usize, up: bool) {
        let board = lock(&self.board);
        if let Some(e) = self.edge(region, edge)
            && e.probed.swap(up, Ordering::SeqCst) != up
        {
            self.decide(&board);
        }
    }

    /// Takes in what the other vantage points said (heard `at`), forgets
    /// those silent for longer than `health.silent_after`, and decides
    /// again if anything changed.
    pub fn receive(&self, reports: Vec<Report>, at: Instant) {
        let mut board = lock(&self.board);
        let mut changed = false;
        for report in reports {
            changed |= board.record(report, at);
        }
        for forgotten in board.forget_silent(at, self.silent_after) {
            tracing::warn!(
                vantage = %forgotten,
                silent_for = ?self.silent_after,
                "a vantage point fell silent; it no longer counts"
            );
            changed = true;
        }
        if changed {
            self.decide(&board);
        }
    }

    /// Every edge's decided state from its own probes and `board`, under
    /// the quorum; changes are logged with who saw what.
    fn decide(&self, board: &Board) {
        for (region, (edges, name)) in self.regions.iter().zip(&self.names).enumerate() {
            for (index, edge) in edges.iter().enumerate() {
                let probed = edge.probed.load(Ordering::SeqCst);
                let others: Vec<(&str, bool)> = board.views_of(edge.addr).collect();
                let reporting = 1 + others.len();
                let down = usize::from(!probed) + others.iter().filter(|(_, up)| !up).count();
                let up = !self.quorum.is_down(down, reporting);
                let was = edge.up.load(Ordering::SeqCst);
                if up == was {
                    continue;
                }
                self.set_edge(region, index, up);
                let mut seen_down: Vec<&str> = others
                    .iter()
                    .filter(|(_, up)| !up)
                    .map(|(vantage, _)| *vantage)
                    .collect();
                if !probed {
                    seen_down.insert(0, OWN_PROBES);
                }
                let seen_down = match seen_down.is_empty() {
                    true => "no one".to_owned(),
                    false => seen_down.join(", "),
                };
                if up {
                    tracing::info!(
                        region = %name,
                        edge = %edge.addr,
                        "the edge is answered again: down as seen by {seen_down} ({down} of {reporting} vantage points)"
                    );
                } else {
                    tracing::warn!(
                        region = %name,
                        edge = %edge.addr,
                        "the edge leaves the answers: down as seen by {seen_down} ({down} of {reporting} vantage points)"
                    );
                }
            }
        }
    }

    /// The current generation: it changes whenever any edge's decided
    /// state does.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// What this server's own probes see of every edge: its report to the
    /// other vantage points.
    pub fn own_view(&self) -> Vec<SeenEdge> {
        self.regions
            .iter()
            .flatten()
            .map(|e| SeenEdge {
                addr: e.addr,
                up: e.probed.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Every region's state, in config order, with who sees what.
    pub fn snapshot(&self) -> Vec<RegionStatus> {
        let board = lock(&self.board);
        self.regions
            .iter()
            .zip(&self.names)
            .map(|(edges, name)| {
                let edges: Vec<EdgeStatus> = edges
                    .iter()
                    .map(|e| EdgeStatus {
                        addr: e.addr,
                        up: e.up.load(Ordering::Relaxed),
                        probed_up: e.probed.load(Ordering::Relaxed),
                        seen_by: board
                            .views_of(e.addr)
                            .map(|(vantage, up)| Seen {
                                vantage: vantage.to_owned(),
                                up,
                            })
                            .collect(),
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

    /// How many other vantage points count now.
    pub fn vantage_points(&self) -> usize {
        lock(&self.board).len()
    }
}

/// The running health checks of one view, until stopped (a reload stops
/// them and starts new ones on the new view): this server's probes of
/// every edge, and the exchange with the other vantage points.
pub struct Checks {
    stop: tokio::sync::watch::Sender<()>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Resolves when the sender of `stop` is dropped.
async fn stopped(mut stop: tokio::sync::watch::Receiver<()>) {
    while stop.changed().await.is_ok() {}
}

/// Exchanges views over `transport` once every `interval` until
/// `shutdown`, handing what was heard to `view`.
async fn exchange(
    view: Arc<HealthView>,
    mut transport: impl crate::vantage::Transport,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticks.tick() => {}
        }
        let own = view.own_view();
        let reports = tokio::select! {
            _ = &mut shutdown => return,
            reports = transport.exchange(&own) => reports,
        };
        view.receive(reports, tokio::time::Instant::now().into_std());
    }
}

impl Checks {
    /// Starts probing every edge of `view` as `config` says, as GeoDNS
    /// server `me` (an index into `config.geodns.servers`), and exchanging
    /// views with the other vantage points over `transport`.
    pub fn start(
        view: Arc<HealthView>,
        config: &config::Config,
        me: usize,
        transport: impl crate::vantage::Transport + 'static,
    ) -> Checks {
        let (stop, receiver) = tokio::sync::watch::channel(());
        let probe_from = config.geodns.servers.get(me).and_then(|s| s.probe_from);
        let probes = tokio::spawn(run_checks(
            view.clone(),
            config.health.clone(),
            config.edge.health_path.clone(),
            probe_from,
            stopped(receiver.clone()),
        ));
        let exchange = tokio::spawn(exchange(
            view,
            transport,
            config.health.interval,
            stopped(receiver),
        ));
        Checks {
            stop,
            tasks: vec![probes, exchange],
        }
    }

    /// Stops every prober and the exchange, and waits until they are gone,
    /// so none writes into the view afterwards.
    pub async fn stop(self) {
        drop(self.stop);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Probes every edge of `view` until `shutdown` resolves, from
/// `probe_from` when given.
pub async fn run_checks(
    view: Arc<HealthView>,
    settings: config::Health,
    health_path: String,
    probe_from: Option<IpAddr>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let client = match reqwest::Client::builder()
        .no_proxy()
        // A fresh connection per probe: the check is that the edge accepts
        // connections now, not that an old one is still open.
        .pool_max_idle_per_host(0)
        .timeout(settings.timeout)
        .local_address(probe_from)
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
    let mut state = resumed(view.edge_probed_up(region, edge), &settings);
    let mut ticks = tokio::time::interval(settings.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let name = view.names.get(region).cloned().unwrap_or_default();
    loop {
        ticks.tick().await;
        let result = probe(&client, &url, settings.timeout).await;
        if let Some(up) = state.record(result.is_ok(), settings.down_after, settings.up_after) {
            match (&result, up) {
                (_, true) => tracing::info!(region = %name, %url, "the probes see the edge up"),
                (Err(reason), false) => {
                    tracing::warn!(region = %name, %url, %reason, "the probes see the edge down")
                }
                (Ok(()), false) => {}
            }
            view.set_probed(region, edge, up);
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
    use crate::testing::eventually;

    fn report(vantage: &str, edges: &[(&str, bool)]) -> Report {
        Report {
            vantage: vantage.into(),
            edges: edges
                .iter()
                .map(|(addr, up)| SeenEdge {
                    addr: addr.parse().unwrap(),
                    up: *up,
                })
                .collect(),
        }
    }

    /// The demo's view under `quorum`, with vantage points silent after 2 s.
    fn demo_view(quorum: Quorum) -> Arc<HealthView> {
        let mut config = config::Config::demo();
        config.health.quorum = quorum;
        config.health.silent_after = Duration::from_secs(2);
        HealthView::from_config(&config)
    }

    const EU: &str = "127.0.2.1:8080";

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
        assert_eq!(snapshot[1].edges[0].addr, EU.parse().unwrap());
        assert!(
            snapshot[1].edges[0].probed_up,
            "its own probes never said otherwise"
        );
    }

    #[test]
    fn a_geodns_alone_decides_on_its_own_probes() {
        let view = demo_view(Quorum::Majority);
        let before = view.generation();
        view.set_probed(1, 0, false);
        assert!(!view.edge_up(1, 0) && !view.edge_probed_up(1, 0));
        assert!(
            view.generation() > before,
            "a decision moves the generation"
        );
        view.set_probed(1, 0, true);
        assert!(view.edge_up(1, 0));
        // Edges nobody else reports on are decided the same way, with
        // others reporting about other edges.
        let now = Instant::now();
        view.receive(vec![report("geodns ns2", &[("127.0.1.1:8080", true)])], now);
        view.set_probed(1, 0, false);
        assert!(!view.edge_up(1, 0));
    }

    #[test]
    fn a_server_cut_off_from_a_region_follows_those_that_see_it() {
        let view = demo_view(Quorum::Majority);
        let start = Instant::now();
        // ns1 (this view) cannot reach eu-west; ns2 can.
        view.set_probed(1, 0, false);
        view.receive(vec![report("geodns ns2", &[(EU, true)])], start);
        assert!(view.edge_up(1, 0), "1 of 2 down is no majority");
        let eu = &view.snapshot()[1].edges[0];
        assert!(eu.up && !eu.probed_up);
        assert_eq!(
            eu.seen_by,
            [Seen {
                vantage: "geodns ns2".into(),
                up: true
            }]
        );
        // Its own view is what it tells the others: down.
        let own = view.own_view();
        assert!(own.contains(&SeenEdge {
            addr: EU.parse().unwrap(),
            up: false
        }));

        // The region really goes: ns2 sees it too.
        view.receive(
            vec![report("geodns ns2", &[(EU, false)])],
            start + Duration::from_millis(500),
        );
        assert!(!view.edge_up(1, 0), "2 of 2 down");
        // It comes back for ns2 and for an edge of the region; ns1 still
        // cannot see it: 1 of 3 down.
        view.receive(
            vec![
                report("geodns ns2", &[(EU, true)]),
                report("edge 127.0.2.3:9080", &[(EU, true)]),
            ],
            start + Duration::from_secs(1),
        );
        assert!(view.edge_up(1, 0));

        // Both fall silent: after 2 s without a word, they no longer count,
        // and ns1 decides alone again.
        view.receive(Vec::new(), start + Duration::from_millis(2900));
        assert!(view.edge_up(1, 0), "heard from 1.9 s ago: still counts");
        assert_eq!(view.vantage_points(), 2);
        view.receive(Vec::new(), start + Duration::from_millis(3100));
        assert_eq!(view.vantage_points(), 0);
        assert!(!view.edge_up(1, 0), "alone, its probes decide");
        assert!(view.snapshot()[1].edges[0].seen_by.is_empty());
    }

    /// The quorum decision against the failure cases, as a table: what
    /// this server's (ns1's) own probes see of eu-west's edge, what the
    /// others report, and whether ns1 keeps answering with it.
    #[test]
    fn quorum_decisions_against_the_failure_cases() {
        const NS2: &str = "geodns ns2";
        const PEER: &str = "edge 127.0.2.3:9080";
        // (case, quorum, own probes see it up, reports heard now, kept in answers)
        type Case<'a> = (&'a str, Quorum, bool, &'a [(&'a str, bool)], bool);
        #[rustfmt::skip]
        let table: [Case; 11] = [
            ("all well", Quorum::Majority, true, &[(NS2, true), (PEER, true)], true),
            ("the edge crashes", Quorum::Majority, false, &[(NS2, false), (PEER, false)], false),
            ("the edge crashes, no edge reports", Quorum::Majority, false, &[(NS2, false)], false),
            // Its edges are cut off too: their reports stop (not heard).
            ("the region is partitioned from everyone", Quorum::Majority, false, &[(NS2, false)], false),
            ("ns1 is partitioned from the region", Quorum::Majority, false, &[(NS2, true)], true),
            ("ns1 is partitioned from the region, an edge reports", Quorum::Majority, false, &[(NS2, true), (PEER, true)], true),
            ("ns2 is partitioned from the region", Quorum::Majority, true, &[(NS2, false)], true),
            ("ns1 is alone and sees the region down", Quorum::Majority, false, &[], false),
            ("ns1 is partitioned from the region and ns2, an edge reports", Quorum::Majority, false, &[(PEER, true)], true),
            // Why not "any": one cut-off nameserver steers the world away.
            ("quorum 1: ns1 is partitioned from the region", Quorum::AtLeast(1), false, &[(NS2, true)], false),
            // Why not "all": one stale view keeps a crashed edge in.
            ("quorum 3: the edge crashes, one report is stale", Quorum::AtLeast(3), false, &[(NS2, false), (PEER, true)], true),
        ];
        let now = Instant::now();
        for (case, quorum, own, reports, kept) in table {
            let view = demo_view(quorum);
            view.set_probed(1, 0, own);
            let reports = reports
                .iter()
                .map(|(v, up)| report(v, &[(EU, *up)]))
                .collect();
            view.receive(reports, now);
            assert_eq!(view.edge_up(1, 0), kept, "{case}");
            assert_eq!(view.edge_probed_up(1, 0), own, "{case}");
        }

        // A nameserver that crashed stops counting once silent: its last
        // word (down) does not keep the edge out after it is gone.
        let view = demo_view(Quorum::Majority);
        view.receive(
            vec![report(NS2, &[(EU, false)]), report(PEER, &[(EU, false)])],
            now,
        );
        assert!(!view.edge_up(1, 0), "2 of 3 down");
        view.receive(
            vec![report(PEER, &[(EU, true)])],
            now + Duration::from_secs(1),
        );
        assert!(view.edge_up(1, 0), "1 of 3 down");
        view.receive(
            vec![report(PEER, &[(EU, false)])],
            now + Duration::from_millis(2500),
        );
        assert!(view.edge_up(1, 0), "ns2 is silent: 1 of 2 down");
    }

    #[test]
    fn a_number_as_quorum_counts_down_votes() {
        let start = Instant::now();
        // Any vantage point seeing it down is enough.
        let one = demo_view(Quorum::AtLeast(1));
        one.receive(vec![report("geodns ns2", &[(EU, false)])], start);
        assert!(!one.edge_up(1, 0), "ns2 alone sees it down");
        // Two are needed: ns1 and ns2 together, not one of them.
        let two = demo_view(Quorum::AtLeast(2));
        two.receive(
            vec![
                report("geodns ns2", &[(EU, false)]),
                report("geodns ns3", &[(EU, true)]),
            ],
            start,
        );
        assert!(two.edge_up(1, 0));
        two.set_probed(1, 0, false);
        assert!(!two.edge_up(1, 0));
    }

    #[test]
    fn reports_on_edges_the_config_does_not_have_change_nothing() {
        let view = demo_view(Quorum::AtLeast(1));
        let before = view.generation();
        view.receive(
            vec![report("geodns ns2", &[("127.0.9.9:8080", false)])],
            Instant::now(),
        );
        assert_eq!(view.generation(), before);
        assert!((0..3).all(|region| view.region_up(region)));
    }

    #[test]
    fn a_reload_keeps_the_state_of_edges_that_remain() {
        let old = demo_view(Quorum::Majority);
        old.set_probed(1, 0, false);
        old.set_probed(2, 0, false);
        old.receive(
            vec![report("geodns ns2", &[("127.0.3.7:8080", false)])],
            Instant::now(),
        );
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
        assert!(!new.edge_probed_up(1, 1));
        assert!(
            new.edge_up(2, 0),
            "a different address is a different edge: its own probes say up, ns2 down"
        );
        assert_eq!(new.vantage_points(), 1, "what ns2 said is kept");
        assert_eq!(new.snapshot()[2].edges[0].seen_by.len(), 1);
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

    /// A live "edge": answers 200 to every request, until the test ends.
    async fn live_edge() -> SocketAddr {
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
        live_addr
    }

    /// A view of one edge per region at `addrs`.
    fn view_of(addrs: &[SocketAddr]) -> Arc<HealthView> {
        Arc::new(HealthView {
            regions: addrs
                .iter()
                .map(|addr| {
                    vec![EdgeHealth {
                        addr: *addr,
                        up: AtomicBool::new(true),
                        probed: AtomicBool::new(true),
                    }]
                })
                .collect(),
            names: (0..addrs.len()).map(|i| format!("region-{i}")).collect(),
            generation: AtomicU64::new(0),
            board: Mutex::new(Board::default()),
            quorum: Quorum::Majority,
            silent_after: Duration::from_secs(2),
        })
    }

    fn fast_settings() -> config::Health {
        config::Health {
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(500),
            down_after: 2,
            up_after: 1,
            fail_open: true,
            quorum: Quorum::Majority,
            silent_after: Duration::from_secs(2),
        }
    }

    #[tokio::test]
    async fn probes_mark_a_dead_edge_down_and_a_live_one_up() {
        let live_addr = live_edge().await;
        // A dead one: a port nobody listens on.
        let dead_addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let view = view_of(&[live_addr, dead_addr]);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let checks = tokio::spawn(run_checks(
            view.clone(),
            fast_settings(),
            "/health".into(),
            None,
            async {
                let _ = stopped.await;
            },
        ));
        eventually("the dead edge goes down", || !view.region_up(1)).await;
        // Meanwhile the live edge, probed just as often, stayed up.
        assert!(view.region_up(0));
        // The change moved the generation, once per change.
        assert_eq!(view.generation(), 1);
        view.set_edge(1, 0, false);
        assert_eq!(view.generation(), 1, "no change, no new generation");
        let _ = stop.send(());
        checks.await.unwrap();
    }

    /// Runs `view`'s probes from `from` until `done` holds.
    async fn probe_from_until(
        view: &Arc<HealthView>,
        from: &str,
        what: &str,
        done: impl Fn() -> bool,
    ) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let checks = tokio::spawn(run_checks(
            view.clone(),
            fast_settings(),
            "/health".into(),
            Some(from.parse().unwrap()),
            async {
                let _ = stopped.await;
            },
        ));
        eventually(what, done).await;
        let _ = stop.send(());
        checks.await.unwrap();
    }

    #[tokio::test]
    async fn probes_leave_from_probe_from() {
        let live_addr = live_edge().await;
        // 192.0.2.1 (TEST-NET-1) is on no interface of this machine, so
        // nothing can leave from it: the live edge is seen down.
        let view = view_of(&[live_addr]);
        let what = "the probes fail from an address this host lacks";
        probe_from_until(&view, "192.0.2.1", what, || !view.edge_probed_up(0, 0)).await;
        // From an address it has, the same edge is seen up.
        view.set_probed(0, 0, false);
        let what = "the probes succeed from 127.0.0.1";
        probe_from_until(&view, "127.0.0.1", what, || view.edge_probed_up(0, 0)).await;
    }
}
