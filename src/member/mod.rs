//! A role of a cluster deployment following the cluster's config
//! revisions (`meridian config publish`): every `meridian geodns`, `edge
//! --region` and `origin` whose config has `[cluster]` is a *member*.
//!
//! - At start it runs its last applied revision (kept in its applied file
//!   under `cluster.state_dir`, see [`config::applied`]) if that is still
//!   good, and its `--config` file otherwise; it never waits for the bus.
//! - In the background it watches the config bucket; each revision newer
//!   than the one it runs is validated for this role. A bad one is
//!   refused (logged with its number and reason, and reported); a good one
//!   is written to the applied file, then put to work by the role's
//!   [`Follower`] (GeoDNS reloads it; an edge or an origin restarts in
//!   place when the revision changes its settings, see [`restart`]).
//! - It reports itself (role, name, revision it runs, last refused) on the
//!   bus every `cluster.report_interval`.
//!
//! Where the bus is and where the applied file lives come from the role's
//! own `--config` file, never from a revision: a revision cannot move a
//! role off the bus or make it forget what it applied.

pub mod restart;

use cluster::reports::RoleReport;
use cluster::{Bus, Connect, config_store};
use config::Config;
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long a member waits before watching the config bucket again after
/// the bus failed it (it is down, or the watch ended).
const WATCH_RETRY: Duration = Duration::from_secs(1);

/// What a role does with a config revision.
pub trait Follower: Send + 'static {
    /// Whether this role can run `config`; if not, why.
    fn check(&self, config: &Config) -> anyhow::Result<()>;
    /// Puts `config` to work; it has passed [`Follower::check`] and is in
    /// the applied file already.
    fn apply(&mut self, config: Config) -> anyhow::Result<()>;
}

/// One role instance of a cluster deployment.
pub struct Member {
    /// Where the bus is, from the role's own file.
    bus: config::Cluster,
    /// The file its last applied revision is kept in.
    applied_file: PathBuf,
    /// The directory relative paths of a revision are resolved against.
    relative_to: PathBuf,
    /// What it reports.
    report: Arc<watch::Sender<RoleReport>>,
    /// Whether it puts its report on the bus itself (not when the role
    /// does, see [`Member::report_through`]).
    reports_itself: bool,
}

impl Member {
    /// The member `role` named `name` (unique in the deployment, e.g.
    /// `geodns ns1`), if `own` (loaded from `config_file`) has `[cluster]`.
    pub fn of(own: &Config, config_file: Option<&Path>, role: &str, name: String) -> Option<Self> {
        let bus = own.cluster.clone()?;
        let relative_to =
            config_file.map_or_else(|| PathBuf::from("."), config::applied::directory_of);
        let applied_file = bus.applied_config_file(&cluster::bus_name(&name));
        let (report, _) = watch::channel(RoleReport::new(role, name));
        Some(Member {
            bus,
            applied_file,
            relative_to,
            report: Arc::new(report),
            reports_itself: true,
        })
    }

    /// Keeps the revision in `report` from now on, which the role puts on
    /// the bus itself: the edge's purge feed does (its report also says
    /// whether its cache is verified).
    pub fn report_through(&mut self, report: Arc<watch::Sender<RoleReport>>) {
        let now = self.report.borrow().clone();
        report.send_modify(|r| {
            r.revision = now.revision;
            r.refused = now.refused;
        });
        self.report = report;
        self.reports_itself = false;
    }

    /// The config to start from: the applied revision when there is one
    /// and it passes `check`, `own` otherwise (a missing, corrupt or bad
    /// applied file is logged and ignored).
    pub fn starting_config(
        &self,
        own: Config,
        check: impl Fn(&Config) -> anyhow::Result<()>,
    ) -> Config {
        let file = self.applied_file.display();
        match config::applied::read(&self.applied_file) {
            Ok(None) => return own,
            Ok(Some(_)) => {}
            Err(error) => {
                tracing::warn!("ignoring {file}: {error}; starting from {}", own.source);
                return own;
            }
        }
        let applied = Config::load_applied(&self.applied_file, &self.relative_to)
            .map_err(anyhow::Error::from)
            .and_then(|config| check(&config).map(|()| config));
        match applied {
            Ok(config) => {
                tracing::info!("starting from {} (kept in {file})", config.source);
                self.report
                    .send_modify(|r| r.revision = revision_of(&config));
                config
            }
            Err(error) => {
                tracing::warn!(
                    "ignoring the revision in {file}: {error:#}; starting from {}",
                    own.source
                );
                own
            }
        }
    }

