//! The origin as edges and users see it: a real server on `127.0.0.1:0`,
//! started with `origin::serve`, driven over real sockets.

// In tests a panic is the failure report.
#![allow(clippy::unwrap_used)]

use origin::{OriginError, OriginSettings};
use reqwest::StatusCode;
use reqwest::header::{
    CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, LAST_MODIFIED,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running origin; shut down (gracefully) when dropped.
struct TestOrigin {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), OriginError>>>,
}

impl TestOrigin {
    /// The demo site for `region`.
    async fn demo(region: &str) -> TestOrigin {
        TestOrigin::start(settings(region, None)).await
    }

    async fn start(settings: OriginSettings) -> TestOrigin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(origin::serve(listener, settings, async {
            let _ = rx.await;
        }));
        TestOrigin {
            addr,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.send(reqwest::Method::GET, path, &[]).await
    }

    /// HEAD `path`.
    async fn head(&self, path: &str) -> reqwest::Response {
        self.send(reqwest::Method::HEAD, path, &[]).await
    }

    /// POST a small body to `path`.
    async fn post(&self, path: &str) -> reqwest::Response {
        self.send(reqwest::Method::POST, path, &[]).await
    }

    /// GET `path` with the field `name: value`.
    async fn get_with(&self, path: &str, name: &str, value: &str) -> reqwest::Response {
        self.send(reqwest::Method::GET, path, &[(name, value)])
            .await
    }

    /// `method` on `path` with these fields (and a body for a POST).
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let post = method == reqwest::Method::POST;
        let mut request = client().request(method, self.url(path));
        if post {
            request = request.body("x");
        }
        for (name, value) in fields {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    /// Stops the server and returns what `serve` returned.
    async fn stop(mut self) -> Result<(), OriginError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let task = self.task.take().unwrap();
        task.await.unwrap()
    }
}

