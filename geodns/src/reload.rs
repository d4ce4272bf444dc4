//! Reloading the config and the geo database on SIGHUP, without dropping
//! or mis-answering a query.
//!
//! A reload reads the config file again (and the database it names) and
//! builds a whole new [`Snapshot`] on a blocking thread while the old one
//! keeps answering; then it stops the old health checks, carries the health
//! of every edge that remains over to the new view, swaps the snapshot in
//! with one atomic store, and starts checking the new view. A query is
//! answered from the snapshot it started with, entirely.
//!
//! A config or database that does not load is refused: the reason is logged,
//! `meridian_dns_reload_failures_total` counts it, and the running snapshot
//! stays. So is a load that takes longer than its time limit
//! ([`crate::geo::LOAD_TIME_LIMIT`]): the load itself watches the limit and
//! gives up. The listen addresses are bound once; a reload that changes
//! them says so and applies everything else.
//!
//! Signals are handled while a load runs, because the load runs on its own
//! thread and [`upkeep`] waits for it alongside the signals: a SIGHUP that
//! arrives during a reload is logged, and coalesced into one more reload
//! after it (the files may have changed after the running load read them;
//! any number of SIGHUPs during one load make one more reload). Shutting
//! down calls the running load off and waits only for it to notice, which
//! it does within about a millisecond of work.

use crate::error::{GeoDnsError, server_index};
use crate::geo::{LOAD_TIME_LIMIT, LoadLimit};
use crate::health::Checks;
use crate::metrics::DnsMetrics;
use crate::snapshot::{Live, Snapshot};
use crate::vantage::bus::BusReports;
use crate::vantage::http::HttpPolling;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::{JoinError, JoinHandle};

/// SIGHUP deliveries, once [`Hangups::listen`] has replaced the default
/// action (terminate) with "reload".
pub struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
    /// Requests to load a given source (a cluster config revision the
    /// process has just written to its applied file): handled like a
    /// SIGHUP, but loading from that source.
    requests: Option<tokio::sync::mpsc::Receiver<config::ConfigSource>>,
    /// Hang-ups sent by a test instead of the kernel.
    #[cfg(test)]
    sent: Option<tokio::sync::mpsc::Receiver<()>>,
}

impl Hangups {
    /// Starts catching SIGHUP.
    pub fn listen() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Hangups {
                signal: Some(signal(SignalKind::hangup())?),
                requests: None,
                #[cfg(test)]
                sent: None,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Hangups::none())
        }
    }

    /// No signals: reloads happen only when asked through [`Reloader`].
    pub fn none() -> Self {
        Hangups {
            #[cfg(unix)]
            signal: None,
            requests: None,
            #[cfg(test)]
            sent: None,
        }
    }

    /// Also takes requests to reload from a given source (see
    /// [`crate::run`]).
    pub fn with_requests(
        mut self,
        requests: tokio::sync::mpsc::Receiver<config::ConfigSource>,
    ) -> Self {
        self.requests = Some(requests);
        self
    }

    /// Hang-ups that arrive when the test sends them, one at a time: the
    /// sender's capacity is back to 1 once [`keep_up`] has taken one.
    #[cfg(test)]
    fn sent_by_test() -> (tokio::sync::mpsc::Sender<()>, Self) {
        let (send, receive) = tokio::sync::mpsc::channel(1);
        let mut hangups = Hangups::none();
        hangups.sent = Some(receive);
        (send, hangups)
    }

    /// The next SIGHUP (`None`: reload from where the live config came
    /// from) or request (`Some`: load from that source); never, without
    /// either.
    async fn recv(&mut self) -> Option<config::ConfigSource> {
        let requested = async {
            match self.requests.as_mut() {
                Some(requests) => match requests.recv().await {
                    Some(source) => source,
                    // The requester is gone: no more requests.
                    None => std::future::pending().await,
                },
                None => std::future::pending().await,
            }
        };
        let hung_up = async {
            #[cfg(test)]
            if let Some(sent) = self.sent.as_mut()
                && sent.recv().await.is_some()
            {
                return;
            }
            #[cfg(unix)]
            if let Some(signal) = self.signal.as_mut()
                && signal.recv().await.is_some()
            {
                return;
            }
            std::future::pending::<()>().await;
        };
        tokio::select! {
            source = requested => Some(source),
            () = hung_up => None,
        }
    }
}

