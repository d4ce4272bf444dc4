//! The single-role commands: `meridian geodns`, `edge` and `origin`, as
//! deployed on a real host. Each loads and validates the config before it
//! binds anything, then hands over to its library crate. With `[cluster]`
//! in its config, each is also a member of the cluster that follows its
//! config revisions (see the `member` module).

use crate::cli::{EdgeArgs, GeodnsArgs, RegionArgs};
use crate::member::{Follower, Member, restart};
use anyhow::Context;

/// Raises this process's open-file limit to the hard limit, so a busy
/// server is bounded by its own connection handling rather than by a low
/// default soft limit (often 1024), and logs the effective limit.
pub fn raise_open_file_limit(role: &str) {
    #[cfg(unix)]
    {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        match getrlimit(Resource::RLIMIT_NOFILE) {
            Ok((soft, hard)) => {
                let raised = soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok();
                let effective = if raised { hard } else { soft };
                tracing::info!(
                    role,
                    open_files = effective,
                    hard_limit = hard,
                    "open file limit"
                );
            }
            Err(error) => tracing::warn!(role, %error, "cannot read the open file limit"),
        }
    }
}

/// Resolves on SIGINT or SIGTERM: the signals `meridian up` and service
/// managers use to stop a process.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {},
                    _ = terminate.recv() => {},
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `meridian geodns [--server NAME | --listen ADDR]`
pub fn geodns(args: &GeodnsArgs) -> anyhow::Result<()> {
    let own = args.config.load()?;
    let server = own
        .geodns
        .choose(&args.choice())
        .map_err(|reason| anyhow::anyhow!("{}: {reason}", own.source))?
        .name
        .clone();
    // A config of one GeoDNS server names it `geodns`: "geodns geodns"
    // would say nothing more.
    let name = match server.as_str() {
        config::SINGLE_SERVER_NAME => server.clone(),
        _ => format!("geodns {server}"),
    };
    let member = Member::of(&own, args.config.config.as_deref(), "geodns", name);
    let config = match &member {
        Some(member) => member.starting_config(own, |c| check_geodns(c, &server)),
        None => own,
    };
    raise_open_file_limit("geodns");
    runtime()?.block_on(async {
        let requests = member.map(|member| {
            let (send, requests) = tokio::sync::mpsc::channel(4);
            let follower = GeoDnsFollower {
                server: server.clone(),
                reloads: send,
            };
            let running = config.clone();
            tokio::spawn(async move { member.follow(&running, follower).await });
            requests
        });
        geodns::run(&config, &server, requests, shutdown_signal()).await
    })?;
    Ok(())
}

/// Whether GeoDNS server `server` can run `config`: it names the server,
/// and its geo database loads within the limits a reload has.
fn check_geodns(config: &config::Config, server: &str) -> anyhow::Result<()> {
    if config.geodns.server(server).is_none() {
        anyhow::bail!(
            "{}: it has no GeoDNS server named {server:?}",
            config.source
        );
    }
    geodns::check(config, &geodns::LoadLimit::default())?;
    Ok(())
}

/// GeoDNS follows a revision by reloading it, as on SIGHUP.
struct GeoDnsFollower {
    server: String,
    reloads: tokio::sync::mpsc::Sender<config::ConfigSource>,
}

impl Follower for GeoDnsFollower {
    fn check(&self, config: &config::Config) -> anyhow::Result<()> {
        check_geodns(config, &self.server)
    }

    fn apply(&mut self, config: config::Config) -> anyhow::Result<()> {
        // The reload reads the applied file (the source's), where the
        // revision now is; a full queue means reloads are pending already,
        // and the last of them reads the newest applied revision.
        match self.reloads.try_send(config.source) {
            Ok(()) | Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => Ok(()),
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                anyhow::bail!("GeoDNS is shutting down")
            }
        }
    }
}

/// `meridian edge`
pub fn edge(args: &EdgeArgs) -> anyhow::Result<()> {
    let settings = match (&args.region, args.listen, &args.origin) {
        (Some(region), _, _) => configured_edge(args, region)?,
        (None, Some(listen), Some(origin)) => {
            let mut settings = edge::EdgeSettings::ad_hoc(listen, origin)?;
            if let Some(bytes) = args.cache_bytes {
                anyhow::ensure!(bytes > 0, "--cache-bytes must be at least 1");
                settings.cache_max_bytes = usize::try_from(bytes)
                    .map_err(|_| anyhow::anyhow!("--cache-bytes {bytes} does not fit in memory"))?;
            }
            let mut largest_budget = settings.cache_max_bytes as u64;
            if let (Some(dir), Some(bytes)) = (&args.cache_dir, args.cache_disk_bytes) {
                anyhow::ensure!(
                    bytes >= config::disk::MIN_DISK_BYTES,
                    "--cache-disk-bytes must be at least {}",
                    config::disk::MIN_DISK_BYTES
                );
                largest_budget = largest_budget.max(bytes);
                let largest_object = (settings.cache_max_object_bytes as u64).min(largest_budget);
                settings.disk = Some(edge::DiskSettings::new(dir.clone(), bytes, largest_object));
            }
            // An object too large for memory may still go to disk.
            settings.cache_max_object_bytes = settings
                .cache_max_object_bytes
                .min(usize::try_from(largest_budget).unwrap_or(usize::MAX));
            for name in &args.forward_headers {
                let lower = name.to_ascii_lowercase();
                let field = http::HeaderName::from_bytes(lower.as_bytes()).map_err(|_| {
                    anyhow::anyhow!("--forward-header {name:?} is not a header field name")
                })?;
                anyhow::ensure!(
                    config::forwardable_request_field(&lower),
                    "--forward-header {name:?} describes one connection or is set by the edge itself"
                );
                settings.forward_request_headers.push(field);
            }
            settings
        }
        // clap requires one of the two forms.
        _ => anyhow::bail!("give --region, or --listen with --origin"),
    };
    raise_open_file_limit("edge");
    match edge::run(settings)? {}
}

