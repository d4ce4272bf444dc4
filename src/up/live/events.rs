//! The event log: what moved, found by comparing what one collection saw
//! with what the one before saw. Region health transitions, processes
//! killed by an outage, brought back by a restore, crashing or restarted
//! on their own, GeoDNS servers steering away from or back to a region,
//! purges applied by edges, config reloads by GeoDNS servers, and in a
//! cluster each role taking or refusing a config revision (from the
//! revisions its reports on the bus give, [`super::revisions`]). Bounded:
//! the oldest entries go first.

use super::answers::ServerCounters;
use super::revisions::RoleRevision;
use super::view::Health;
use crate::up::ProcessState;
use crate::up::control::Status;
use geodns::live::log::{Entry, Log};
use std::collections::{HashMap, VecDeque};

/// The most of a refusal's reason an entry quotes.
const MAX_REASON_CHARS: usize = 200;

/// What one collection saw that the log compares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Each region's health and why.
    regions: Vec<(String, Health, String)>,
    /// Each process by label.
    processes: Vec<(String, ProcessState)>,
    /// (server, region, whether it answers with the region).
    steering: Vec<(String, String, Option<bool>)>,
    /// Whether each GeoDNS server's admin listener answered.
    answered: Vec<(String, bool)>,
    /// Each edge's purge count (`None`: it did not answer).
    purges: Vec<(String, Option<u64>)>,
    /// Each GeoDNS server's reloads and refused reloads (`None`: it did
    /// not answer).
    reloads: Vec<(String, Option<(u64, u64)>)>,
    /// In a cluster, each role alive on the bus and its revisions (`None`:
    /// no cluster, or the bus did not answer).
    roles: Option<Vec<RoleRevision>>,
}

impl Observed {
    /// What `status` shows, with each region's `health` in its order, and
    /// the cluster's `roles`.
    pub fn of(
        status: &Status,
        health: &[(Health, String)],
        counters: &[ServerCounters],
        roles: Option<Vec<RoleRevision>>,
    ) -> Observed {
        Observed {
            roles,
            regions: status
                .regions
                .iter()
                .zip(health)
                .map(|(r, (h, why))| (r.region.clone(), *h, why.clone()))
                .collect(),
            processes: status
                .processes
                .iter()
                .map(|p| (p.process.clone(), p.state))
                .collect(),
            steering: status
                .regions
                .iter()
                .flat_map(|r| {
                    r.dns_views
                        .iter()
                        .map(|v| (v.server.clone(), r.region.clone(), v.up))
                })
                .collect(),
            answered: status
                .geodns
                .iter()
                .map(|v| (v.server.clone(), v.regions.is_some()))
                .collect(),
            purges: status
                .regions
                .iter()
                .flat_map(|r| {
                    r.edges.iter().map(|e| {
                        (
                            format!("edge {} {}", r.region, e.address),
                            e.traffic.map(|t| t.purges),
                        )
                    })
                })
                .collect(),
            reloads: counters
                .iter()
                .map(|s| {
                    let counts = s.counters.as_ref();
                    (
                        s.server.clone(),
                        counts.map(|c| (c.reloads, c.reload_failures)),
                    )
                })
                .collect(),
        }
    }
}

/// The log, and what the last collection saw.
#[derive(Debug, Default)]
pub struct Changes {
    log: Log,
    last: Option<Observed>,
    /// Each role's revision and refused revision when last seen alive: a
    /// role that restarts to take a revision may miss a listing or two.
    revisions: HashMap<String, (Option<u64>, Option<u64>)>,
}

impl Changes {
    /// The log's entries, oldest first.
    pub fn entries(&self) -> &VecDeque<Entry> {
        self.log.entries()
    }

    fn push(&mut self, at_ms: u64, kind: &'static str, text: String) {
        self.log.push(at_ms, kind, text);
    }