/// Keeps GeoDNS's background work going until `shutdown`: the health checks
/// of the current snapshot, and a reload on every SIGHUP (see the module
/// documentation for SIGHUPs during a reload, and for shutting down during
/// one).
pub async fn upkeep(
    live: Arc<Live>,
    metrics: Arc<DnsMetrics>,
    server: String,
    hangups: Hangups,
    shutdown: impl Future<Output = ()>,
) {
    match Reloader::start(live, metrics, server) {
        Ok(reloader) => keep_up(reloader, hangups, shutdown).await,
        Err(error) => tracing::error!(%error, "cannot check the edges' health"),
    }
}

/// [`upkeep`] with a given reloader.
async fn keep_up(mut reloader: Reloader, mut hangups: Hangups, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut loading: Option<Loading> = None;
    // A SIGHUP or request came during the running load: reload once more
    // after it (from the requested source, if any was: it is newer than
    // the live one).
    let mut again: Option<Option<config::ConfigSource>> = None;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            from = hangups.recv() => {
                if loading.is_none() {
                    match &from {
                        None => tracing::info!("SIGHUP: reloading the configuration"),
                        Some(source) => tracing::info!("applying {source}"),
                    }
                    loading = Some(reloader.begin(from));
                } else {
                    tracing::info!(
                        "SIGHUP or new revision during a reload: the configuration will be \
                         reloaded again once this reload is done"
                    );
                    let pending = again.take().flatten();
                    again = Some(from.or(pending));
                }
            }
            loaded = async {
                match loading.as_mut() {
                    Some(running) => (&mut running.task).await,
                    None => std::future::pending().await,
                }
            }, if loading.is_some() => {
                loading = None;
                // The outcome is logged and counted inside.
                let _ = reloader.finish(loaded).await;
                if let Some(from) = again.take() {
                    tracing::info!("reloading again, for what came during the last reload");
                    loading = Some(reloader.begin(from));
                }
            }
        }
    }
    if let Some(running) = loading {
        tracing::info!("shutting down: calling off the reload in progress");
        running.limit.cancel();
        // It notices within about a millisecond of work; its result no
        // longer matters.
        let _ = running.task.await;
    }
    reloader.stop().await;
}

/// How a reload loads the next snapshot: from where the config came from,
/// counting into the metrics, within the limit. Tests put in their own.
type Load = dyn Fn(&config::ConfigSource, &DnsMetrics, &LoadLimit) -> Result<Snapshot, GeoDnsError>
    + Send
    + Sync;

/// A load running on a blocking thread.
struct Loading {
    /// Its limit, whose switch calls it off.
    limit: LoadLimit,
    task: JoinHandle<Result<Snapshot, GeoDnsError>>,
}

/// Owns the health checks of the live snapshot and replaces the snapshot.
pub struct Reloader {
    live: Arc<Live>,
    metrics: Arc<DnsMetrics>,
    /// Which of the config's GeoDNS servers this process is; a reload to a
    /// config without it is refused.
    server: String,
    checks: Option<Checks>,
    /// How long one load may take.
    time_limit: Duration,
    load: Arc<Load>,
}

/// Reads the config again from `source` and loads everything it names.
fn load_from(
    source: &config::ConfigSource,
    metrics: &DnsMetrics,
    limit: &LoadLimit,
) -> Result<Snapshot, GeoDnsError> {
    let config = config::Config::load_again(source)?;
    Snapshot::load_within(config, metrics, limit)
}

/// Starts the health checks of `snapshot` as server `me` of its config.
fn checks(snapshot: &Snapshot, me: usize) -> Checks {
    let config = &snapshot.config;
    // In a cluster the vantage points' views travel on the bus; on a
    // single host they are polled from the admin listeners.
    match &config.cluster {
        Some(bus) => {
            let transport = BusReports::new(bus, config, me);
            Checks::start(snapshot.health.clone(), config, me, transport)
        }
        None => {
            let transport = HttpPolling::from_config(config, me, config.health.timeout);
            Checks::start(snapshot.health.clone(), config, me, transport)
        }
    }
}

