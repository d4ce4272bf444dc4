//! Meridian's per-region origin: a small HTTP server with a static site and a
//! dynamic JSON API.
//!
//! Real deployments point their edges at their own origins; this one exists
//! so that the demo (`meridian up`), the tests and the benchmarks are
//! self-contained. Each region runs one (`meridian origin --region R`). It
//! serves:
//!
//! - `/` and `/assets/…`: static files with `Cache-Control: public,
//!   max-age=N`, `ETag`, `Last-Modified`, conditional GET, Range and HEAD, all
//!   provided by tower-http's `ServeDir`. Without a configured `root` the
//!   files are the built-in demo site ([`demo_site`], held in memory by
//!   [`memory_backend`]), identical in every region except for the region
//!   name on the index page, so edges can fail over between origins and
//!   still revalidate successfully.
//! - `/api/whoami`: never-cached JSON naming the region that answered
//!   ([`whoami`]).
//! - `/healthz`: `ok`, for health checks.
//!
//! Every response carries `X-Meridian-Origin-Region: REGION`.

mod demo_site;
mod memory_backend;
mod whoami;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::ListenerExt;
use http::header::CACHE_CONTROL;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tower_http::services::fs::{
    Backend, DefaultServeDirFallback, ServeDir, ServeFileSystemResponseBody,
};
use tower_http::set_header::{SetResponseHeader, SetResponseHeaderLayer};

use crate::memory_backend::MemoryBackend;

/// The response header naming the region whose origin answered.
const REGION_HEADER: HeaderName = HeaderName::from_static("x-meridian-origin-region");

/// What one origin serves and where; see [`OriginSettings::from_config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginSettings {
    /// The region this origin belongs to; named in `/`, `/api/whoami` and the
    /// `X-Meridian-Origin-Region` header.
    pub region: String,
    /// The address to listen on. [`serve`] replaces it with the listener's
    /// actual address (which differs when binding port 0).
    pub listen: SocketAddr,
    /// A directory to serve as the static site; `None` serves the built-in
    /// demo site.
    pub root: Option<PathBuf>,
    /// `max-age` of the static files' `Cache-Control`, in seconds.
    pub asset_max_age_seconds: u32,
}

impl OriginSettings {
    /// The settings of `region`'s origin in `config`, or an error listing the
    /// known regions.
    pub fn from_config(config: &config::Config, region: &str) -> Result<Self, config::ConfigError> {
        let region = config.region(region)?;
        Ok(OriginSettings {
            region: region.name.clone(),
            listen: region.origin_listen,
            root: config.origin.root.clone(),
            asset_max_age_seconds: config.origin.asset_max_age_seconds,
        })
    }
}

