//! The open-file limit of the bench process.
//!
//! A scenario that holds N client connections at once needs N sockets, and
//! the default soft limit is often 1024: a thousand concurrent requests
//! would fail with "too many open files" in the harness, not in the system
//! under test. So scenarios raise the soft limit to the hard limit first and
//! report what they got.

use serde::Serialize;

/// The open-file limit before and after raising it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OpenFileLimit {
    /// The soft limit the process started with.
    pub soft_before: Option<u64>,
    /// The soft limit now in force.
    pub soft: Option<u64>,
    /// The hard limit (the ceiling for the soft one).
    pub hard: Option<u64>,
    /// Why the limit could not be read or raised, if it could not.
    pub error: Option<String>,
}

impl OpenFileLimit {
    /// Whether `sockets` more descriptors fit under the soft limit, leaving
    /// some room for the process's own files; `true` when unknown.
    pub fn fits(&self, sockets: usize) -> bool {
        const RESERVED: u64 = 64;
        self.soft
            .is_none_or(|soft| soft >= (sockets as u64).saturating_add(RESERVED))
    }

    /// `soft / hard`, with "(raised from N)" when it was raised.
    pub fn describe(&self) -> String {
        let show = |v: Option<u64>| match v {
            Some(u64::MAX) => "unlimited".to_owned(),
            Some(v) => v.to_string(),
            None => "?".to_owned(),
        };
        let mut text = format!("{} / {}", show(self.soft), show(self.hard));
        if self.soft_before != self.soft {
            text.push_str(&format!(" (raised from {})", show(self.soft_before)));
        }
        if let Some(error) = &self.error {
            text.push_str(&format!(" ({error})"));
        }
        text
    }
}

/// Raises this process's soft open-file limit to its hard limit.
pub fn raise_open_file_limit() -> OpenFileLimit {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(error) => {
            return OpenFileLimit {
                error: Some(format!("cannot read the open-file limit: {error}")),
                ..OpenFileLimit::default()
            };
        }
    };
    let mut limit = OpenFileLimit {
        soft_before: Some(soft),
        soft: Some(soft),
        hard: Some(hard),
        error: None,
    };
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => limit.soft = Some(hard),
            Err(error) => limit.error = Some(format!("cannot raise the soft limit: {error}")),
        }
    }
    limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_never_lowers_the_limit() {
        let limit = raise_open_file_limit();
        assert!(limit.error.is_none(), "{limit:?}");
        assert!(limit.soft >= limit.soft_before);
        assert_eq!(limit.soft, limit.hard);
    }

    #[test]
    fn description_and_fit() {
        let limit = OpenFileLimit {
            soft_before: Some(1024),
            soft: Some(4096),
            hard: Some(4096),
            error: None,
        };
        assert_eq!(limit.describe(), "4096 / 4096 (raised from 1024)");
        assert!(limit.fits(1000));
        assert!(!limit.fits(4050));
        assert!(OpenFileLimit::default().fits(1_000_000));
    }
}