impl Reloader {
    /// Starts health-checking the edges of the snapshot `live` holds, as
    /// its config's GeoDNS server `server`.
    pub fn start(
        live: Arc<Live>,
        metrics: Arc<DnsMetrics>,
        server: String,
    ) -> Result<Self, GeoDnsError> {
        let current = live.load_full();
        let me = server_index(&current.config, &server)?;
        Ok(Reloader {
            checks: Some(checks(&current, me)),
            live,
            metrics,
            server,
            time_limit: LOAD_TIME_LIMIT,
            load: Arc::new(load_from),
        })
    }

    /// Reloads the config from where the live one came from. On failure
    /// the live snapshot stays, and the error says why.
    pub async fn reload(&mut self) -> Result<(), GeoDnsError> {
        let mut loading = self.begin(None);
        let loaded = (&mut loading.task).await;
        self.finish(loaded).await
    }

    /// Starts loading the next snapshot on a blocking thread, within the
    /// time limit from now: from `from`, or from where the live config
    /// came from.
    fn begin(&self, from: Option<config::ConfigSource>) -> Loading {
        let limit = LoadLimit::new(self.time_limit);
        let source = from.unwrap_or_else(|| self.live.load().config.source.clone());
        let metrics = self.metrics.clone();
        let load = self.load.clone();
        let load_limit = limit.clone();
        let task = tokio::task::spawn_blocking(move || load(&source, &metrics, &load_limit));
        Loading { limit, task }
    }

    /// Swaps in what a load produced, or refuses it: logged and counted.
    async fn finish(
        &mut self,
        loaded: Result<Result<Snapshot, GeoDnsError>, JoinError>,
    ) -> Result<(), GeoDnsError> {
        let new = match loaded
            .map_err(|e| GeoDnsError::Server(format!("the reload task failed: {e}")))
            .and_then(|loaded| loaded)
            .and_then(|new| server_index(&new.config, &self.server).map(|me| (me, new)))
        {
            Ok(new) => new,
            Err(error) => {
                self.metrics.reload_failed();
                tracing::error!(
                    %error,
                    "reload refused; still serving the configuration loaded before"
                );
                return Err(error);
            }
        };
        let (me, new) = new;
        let old = self.live.load_full();
        let (was, now) = (
            old.config.geodns.server(&self.server),
            new.config.geodns.server(&self.server),
        );
        for (key, was, now) in [
            ("listen", was.map(|s| s.listen), now.map(|s| s.listen)),
            (
                "admin_listen",
                was.map(|s| s.admin_listen),
                now.map(|s| s.admin_listen),
            ),
        ] {
            let (Some(was), Some(now)) = (was, now) else {
                continue;
            };
            if was != now {
                tracing::warn!(
                    "the {key} address of GeoDNS server {} changed from {was} to {now}: that takes a restart; everything else is reloaded",
                    self.server
                );
            }
        }
        if old.config.geodns.admin_token != new.config.geodns.admin_token {
            tracing::warn!(
                "geodns.admin_token changed: that takes a restart; the admin listener keeps the token it started with"
            );
        }
        // No prober may write into the old view after its states are copied.
        if let Some(checks) = self.checks.take() {
            checks.stop().await;
        }
        new.health.carry_over(&old.health);
        let new = Arc::new(new);
        let regions = new.config.region_names().join(", ");
        let config = new.config.clone();
        self.live.store(new.clone());
        self.checks = Some(checks(&new, me));
        self.metrics.reloaded();
        tracing::info!(source = %config.source, %regions, "configuration reloaded");
        Ok(())
    }