    /// Logs what changed between the last observation and `now`, seen at
    /// `at_ms`; the first observation logs the start and each region's
    /// health.
    pub fn observe(&mut self, now: Observed, at_ms: u64) {
        self.revisions(now.roles.as_deref(), at_ms);
        let Some(last) = self.last.take() else {
            self.push(
                at_ms,
                "start",
                format!("watching {} regions", now.regions.len()),
            );
            for (region, health, why) in &now.regions {
                self.push(
                    at_ms,
                    "health",
                    format!("{region} is {} ({why})", health.word()),
                );
            }
            self.last = Some(now);
            return;
        };
        for (before, (name, state)) in last.processes.iter().zip(&now.processes) {
            if before.0 != *name || before.1 == *state {
                continue;
            }
            let (kind, text) = process_change(name, before.1, *state);
            self.push(at_ms, kind, text);
        }
        for (before, (server, answered)) in last.answered.iter().zip(&now.answered) {
            if before.0 == *server && before.1 != *answered {
                let text = match answered {
                    true => format!("GeoDNS {server} answers again"),
                    false => format!("GeoDNS {server} does not answer"),
                };
                self.push(at_ms, "geodns", text);
            }
        }
        for (before, (server, region, up)) in last.steering.iter().zip(&now.steering) {
            if (&before.0, &before.1) != (server, region) || before.2 == *up {
                continue;
            }
            // Unknown (the server did not answer) is logged as the server.
            let text = match (before.2, up) {
                (_, Some(false)) => format!("GeoDNS {server} steers clients away from {region}"),
                (Some(false), Some(true)) => {
                    format!("GeoDNS {server} sends clients to {region} again")
                }
                _ => continue,
            };
            self.push(at_ms, "steering", text);
        }
        for (before, (edge, purges)) in last.purges.iter().zip(&now.purges) {
            if let (Some(was), Some(is)) = (before.1, *purges)
                && before.0 == *edge
                && is > was
            {
                let count = is - was;
                let orders = if count == 1 { "order" } else { "orders" };
                self.push(
                    at_ms,
                    "purge",
                    format!("{edge} applied {count} purge {orders}"),
                );
            }
        }
        for (before, (server, counts)) in last.reloads.iter().zip(&now.reloads) {
            let (Some((reloads, failures)), Some((was, failed_before))) = (counts, before.1) else {
                continue;
            };
            if before.0 != *server {
                continue;
            }
            if *reloads > was {
                let text = format!("GeoDNS {server} reloaded its config");
                self.push(at_ms, "reload", text);
            }
            if *failures > failed_before {
                let text = format!("GeoDNS {server} refused a reload (kept its config)");
                self.push(at_ms, "reload", text);
            }
        }
        for (before, (region, health, why)) in last.regions.iter().zip(&now.regions) {
            if before.0 == *region && before.1 != *health {
                let text = format!("{region}: {} → {} ({why})", before.1.word(), health.word());
                self.push(at_ms, "health", text);
            }
        }
        self.last = Some(now);
    }
}

impl Changes {
    /// Logs each role that took or refused a revision since it was last
    /// seen; roles seen for the first time are only remembered.
    fn revisions(&mut self, roles: Option<&[RoleRevision]>, at_ms: u64) {
        for (name, revision, refused) in roles.unwrap_or_default() {
            let now = (*revision, refused.as_ref().map(|(n, _)| *n));
            let Some(before) = self.revisions.insert(name.clone(), now) else {
                continue;
            };
            if let Some(number) = revision.filter(|_| before.0 != now.0) {
                let text = format!("config revision {number} applied by {name}");
                self.push(at_ms, "config", text);
            }
            if let Some((number, why)) = refused.as_ref().filter(|_| before.1 != now.1) {
                let why: String = why.chars().take(MAX_REASON_CHARS).collect();
                let text = format!("config revision {number} refused by {name}: {why}");
                self.push(at_ms, "config", text);
            }
        }
    }
}

