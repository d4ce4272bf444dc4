//! What each role says about itself on the bus, and who is alive: every
//! role puts its [`RoleReport`] in the roles bucket every
//! `cluster.report_interval`; the bucket forgets a value after three
//! intervals, so its keys are the roles alive.

use crate::{Bus, BusError};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::watch;

/// One role's report.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RoleReport {
    /// `geodns`, `edge` or `origin`.
    pub role: String,
    /// Unique in the deployment, e.g. `edge eu-west 127.0.2.1:8080`.
    pub name: String,
    /// The config revision it runs (from the config bucket); `None`: its
    /// own file.
    pub revision: Option<u64>,
    /// The last revision it refused, and why; cleared when it takes a
    /// newer one.
    pub refused: Option<(u64, String)>,
    /// For an edge: whether it has applied every purge on the bus
    /// (its cache is verified).
    pub verified: Option<bool>,
}

impl RoleReport {
    /// A role running its own file, nothing refused.
    pub fn new(role: &str, name: impl Into<String>) -> RoleReport {
        RoleReport {
            role: role.to_owned(),
            name: name.into(),
            revision: None,
            refused: None,
            verified: None,
        }
    }

    fn key(&self) -> String {
        format!("{}.{}", self.role, crate::bus_name(&self.name))
    }
}

async fn bucket(bus: &Bus) -> Result<async_nats::jetstream::kv::Store, BusError> {
    crate::buckets::bucket(
        bus,
        crate::ROLES_BUCKET,
        1,
        bus.settings().report_interval * 3,
    )
    .await
}

/// Puts the latest of `report` in the bucket every interval (and at once
/// when it changes), for as long as the process lives; failures are
/// retried at the next interval.
pub async fn keep_reporting(bus: Bus, mut report: watch::Receiver<RoleReport>) -> ! {
    let interval = bus.settings().report_interval;
    let mut store = None;
    loop {
        if store.is_none() {
            store = bucket(&bus).await.ok();
        }
        if let Some(bucket) = &store {
            let current = report.borrow_and_update().clone();
            let body = serde_json::to_vec(&current).expect("a report serializes");
            if let Err(error) = bucket.put(current.key(), body.into()).await {
                tracing::debug!(%error, "cannot report to the cluster bus");
                store = None;
            }
        }
        let _ = tokio::time::timeout(interval, report.changed()).await;
    }
}

/// Every role alive, by role then name.
pub async fn alive(bus: &Bus) -> Result<Vec<RoleReport>, BusError> {
    let store = bucket(bus).await?;
    let mut keys = store
        .keys()
        .await
        .map_err(|e| BusError::jetstream("cannot list the roles", e))?;
    let mut reports = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| BusError::jetstream("cannot list the roles", e))?;
        if let Ok(Some(value)) = store.get(&key).await
            && let Ok(report) = serde_json::from_slice::<RoleReport>(&value)
        {
            reports.push(report);
        }
    }
    reports.sort_by(|a, b| (&a.role, &a.name).cmp(&(&b.role, &b.name)));
    Ok(reports)
}

/// How long [`alive`] may take before a command gives up on it.
pub const ALIVE_TIMEOUT: Duration = Duration::from_secs(3);