impl Drop for TestOrigin {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn settings(region: &str, root: Option<PathBuf>) -> OriginSettings {
    OriginSettings {
        region: region.into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        root,
        asset_max_age_seconds: 3600,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn header(response: &reqwest::Response, name: impl reqwest::header::AsHeaderName) -> &str {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

/// What an answer is judged by first: its status and its `Cache-Control`
/// (empty when it has none).
fn status_and_caching(response: &reqwest::Response) -> (StatusCode, &str) {
    (response.status(), header(response, CACHE_CONTROL))
}

async fn json(response: reqwest::Response) -> serde_json::Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

/// Sends `target` verbatim (clients normalize `..` and `%2e%2e` away, so
/// traversal attempts need a hand-written request); returns the status and
/// the body.
async fn raw_get(addr: SocketAddr, target: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A fresh directory under the system temp dir, removed on drop.
fn tempdir(name: &str) -> tempfile::TempDir {
    let prefix = format!("meridian-origin-{name}-");
    tempfile::Builder::new().prefix(&prefix).tempdir().unwrap()
}

const TRAVERSALS: [&str; 6] = [
    "/assets/../../etc/passwd",
    "/../../../../etc/passwd",
    "/assets/%2e%2e/%2e%2e/etc/passwd",
    "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/assets/..%2f..%2f..%2f..%2fetc/passwd",
    "/%2fetc/passwd",
];

fn assert_no_passwd(status: u16, body: &str, target: &str) {
    assert!(!body.contains("root:"), "{target} leaked /etc/passwd");
    assert!(
        status == 400 || status == 404,
        "{target}: unexpected status {status}"
    );
}

#[tokio::test]
async fn binary_assets_have_exact_sizes_and_match_across_regions() {
    let eu = TestOrigin::demo("eu-west").await;
    let us = TestOrigin::demo("us-east").await;
    for (path, size) in [
        ("/assets/1k.bin", 1024),
        ("/assets/100k.bin", 102_400),
        ("/assets/1m.bin", 1_048_576),
    ] {
        let a = eu.get(path).await;
        let b = us.get(path).await;
        assert_eq!(a.status(), StatusCode::OK, "{path}");
        assert_eq!(b.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&a, CONTENT_TYPE), "application/octet-stream");
        let etag = header(&a, ETAG).to_owned();
        let last_modified = header(&a, LAST_MODIFIED).to_owned();
        assert!(etag.starts_with('"'), "{path}: ETag {etag:?}");
        assert_eq!(last_modified, "Thu, 01 Jan 2026 00:00:00 GMT");
        assert_eq!(header(&b, ETAG), etag, "{path}");
        assert_eq!(header(&b, LAST_MODIFIED), last_modified, "{path}");
        let a = a.bytes().await.unwrap();
        let b = b.bytes().await.unwrap();
        assert_eq!(a.len(), size, "{path}");
        assert_eq!(a, b, "{path}");
        assert!(a.iter().filter(|b| **b == 0).count() < size / 64, "{path}");
    }
}

#[tokio::test]
async fn validators_are_stable_across_restarts_and_differ_between_files() {
    let first = TestOrigin::demo("eu-west").await;
    let one = first.get("/assets/1k.bin").await;
    let hello = first.get("/assets/hello.txt").await;
    let etag = header(&one, ETAG).to_owned();
    assert_ne!(header(&hello, ETAG), etag);
    first.stop().await.unwrap();

    let second = TestOrigin::demo("eu-west").await;
    assert_eq!(header(&second.get("/assets/1k.bin").await, ETAG), etag);
}

#[tokio::test]
async fn assets_are_publicly_cacheable() {
    let origin = TestOrigin::demo("eu-west").await;
    for (path, content_type) in [
        ("/assets/1k.bin", "application/octet-stream"),
        ("/assets/style.css", "text/css"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/hello.txt", "text/plain"),
        ("/", "text/html"),
    ] {
        let response = origin.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(
            header(&response, CACHE_CONTROL),
            "public, max-age=3600",
            "{path}"
        );
        assert!(
            header(&response, CONTENT_TYPE).starts_with(content_type),
            "{path}: {}",
            header(&response, CONTENT_TYPE)
        );
        assert!(!header(&response, ETAG).is_empty(), "{path}");
        assert!(!header(&response, LAST_MODIFIED).is_empty(), "{path}");
        assert_eq!(header(&response, "x-meridian-origin-region"), "eu-west");
    }
}

#[tokio::test]
async fn max_age_comes_from_the_settings() {
    let mut settings = settings("eu-west", None);
    settings.asset_max_age_seconds = 60;
    let origin = TestOrigin::start(settings).await;
    let response = origin.get("/assets/hello.txt").await;
    assert_eq!(header(&response, CACHE_CONTROL), "public, max-age=60");
}

#[tokio::test]
async fn index_names_the_region_and_is_identical_on_every_start() {
    let first = TestOrigin::demo("eu-west").await;
    let second = TestOrigin::demo("eu-west").await;
    // Same name length, so the pages have the same length but other bytes.
    let other = TestOrigin::demo("us-east").await;
    let a = first.get("/").await;
    let b = second.get("/").await;
    let c = other.get("/").await;
    assert_eq!(header(&a, ETAG), header(&b, ETAG));
    assert_eq!(header(&a, CONTENT_LENGTH), header(&c, CONTENT_LENGTH));
    // A different page must not share a strong validator with this one.
    assert_ne!(header(&a, ETAG), header(&c, ETAG));
    let a = a.text().await.unwrap();
    assert_eq!(a, b.text().await.unwrap());
    assert!(a.contains("This page came from origin <strong id=\"region\">eu-west</strong>"));
    assert!(a.contains("dig @127.0.0.1 -p 5353 cdn.meridian.test A +subnet=8.8.8.0/24"));
    assert!(c.text().await.unwrap().contains(">us-east</strong>"));
    // /index.html is the same file.
    assert_eq!(first.get("/index.html").await.text().await.unwrap(), a);
}

/// Asserts that `response` is a 200 with the whole body, of `len` bytes:
/// what a validator that does not match gets.
async fn assert_whole(response: reqwest::Response, len: usize) {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap().len(), len);
}

#[tokio::test]
async fn if_none_match_gets_304() {
    let origin = TestOrigin::demo("eu-west").await;
    let first = origin.get("/assets/100k.bin").await;
    let etag = header(&first, ETAG).to_owned();

    let response = origin
        .get_with("/assets/100k.bin", "if-none-match", &etag)
        .await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&response, ETAG), etag);
    assert_eq!(header(&response, CACHE_CONTROL), "public, max-age=3600");
    assert!(response.bytes().await.unwrap().is_empty());

    // A different tag is a miss: the full body comes back.
    let response = origin
        .get_with("/assets/100k.bin", "if-none-match", "\"something-else\"")
        .await;
    assert_whole(response, 102_400).await;
}

#[tokio::test]
async fn if_none_match_validates_against_another_regions_etag() {
    let eu = TestOrigin::demo("eu-west").await;
    let us = TestOrigin::demo("us-east").await;
    let etag = header(&eu.get("/assets/1m.bin").await, ETAG).to_owned();
    let response = us.get_with("/assets/1m.bin", "if-none-match", &etag).await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn if_modified_since_gets_304() {
    let origin = TestOrigin::demo("eu-west").await;
    let last_modified = header(&origin.get("/assets/1k.bin").await, LAST_MODIFIED).to_owned();

    let response = origin
        .get_with("/assets/1k.bin", "if-modified-since", &last_modified)
        .await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&response, LAST_MODIFIED), last_modified);

