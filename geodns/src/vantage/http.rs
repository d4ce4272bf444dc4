//! Views over HTTP: every other vantage point's admin listener, polled.
//!
//! The other GeoDNS servers are asked for `/health` (with
//! `geodns.admin_token` when the config sets one) and counted by their
//! `probed_up`; the edges are asked for `/status` and counted by their
//! `peers`, for the edges of the region their `/status` names, if the
//! config puts that edge's admin listener in that region. Whatever does not
//! answer, answers an error, or sends what does not parse says nothing this
//! time; a body over [`MAX_REPORT_BYTES`] is not read further.

use super::{Report, Transport};
use config::report::SeenEdge;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// The most of one report that is read: far more than a real one (a GeoDNS
/// view of a thousand edges is about 100 KiB), so that a vantage point that
/// misbehaves cannot make GeoDNS hold much memory.
pub const MAX_REPORT_BYTES: usize = 1 << 20;

/// Polls every other vantage point of a config once per exchange.
pub struct HttpPolling {
    client: Option<reqwest::Client>,
    targets: Vec<Arc<Target>>,
}

/// One vantage point to poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its name in reports: `geodns ns2`, `edge 127.0.2.1:9080`.
    pub vantage: String,
    /// What is asked.
    pub url: String,
    /// The bearer token it needs.
    token: Option<String>,
    /// How its answer is read.
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// Another GeoDNS server: its own probes, from `/health`.
    GeoDns,
    /// An edge's admin listener: its `peers`, from `/status`, counted only
    /// for the edges of the region it names, among these (region name →
    /// the region's edges' HTTP addresses).
    Edge(HashMap<String, Vec<SocketAddr>>),
}

impl HttpPolling {
    /// The vantage points GeoDNS server `me` (an index into
    /// `config.geodns.servers`) hears from: every other server, and every
    /// edge admin listener.
    pub fn from_config(config: &config::Config, me: usize, timeout: std::time::Duration) -> Self {
        let client = match reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .build()
        {
            Ok(client) => Some(client),
            Err(error) => {
                tracing::error!(
                    %error,
                    "cannot build the client that polls the other vantage points; \
                     this server decides on its own probes"
                );
                None
            }
        };
        HttpPolling {
            client,
            targets: targets(config, me).into_iter().map(Arc::new).collect(),
        }
    }

    /// Whom it polls.
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.targets.iter().map(|t| &**t)
    }
}

/// The vantage points server `me` polls, in config order: the other
/// GeoDNS servers, then each edge admin listener once.
fn targets(config: &config::Config, me: usize) -> Vec<Target> {
    let token = config.geodns.admin_token.clone();
    let mut targets: Vec<Target> = config
        .geodns
        .servers
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != me)
        .map(|(_, server)| Target {
            vantage: format!("geodns {}", server.name),
            url: format!("http://{}/health", server.admin_listen),
            token: token.clone(),
            kind: Kind::GeoDns,
        })
        .collect();
    // One admin listener per edge process; an admin address shared by
    // several edges (edge.admin_address on hosts of their own) is asked
    // once, and counted for the region its answer names.
    let mut edges: Vec<(SocketAddr, HashMap<String, Vec<SocketAddr>>)> = Vec::new();
    for region in &config.regions {
        for admin in region.edge_admin_addrs(&config.edge) {
            let at = match edges.iter().position(|(a, _)| *a == admin) {
                Some(at) => at,
                None => {
                    edges.push((admin, HashMap::new()));
                    edges.len() - 1
                }
            };
            edges[at]
                .1
                .insert(region.name.clone(), region.edge_http_addrs(&config.edge));
        }
    }
    targets.extend(edges.into_iter().map(|(admin, regions)| Target {
        vantage: format!("edge {admin}"),
        url: format!("http://{admin}/status"),
        token: None,
        kind: Kind::Edge(regions),
    }));
    targets
}

impl Transport for HttpPolling {
    async fn exchange(&mut self, _own: &[SeenEdge]) -> Vec<Report> {
        // This server's own view is served on its `/health`: nothing to send.
        let Some(client) = &self.client else {
            return Vec::new();
        };
        let mut polls = tokio::task::JoinSet::new();
        for target in &self.targets {
            polls.spawn(poll(client.clone(), target.clone()));
        }
        let mut reports = Vec::new();
        while let Some(polled) = polls.join_next().await {
            if let Ok(Some(report)) = polled {
                reports.push(report);
            }
        }
        reports
    }
}

/// What `target` says now, if it answers with a report.
async fn poll(client: reqwest::Client, target: Arc<Target>) -> Option<Report> {
    let mut request = client.get(&target.url);
    if let Some(token) = &target.token {
        request = request.bearer_auth(token);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(vantage = %target.vantage, %error, "no report");
            return None;
        }
    };
    if !response.status().is_success() {
        tracing::debug!(vantage = %target.vantage, status = %response.status(), "no report");
        return None;
    }
    let body = read_bounded(response, MAX_REPORT_BYTES).await?;
    let edges = match &target.kind {
        Kind::GeoDns => geodns_report(&body),
        Kind::Edge(regions) => edge_report(&body, regions),
    }?;
    Some(Report {
        vantage: target.vantage.clone(),
        edges,
    })
}