/// The kind and words of process `name` going from `before` to `now`.
fn process_change(name: &str, before: ProcessState, now: ProcessState) -> (&'static str, String) {
    use ProcessState::{Failed, Killed, Restarting, Running};
    match (before, now) {
        (_, Killed) => ("outage", format!("{name} killed (simulated outage)")),
        (Killed | Failed, Running) => ("restore", format!("{name} running again (restored)")),
        (Restarting, Running) => ("restart", format!("{name} restarted after a crash")),
        (_, Restarting) => ("crash", format!("{name} died; restarting it")),
        (_, Failed) => ("crash", format!("{name} in a crash loop; left down")),
        (_, Running) => ("restore", format!("{name} running")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(health: Health, edge: ProcessState, ns1: Option<bool>, purges: u64) -> Observed {
        Observed {
            regions: vec![("eu-west".into(), health, "why".into())],
            processes: vec![("edge eu-west 127.0.2.1".into(), edge)],
            steering: vec![("ns1".into(), "eu-west".into(), ns1)],
            answered: vec![("ns1".into(), ns1.is_some())],
            purges: vec![("edge eu-west 127.0.2.1".into(), Some(purges))],
            reloads: vec![("ns1".into(), Some((purges / 2, 0)))],
            roles: None,
        }
    }

    fn kinds(log: &Changes) -> Vec<(&'static str, String)> {
        log.entries()
            .iter()
            .map(|e| (e.kind, e.text.clone()))
            .collect()
    }

    #[test]
    fn an_outage_and_a_restore_are_logged_once_each() {
        use ProcessState::{Killed, Running};
        let mut log = Changes::default();
        log.observe(observed(Health::Up, Running, Some(true), 0), 1);
        log.observe(observed(Health::Up, Running, Some(true), 0), 2);
        assert_eq!(
            log.entries().len(),
            2,
            "start and health: {:?}",
            kinds(&log)
        );
        log.observe(observed(Health::Down, Killed, Some(true), 0), 3);
        log.observe(observed(Health::Down, Killed, Some(false), 0), 4);
        log.observe(observed(Health::Down, Killed, Some(false), 0), 5);
        log.observe(observed(Health::Down, Running, Some(false), 2), 6);
        log.observe(observed(Health::Up, Running, Some(true), 2), 7);
        let got = kinds(&log);
        let expected = [
            ("start", "watching 1 regions"),
            ("health", "eu-west is up (why)"),
            ("outage", "edge eu-west 127.0.2.1 killed (simulated outage)"),
            ("health", "eu-west: up → down (why)"),
            ("steering", "GeoDNS ns1 steers clients away from eu-west"),
            ("restore", "edge eu-west 127.0.2.1 running again (restored)"),
            ("purge", "edge eu-west 127.0.2.1 applied 2 purge orders"),
            ("reload", "GeoDNS ns1 reloaded its config"),
            ("steering", "GeoDNS ns1 sends clients to eu-west again"),
            ("health", "eu-west: down → up (why)"),
        ];
        let expected: Vec<(&str, String)> = expected
            .iter()
            .map(|(k, t)| (*k, (*t).to_owned()))
            .collect();
        assert_eq!(got, expected);
        let ids: Vec<u64> = log.entries().iter().map(|e| e.id).collect();
        assert_eq!(ids, (1..=10).collect::<Vec<_>>());
    }

    #[test]
    fn roles_taking_and_refusing_revisions_are_logged_once_each() {
        let edge = "edge eu-west 127.0.2.1:8080";
        /// (name, revision, refused and why), as a listing gives them.
        type Listed<'a> = (&'a str, Option<u64>, Option<(u64, &'a str)>);
        let seen = |roles: &[Listed<'_>]| Observed {
            roles: Some(
                roles
                    .iter()
                    .map(|(name, revision, refused)| {
                        let refused = refused.map(|(n, why)| (n, why.to_owned()));
                        ((*name).to_owned(), *revision, refused)
                    })
                    .collect(),
            ),
            ..Observed::default()
        };
        let mut log = Changes::default();
        // What runs when the view starts is not news.
        log.observe(
            seen(&[(edge, Some(1), None), ("geodns ns1", None, None)]),
            1,
        );
        log.observe(seen(&[(edge, Some(1), None)]), 2);
        // The edge restarts into revision 2: missing from one listing.
        log.observe(seen(&[]), 3);
        log.observe(
            seen(&[(edge, Some(2), None), ("geodns ns1", Some(2), None)]),
            4,
        );
        log.observe(Observed::default(), 5);
        log.observe(seen(&[(edge, Some(2), Some((3, "bad [edge]")))]), 6);
        log.observe(seen(&[(edge, Some(2), Some((3, "bad [edge]")))]), 7);
        let long = "x".repeat(10_000);
        log.observe(seen(&[(edge, Some(4), Some((5, long.as_str())))]), 8);
        let config: Vec<String> = kinds(&log)
            .into_iter()
            .filter(|(kind, _)| *kind == "config")
            .map(|(_, text)| text)
            .collect();
        assert_eq!(
            config[..4],
            [
                format!("config revision 2 applied by {edge}"),
                "config revision 2 applied by geodns ns1".to_owned(),
                format!("config revision 3 refused by {edge}: bad [edge]"),
                format!("config revision 4 applied by {edge}"),
            ]
        );
        assert_eq!(config.len(), 5, "{config:?}");
        assert!(config[4].starts_with(&format!("config revision 5 refused by {edge}: xxx")));
        assert!(config[4].len() < 300, "the reason is cut");
    }
}