/// Why an origin could not be built or could not keep serving.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    /// The configured `root` does not exist or cannot be read.
    #[error("cannot read the origin root directory {}", path.display())]
    RootUnreadable {
        /// The configured root.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The configured `root` exists but is not a directory.
    #[error("the origin root {} is not a directory", path.display())]
    RootNotADirectory {
        /// The configured root.
        path: PathBuf,
    },
    /// The region name cannot be sent in an HTTP header.
    #[error("region name {region:?} cannot be used as an HTTP header value")]
    InvalidRegion {
        /// The offending name.
        region: String,
    },
    /// The listener failed.
    #[error("serving HTTP")]
    Serve(#[source] std::io::Error),
}

/// Build the router (used by tests and by [`serve`]). Errors if `root` is set
/// but is not a readable directory.
///
/// `/api/whoami` reports the TCP peer only when the router is served with
/// `into_make_service_with_connect_info::<SocketAddr>()`, as [`serve`] does.
pub fn router(settings: &OriginSettings) -> Result<Router, OriginError> {
    let region =
        HeaderValue::from_str(&settings.region).map_err(|_| OriginError::InvalidRegion {
            region: settings.region.clone(),
        })?;
    let identity = Arc::new(whoami::Identity {
        region: settings.region.clone(),
        origin: settings.listen,
    });
    let dynamic = Router::new()
        .route("/api/whoami", get(whoami::whoami))
        .with_state(identity)
        .route("/healthz", get(healthz));
    let max_age = settings.asset_max_age_seconds;
    let app = match &settings.root {
        None => {
            let backend = MemoryBackend::new(demo_site::files(&settings.region));
            with_static_files(dynamic, ServeDir::with_backend("", backend), max_age)
        }
        Some(root) => {
            check_root(root)?;
            with_static_files(dynamic, ServeDir::new(root), max_age)
        }
    };
    Ok(app.layer(SetResponseHeaderLayer::overriding(REGION_HEADER, region)))
}

/// Serve on an already-bound listener until `shutdown` resolves, then finish
/// in-flight requests (axum graceful shutdown). Logs exactly one line
/// `listening for HTTP on {addr}` at info level when serving starts; nothing
/// per request at info.
pub async fn serve(
    listener: tokio::net::TcpListener,
    mut settings: OriginSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), OriginError> {
    let addr = listener.local_addr().map_err(OriginError::Serve)?;
    // Report the address actually bound (port 0 in tests), not the requested one.
    settings.listen = addr;
    let app = router(&settings)?;
    let listener = listener.tap_io(|tcp| {
        // Small responses should not wait for Nagle; failing to set it only
        // costs latency, so it is not worth refusing the connection over.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    tracing::info!("listening for HTTP on {addr}");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(OriginError::Serve)
}

/// `/healthz`: the origin is up and answering.
async fn healthz() -> impl IntoResponse {
    (
        [(CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        "ok",
    )
}

/// Adds `serve_dir` as the fallback of `router`: every path not routed
/// explicitly is a static file (or ServeDir's 404 / 405). Successful and
/// not-modified responses get `Cache-Control: public, max-age=N`; errors get
/// none, so no cache keeps a 404 for an hour.
fn with_static_files<B: Backend>(
    router: Router,
    serve_dir: ServeDir<DefaultServeDirFallback, B>,
    max_age_seconds: u32,
) -> Router {
    let cache_control = HeaderValue::from(CacheControlPublic(max_age_seconds));
    // A multipart/byteranges answer is not implemented by ServeDir; RFC 9110
    // §14.2 lets a server ignore Range instead, which beats a 416 for clients.
    let serve_dir = serve_dir.ignore_multi_range_requests(true);
    let service = SetResponseHeader::overriding(
        serve_dir,
        CACHE_CONTROL,
        move |response: &Response<ServeFileSystemResponseBody>| {
            let status = response.status();
            (status.is_success() || status == StatusCode::NOT_MODIFIED)
                .then(|| cache_control.clone())
        },
    );
    router.fallback_service(service)
}

/// `public, max-age=N` as a header value.
struct CacheControlPublic(u32);

impl From<CacheControlPublic> for HeaderValue {
    fn from(CacheControlPublic(seconds): CacheControlPublic) -> HeaderValue {
        let text = format!("public, max-age={seconds}");
        // Invariant: the text is ASCII letters, digits, ',', '-', '=' and
        // spaces, all valid in a header value.
        #[allow(clippy::expect_used)]
        HeaderValue::from_str(&text).expect("a valid Cache-Control value")
    }
}

/// Checks at start that `root` is a readable directory, naming it otherwise.
fn check_root(root: &Path) -> Result<(), OriginError> {
    let metadata = std::fs::metadata(root).map_err(|source| OriginError::RootUnreadable {
        path: root.to_path_buf(),
        source,
    })?;
    if !metadata.is_dir() {
        return Err(OriginError::RootNotADirectory {
            path: root.to_path_buf(),
        });
    }
    std::fs::read_dir(root).map_err(|source| OriginError::RootUnreadable {
        path: root.to_path_buf(),
        source,
    })?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn settings_from_the_demo_config() {
        let config = config::Config::demo();
        let settings = OriginSettings::from_config(&config, "eu-west").unwrap();
        assert_eq!(
            settings,
            OriginSettings {
                region: "eu-west".into(),
                listen: "127.0.2.2:8000".parse().unwrap(),
                root: None,
                asset_max_age_seconds: 3600,
            }
        );
    }

    #[test]
    fn unknown_region_is_an_error_naming_the_known_ones() {
        let config = config::Config::demo();
        let err = OriginSettings::from_config(&config, "mars").unwrap_err();
        assert!(err.to_string().contains("us-east"), "{err}");
    }

    #[test]
    fn cache_control_value() {
        assert_eq!(
            HeaderValue::from(CacheControlPublic(3600)),
            "public, max-age=3600"
        );
    }

    #[test]
    fn region_that_is_not_a_header_value_is_refused() {
        let settings = OriginSettings {
            region: "bad\nregion".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            root: None,
            asset_max_age_seconds: 1,
        };
        assert!(matches!(
            router(&settings),
            Err(OriginError::InvalidRegion { .. })
        ));
    }
}