    /// Follows the cluster's config revisions for as long as the process
    /// lives, `running` being the config the role started with. The role
    /// serves all along, with or without the bus.
    pub async fn follow(self, running: &Config, mut follower: impl Follower) {
        let name = self.report.borrow().name.clone();
        let bus = match Bus::connect(&self.bus, &name, Connect::InBackground).await {
            Ok(bus) => bus,
            Err(error) => {
                tracing::error!(%error, "cannot use the cluster bus; following no config revisions");
                return;
            }
        };
        if self.reports_itself {
            tokio::spawn(cluster::reports::keep_reporting(
                bus.clone(),
                self.report.subscribe(),
            ));
        }
        let mut running = revision_of(running);
        loop {
            match config_store::watch(&bus).await {
                Ok(revisions) => {
                    let mut revisions = std::pin::pin!(revisions);
                    while let Some(revision) = revisions.next().await {
                        running = self.offer(running, revision, &mut follower);
                    }
                    tracing::debug!("the config watch ended; watching again");
                }
                Err(error) => tracing::debug!(%error, "cannot watch the config revisions yet"),
            }
            tokio::time::sleep(WATCH_RETRY).await;
        }
    }

    /// Takes or refuses `offered`; the revision running afterwards.
    fn offer(
        &self,
        running: Option<u64>,
        offered: config_store::Revision,
        follower: &mut impl Follower,
    ) -> Option<u64> {
        let refused = self.report.borrow().refused.as_ref().map(|(n, _)| *n);
        if !worth_considering(running, refused, offered.number) {
            return running;
        }
        let number = offered.number;
        match self.take(&offered, follower) {
            Ok(()) => {
                tracing::info!("running cluster config revision {number}");
                // A refusal of an older revision is history now.
                self.report.send_modify(|r| {
                    r.revision = Some(number);
                    r.refused = None;
                });
                Some(number)
            }
            Err(error) => {
                let reason = format!("{error:#}");
                tracing::error!(
                    "refusing cluster config revision {number}: {reason}; still running {}",
                    describe(running)
                );
                self.report
                    .send_modify(|r| r.refused = Some((number, reason)));
                running
            }
        }
    }

    /// Validates `offered` for this role, keeps it, applies it.
    fn take(
        &self,
        offered: &config_store::Revision,
        follower: &mut impl Follower,
    ) -> anyhow::Result<()> {
        let config = Config::from_revision(
            &offered.text,
            offered.number,
            &self.applied_file,
            &self.relative_to,
        )?;
        anyhow::ensure!(
            config.cluster.is_some(),
            "it has no [cluster]: a role running it would be cut off the bus"
        );
        follower.check(&config)?;
        config::applied::write(&self.applied_file, offered.number, &offered.text).map_err(|e| {
            anyhow::anyhow!("cannot keep it in {}: {e}", self.applied_file.display())
        })?;
        follower.apply(config)
    }
}

/// The revision a config is, if it is one.
fn revision_of(config: &Config) -> Option<u64> {
    match config.source {
        config::ConfigSource::Revision { number, .. } => Some(number),
        _ => None,
    }
}

fn describe(running: Option<u64>) -> String {
    match running {
        Some(n) => format!("revision {n}"),
        None => "its own config file".to_owned(),
    }
}

/// Whether a member running `running` (none: its own file), having last
/// refused `refused`, should consider revision `offered`: only a newer
/// one (the bucket's revisions only grow, so an older one is a replay),
/// and not the one it refused already (a watch started again replays the
/// current revision).
fn worth_considering(running: Option<u64>, refused: Option<u64>, offered: u64) -> bool {
    running.is_none_or(|running| offered > running) && refused != Some(offered)
}

#[cfg(test)]
mod tests {
    use super::worth_considering;

    #[test]
    fn only_newer_revisions_not_refused_already_are_considered() {
        assert!(
            worth_considering(None, None, 1),
            "any revision beats the own file"
        );
        assert!(worth_considering(Some(3), None, 4));
        assert!(!worth_considering(Some(4), None, 4), "the one running");
        assert!(
            !worth_considering(Some(4), None, 2),
            "a replay of an older one"
        );
        assert!(!worth_considering(Some(3), Some(4), 4), "refused already");
        assert!(
            worth_considering(Some(3), Some(4), 5),
            "a newer one after a refusal"
        );
        assert!(!worth_considering(None, Some(1), 1));
    }
}