/// The body of `response`, unless it is longer than `limit` bytes or
/// breaks off.
pub async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Option<Vec<u8>> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return None;
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.ok()? {
        if body.len() + chunk.len() > limit {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    Some(body)
}

/// Another GeoDNS server's `/health`, as far as a report needs it.
#[derive(Deserialize)]
struct PeerRegion {
    edges: Vec<PeerEdge>,
}

#[derive(Deserialize)]
struct PeerEdge {
    addr: SocketAddr,
    /// Absent from GeoDNS versions that do not publish their own probes:
    /// such a server does not count.
    probed_up: Option<bool>,
}

/// Another GeoDNS server's own probes, from its `/health`; `None` when it
/// does not parse or publishes none.
pub fn geodns_report(body: &[u8]) -> Option<Vec<SeenEdge>> {
    let regions: Vec<PeerRegion> = serde_json::from_slice(body).ok()?;
    let edges: Vec<SeenEdge> = regions
        .into_iter()
        .flat_map(|r| r.edges)
        .filter_map(|e| {
            Some(SeenEdge {
                addr: e.addr,
                up: e.probed_up?,
            })
        })
        .collect();
    (!edges.is_empty()).then_some(edges)
}

/// An edge's `/status`, as far as a report needs it.
#[derive(Deserialize)]
struct EdgeStatus {
    region: String,
    /// Absent from edges that do not check their peers: such an edge does
    /// not count.
    peers: Option<Vec<SeenEdge>>,
}

/// What an edge sees of its region's other edges, from its `/status`:
/// only the edges of the region it names, if that region is one of
/// `regions` (those the config puts behind this admin listener); `None`
/// when it does not parse, publishes no peers or names another region.
pub fn edge_report(
    body: &[u8],
    regions: &HashMap<String, Vec<SocketAddr>>,
) -> Option<Vec<SeenEdge>> {
    let status: EdgeStatus = serde_json::from_slice(body).ok()?;
    let region_edges = regions.get(&status.region)?;
    let peers = status
        .peers?
        .into_iter()
        .filter(|peer| region_edges.contains(&peer.addr))
        .collect();
    Some(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_other_server_and_every_edge_admin_is_polled() {
        let config = config::Config::demo();
        let from_ns1: Vec<(String, String)> = targets(&config, 0)
            .into_iter()
            .map(|t| (t.vantage, t.url))
            .collect();
        assert_eq!(
            from_ns1,
            [
                ("geodns ns2", "http://127.0.0.2:9153/health"),
                ("edge 127.0.1.1:9080", "http://127.0.1.1:9080/status"),
                ("edge 127.0.1.3:9080", "http://127.0.1.3:9080/status"),
                ("edge 127.0.2.1:9080", "http://127.0.2.1:9080/status"),
                ("edge 127.0.2.3:9080", "http://127.0.2.3:9080/status"),
                ("edge 127.0.3.1:9080", "http://127.0.3.1:9080/status"),
                ("edge 127.0.3.3:9080", "http://127.0.3.3:9080/status"),
            ]
            .map(|(v, u)| (v.to_owned(), u.to_owned()))
        );
        let from_ns2 = targets(&config, 1);
        assert_eq!(from_ns2[0].vantage, "geodns ns1");
        assert_eq!(from_ns2[0].url, "http://127.0.0.1:9153/health");
        assert!(from_ns2.iter().all(|t| t.token.is_none()));
    }

    #[test]
    fn servers_are_asked_with_the_admin_token() {
        let text = config::DEMO_TOML.replacen(
            "[geodns]\n",
            "[geodns]\nadmin_token = \"geodns-admin-token-1234\"\n",
            1,
        );
        let config = config::Config::from_toml(&text, config::ConfigSource::Embedded).unwrap();
        let targets = targets(&config, 0);
        assert_eq!(targets[0].token.as_deref(), Some("geodns-admin-token-1234"));
        assert!(
            targets[1..].iter().all(|t| t.token.is_none()),
            "edges need none"
        );
    }

    #[test]
    fn a_servers_report_is_its_own_probes() {
        let body = br#"[{"region":"eu-west","up":true,"edges":[
            {"addr":"127.0.2.1:8080","up":true,"probed_up":false,"seen_by":[]},
            {"addr":"127.0.2.3:8080","up":true,"probed_up":true,"seen_by":[]}]}]"#;
        assert_eq!(
            geodns_report(body),
            Some(vec![
                SeenEdge {
                    addr: "127.0.2.1:8080".parse().unwrap(),
                    up: false
                },
                SeenEdge {
                    addr: "127.0.2.3:8080".parse().unwrap(),
                    up: true
                },
            ])
        );
        // A server that publishes only its decisions does not count.
        let decisions_only =
            br#"[{"region":"eu-west","up":true,"edges":[{"addr":"127.0.2.1:8080","up":true}]}]"#;
        assert_eq!(geodns_report(decisions_only), None);
    }

    #[test]
    fn an_edge_counts_for_its_own_region_only() {
        let regions = HashMap::from([(
            "eu-west".to_owned(),
            vec![
                "127.0.2.1:8080".parse().unwrap(),
                "127.0.2.3:8080".parse().unwrap(),
            ],
        )]);
        let body = br#"{"region":"eu-west","origins":[],"cache":{"hit_ratio":0.5},
            "peers":[{"addr":"127.0.2.3:8080","up":false},{"addr":"127.0.1.1:8080","up":false}]}"#;
        assert_eq!(
            edge_report(body, &regions),
            Some(vec![SeenEdge {
                addr: "127.0.2.3:8080".parse().unwrap(),
                up: false
            }]),
            "another region's edge is not this edge's to judge"
        );
        let elsewhere = br#"{"region":"us-east","peers":[{"addr":"127.0.2.3:8080","up":false}]}"#;
        assert_eq!(edge_report(elsewhere, &regions), None);
        let no_peers = br#"{"region":"eu-west","origins":[]}"#;
        assert_eq!(edge_report(no_peers, &regions), None);
    }

    /// A vantage point at a fresh loopback port that answers every
    /// connection with `respond`.
    async fn peer<F, Fut>(respond: F) -> SocketAddr
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let respond = Arc::new(respond);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(respond(socket));
            }
        });
        addr
    }

    /// Polling one GeoDNS peer at `addr` with a 300 ms timeout.
    fn polling(addr: SocketAddr) -> HttpPolling {
        HttpPolling {
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(std::time::Duration::from_millis(300))
                .build()
                .ok(),
            targets: vec![Arc::new(Target {
                vantage: "geodns peer".into(),
                url: format!("http://{addr}/health"),
                token: None,
                kind: Kind::GeoDns,
            })],
        }
    }

    const VIEW: &str = r#"[{"region":"eu-west","up":true,"edges":[{"addr":"127.0.2.1:8080","up":true,"probed_up":true,"seen_by":[]}]}]"#;

    async fn head_then(mut socket: tokio::net::TcpStream, head: String, body: Vec<u8>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = [0u8; 4096];
        let _ = socket.read(&mut buf).await;
        let _ = socket.write_all(head.as_bytes()).await;
        let _ = socket.write_all(&body).await;
        // Holds the connection open, as a peer that stalls would.
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    }

    #[tokio::test]
    async fn a_peer_is_heard_within_bounds_or_not_at_all() {
        // A well-behaved peer is heard.
        let good = peer(|socket| {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                VIEW.len()
            );
            head_then(socket, head, VIEW.as_bytes().to_vec())
        })
        .await;
        let reports = polling(good).exchange(&[]).await;
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].vantage, "geodns peer");

        // One that says it sends more than the cap, or sends more without
        // saying: nothing, read no further than the cap.
        let announced = peer(|socket| {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                MAX_REPORT_BYTES + 1
            );
            head_then(socket, head, Vec::new())
        })
        .await;
        let chunked = peer(|socket| {
            let mut body = Vec::new();
            let chunk = vec![b' '; 64 * 1024];
            for _ in 0..(MAX_REPORT_BYTES / chunk.len() + 2) {
                body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                body.extend_from_slice(&chunk);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"0\r\n\r\n");
            let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_owned();
            head_then(socket, head, body)
        })
        .await;
        // One that answers its head and then stalls, one that never answers.
        let stalls = peer(|socket| {
            let head = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n[".to_owned();
            head_then(socket, head, Vec::new())
        })
        .await;
        let silent = peer(|socket| async move {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            drop(socket);
        })
        .await;
        for addr in [announced, chunked, stalls, silent] {
            let started = std::time::Instant::now();
            assert!(polling(addr).exchange(&[]).await.is_empty(), "{addr}");
            // Bounded by the timeout, not by the peer (generous for a
            // loaded machine; the peers above hold on for a minute).
            assert!(started.elapsed() < std::time::Duration::from_secs(20));
        }
    }

    #[test]
    fn hostile_reports_are_nothing() {
        let regions = HashMap::from([("eu-west".to_owned(), Vec::new())]);
        let mut inputs: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"null".to_vec(),
            b"{".to_vec(),
            b"[{\"edges\":[{\"addr\":\"not an address\",\"probed_up\":true}]}]".to_vec(),
            b"{\"region\":7,\"peers\":[]}".to_vec(),
            vec![0xff; 64],
        ];
        // Deep nesting: serde_json stops at its recursion limit.
        inputs.push([b"[".repeat(100_000), b"]".repeat(100_000)].concat());
        for input in &inputs {
            assert_eq!(geodns_report(input), None);
            assert_eq!(edge_report(input, &regions), None);
        }
    }
}
