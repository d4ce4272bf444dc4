//! The edge: a caching reverse proxy, one per edge address of a region, on
//! Pingora.
//!
//! An edge listens on one of its region's edge addresses, answers what it
//! has in its in-memory cache ([`storage::MemoryStorage`]) and forwards the
//! rest: to the region's edge that owns the object, when that is another
//! ([`peers`]: one origin fetch per region per object), else to its
//! region's origin. Whether a response is stored follows RFC 9111
//! ([`cacheability`]); every response says what the cache did in a
//! `Cache-Status` header ([`cache_status`]). The edge never consults GeoDNS:
//! clients reach it because GeoDNS sent them, and it serves whoever arrives.
//!
//! [`run`] takes validated [`EdgeSettings`] (from the topology config, or the
//! ad-hoc `--listen/--origin` mode) and serves until SIGINT or SIGTERM.

pub mod admin;
mod admission;
mod cache_status;
mod cacheability;
mod connection;
mod forwarding;
mod framing;
mod hit;
mod host;
mod key;
mod metrics;
mod origins;
pub mod peers;
mod proxy;
pub mod purging;
mod ranges;
mod slow_clients;
mod storage;
mod tls;
mod vary;
mod zero_copy;

use pingora::cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{BackgroundService, background_service};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

pub use origins::{OriginSet, OriginTarget};
pub use proxy::{EdgeProxy, ORIGIN_REGION_HEADER};
pub use storage::{DiskSettings, MemoryStorage};

/// How long a writer may hold the cache lock for one object before waiting
/// requests give up on it and fetch for themselves.
const CACHE_LOCK_AGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything one edge process needs, validated. Comparable: a cluster
/// member restarts its edge for a new config revision only when the
/// revision changes these.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeSettings {
    /// The region it serves (`ad-hoc` in ad-hoc mode), for logs.
    pub name: String,
    /// Its own HTTP address as the other edges of its region know it.
    pub peer_address: SocketAddr,
    /// The HTTP addresses of the other edges of its region, which it
    /// fills misses from (see [`peers`]); empty for an ad-hoc edge.
    pub peers: Vec<SocketAddr>,
    /// Where it accepts plain HTTP.
    pub listen: Vec<SocketAddr>,
    /// HTTPS, if enabled.
    pub https: Option<HttpsSettings>,
    /// Where it serves `/healthz`, `/status`, `/metrics` and `/purge`, if anywhere.
    pub admin_listen: Option<SocketAddr>,
    /// The bearer token `/purge` needs; `None` disables purging.
    pub admin_token: Option<String>,
    /// The origins it forwards to, in preference order: its own region's,
    /// then the others nearest first.
    pub origins: Vec<OriginTarget>,
    /// Timeouts, retries and health checks for those origins.
    pub origin_policy: config::OriginPolicy,
    /// How long it waits on slow clients.
    pub client_timeouts: config::ClientTimeouts,
    /// The schedule and thresholds of the origin health checks.
    pub health: config::Health,
    /// Host names it serves; `None` accepts any Host (ad-hoc mode).
    pub hostnames: Option<Vec<String>>,
    /// Path it answers itself for health checks.
    pub health_path: String,
    /// Cache budget in bytes.
    pub cache_max_bytes: usize,
    /// Largest object stored, in bytes.
    pub cache_max_object_bytes: usize,
    /// The disk tier below memory, if any.
    pub disk: Option<DiskSettings>,
    /// What may be stored beyond what origins state.
    pub cache_policy: cacheability::Policy,
    /// The most variants of one URL stored at once.
    pub cache_max_variants: usize,
    /// Request fields forwarded on GET and HEAD besides the edge's own list
    /// (see [`forwarding`]).
    pub forward_request_headers: Vec<http::HeaderName>,
    /// Answer plain hits from storage directly (see `hit`); off serves
    /// every hit through Pingora's cache, with the same answers, slower.
    pub plain_hit_fast_path: bool,
    /// This CDN's name in `CDN-Loop` (RFC 8586): the zone, or `meridian`
    /// for an ad-hoc edge.
    pub cdn_id: String,
    /// Worker threads.
    pub threads: usize,
    /// Its part in a cluster (purges from the bus); `None` on a single host.
    pub cluster: Option<purging::ClusterLink>,
}

/// An edge's HTTPS listeners and their certificates.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpsSettings {
    /// Where it accepts HTTPS (HTTP/2 and HTTP/1.1 by ALPN).
    pub listen: Vec<SocketAddr>,
    /// The certificates, chosen by SNI; the first is the default.
    pub certificates: Vec<config::Certificate>,
}

