//! The test kit (`kit`), the binary Cargo built for these tests,
//! and the HTTP clients the tests talk through.

pub use kit::dns;
pub use kit::roles::{ip, metric};
pub use kit::{Edge, GeoDns, Topology, Up, eventually, tcp_listening};
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
    Up::start(bin(), &Topology::demo(block)).unwrap()
}

/// Region `region`'s edge of `topology`.
pub fn edge(topology: &Topology, region: u8) -> Edge {
    Edge::start(bin(), topology, region).unwrap()
}

/// An ad-hoc edge on 127.B.0.1:8080 in front of 127.B.0.2:8000.
pub fn ad_hoc(block: u8, flags: &[&str]) -> Edge {
    Edge::ad_hoc_on(bin(), block, flags).unwrap()
}

/// A client that sends every request for cdn.meridian.test to `edge`.
pub fn client_via(edge: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .resolve("cdn.meridian.test", edge)
        .build()
        .unwrap()
}

/// The body of a GET of `url` (an admin endpoint, say), straight to it.
pub async fn get_text(url: &str) -> String {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
