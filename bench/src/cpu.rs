//! CPU time of a server under test, read from `/proc`.
//!
//! Requests per second alone flatter a server that burns more CPU to get
//! them, and on a noisy machine the CPU a server spent per request is the
//! steadier number. A server is often several processes (nginx's master
//! and worker, Varnish's manager and child), so the time of a process and
//! all its descendants is summed. Linux only: elsewhere the CPU columns are
//! left empty.

use serde::Serialize;
use std::collections::HashMap;
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

/// One line of `/proc/PID/stat`, the fields this module needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcStat {
    parent: u32,
    /// utime and stime, in clock ticks.
    user_ticks: u64,
    system_ticks: u64,
}

/// Parses `/proc/PID/stat`. The second field, the command name, is in
/// parentheses and may itself contain spaces and parentheses, so the
/// fields are counted from the last `)`.
fn parse_stat(line: &str) -> Option<ProcStat> {
    let after_name = &line[line.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state(3) ppid(4) ... utime(14) stime(15), 1-based
    // over the whole line; here index 0 is field 3.
    Some(ProcStat {
        parent: fields.get(1)?.parse().ok()?,
        user_ticks: fields.get(11)?.parse().ok()?,
        system_ticks: fields.get(12)?.parse().ok()?,
    })
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

/// Every process's stat, by pid.
fn all_processes() -> HashMap<u32, ProcStat> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let line = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            Some((pid, parse_stat(&line)?))
        })
        .collect()
}

/// `root` and its descendants, given every process's parent.
fn tree_of(root: u32, processes: &HashMap<u32, ProcStat>) -> Vec<u32> {
    let mut tree = vec![root];
    let mut next = 0;
    while let Some(&pid) = tree.get(next) {
        tree.extend(
            processes
                .iter()
                .filter(|(_, stat)| stat.parent == pid)
                .map(|(&child, _)| child),
        );
        next += 1;
    }
    tree
}

/// The processes descended from `root` (not `root` itself).
pub fn descendants(root: u32) -> Vec<u32> {
    let mut tree = tree_of(root, &all_processes());
    tree.retain(|&pid| pid != root);
    tree
}

/// The CPU time used so far by process `root` and all its descendants;
/// `None` when `/proc` cannot tell (not Linux, or `root` is gone).
pub fn process_tree_time(root: u32) -> Option<CpuTime> {
    let processes = all_processes();
    processes.get(&root)?;
    let (user, system) = tree_of(root, &processes)
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
    fn stat_fields_are_counted_from_the_end_of_the_name() {
        let line = "4242 (weird) name (x)) S 17 4242 4242 0 -1 4194560 500 0 0 0 \
                    123 45 0 0 20 0 3 0 100 1000 50 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                parent: 17,
                user_ticks: 123,
                system_ticks: 45
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S"), None);
    }

    #[test]
    fn a_tree_holds_every_descendant() {
        let stat = |parent| ProcStat {
            parent,
            user_ticks: 1,
            system_ticks: 0,
        };
        let processes: HashMap<u32, ProcStat> =
            [(10, stat(1)), (11, stat(10)), (12, stat(11)), (13, stat(1))].into();
        let mut tree = tree_of(10, &processes);
        tree.sort_unstable();
        assert_eq!(tree, [10, 11, 12]);
    }

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
