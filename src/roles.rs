//! The single-role commands: `meridian geodns`, `edge` and `origin`, as
//! deployed on a real host. Each loads and validates the config before it
//! binds anything, then hands over to its library crate.

use crate::cli::{EdgeArgs, GeodnsArgs, RegionArgs};
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
    let config = args.config.load()?;
    let server = config
        .geodns
        .choose(&args.choice())
        .map_err(|reason| anyhow::anyhow!("{}: {reason}", config.source))?
        .name
        .clone();
    raise_open_file_limit("geodns");
    runtime()?.block_on(geodns::run(&config, &server, shutdown_signal()))?;
    Ok(())
}

/// `meridian edge`
pub fn edge(args: &EdgeArgs) -> anyhow::Result<()> {
    let settings = match (&args.region, args.listen, &args.origin) {
        (Some(region), _, _) => {
            edge::EdgeSettings::from_config(&args.config.load()?, region, args.address)?
        }
        (None, Some(listen), Some(origin)) => {
            let mut settings = edge::EdgeSettings::ad_hoc(listen, origin)?;
            if let Some(bytes) = args.cache_max_bytes {
                anyhow::ensure!(bytes > 0, "--cache-max-bytes must be at least 1");
                settings.cache_max_bytes = bytes;
                settings.cache_max_object_bytes = settings.cache_max_object_bytes.min(bytes);
            }
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

/// `meridian origin`
pub fn origin(args: &RegionArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let settings = origin::OriginSettings::from_config(&config, &args.region)?;
    if let Some(region) = config
        .region(&args.region)
        .ok()
        .filter(|r| r.origin_url.tls)
    {
        anyhow::bail!(
            "{}'s origin_url is {}, but `meridian origin` serves plain HTTP only; \
             run your HTTPS origin there yourself",
            region.name,
            region.origin_url
        );
    }
    raise_open_file_limit("origin");
    // Build the router first: a bad static root is reported before binding.
    let _ = origin::router(&settings)?;
    runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        origin::serve(listener, settings, shutdown_signal()).await?;
        anyhow::Ok(())
    })
}
