//! The test kit (`kit`), the binary Cargo built for these tests, and the
//! clients the tests talk through, so that a test reads as what it does:
//! `let s = Setup::ad_hoc(70, &[], script); s.get("/a").await.is_hit()`.
//!
//! Starting a process blocks until it is ready. Inside an async test that
//! happens on a blocking section of the runtime (`block_in_place`), so the
//! test's other tasks keep running; the tests that start processes run on
//! the multi-threaded runtime for that.

pub use kit::dns;
pub use kit::http as raw;
pub use kit::roles::{ip, metric};
pub use kit::{Edge, GeoDns, Ran, Received, Reply, ScriptedOrigin, Topology, Up, ok};
pub use kit::{eventually, tcp_listening};
use reqwest::header::HeaderMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

/// The `meridian` binary Cargo built for this test run.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_meridian"))
}

/// A command running [`bin`].
pub fn meridian() -> Command {
    Command::new(bin())
}

/// Running a command to its end, for a test to check how it went:
/// `meridian().args(["config", "check"]).arg(&path).ran().fails()`.
pub trait RunToEnd {
    /// Runs it to its end, its output captured.
    fn ran(&mut self) -> Ran;
}

impl RunToEnd for Command {
    fn ran(&mut self) -> Ran {
        Ran::run(self).unwrap()
    }
}

/// `f`, which blocks, run where it may: on a blocking section inside the
/// multi-threaded runtime of an async test, as it is elsewhere.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// A scratch directory, removed on drop.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("meridian-test-")
        .tempdir()
        .unwrap()
}

/// Writes `contents` to `dir/file`; its path.
pub fn write(dir: &tempfile::TempDir, file: &str, contents: &str) -> std::path::PathBuf {
    let path = dir.path().join(file);
    std::fs::write(&path, contents).unwrap();
    path
}

/// `meridian up` on the demo moved to `block`.
pub fn up(block: u8) -> Up {
    blocking(|| Up::start(bin(), &Topology::demo(block)).unwrap())
}

/// Region `region`'s first edge of `topology`, as the region's only
/// edge: no peers, so every miss goes to the origin (the tests of what an
/// edge does with its origin). Tests of a region's several edges start
/// them with [`Edge::start_nth`].
pub fn edge(topology: &Topology, region: u8) -> Edge {
    blocking(|| Edge::start(bin(), &topology.clone().single_edge(region), region).unwrap())
}

/// An ad-hoc edge on 127.B.0.1:8080 in front of 127.B.0.2:8000.
pub fn ad_hoc(block: u8, flags: &[&str]) -> Edge {
    blocking(|| Edge::ad_hoc_on(bin(), block, flags).unwrap())
}

/// The body of a GET of `url` (an admin endpoint, say), straight to it.
pub async fn get_text(url: &str) -> String {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    client.get(url).send().await.unwrap().text().await.unwrap()
}

/// An HTTP client of one server, whose every response a test reads whole.
#[derive(Clone)]
pub struct Cdn {
    client: reqwest::Client,
    base: String,
}

impl Cdn {
    /// A client that sends every request for `cdn.meridian.test` to
    /// `edge`, like `curl --resolve cdn.meridian.test:PORT:EDGE`.
    pub fn via(edge: SocketAddr) -> Cdn {
        let client = reqwest::Client::builder()
            .no_proxy()
            .resolve("cdn.meridian.test", edge);
        Cdn {
            client: client.build().unwrap(),
            base: format!("http://cdn.meridian.test:{}", edge.port()),
        }
    }

    /// A client of `addr` by its address (an ad-hoc edge serves any Host;
    /// an admin listener wants its own).
    pub fn at(addr: SocketAddr) -> Cdn {
        Cdn {
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            base: format!("http://{addr}"),
        }
    }

    /// The URL of `path` on it.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request of `method` for `path`, to add to before [`Cdn::send`].
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// GET `path`, the response read whole.
    pub async fn get(&self, path: &str) -> Answer {
        self.get_with(path, &[]).await
    }

    /// GET `path` with these header fields.
    pub async fn get_with(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let mut request = self.request(reqwest::Method::GET, path);
        for (name, value) in fields {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    /// POST `body` to `path`.
    pub async fn post(&self, path: &str, body: &'static str) -> Answer {
        self.send(self.request(reqwest::Method::POST, path).body(body))
            .await
    }

    /// Sends `request` (made with [`Cdn::request`]); the response read
    /// whole.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap().to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// GET `path`, the body left to the test (to see it cut off, say).
    pub async fn response(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }
}

/// A response read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The header fields.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The field `name`; empty when there is none.
    pub fn header(&self, name: &str) -> &str {
        header(&self.headers, name)
    }

    /// Its `Cache-Status`.
    pub fn cache_status(&self) -> &str {
        self.header("cache-status")
    }

    /// Whether the edge answered it from its cache.
    pub fn is_hit(&self) -> bool {
        self.cache_status().starts_with("meridian; hit")
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// The field `name` of `headers`; empty when there is none.
pub fn header<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    headers.get(name).map_or("", |v| v.to_str().unwrap())
}

/// An origin a test scripts, an edge in front of it, and a client of the
/// edge.
pub struct Setup {
    /// The origin.
    pub origin: ScriptedOrigin,
    /// The edge.
    pub edge: Edge,
    /// A client of the edge.
    pub cdn: Cdn,
}

impl Setup {
    /// An ad-hoc edge on 127.`block`.0.1:8080, started with `flags`, in
    /// front of the origin on 127.`block`.0.2:8000.
    pub fn ad_hoc(
        block: u8,
        flags: &[&str],
        script: impl Fn(&Received) -> Reply + Send + Sync + 'static,
    ) -> Setup {
        let origin = ScriptedOrigin::start(&format!("127.{block}.0.2:8000"), script).unwrap();
        let edge = ad_hoc(block, flags);
        let cdn = Cdn::at(edge.addr);
        Setup { origin, edge, cdn }
    }

    /// eu-west's edge of `topology` in front of its origin.
    pub fn eu_west(
        topology: &Topology,
        script: impl Fn(&Received) -> Reply + Send + Sync + 'static,
    ) -> Setup {
        let origin = ScriptedOrigin::start(&topology.origin(2).to_string(), script).unwrap();
        let edge = edge(topology, 2);
        let cdn = Cdn::via(edge.addr);
        Setup { origin, edge, cdn }
    }

    /// GET `path` through the edge.
    pub async fn get(&self, path: &str) -> Answer {
        self.cdn.get(path).await
    }

    /// GET `path` through the edge with these header fields.
    pub async fn get_with(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        self.cdn.get_with(path, fields).await
    }
}
