//! Servers side by side (`http`, `dns`): every server under test runs at
//! once, each pinned to the same core, and only the one under load uses
//! it. They take turns, round after round, and who goes first rotates, so
//! a burst of noise on the machine hits one round of one server, not one
//! server's whole result; the reports give each server's median.

use crate::BenchError;
use crate::cpu::{self, CpuTime};
use crate::peers::Skipped;
use crate::progress::Progress;
use kit::Process;
use std::fmt::Display;
use std::net::SocketAddr;
use std::time::Duration;

/// A server under test, running.
pub struct UnderTest<S> {
    /// Which server it is.
    pub server: S,
    /// Where it listens.
    pub listen: SocketAddr,
    /// Its process (and children), killed on drop.
    pub process: Process,
    /// Its scratch directory, removed on drop.
    pub workdir: tempfile::TempDir,
}

impl<S> UnderTest<S> {
    /// Runs `work`; returns what it returned and the CPU time this server
    /// (its whole process tree) spent meanwhile, `None` when `/proc` could
    /// not tell.
    pub async fn cpu_during<T>(&self, work: impl Future<Output = T>) -> (T, Option<CpuTime>) {
        let before = cpu::process_tree_time(self.process.pid());
        let output = work.await;
        let after = cpu::process_tree_time(self.process.pid());
        (output, before.zip(after).map(|(b, a)| a.since(&b)))
    }
}

/// How long the loads last, and how many rounds there are.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Unmeasured load of each server at each workload, before the first
    /// round (every server reaches its steady state: threads started,
    /// buffers grown).
    pub warmup: Duration,
    /// One measured turn.
    pub per_run: Duration,
    /// How many rounds.
    pub rounds: usize,
}

/// Loads each of `running` at each of `workloads` as `schedule` says:
/// once to warm up, then in turns. `turn(server, workload, duration)` is
/// one load, which `label` names on the progress bar; the `skipped` peers
/// and each measured turn's result are printed above it. Returns every
/// server's measured turns at every workload: `[server][workload][round]`.
pub async fn take_turns<S, W, R: Display>(
    running: &[UnderTest<S>],
    workloads: &[W],
    schedule: Schedule,
    skipped: &[Skipped],
    label: impl Fn(&S, &W) -> String,
    mut turn: impl AsyncFnMut(&UnderTest<S>, &W, Duration) -> Result<R, BenchError>,
) -> Result<Vec<Vec<Vec<R>>>, BenchError> {
    let Schedule {
        warmup,
        per_run,
        rounds,
    } = schedule;
    let runs = (running.len() * workloads.len()) as u32;
    let mut progress = Progress::new((warmup + per_run * rounds as u32) * runs);
    for skip in skipped {
        progress.println(skip.note());
    }
    for target in running {
        for workload in workloads {
            let name = format!("warming {}", label(&target.server, workload));
            let load = turn(target, workload, warmup);
            progress.step(name, warmup, load).await?;
        }
    }
    let mut results: Vec<Vec<Vec<R>>> = (running.iter())
        .map(|_| workloads.iter().map(|_| Vec::new()).collect())
        .collect();
    for round in 0..rounds {
        for (w, workload) in workloads.iter().enumerate() {
            for first in 0..running.len() {
                let s = (first + round) % running.len();
                let name = label(&running[s].server, workload);
                let name = format!("round {}/{rounds}: {name}", round + 1);
                let load = turn(&running[s], workload, per_run);
                let result = progress.step(name.clone(), per_run, load).await?;
                progress.println(format!("{name}: {result}"));
                results[s][w].push(result);
            }
        }
    }
    Ok(results)
}
