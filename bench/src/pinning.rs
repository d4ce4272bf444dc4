//! Which core the server under test runs on, and which the load generator.
//!
//! Comparing servers fairly means giving each the same CPU: every server
//! is pinned to one core (with `taskset`, so the pinning is inherited by
//! all its processes and threads and visible to anyone running `ps`), and
//! the load generator to another, so that neither steals the other's time.
//! On a one-core machine nothing is pinned and the report says so.

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;
use serde::Serialize;
use std::path::Path;
use std::sync::OnceLock;

/// The cores a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cores {
    /// The core every server under test is pinned to.
    pub server: Option<usize>,
    /// The core the load generator is pinned to.
    pub load: Option<usize>,
}

impl Cores {
    /// Nothing pinned: servers and load share whatever cores there are.
    pub const UNPINNED: Cores = Cores {
        server: None,
        load: None,
    };

    /// The first two cores this process may run on: servers on the first,
    /// load on the second. Nothing is pinned when there is only one, or
    /// when `taskset` is missing. Decided once per process, at the first
    /// call (before anything pins this process to the load core).
    pub fn choose() -> Cores {
        static CHOSEN: OnceLock<Cores> = OnceLock::new();
        *CHOSEN.get_or_init(Cores::from_allowed_cores)
    }

    fn from_allowed_cores() -> Cores {
        let allowed = allowed_cores();
        if allowed.len() < 2 || !taskset_installed() {
            return Cores::UNPINNED;
        }
        Cores {
            server: allowed.first().copied(),
            load: allowed.get(1).copied(),
        }
    }

    /// "server on core 0, load on core 1", or why nothing is pinned.
    pub fn describe(&self) -> String {
        match (self.server, self.load) {
            (Some(server), Some(load)) => {
                format!("servers pinned to core {server}, load generator to core {load}")
            }
            _ => "not pinned (needs two cores and taskset)".to_owned(),
        }
    }

    /// `program args…` run on the server core: `taskset -c N program args…`
    /// when pinned. Returns the program to run and its arguments.
    pub fn server_command(&self, program: &Path, args: &[String]) -> (String, Vec<String>) {
        pinned_command(self.server, program, args)
    }

    /// The same, on the load generator's core.
    pub fn load_command(&self, program: &Path, args: &[String]) -> (String, Vec<String>) {
        pinned_command(self.load, program, args)
    }

    /// Pins the calling thread to the load generator's core (for the
    /// built-in load generator, which runs inside this process).
    pub fn pin_current_thread_to_load(&self) {
        let Some(core) = self.load else { return };
        let mut set = CpuSet::new();
        if set.set(core).is_ok() {
            // Pid 0 is the calling thread; failing to pin is not fatal,
            // only less fair, and the report already names the cores.
            let _ = sched_setaffinity(Pid::from_raw(0), &set);
        }
    }
}

fn pinned_command(core: Option<usize>, program: &Path, args: &[String]) -> (String, Vec<String>) {
    let program = program.display().to_string();
    match core {
        Some(core) => {
            let mut all = vec!["-c".to_owned(), core.to_string(), program];
            all.extend(args.iter().cloned());
            ("taskset".to_owned(), all)
        }
        None => (program, args.to_vec()),
    }
}

/// The cores this process is allowed to run on, in order.
fn allowed_cores() -> Vec<usize> {
    let Ok(set) = sched_getaffinity(Pid::from_raw(0)) else {
        return Vec::new();
    };
    (0..CpuSet::count())
        .filter(|&core| set.is_set(core).unwrap_or(false))
        .collect()
}

fn taskset_installed() -> bool {
    crate::peers::find_program("taskset").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_command_runs_under_taskset() {
        let cores = Cores {
            server: Some(0),
            load: Some(1),
        };
        let (program, args) = cores.server_command(Path::new("/usr/sbin/nginx"), &["-t".into()]);
        assert_eq!(program, "taskset");
        assert_eq!(args, ["-c", "0", "/usr/sbin/nginx", "-t"]);
        let (_, args) = cores.load_command(Path::new("wrk"), &[]);
        assert_eq!(args, ["-c", "1", "wrk"]);
        assert!(cores.describe().contains("core 0"));
    }

    #[test]
    fn an_unpinned_command_runs_as_is() {
        let cores = Cores::UNPINNED;
        let (program, args) = cores.server_command(Path::new("nginx"), &["-t".into()]);
        assert_eq!(program, "nginx");
        assert_eq!(args, ["-t"]);
        assert!(cores.describe().contains("not pinned"));
    }

    #[test]
    fn this_process_may_run_somewhere() {
        assert!(!allowed_cores().is_empty());
    }
}
