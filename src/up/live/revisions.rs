//! The config revision each role of a cluster runs (`up --cluster`), for
//! the event log: the same reports `meridian status` lists
//! ([`cluster::reports::alive`]), asked every [`EVERY`] by a task of their
//! own, so that a slow or absent bus never delays a snapshot; the
//! collector takes the newest list without waiting.

use cluster::reports::{ALIVE_TIMEOUT, RoleReport, alive};
use std::time::Duration;
use tokio::sync::watch;

/// How often the roles are listed.
const EVERY: Duration = Duration::from_secs(1);

/// One role's revisions: (name, revision it runs, last refused and why).
pub type RoleRevision = (String, Option<u64>, Option<(u64, String)>);

/// The newest list (`None`: no cluster, or the bus has not answered yet).
pub type Latest = watch::Receiver<Option<Vec<RoleRevision>>>;

/// Lists the roles of `cluster` (if any) every [`EVERY`] into the
/// returned channel, for as long as the returned future runs.
pub fn follow(
    cluster: Option<config::Cluster>,
) -> (Latest, impl Future<Output = ()> + Send + 'static) {
    let (publish, latest) = watch::channel(None);
    let task = async move {
        let Some(cluster) = cluster else {
            // Nothing to follow: never ends, so `up` decides when to stop.
            return std::future::pending().await;
        };
        let connect = cluster::Bus::connect(
            &cluster,
            "meridian up (live view)",
            cluster::Connect::InBackground,
        );
        let bus = match connect.await {
            Ok(bus) => bus,
            Err(error) => {
                tracing::warn!(%error, "the live view cannot follow config revisions");
                return std::future::pending().await;
            }
        };
        let mut ticks = tokio::time::interval(EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Ok(Ok(roles)) = tokio::time::timeout(ALIVE_TIMEOUT, alive(&bus)).await {
                publish.send_replace(Some(roles.into_iter().map(revisions_of).collect()));
            }
        }
    };
    (latest, task)
}

fn revisions_of(report: RoleReport) -> RoleRevision {
    (report.name, report.revision, report.refused)
}
