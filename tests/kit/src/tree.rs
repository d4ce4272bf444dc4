//! Process trees, read from `/proc`.
//!
//! A server under test is often several processes (`meridian up` and its
//! roles, nginx's master and workers, Varnish's manager and child): a
//! process is killed with everything it started, and a benchmark sums the
//! CPU time of all of them. Linux only: elsewhere a tree is its root alone
//! and no time is known.

use std::collections::HashMap;

/// One line of `/proc/PID/stat`, the fields the kit needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// The parent's pid.
    pub parent: u32,
    /// utime, in clock ticks.
    pub user_ticks: u64,
    /// stime, in clock ticks.
    pub system_ticks: u64,
}

/// Parses `/proc/PID/stat`. The second field, the command name, is in
/// parentheses and may itself contain spaces and parentheses, so the
/// fields are counted from the last `)`.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let after_name = &line[line.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state(3) ppid(4) ... utime(14) stime(15), 1-based
    // over the whole line; here index 0 is field 3.
    Some(Stat {
        parent: fields.get(1)?.parse().ok()?,
        user_ticks: fields.get(11)?.parse().ok()?,
        system_ticks: fields.get(12)?.parse().ok()?,
    })
}

/// Every process's stat, by pid (empty where there is no `/proc`).
pub fn all_processes() -> HashMap<u32, Stat> {
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
pub fn tree_of(root: u32, processes: &HashMap<u32, Stat>) -> Vec<u32> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_end_of_the_name() {
        let line = "4242 (weird) name (x)) S 17 4242 4242 0 -1 4194560 500 0 0 0 \
                    123 45 0 0 20 0 3 0 100 1000 50 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
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
        let stat = |parent| Stat {
            parent,
            user_ticks: 1,
            system_ticks: 0,
        };
        let processes: HashMap<u32, Stat> =
            [(10, stat(1)), (11, stat(10)), (12, stat(11)), (13, stat(1))].into();
        let mut tree = tree_of(10, &processes);
        tree.sort_unstable();
        assert_eq!(tree, [10, 11, 12]);
    }
}