    /// Stops the health checks.
    pub async fn stop(mut self) {
        if let Some(checks) = self.checks.take() {
            checks.stop().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::eventually;
    use std::net::IpAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn at(live: &Live, ip: &str) -> Vec<usize> {
        live.load()
            .table
            .decide(ip.parse::<IpAddr>().unwrap())
            .order
            .to_vec()
    }

    #[tokio::test]
    async fn a_reload_swaps_everything_and_a_bad_one_changes_nothing() {
        let dir = std::env::temp_dir().join(format!("geodns-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("meridian.toml");
        // Long health intervals: the edges do not exist, and this test is
        // not about their probes.
        let base = config::DEMO_TOML.replace("interval_ms = 500", "interval_ms = 300000");
        std::fs::write(&path, &base).unwrap();
        let metrics = Arc::new(DnsMetrics::new().unwrap());
        let config = config::Config::load(&path).unwrap();
        let live = Arc::new(Live::from_pointee(
            Snapshot::load(config, &metrics).unwrap(),
        ));
        let mut reloader = Reloader::start(live.clone(), metrics.clone(), "ns1".into()).unwrap();
        live.load().health.set_probed(0, 0, false);
        assert!(
            !live.load().health.edge_up(0, 0),
            "alone, its probes decide"
        );
        assert_eq!(at(&live, "81.2.69.1"), [1, 0, 2]);

        // GB now goes to ap-southeast first; eu-west's edge moves.
        let changed = base.replace("127.0.2.1", "127.0.2.5").replacen(
            "[health]",
            "[geodns.overrides]\ncountries = { GB = [\"ap-southeast\"] }\n\n[health]",
            1,
        );
        std::fs::write(&path, &changed).unwrap();
        reloader.reload().await.unwrap();
        assert_eq!(at(&live, "81.2.69.1"), [2, 1, 0]);
        let snapshot = live.load();
        assert!(!snapshot.health.edge_up(0, 0), "us-east's edge stays down");
        assert!(snapshot.health.edge_up(1, 0), "the moved edge starts up");
        assert!(
            metrics
                .render(&snapshot.health)
                .contains("meridian_dns_reloads_total 1")
        );

        // Broken three ways (a bad value, a database that is not one, a
        // config in which this process's server is gone): each refused,
        // and nothing changes.
        std::fs::write(dir.join("bad.mmdb"), b"not a database").unwrap();
        let ns1_gone = "no GeoDNS server named \"ns1\" (it has ns3, ns2)";
        for (from, to, says) in [
            (
                "latitude = 53.35",
                "latitude = 153.35",
                "region[1].latitude",
            ),
            (
                "geo_database = \"embedded\"",
                "geo_database = \"bad.mmdb\"",
                "bad.mmdb",
            ),
            ("name = \"ns1\"", "name = \"ns3\"", ns1_gone),
        ] {
            assert!(changed.contains(from), "the demo no longer says {from}");
            std::fs::write(&path, changed.replace(from, to)).unwrap();
            let error = reloader.reload().await.unwrap_err();
            assert!(error.to_string().contains(says), "{error}");
            assert_eq!(at(&live, "81.2.69.1"), [2, 1, 0]);
        }
        let text = metrics.render(&live.load().health);
        assert!(
            text.contains("meridian_dns_reload_failures_total 3"),
            "{text}"
        );
        reloader.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_loads_its_source_and_a_sighup_then_reloads_that_source() {
        let dir = std::env::temp_dir().join(format!("geodns-request-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let base = config::DEMO_TOML.replace("interval_ms = 500", "interval_ms = 300000");
        let own = dir.join("own.toml");
        std::fs::write(&own, &base).unwrap();
        // What a member would have written to its applied file.
        let applied = dir.join("applied.toml");
        let gb_to = |region: &str| {
            base.replacen(
                "[health]",
                &format!("[geodns.overrides]\ncountries = {{ GB = [\"{region}\"] }}\n\n[health]"),
                1,
            )
        };
        std::fs::write(&applied, gb_to("ap-southeast")).unwrap();
        let metrics = Arc::new(DnsMetrics::new().unwrap());
        let config = config::Config::load(&own).unwrap();
        let live = Arc::new(Live::from_pointee(
            Snapshot::load(config, &metrics).unwrap(),
        ));
        let reloader = Reloader::start(live.clone(), metrics.clone(), "ns1".into()).unwrap();
        let (request, requests) = tokio::sync::mpsc::channel(1);
        let (hang_up, hangups) = Hangups::sent_by_test();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let upkeep = tokio::spawn(keep_up(reloader, hangups.with_requests(requests), async {
            let _ = stopped.await;
        }));

        let requested = config::ConfigSource::File(applied.clone());
        request.send(requested.clone()).await.unwrap();
        eventually("the requested source is loaded", || {
            live.load().config.source == requested
        })
        .await;
        assert_eq!(at(&live, "81.2.69.1"), [2, 1, 0]);

        // A SIGHUP reloads the live config's source: the applied file,
        // not the file the process started with.
        std::fs::write(&applied, gb_to("us-east")).unwrap();
        hang_up.send(()).await.unwrap();
        eventually("the SIGHUP reloads the applied file", || {
            at(&live, "81.2.69.1") == [0, 1, 2]
        })
        .await;
        stop.send(()).unwrap();
        upkeep.await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The demo, live, with health checks that never probe during a test.
    fn demo_live() -> (Arc<Live>, Arc<DnsMetrics>) {
        let text = config::DEMO_TOML.replace("interval_ms = 500", "interval_ms = 300000");
        let config = config::Config::from_toml(&text, config::ConfigSource::Embedded).unwrap();
        let metrics = Arc::new(DnsMetrics::new().unwrap());
        let snapshot = Snapshot::load(config, &metrics).unwrap();
        (Arc::new(Live::from_pointee(snapshot)), metrics)
    }

    fn failures(metrics: &DnsMetrics, live: &Live) -> String {
        let text = metrics.render(&live.load().health);
        text.lines()
            .find(|l| l.starts_with("meridian_dns_reload_failures_total "))
            .unwrap_or_default()
            .to_owned()
    }

    #[tokio::test]
    async fn a_reload_out_of_time_is_refused_and_counted() {
        let (live, metrics) = demo_live();
        let before = live.load().id;
        let mut reloader = Reloader::start(live.clone(), metrics.clone(), "ns1".into()).unwrap();
        reloader.time_limit = Duration::ZERO;
        let error = reloader.reload().await.unwrap_err();
        assert!(
            error.to_string().contains("took longer than 0 s"),
            "{error}"
        );
        assert_eq!(live.load().id, before, "the old snapshot stays");
        assert_eq!(
            failures(&metrics, &live),
            "meridian_dns_reload_failures_total 1"
        );
        reloader.stop().await;
    }

    /// A load that runs until the test releases it or it is called off;
    /// how many were started and how many were called off.
    struct Blocking {
        started: Arc<AtomicUsize>,
        cancelled: Arc<AtomicUsize>,
        release: std::sync::mpsc::Sender<()>,
    }

    fn blocking(reloader: &mut Reloader) -> Blocking {
        let started = Arc::new(AtomicUsize::new(0));
        let cancelled = Arc::new(AtomicUsize::new(0));
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = std::sync::Mutex::new(released);
        let (count, calls_off) = (started.clone(), cancelled.clone());
        reloader.load = Arc::new(move |_, _, limit| {
            count.fetch_add(1, Ordering::SeqCst);
            loop {
                if let Err(error) = limit.check("the test's load") {
                    calls_off.fetch_add(1, Ordering::SeqCst);
                    return Err(error.into());
                }
                let waited = released
                    .lock()
                    .map(|r| r.recv_timeout(Duration::from_millis(1)).is_ok());
                if waited.unwrap_or(true) {
                    return Err(GeoDnsError::Server("the test's load is done".into()));
                }
            }
        });
        Blocking {
            started,
            cancelled,
            release,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn signals_are_handled_while_a_load_runs() {
        let (live, metrics) = demo_live();
        let mut reloader = Reloader::start(live.clone(), metrics.clone(), "ns1".into()).unwrap();
        let load = blocking(&mut reloader);
        let (hang_up, hangups) = Hangups::sent_by_test();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let upkeep = tokio::spawn(keep_up(reloader, hangups, async {
            let _ = stopped.await;
        }));
        let started = || load.started.load(Ordering::SeqCst);

        hang_up.send(()).await.unwrap();
        eventually("the first reload starts", || started() == 1).await;
        // Two more SIGHUPs while it runs: both are taken at once (not left
        // waiting behind the load), and make one more reload.
        for _ in 0..2 {
            hang_up.send(()).await.unwrap();
            eventually("a SIGHUP during the reload is taken", || {
                hang_up.capacity() == 1
            })
            .await;
        }
        assert_eq!(started(), 1, "nothing else starts while a load runs");
        load.release.send(()).unwrap();
        eventually("one more reload follows", || started() == 2).await;
        load.release.send(()).unwrap();
        eventually("the second reload is refused", || {
            failures(&metrics, &live) == "meridian_dns_reload_failures_total 2"
        })
        .await;
        assert_eq!(started(), 2, "two SIGHUPs during one load: one reload");

        // Shutting down during a load calls it off, promptly.
        hang_up.send(()).await.unwrap();
        eventually("a third reload starts", || started() == 3).await;
        // The load only ends when called off: a generous bound suffices.
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(30), upkeep)
            .await
            .expect("upkeep stops while a load runs")
            .unwrap();
        assert_eq!(load.cancelled.load(Ordering::SeqCst), 1);
    }
}