/// A region's edge from the config; a member of a cluster starts from its
/// applied revision and follows the new ones on a thread of its own (the
/// edge's runtimes are Pingora's).
fn configured_edge(args: &EdgeArgs, region: &str) -> anyhow::Result<edge::EdgeSettings> {
    let own = args.config.load()?;
    let own_settings = edge::EdgeSettings::from_config(&own, region, args.address)?;
    let name = cluster::edge_name(region, own_settings.peer_address);
    let Some(mut member) = Member::of(&own, args.config.config.as_deref(), "edge", name) else {
        return Ok(own_settings);
    };
    let settings_of = |config: &config::Config| edge_settings(config, region, args.address);
    let config = member.starting_config(own, |c| settings_of(c).map(|_| ()));
    let settings = settings_of(&config)?;
    // The edge's purge feed reports it on the bus, `verified` included.
    if let Some(link) = &settings.cluster {
        member.report_through(link.report.clone());
    }
    let follower = EdgeFollower {
        region: region.to_owned(),
        address: args.address,
        running: settings.clone(),
    };
    follow_on_a_thread(member, config, follower)?;
    Ok(settings)
}

/// An edge's settings in `config`, checked as `edge::run` checks them
/// before it binds.
fn edge_settings(
    config: &config::Config,
    region: &str,
    address: Option<std::net::IpAddr>,
) -> anyhow::Result<edge::EdgeSettings> {
    let settings = edge::EdgeSettings::from_config(config, region, address)?;
    edge::check(&settings)?;
    Ok(settings)
}

/// An edge follows a revision by restarting into it, if it changes the
/// edge's settings.
struct EdgeFollower {
    region: String,
    address: Option<std::net::IpAddr>,
    running: edge::EdgeSettings,
}

impl Follower for EdgeFollower {
    fn check(&self, config: &config::Config) -> anyhow::Result<()> {
        edge_settings(config, &self.region, self.address).map(|_| ())
    }

    fn apply(&mut self, config: config::Config) -> anyhow::Result<()> {
        let new = edge_settings(&config, &self.region, self.address)?;
        restart_if_changed(&config, new == self.running, "edge")
    }
}

/// Runs `member` on a thread with a small runtime of its own.
fn follow_on_a_thread(
    member: Member,
    running: config::Config,
    follower: impl Follower,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the cluster member's runtime")?;
    std::thread::Builder::new()
        .name("cluster-member".into())
        .spawn(move || runtime.block_on(member.follow(&running, follower)))
        .context("cannot start the cluster member's thread")?;
    Ok(())
}

/// Restarts this process into `config` (the applied revision) unless
/// `unchanged`: see [`crate::member::restart`] for what a restart costs.
fn restart_if_changed(config: &config::Config, unchanged: bool, role: &str) -> anyhow::Result<()> {
    if unchanged {
        tracing::info!("{} changes nothing for this {role}", config.source);
        return Ok(());
    }
    tracing::warn!(
        "{} changes this {role}'s settings: restarting in place (same PID; \
         connections are refused until it listens again)",
        config.source
    );
    Err(anyhow::anyhow!(
        "cannot restart in place: {}",
        restart::restart_in_place()
    ))
}

/// `meridian origin`
pub fn origin(args: &RegionArgs) -> anyhow::Result<()> {
    let own = args.config.load()?;
    let own_settings = origin_settings(&own, &args.region)?;
    let name = format!("origin {}", args.region);
    let member = Member::of(&own, args.config.config.as_deref(), "origin", name);
    let (config, settings) = match &member {
        Some(member) => {
            let config =
                member.starting_config(own, |c| origin_settings(c, &args.region).map(|_| ()));
            let settings = origin_settings(&config, &args.region)?;
            (config, settings)
        }
        None => (own, own_settings),
    };
    raise_open_file_limit("origin");
    runtime()?.block_on(async {
        if let Some(member) = member {
            let follower = OriginFollower {
                region: args.region.clone(),
                running: settings.clone(),
            };
            tokio::spawn(async move { member.follow(&config, follower).await });
        }
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        origin::serve(listener, settings, shutdown_signal()).await?;
        anyhow::Ok(())
    })
}

/// A region's origin settings in `config`, checked as far as can be before
/// binding (its static root is readable).
fn origin_settings(
    config: &config::Config,
    region: &str,
) -> anyhow::Result<origin::OriginSettings> {
    let settings = origin::OriginSettings::from_config(config, region)?;
    if let Some(region) = config.region(region).ok().filter(|r| r.origin_url.tls) {
        anyhow::bail!(
            "{}'s origin_url is {}, but `meridian origin` serves plain HTTP only; \
             run your HTTPS origin there yourself",
            region.name,
            region.origin_url
        );
    }
    // Build the router first: a bad static root is reported before binding.
    let _ = origin::router(&settings)?;
    Ok(settings)
}

/// An origin follows a revision by restarting into it, if it changes the
/// origin's settings.
struct OriginFollower {
    region: String,
    running: origin::OriginSettings,
}

impl Follower for OriginFollower {
    fn check(&self, config: &config::Config) -> anyhow::Result<()> {
        origin_settings(config, &self.region).map(|_| ())
    }

    fn apply(&mut self, config: config::Config) -> anyhow::Result<()> {
        let new = origin_settings(&config, &self.region)?;
        restart_if_changed(&config, new == self.running, "origin")
    }
}