    let response = origin
        .get_with(
            "/assets/1k.bin",
            "if-modified-since",
            "Sun, 01 Jan 2017 00:00:00 GMT",
        )
        .await;
    assert_whole(response, 1024).await;
}

#[tokio::test]
async fn range_requests() {
    let origin = TestOrigin::demo("eu-west").await;
    let full = origin.get("/assets/1k.bin").await.bytes().await.unwrap();

    let ranged = |range: &'static str| origin.get_with("/assets/1k.bin", "range", range);

    let response = ranged("bytes=0-99").await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&response, CONTENT_RANGE), "bytes 0-99/1024");
    assert_eq!(header(&response, CACHE_CONTROL), "public, max-age=3600");
    assert_eq!(response.bytes().await.unwrap(), full.slice(0..100));

    let response = ranged("bytes=500-599").await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&response, CONTENT_RANGE), "bytes 500-599/1024");
    assert_eq!(response.bytes().await.unwrap(), full.slice(500..600));

    let response = ranged("bytes=-100").await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&response, CONTENT_RANGE), "bytes 924-1023/1024");
    assert_eq!(response.bytes().await.unwrap(), full.slice(924..));

    let response = ranged("bytes=2000-3000").await;
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&response, CONTENT_RANGE), "bytes */1024");

    // ServeDir cannot build multipart/byteranges; the origin ignores such a
    // Range (as RFC 9110 allows) and sends the whole representation.
    let response = ranged("bytes=0-9,20-29").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap(), full);
}

