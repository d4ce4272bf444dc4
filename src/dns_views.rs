//! Every GeoDNS server's view of the edges, as its admin `/health` reports
//! it: what `meridian status` and `meridian route` show, server by server,
//! with who sees what.
//!
//! Nearly a leaf: of the binary it uses only [`crate::address`].

use crate::address::reachable;
use geodns::health::RegionStatus;
use geodns::vantage::http::{MAX_REPORT_BYTES, read_bounded};
use std::net::SocketAddr;
use std::time::Duration;

/// How long to wait for one server's `/health`.
pub const VIEW_TIMEOUT: Duration = Duration::from_millis(800);

/// One GeoDNS server and what it reported.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ServerView {
    /// The server's name (`ns1`).
    pub server: String,
    /// Its admin listener.
    pub admin: SocketAddr,
    /// Every region as it sees it; `None` when it did not answer.
    pub regions: Option<Vec<RegionStatus>>,
}

impl ServerView {
    /// Tests: `nsN`, its admin listener on 127.0.0.N:9153, saying `regions`.
    #[cfg(test)]
    pub(crate) fn numbered(n: u8, regions: Option<Vec<RegionStatus>>) -> ServerView {
        ServerView {
            server: format!("ns{n}"),
            admin: std::net::SocketAddr::from(([127, 0, 0, n], 9153)),
            regions,
        }
    }

    /// Whether it answered, and then whether it answers with region
    /// `name`'s edges (`None`: unknown).
    pub fn region_up(&self, name: &str) -> Option<bool> {
        self.regions
            .as_ref()?
            .iter()
            .find(|r| r.region == name)
            .map(|r| r.up)
    }

    /// Whether it answered, and then whether it answers with the edge at
    /// `address` of region `name` (`None`: unknown).
    pub fn edge_up(&self, name: &str, address: std::net::IpAddr) -> Option<bool> {
        self.regions
            .as_ref()?
            .iter()
            .find(|r| r.region == name)?
            .edges
            .iter()
            .find(|e| e.addr.ip() == address)
            .map(|e| e.up)
    }
}

/// Asks every GeoDNS server of `config` for its view, all at once.
pub async fn ask_all(http: &reqwest::Client, config: &config::Config) -> Vec<ServerView> {
    let token = config.geodns.admin_token.as_deref();
    let asks = config.geodns.servers.iter().map(|server| async move {
        ServerView {
            server: server.name.clone(),
            admin: server.admin_listen,
            regions: ask(http, reachable(server.admin_listen), token).await,
        }
    });
    futures::future::join_all(asks).await
}

/// One server's `/health`, with `geodns.admin_token` when there is one;
/// `None` when it does not answer in time, answers an error, or sends
/// more or other than a view.
async fn ask(
    http: &reqwest::Client,
    admin: SocketAddr,
    token: Option<&str>,
) -> Option<Vec<RegionStatus>> {
    let mut request = http
        .get(format!("http://{admin}/health"))
        .timeout(VIEW_TIMEOUT);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body = read_bounded(response, MAX_REPORT_BYTES).await?;
    serde_json::from_slice(&body).ok()
}

/// One line per edge and server: whether the server answers with the
/// edge, what its own probes see, and what the other vantage points it
/// counts see. `indent` starts every line.
pub fn who_sees_what(views: &[ServerView], region: &str, indent: &str) -> String {
    let mut out = String::new();
    for view in views {
        let Some(regions) = &view.regions else {
            out.push_str(&format!(
                "{indent}{:<6} did not answer on {}\n",
                view.server, view.admin
            ));
            continue;
        };
        let Some(status) = regions.iter().find(|r| r.region == region) else {
            continue;
        };
        for edge in &status.edges {
            let others = match edge.seen_by.is_empty() {
                true => "no other vantage point reports".to_owned(),
                false => edge
                    .seen_by
                    .iter()
                    .map(|s| format!("{} {}", s.vantage, up_down(s.up)))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            out.push_str(&format!(
                "{indent}{:<6} {:<22} {:<12} own probes {:<5} {others}\n",
                view.server,
                edge.addr,
                if edge.up { "answered" } else { "steered away" },
                up_down(edge.probed_up),
            ));
        }
    }
    out
}

fn up_down(up: bool) -> &'static str {
    if up { "up" } else { "down" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geodns::health::{EdgeStatus, Seen};

    #[test]
    fn each_server_says_what_it_and_the_others_see() {
        let eu = |up, probed_up, seen_by: Vec<Seen>| {
            vec![RegionStatus {
                region: "eu-west".into(),
                up,
                edges: vec![EdgeStatus {
                    addr: "127.0.2.1:8080".parse().unwrap(),
                    up,
                    probed_up,
                    seen_by,
                }],
            }]
        };
        let seen = vec![Seen {
            vantage: "geodns ns2".into(),
            up: true,
        }];
        let views = [
            ServerView::numbered(1, Some(eu(true, false, seen))),
            ServerView::numbered(2, Some(eu(false, false, Vec::new()))),
            ServerView::numbered(3, None),
        ];
        assert_eq!(views[0].region_up("eu-west"), Some(true));
        assert_eq!(views[1].region_up("eu-west"), Some(false));
        assert_eq!(views[2].region_up("eu-west"), None);
        assert_eq!(views[0].region_up("us-east"), None);
        let lines: Vec<Vec<String>> = who_sees_what(&views, "eu-west", "  ")
            .lines()
            .map(|l| l.split_whitespace().map(str::to_owned).collect())
            .collect();
        assert_eq!(
            lines,
            [
                vec![
                    "ns1",
                    "127.0.2.1:8080",
                    "answered",
                    "own",
                    "probes",
                    "down",
                    "geodns",
                    "ns2",
                    "up"
                ],
                vec![
                    "ns2",
                    "127.0.2.1:8080",
                    "steered",
                    "away",
                    "own",
                    "probes",
                    "down",
                    "no",
                    "other",
                    "vantage",
                    "point",
                    "reports"
                ],
                vec!["ns3", "did", "not", "answer", "on", "127.0.0.3:9153"],
            ]
        );
    }
}
