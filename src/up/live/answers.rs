//! Every GeoDNS server's admin `/counters` (steered answers per region,
//! reloads), for the shares of `geodns::live::answers` and the event log.

use crate::address::reachable;
use geodns::admin::Counters;
use geodns::vantage::http::{MAX_REPORT_BYTES, read_bounded};
/// One GeoDNS server's counters (`None`: it did not answer).
pub struct ServerCounters {
    /// The server (`ns1`).
    pub server: String,
    /// What it answered.
    pub counters: Option<Counters>,
}

/// Asks every GeoDNS server of `config` for its counters, all at once.
pub async fn ask_all(http: &reqwest::Client, config: &config::Config) -> Vec<ServerCounters> {
    let token = config.geodns.admin_token.as_deref();
    let asks = config.geodns.servers.iter().map(|server| async move {
        let url = format!("http://{}/counters", reachable(server.admin_listen));
        let mut request = http.get(url).timeout(crate::dns_views::VIEW_TIMEOUT);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let counters = async {
            let response = request.send().await.ok()?;
            if !response.status().is_success() {
                return None;
            }
            let body = read_bounded(response, MAX_REPORT_BYTES).await?;
            serde_json::from_slice(&body).ok()
        };
        ServerCounters {
            server: server.name.clone(),
            counters: counters.await,
        }
    });
    futures::future::join_all(asks).await
}