#[tokio::test]
async fn head_has_headers_and_no_body() {
    let origin = TestOrigin::demo("eu-west").await;
    let response = origin.head("/assets/1m.bin").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, CONTENT_LENGTH), "1048576");
    assert!(!header(&response, ETAG).is_empty());
    assert_eq!(header(&response, CACHE_CONTROL), "public, max-age=3600");
    assert!(response.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn whoami_reports_region_origin_and_forwarded_client() {
    let origin = TestOrigin::demo("eu-west").await;
    let response = origin
        .get_with("/api/whoami", "x-forwarded-for", "203.0.113.7, 10.0.0.1")
        .await;
    assert_eq!(status_and_caching(&response), (StatusCode::OK, "no-store"));
    assert_eq!(header(&response, CONTENT_TYPE), "application/json");
    assert_eq!(header(&response, "x-meridian-origin-region"), "eu-west");
    let who: serde_json::Value = json(response).await;
    assert_eq!(who["region"], "eu-west");
    assert_eq!(who["origin"], origin.addr.to_string());
    assert_eq!(who["client"], "203.0.113.7");
    assert_eq!(who["forwarded_for"], "203.0.113.7, 10.0.0.1");
    let time = who["time"].as_str().unwrap();
    let parsed = humantime::parse_rfc3339(time).unwrap();
    let skew = std::time::SystemTime::now()
        .duration_since(parsed)
        .unwrap_or_default();
    assert!(skew.as_secs() < 60, "time {time} is not now");
    assert!(time.ends_with('Z'), "{time}");
    let first_id = who["request_id"].as_u64().unwrap();

    let who: serde_json::Value = json(origin.get("/api/whoami").await).await;
    assert_eq!(who["client"], "127.0.0.1");
    assert_eq!(who["forwarded_for"], serde_json::Value::Null);
    assert!(who["request_id"].as_u64().unwrap() > first_id);
}

#[tokio::test]
async fn whoami_ignores_a_forwarded_for_that_is_not_an_address() {
    let origin = TestOrigin::demo("us-east").await;
    let forwarded = ("x-forwarded-for", "unknown");
    let who = json(
        origin
            .get_with("/api/whoami", forwarded.0, forwarded.1)
            .await,
    )
    .await;
    assert_eq!(who["client"], "127.0.0.1");
    assert_eq!(who["forwarded_for"], "unknown");
    assert_eq!(who["region"], "us-east");
}

#[tokio::test]
async fn healthz() {
    let origin = TestOrigin::demo("eu-west").await;
    let response = origin.get("/healthz").await;
    assert_eq!(status_and_caching(&response), (StatusCode::OK, "no-store"));
    assert_eq!(header(&response, "x-meridian-origin-region"), "eu-west");
    assert_eq!(response.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn unknown_paths_are_404_and_not_cacheable() {
    let origin = TestOrigin::demo("eu-west").await;
    for path in ["/nope", "/assets/nope.bin", "/api/nope", "/assets/1k.bin/x"] {
        let response = origin.get(path).await;
        assert_eq!(
            status_and_caching(&response),
            (StatusCode::NOT_FOUND, ""),
            "{path}"
        );
        assert_eq!(header(&response, "x-meridian-origin-region"), "eu-west");
    }
}

#[tokio::test]
async fn unsafe_methods_on_static_files_are_405() {
    let origin = TestOrigin::demo("eu-west").await;
    let response = origin.post("/assets/1k.bin").await;
    assert_eq!(
        status_and_caching(&response),
        (StatusCode::METHOD_NOT_ALLOWED, "")
    );
}

#[tokio::test]
async fn traversal_does_not_escape_the_demo_site() {
    let origin = TestOrigin::demo("eu-west").await;
    // The raw client works: a plain asset through it is a 200.
    let (status, body) = raw_get(origin.addr, "/assets/hello.txt").await;
    assert_eq!(status, 200);
    assert!(body.contains("Hello"));
    for target in TRAVERSALS {
        let (status, body) = raw_get(origin.addr, target).await;
        assert_no_passwd(status, &body, target);
    }
}

#[tokio::test]
async fn serves_a_real_directory() {
    let dir = tempdir("root");
    std::fs::write(dir.path().join("index.html"), "<p>from disk</p>").unwrap();
    std::fs::create_dir(dir.path().join("assets")).unwrap();
    std::fs::write(dir.path().join("assets/hello.txt"), "hello from disk\n").unwrap();
    // A secret next to the root, which a traversal would try to reach.
    let outside = tempdir("outside");
    std::fs::write(outside.path().join("secret.txt"), "root:x:0:0").unwrap();
    let outside_name = outside.path().file_name().unwrap().to_str().unwrap();

    let origin = TestOrigin::start(settings("eu-west", Some(dir.path().to_path_buf()))).await;
    let response = origin.get("/assets/hello.txt").await;
    assert_eq!(
        status_and_caching(&response),
        (StatusCode::OK, "public, max-age=3600")
    );
    let etag = header(&response, ETAG).to_owned();
    assert!(!etag.is_empty());
    assert!(!header(&response, LAST_MODIFIED).is_empty());
    assert_eq!(response.text().await.unwrap(), "hello from disk\n");

    let response = origin
        .get_with("/assets/hello.txt", "if-none-match", &etag)
        .await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);

    let response = origin
        .get_with("/assets/hello.txt", "range", "bytes=-5")
        .await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.text().await.unwrap(), "disk\n");

    assert_eq!(
        origin.get("/").await.text().await.unwrap(),
        "<p>from disk</p>"
    );
    assert_eq!(
        origin.get("/assets/1k.bin").await.status(),
        StatusCode::NOT_FOUND
    );

    // The raw client sees files from disk, so it would see a leak.
    let (status, body) = raw_get(origin.addr, "/assets/hello.txt").await;
    assert_eq!(status, 200);
    assert!(body.contains("hello from disk"));
    let sibling = format!("/../{outside_name}/secret.txt");
    let sibling_encoded = format!("/%2e%2e/{outside_name}/secret.txt");
    for target in TRAVERSALS
        .iter()
        .copied()
        .chain([sibling.as_str(), sibling_encoded.as_str()])
    {
        let (status, body) = raw_get(origin.addr, target).await;
        assert_no_passwd(status, &body, target);
    }
}

#[tokio::test]
async fn a_missing_root_is_an_error_naming_it() {
    let dir = tempdir("missing");
    let missing = dir.path().join("does-not-exist");
    let err = origin::router(&settings("eu-west", Some(missing.clone()))).unwrap_err();
    assert!(matches!(err, OriginError::RootUnreadable { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );

    // serve refuses to start too.
    let origin = TestOrigin::start(settings("eu-west", Some(missing))).await;
    assert!(matches!(
        origin.stop().await,
        Err(OriginError::RootUnreadable { .. })
    ));
}

#[tokio::test]
async fn a_root_that_is_a_file_is_an_error_naming_it() {
    let dir = tempdir("file-root");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let err = origin::router(&settings("eu-west", Some(file.clone()))).unwrap_err();
    assert!(
        matches!(err, OriginError::RootNotADirectory { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&file.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn shutdown_is_graceful() {
    let origin = TestOrigin::demo("eu-west").await;
    assert_eq!(origin.get("/healthz").await.status(), StatusCode::OK);
    let addr = origin.addr;
    origin.stop().await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// Collects formatted log output for [`logs_one_listening_line`].
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_one_listening_line_and_nothing_per_request() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The test runtime is single-threaded, so the server task logs here too.
    let _guard = tracing::subscriber::set_default(subscriber);
    // Other tests log from other threads, which have no subscriber. While
    // only one dispatcher exists, tracing-core caches a call site's interest
    // from whichever thread reaches it first, so a concurrent test could
    // cache "never" for `listening for HTTP`. A second live dispatcher makes
    // it consult every registered dispatcher (ours included) instead.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    tracing::callsite::rebuild_interest_cache();

    let origin = TestOrigin::demo("eu-west").await;
    let addr = origin.addr;
    for path in ["/", "/assets/1k.bin", "/api/whoami", "/nope"] {
        origin.get(path).await;
    }
    origin.stop().await.unwrap();

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(lines.len(), 1, "{logs}");
    assert!(lines[0].contains(" INFO "), "{logs}");
    assert!(
        lines[0].ends_with(&format!("listening for HTTP on {addr}")),
        "{logs}"
    );
}