/// Why an edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The configuration does not describe this edge.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// An ad-hoc origin is not a usable URL.
    #[error("{origin} is not an origin URL: {reason}")]
    OriginUrl {
        /// The origin as given.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An origin's address does not resolve.
    #[error("cannot resolve the origin {origin}: {source}")]
    Resolve {
        /// The origin's host and port.
        origin: String,
        /// What the resolver said.
        source: std::io::Error,
    },
    /// The TLS certificates cannot be used.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The metrics registry refused a metric (a bug).
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A listen address cannot be bound (in use, not local, no permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn resolve_origin(origin: &str) -> Result<SocketAddr, EdgeError> {
    let error = |source| EdgeError::Resolve {
        origin: origin.to_owned(),
        source,
    };
    origin
        .to_socket_addrs()
        .map_err(error)?
        .next()
        .ok_or_else(|| {
            error(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "it has no addresses",
            ))
        })
}

/// The HTTPS settings of the edge at `address`, if the config turns HTTPS on.
fn https_settings(config: &config::Config, address: IpAddr) -> Option<HttpsSettings> {
    let port = config.edge.https_port?;
    Some(HttpsSettings {
        listen: vec![SocketAddr::new(address, port)],
        certificates: config.edge.certificates.clone(),
    })
}

impl EdgeSettings {
    /// The edge of `region` at `address` in the topology `config`;
    /// without an address, the region's only edge (a region of several
    /// is an error naming them, see [`config::Config::edge_of`]).
    pub fn from_config(
        config: &config::Config,
        region: &str,
        address: Option<IpAddr>,
    ) -> Result<Self, EdgeError> {
        let (home, address) = config.edge_of(region, address)?;
        let home_index = config
            .regions
            .iter()
            .position(|r| r.name == home.name)
            .unwrap_or(0);
        let origins = config
            .regions_nearest_to(home_index)
            .into_iter()
            .filter_map(|i| config.regions.get(i))
            .map(|r| {
                Ok(OriginTarget {
                    region: r.name.clone(),
                    addr: resolve_origin(&r.origin_url.authority())?,
                    tls_name: r.origin_url.tls.then(|| r.origin_url.host.clone()),
                })
            })
            .collect::<Result<Vec<_>, EdgeError>>()?;
        let http = SocketAddr::new(address, config.edge.http_port);
        let place = Place {
            name: home.name.clone(),
            listen: vec![http],
            https: https_settings(config, address),
            admin_listen: Some(config.edge.admin_addr(address)),
            origins,
            peer_address: http,
            peers: home
                .edge_http_addrs(&config.edge)
                .into_iter()
                .filter(|peer| *peer != http)
                .collect(),
            hostnames: Some(config.edge.hostnames.clone()),
            cdn_id: config.zone.name.host().to_owned(),
        };
        let mut settings = Self::new(place, &config.edge, &config.health);
        settings.cluster = config
            .cluster
            .as_ref()
            .map(|bus| purging::ClusterLink::new(bus, &home.name, http));
        Ok(settings)
    }

    /// One edge in front of one origin, accepting any Host (like
    /// `varnishd -a ADDR -b HOST`). `origin` is `http://host:port`,
    /// `https://host:port` (verified against the system's roots) or
    /// `host:port`.
    pub fn ad_hoc(listen: SocketAddr, origin: &str) -> Result<Self, EdgeError> {
        let with_scheme = if origin.contains("://") {
            origin.to_owned()
        } else {
            format!("http://{origin}")
        };
        let url =
            config::OriginUrl::parse(&with_scheme).map_err(|reason| EdgeError::OriginUrl {
                origin: origin.to_owned(),
                reason,
            })?;
        let place = Place {
            name: "ad-hoc".to_owned(),
            listen: vec![listen],
            https: None,
            admin_listen: None,
            origins: vec![OriginTarget {
                region: "origin".to_owned(),
                addr: resolve_origin(&url.authority())?,
                tls_name: url.tls.then(|| url.host.clone()),
            }],
            peer_address: listen,
            peers: Vec::new(),
            hostnames: None,
            cdn_id: "meridian".to_owned(),
        };
        // An `[edge]` table that sets nothing it need not, lowered as any is.
        Ok(Self::new(
            place,
            &config::Edge::defaults(),
            &config::Health::default(),
        ))
    }

    /// An edge at `place` with the settings of an `[edge]` table and the
    /// `[health]` its origin checks follow: the one way both kinds of edge
    /// are made.
    fn new(place: Place, edge: &config::Edge, health: &config::Health) -> Self {
        EdgeSettings {
            name: place.name,
            peer_address: place.peer_address,
            peers: place.peers,
            listen: place.listen,
            https: place.https,
            admin_listen: place.admin_listen,
            admin_token: edge.admin_token.clone(),
            origins: place.origins,
            origin_policy: edge.origins.clone(),
            client_timeouts: edge.client_timeouts,
            health: health.clone(),
            hostnames: place.hostnames,
            health_path: edge.health_path.clone(),
            cache_max_bytes: edge.cache_max_bytes,
            cache_max_object_bytes: edge.cache_max_object_bytes,
            // Each edge has a folder of its own, named by its address:
            // several edges may share a host and its cache directory.
            disk: edge.disk.as_ref().map(|disk| {
                DiskSettings::new(
                    disk.path.join(place.peer_address.ip().to_string()),
                    disk.max_bytes,
                    edge.cache_max_object_bytes as u64,
                )
            }),
            cache_policy: cacheability::Policy::from_config(edge),
            cache_max_variants: edge.cache_max_variants,
            forward_request_headers: edge
                .forward_request_headers
                .iter()
                // Checked as header names by the config.
                .filter_map(|name| http::HeaderName::from_bytes(name.as_bytes()).ok())
                .collect(),
            cdn_id: place.cdn_id,
            plain_hit_fast_path: edge.plain_hit_fast_path,
            threads: default_threads(),
            cluster: None,
        }
    }
}

/// Where an edge is and what it serves: what differs between a region's
/// edge and an ad-hoc one.
struct Place {
    name: String,
    listen: Vec<SocketAddr>,
    https: Option<HttpsSettings>,
    admin_listen: Option<SocketAddr>,
    origins: Vec<OriginTarget>,
    peer_address: SocketAddr,
    peers: Vec<SocketAddr>,
    hostnames: Option<Vec<String>>,
    cdn_id: String,
}

/// The client connection's user-space buffers.
///
/// Pingora buffers writes to a client in 1460 bytes by default (one
/// Ethernet segment), so a response header and a small body do not fit
/// together: a 1 KiB hit took two `send` calls and two TCP segments,
/// and on loopback the sender's core also pays for delivering each one.
/// With 16 KiB, the header and any body up to about 15 KiB leave in one
/// `send` when the response is finished; larger bodies go to the socket
/// directly, as before. Reads keep Pingora's 64 KiB.
fn downstream_buffers() -> pingora::protocols::l4::stream::L4BufferSettings {
    const READ: usize = 64 * 1024;
    const WRITE: usize = 16 * 1024;
    pingora::protocols::l4::stream::L4BufferSettings::new(READ, WRITE)
}

/// Checks that every listen address can be bound right now.
///
/// Pingora binds its listeners inside a service task and only panics that
/// task when binding fails, leaving a process that runs but serves nothing.
/// Binding once here first turns "address in use" into a clean error that
/// names the address, before Pingora starts. (The probe socket is closed
/// again at once; Pingora sets SO_REUSEADDR, so it can bind right after.)
fn check_listen_addresses(addrs: &[SocketAddr]) -> Result<(), EdgeError> {
    for addr in addrs {
        TcpListener::bind(addr).map_err(|source| EdgeError::Bind {
            addr: *addr,
            source,
        })?;
    }
    Ok(())
}

/// Probes the origins (or the peers) in the background, on Pingora's
/// runtime.
struct OriginChecks {
    origins: Arc<OriginSet>,
    /// What they are, for the log.
    what: &'static str,
    health: config::Health,
    path: String,
    connector: pingora::connectors::ConnectorOptions,
}

#[async_trait::async_trait]
impl BackgroundService for OriginChecks {
    async fn start(&self, shutdown: ShutdownWatch) {
        origins::run_checks(
            self.origins.clone(),
            self.what,
            self.health.clone(),
            self.path.clone(),
            self.connector.clone(),
            shutdown,
        )
        .await;
    }
}

/// Reloads the TLS certificates on SIGHUP or when their files change.
struct CertificateWatch {
    resolver: Arc<tls::CertResolver>,
}

#[async_trait::async_trait]
impl BackgroundService for CertificateWatch {
    async fn start(&self, shutdown: ShutdownWatch) {
        tls::watch(self.resolver.clone(), shutdown).await;
    }
}

/// The edge's part in a cluster (see [`purging::follow`]).
struct PurgeFeed {
    link: purging::ClusterLink,
    storage: &'static storage::MemoryStorage,
    metrics: Arc<metrics::EdgeMetrics>,
    peers: Arc<peers::Peers>,
    health_interval: Duration,
}

#[async_trait::async_trait]
impl BackgroundService for PurgeFeed {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            () = purging::follow(
                self.link.clone(),
                self.storage,
                self.metrics.clone(),
                self.peers.clone(),
                self.health_interval,
            ) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Serves the admin API on a listener bound before Pingora started.
struct AdminListener {
    listener: std::sync::Mutex<Option<TcpListener>>,
    state: admin::AdminState,
}

#[async_trait::async_trait]
impl BackgroundService for AdminListener {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(listener) = listener else { return };
        let listener = match listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(listener))
        {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(%error, "cannot serve the admin API");
                return;
            }
        };
        let listen = match listener.local_addr() {
            Ok(addr) => addr,
            Err(error) => {
                tracing::error!(%error, "cannot serve the admin API");
                return;
            }
        };
        let served = axum::serve(listener, admin::router(self.state.clone(), listen))
            .with_graceful_shutdown(async move {
                let _ = shutdown.changed().await;
            })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "admin listener failed");
        }
    }
}

