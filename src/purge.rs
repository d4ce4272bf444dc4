//! `meridian purge`: the same purge on every edge. On a single host it is
//! one HTTP request to each edge's admin listener; in a cluster it is one
//! message on the bus's purge stream, which every edge applies in order
//! (an edge away now applies it when it is back, before it serves from its
//! cache), and the command waits for the live edges to say they have.

use crate::cli::PurgeArgs;
use crate::ops::runtime;
use anyhow::anyhow;
use cluster::purge::Purge;
use std::net::SocketAddr;
use std::time::Duration;

/// `meridian purge`
pub fn purge(args: &PurgeArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let request = Purge {
        urls: args.urls.clone(),
        tags: args.tag.clone(),
        all: args.all,
        soft: args.soft,
    };
    edge::purging::check(&request).map_err(|reason| anyhow!(reason))?;
    let config = crate::ops::running_config(config, args.config.config.as_deref())?;
    match &config.cluster {
        Some(bus) => runtime()?.block_on(on_the_bus(bus, &request)),
        None => over_http(&config, &request),
    }
}

/// Publishes the purge and waits for every live edge (the bus's reports)
/// to apply it, one line per edge.
async fn on_the_bus(settings: &config::Cluster, request: &Purge) -> anyhow::Result<()> {
    let bus = cluster::Bus::connect(settings, "meridian purge", cluster::Connect::Now)
        .await
        .map_err(|e| anyhow!("{e}; nothing was purged"))?;
    let live: Vec<String> = tokio::time::timeout(
        cluster::reports::ALIVE_TIMEOUT,
        cluster::reports::alive(&bus),
    )
    .await
    .map_err(|_| {
        anyhow!("the cluster bus did not list the live edges in time; nothing was purged")
    })??
    .into_iter()
    .filter(|report| report.role == "edge")
    .map(|report| report.name)
    .collect();
    let outcome = cluster::purge::publish(&bus, request, &live).await?;
    println!(
        "purge #{} stored on the bus; {} live edge(s)",
        outcome.sequence,
        live.len()
    );
    for (edge, (took, purged)) in &outcome.applied {
        println!(
            "{edge:<36} applied in {:.1} ms, purged {purged}",
            millis(*took)
        );
    }
    if let Some(slowest) = outcome.slowest() {
        println!(
            "every live edge applied it within {:.1} ms",
            millis(slowest)
        );
    }
    for edge in &outcome.pending {
        println!(
            "{edge:<36} not within {} ms: it applies the purge when it reads the stream again, \
             and serves nothing from its cache before then",
            settings.purge_timeout.as_millis()
        );
    }
    bus.flush().await?;
    Ok(())
}

fn millis(time: Duration) -> f64 {
    time.as_secs_f64() * 1000.0
}

/// The single-host purge: a request to every edge's admin listener.
fn over_http(config: &config::Config, request: &Purge) -> anyhow::Result<()> {
    let token = config.edge.admin_token.clone().ok_or_else(|| {
        anyhow!(
            "{}: edge.admin_token is not set, so the edges accept no purges",
            config.source
        )
    })?;
    let body = serde_json::to_vec(request)?;
    // Every edge of every region: each keeps its own cache.
    let edges: Vec<(String, SocketAddr)> = config
        .regions
        .iter()
        .flat_map(|r| {
            r.edge_admin_addrs(&config.edge)
                .into_iter()
                .map(|admin| (r.name.clone(), admin))
        })
        .collect();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()?;
    let outcomes = runtime()?.block_on(futures::future::join_all(
        edges
            .iter()
            .map(|(_, addr)| purge_one(&client, *addr, &token, body.clone())),
    ));
    let mut failed = 0;
    for ((region, addr), outcome) in edges.iter().zip(outcomes) {
        let line = match outcome {
            Ok(purged) => format!("purged {purged}"),
            Err(reason) => {
                failed += 1;
                reason
            }
        };
        println!("{region:<16} {addr:<22} {line}");
    }
    match failed {
        0 => Ok(()),
        n => Err(anyhow!("{n} of {} edges did not purge", edges.len())),
    }
}

/// One edge's purge: how many objects it purged, or why it did not.
async fn purge_one(
    client: &reqwest::Client,
    addr: SocketAddr,
    token: &str,
    body: Vec<u8>,
) -> Result<usize, String> {
    let response = client
        .post(format!("http://{addr}/purge"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("unreachable: {e}"))?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!(
            "refused ({status}): {}",
            String::from_utf8_lossy(&bytes).trim()
        ));
    }
    serde_json::from_slice::<edge::admin::PurgeResult>(&bytes)
        .map(|r| r.purged)
        .map_err(|e| format!("unexpected answer: {e}"))
}
