//! An in-process origin that counts every request it gets, per path.
//!
//! Benchmarks of an edge need an origin whose behaviour they control (how
//! big, how slow, how cacheable) and which can tell afterwards how many
//! requests really reached it: that count is what request coalescing is
//! measured by. It serves:
//!
//! - `GET /object-*`: after the configured delay, a body of the configured
//!   size and `Cache-Control` (the same bytes for every path);
//! - `GET /sized/N`: the same, with a body of N bytes (at most
//!   [`MAX_SIZED_BYTES`]), so one origin serves objects of several sizes;
//! - `/healthz`: 200, for the edge's active origin health checks;
//! - anything else: 404.
//!
//! Every request is counted, by path, when it arrives (before the delay),
//! so concurrent fetches are all seen even while they are still waiting.

use crate::BenchError;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::sync::oneshot;

/// The path prefix of the objects the origin serves.
pub const OBJECT_PREFIX: &str = "/object-";

/// The path prefix of objects whose size is in their path.
pub const SIZED_PREFIX: &str = "/sized/";

/// The largest `/sized/N` object.
pub const MAX_SIZED_BYTES: usize = 64 * 1024 * 1024;

/// The path of an object of `bytes` bytes.
pub fn sized_path(bytes: usize) -> String {
    format!("{SIZED_PREFIX}{bytes}")
}

/// What the origin answers for objects.
#[derive(Debug, Clone)]
pub struct OriginSpec {
    /// The size of every object's body, in bytes.
    pub body_bytes: usize,
    /// How long the origin waits before answering an object request.
    pub delay: Duration,
    /// The `Cache-Control` value it sends with objects.
    pub cache_control: String,
}

/// What the server task shares with the handle.
struct Shared {
    body: Bytes,
    delay: Duration,
    cache_control: HeaderValue,
    /// Requests per path; the map is only written the first time a path is
    /// seen, so concurrent requests for one path contend on the counter
    /// alone.
    counts: RwLock<HashMap<String, Arc<AtomicU64>>>,
}

impl Shared {
    fn count(&self, path: &str) {
        let existing = self
            .counts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path)
            .cloned();
        let counter = match existing {
            Some(counter) => counter,
            None => self
                .counts
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(path.to_owned())
                .or_default()
                .clone(),
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A running counting origin on 127.0.0.1; stops on drop.
pub struct CountingOrigin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
}

impl CountingOrigin {
    /// Binds 127.0.0.1:0 and serves `spec` on it, on the current runtime.
    pub async fn start(spec: &OriginSpec) -> Result<CountingOrigin, BenchError> {
        let cache_control =
            HeaderValue::from_str(&spec.cache_control).map_err(|_| BenchError::InvalidOption {
                name: "origin Cache-Control",
                reason: format!("{:?} is not a header value", spec.cache_control),
            })?;
        let shared = Arc::new(Shared {
            body: object_body(spec.body_bytes),
            delay: spec.delay,
            cache_control,
            counts: RwLock::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|source| BenchError::Io {
                action: "bind the origin on 127.0.0.1",
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| BenchError::Io {
            action: "read the origin's address",
            source,
        })?;
        let app = Router::new().fallback(serve).with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(error) = served {
                eprintln!("counting origin failed: {error}");
            }
        });
        Ok(CountingOrigin {
            addr,
            shared,
            stop: Some(stop),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The body it serves for every object.
    pub fn body(&self) -> Bytes {
        self.shared.body.clone()
    }

    /// How many requests for `path` it has received.
    pub fn requests(&self, path: &str) -> u64 {
        self.shared
            .counts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

impl Drop for CountingOrigin {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A body of `len` bytes whose content depends on the position, so a body
/// assembled from the wrong pieces does not compare equal.
pub fn object_body(len: usize) -> Bytes {
    (0..len)
        .map(|i| b"meridian-bench-0123456789\n"[i % 26])
        .collect::<Vec<u8>>()
        .into()
}

async fn serve(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    let path = uri.path();
    shared.count(path);
    if path == "/healthz" {
        return (
            [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
            "ok\n",
        )
            .into_response();
    }
    let body = if path.starts_with(OBJECT_PREFIX) {
        shared.body.clone()
    } else if let Some(size) = path
        .strip_prefix(SIZED_PREFIX)
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n <= MAX_SIZED_BYTES)
    {
        object_body(size)
    } else {
        return StatusCode::NOT_FOUND.into_response();
    };
    tokio::time::sleep(shared.delay).await;
    (
        [
            (header::CACHE_CONTROL, shared.cache_control.clone()),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn it_serves_objects_and_counts_requests_per_path() {
        let origin = CountingOrigin::start(&OriginSpec {
            body_bytes: 1000,
            delay: Duration::from_millis(1),
            cache_control: "public, max-age=60".into(),
        })
        .await
        .unwrap();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        for _ in 0..2 {
            let response = client
                .get(format!("{}/object-a", origin.url()))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["cache-control"], "public, max-age=60");
            assert_eq!(response.bytes().await.unwrap(), origin.body());
        }
        let missing = client
            .get(format!("{}/other", origin.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
        assert_eq!(origin.requests("/object-a"), 2);
        assert_eq!(origin.requests("/other"), 1);
        let sized = client
            .get(format!("{}{}", origin.url(), sized_path(4096)))
            .send()
            .await
            .unwrap();
        assert_eq!(sized.status(), 200);
        assert_eq!(sized.bytes().await.unwrap(), object_body(4096));
        let too_big = sized_path(MAX_SIZED_BYTES + 1);
        let too_big = client
            .get(format!("{}{too_big}", origin.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(too_big.status(), 404);
        assert_eq!(origin.requests("/object-b"), 0);
        assert_eq!(origin.body().len(), 1000);
    }
}