/// What [`run`] checks of the files the settings name, before it binds
/// anything: a cluster member checks a new config revision with it before
/// it restarts into that revision (an edge that cannot start from its
/// applied revision would not serve at all). The listen addresses are not
/// checked: the running edge holds them.
pub fn check(settings: &EdgeSettings) -> Result<(), EdgeError> {
    load_files(settings).map(|_| ())
}

/// Loads the certificates and checks the origin CA bundle: a bad one names
/// its file and the reason, and the edge does not start.
fn load_files(settings: &EdgeSettings) -> Result<Option<Arc<tls::CertResolver>>, EdgeError> {
    let resolver = match &settings.https {
        Some(https) => Some(Arc::new(tls::CertResolver::new(
            https.certificates.clone(),
        )?)),
        None => None,
    };
    if let Some(path) = &settings.origin_policy.ca_file {
        tls::check_ca_bundle(path)?;
    }
    Ok(resolver)
}

/// Runs the edge until SIGINT (fast) or SIGTERM (graceful), then exits the
/// process. Returns only if it cannot start.
pub fn run(settings: EdgeSettings) -> Result<Infallible, EdgeError> {
    check_listen_addresses(&settings.listen)?;
    if let Some(https) = &settings.https {
        check_listen_addresses(&https.listen)?;
    }
    let resolver = load_files(&settings)?;
    if let Some(resolver) = &resolver {
        let expiry = resolver.current().earliest_expiry();
        tracing::info!(expires = %httpdate::fmt_http_date(expiry), "TLS certificates loaded");
    }
    let admin_listener = settings
        .admin_listen
        .map(|addr| TcpListener::bind(addr).map_err(|source| EdgeError::Bind { addr, source }))
        .transpose()?;
    let metrics = Arc::new(metrics::EdgeMetrics::new()?);

    let conf = ServerConf {
        threads: settings.threads,
        // Pingora's retry loop: at least one pass per origin we may try,
        // after every peer a fill may ask.
        max_retries: settings.origin_policy.max_tries as usize + settings.peers.len(),
        // No listener hand-over to a new process, so no reason to wait
        // before shutting down; in-flight requests get a few seconds.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(3),
        // One single-threaded runtime per worker thread: connections stay
        // on the thread that accepted them, with no work-stealing
        // bookkeeping on every wake-up.
        work_stealing: false,
        // The authorities `https://` origins are verified against (checked
        // above); without one, the system's.
        ca_file: settings
            .origin_policy
            .ca_file
            .as_ref()
            .map(|path| path.display().to_string()),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    // Pingora's cache API takes `'static` references: the storage and the
    // lock live as long as the process, so leaking them once is exact.
    let mut storage = MemoryStorage::new(settings.cache_max_bytes, settings.cache_max_object_bytes)
        .with_max_variants(settings.cache_max_variants);
    if let Some(disk) = &settings.disk {
        storage = storage.with_disk(disk);
    }
    let storage: &'static MemoryStorage = Box::leak(Box::new(storage));
    let cache_lock: &'static CacheKeyLockImpl =
        Box::leak(CacheLock::new_boxed(CACHE_LOCK_AGE_TIMEOUT));

    let settings = Arc::new(settings);
    let origins = Arc::new(OriginSet::new(
        settings.origins.clone(),
        &settings.origin_policy,
    ));
    let peers = Arc::new(peers::Peers::new(
        &settings.name,
        settings.peer_address,
        &settings.peers,
        &settings.origin_policy,
    ));
    let proxy = EdgeProxy {
        settings: settings.clone(),
        origins: origins.clone(),
        peers: peers.clone(),
        metrics: metrics.clone(),
        storage,
        cache_lock,
    };
    let mut http = pingora::proxy::http_proxy(&server.configuration, proxy);
    // An HTTP/2 connection with no request in flight is as idle as a
    // kept-alive HTTP/1 one, and gets the same limit.
    let mut options = pingora::apps::HttpServerOptions::default();
    options.h2_idle_timeout = Some(settings.client_timeouts.header);
    http.server_options = Some(options);
    let app = slow_clients::HeaderDeadline::new(http, settings.client_timeouts.header);
    let app = connection::ClientConnections::new(app, metrics.zero_copy_bytes());
    let mut service = pingora::services::listening::Service::new("edge".to_owned(), app);
    for addr in &settings.listen {
        service.add_listener(
            pingora::listeners::ListenerConfig::tcp(addr.to_string())
                .l4_buffer(downstream_buffers()),
        );
        tracing::info!(region = %settings.name, "listening for HTTP on {addr}");
    }
    if let (Some(https), Some(resolver)) = (&settings.https, &resolver) {
        for addr in &https.listen {
            let mut tls_settings = pingora::listeners::tls::TlsSettings::intermediate("", "")
                .map_err(|e| {
                    EdgeError::Tls(tls::TlsError::Invalid {
                        path: addr.to_string(),
                        reason: e.to_string(),
                    })
                })?;
            tls_settings.set_cert_resolver(resolver.clone());
            // HTTP/2 preferred, HTTP/1.1 allowed; TLS 1.2 and 1.3 only
            // (pingora's rustls listener offers nothing older).
            tls_settings.enable_h2();
            service.add_tls_with_settings(&addr.to_string(), None, tls_settings);
            tracing::info!(region = %settings.name, "listening for HTTPS on {addr}");
        }
        server.add_service(background_service(
            "certificate reload",
            CertificateWatch {
                resolver: resolver.clone(),
            },
        ));
    }
    server.add_service(service);
    let connector = pingora::connectors::ConnectorOptions::from_server_conf(&server.configuration);
    server.add_service(background_service(
        "origin health checks",
        OriginChecks {
            origins: origins.clone(),
            what: "origin",
            health: settings.health.clone(),
            path: settings.origin_policy.health_path.clone(),
            connector: connector.clone(),
        },
    ));
    if !peers.set().is_empty() {
        // The other edges of the region, on their data-plane health path,
        // as GeoDNS probes them.
        server.add_service(background_service(
            "peer health checks",
            OriginChecks {
                origins: peers.set().clone(),
                what: "peer edge",
                health: settings.health.clone(),
                path: settings.health_path.clone(),
                connector,
            },
        ));
    }
    if let Some(link) = &settings.cluster {
        server.add_service(background_service(
            "purge stream",
            PurgeFeed {
                link: link.clone(),
                storage,
                metrics: metrics.clone(),
                peers: peers.clone(),
                health_interval: settings.health.interval,
            },
        ));
    }
    if let Some(listener) = admin_listener {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(region = %settings.name, "listening for HTTP on {addr} (admin)");
        }
        server.add_service(background_service(
            "admin",
            AdminListener {
                listener: std::sync::Mutex::new(Some(listener)),
                state: admin::AdminState {
                    region: settings.name.clone(),
                    origins: origins.clone(),
                    peers: peers.clone(),
                    metrics,
                    storage,
                    token: settings.admin_token.as_deref().map(Arc::from),
                    verified: settings.cluster.as_ref().map(|c| c.verified.clone()),
                },
            },
        ));
    }
    let origin_list: Vec<String> = settings
        .origins
        .iter()
        .map(|o| format!("{} {}", o.region, o.addr))
        .collect();
    tracing::info!(
        region = %settings.name,
        origins = %origin_list.join(", "),
        cache_max_bytes = settings.cache_max_bytes,
        "edge started"
    );
    // `run` returns once Pingora has stopped serving (SIGTERM, SIGINT);
    // then the disk tier's queued writes are finished, so a clean stop
    // keeps everything the edge had stored.
    server.run(pingora::server::RunArgs::default());
    storage.finish_disk_writes(DISK_WRITES_AT_STOP);
    std::process::exit(0)
}

/// How long a stopping edge waits for its disk tier's queued writes.
const DISK_WRITES_AT_STOP: std::time::Duration = std::time::Duration::from_secs(10);
