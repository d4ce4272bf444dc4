//! CPU time of a server under test, read from `/proc`.
//!
//! Requests per second alone flatter a server that burns more CPU to get
//! them, and on a noisy machine the CPU a server spent per request is the
//! steadier number. A server is often several processes (nginx's master
//! and worker, Varnish's manager and child), so the time of a process and
//! all its descendants ([`kit::tree`]) is summed. Linux only: elsewhere the
//! CPU columns are left empty.

use kit::tree;
use serde::Serialize;
use std::time::Duration;

/// User and system CPU time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CpuTime {
    /// Time in user mode.
    pub user: Duration,
    /// Time in the kernel on the process's behalf.
    pub system: Duration,
}

impl CpuTime {
    /// User plus system.
    pub fn total(&self) -> Duration {
        self.user + self.system
    }

    /// The time spent between `earlier` and `self`.
    pub fn since(&self, earlier: &CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`); 100 on every Linux
/// build that matters, which is the fallback.
fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// The CPU time used so far by process `root` and all its descendants;
/// `None` when `/proc` cannot tell (not Linux, or `root` is gone).
pub fn process_tree_time(root: u32) -> Option<CpuTime> {
    let processes = tree::all_processes();
    processes.get(&root)?;
    let (user, system) = tree::tree_of(root, &processes)
        .iter()
        .filter_map(|pid| processes.get(pid))
        .fold((0u64, 0u64), |(u, s), stat| {
            (u + stat.user_ticks, s + stat.system_ticks)
        });
    let tick_ns = 1_000_000_000 / ticks_per_second();
    Some(CpuTime {
        user: Duration::from_nanos(user * tick_ns),
        system: Duration::from_nanos(system * tick_ns),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_spent_some_cpu() {
        let busy = std::time::Instant::now();
        let mut x = 0u64;
        while busy.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(1);
        }
        assert_ne!(x, 1);
        let time = process_tree_time(std::process::id()).unwrap();
        assert!(time.total() > Duration::ZERO, "{time:?}");
        assert_eq!(process_tree_time(u32::MAX), None);
    }
}
