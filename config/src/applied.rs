//! The last cluster config revision a role applied, kept in a file of its
//! own under `cluster.state_dir`, so that the role starts from it (and not
//! from its `--config` file) even when the bus is down.
//!
//! The file is the revision's TOML text after one comment line that records
//! the revision number (`# meridian: cluster config revision N`), so it is
//! still a config a person can read and `meridian config check`. It is
//! written atomically (a temporary file in the same directory, synced, then
//! renamed over the old one): a crash leaves the old revision or the new
//! one, never half of one.

use crate::{Config, ConfigError, ConfigSource};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The first line of an applied file, before the revision number.
const HEADER: &str = "# meridian: cluster config revision ";

/// A revision as read back from its applied file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The revision number on the bus.
    pub revision: u64,
    /// The config's TOML text.
    pub text: String,
}

/// Writes revision `revision` (`text`) to `path` atomically, creating its
/// directory if needed.
pub fn write(path: &Path, revision: u64, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    writeln!(file, "{HEADER}{revision}")?;
    file.write_all(text.as_bytes())?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Reads an applied file: `None` when there is none, an error of kind
/// `InvalidData` when it is not one (no header, a bad number, not UTF-8).
pub fn read(path: &Path) -> std::io::Result<Option<Applied>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let invalid = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_owned());
    let text = String::from_utf8(bytes).map_err(|_| invalid("not UTF-8 text"))?;
    let (first, rest) = text
        .split_once('\n')
        .ok_or_else(|| invalid("no header line"))?;
    let revision = first
        .strip_prefix(HEADER)
        .ok_or_else(|| invalid("the first line does not name a cluster config revision"))?
        .trim()
        .parse()
        .map_err(|_| invalid("the revision number is not a number"))?;
    Ok(Some(Applied {
        revision,
        text: rest.to_owned(),
    }))
}

impl Config {
    /// Parses and validates revision `revision` of the cluster's config.
    /// Errors name it `cluster config revision N`; relative paths in it
    /// are resolved against `relative_to` (the directory of the role's own
    /// `--config` file: a revision is the same text on every host, and
    /// each host keeps the files it names next to its own config).
    pub fn from_revision(
        text: &str,
        revision: u64,
        applied_file: &Path,
        relative_to: &Path,
    ) -> Result<Config, ConfigError> {
        let source = ConfigSource::Revision {
            number: revision,
            applied_file: applied_file.to_path_buf(),
            relative_to: relative_to.to_path_buf(),
        };
        Config::from_toml(text, source)
    }

    /// Reads and validates the revision in an applied file.
    pub fn load_applied(applied_file: &Path, relative_to: &Path) -> Result<Config, ConfigError> {
        let unreadable = |reason: String| ConfigError {
            file: applied_file.display().to_string(),
            key: String::new(),
            reason,
        };
        match read(applied_file) {
            Ok(Some(applied)) => {
                Config::from_revision(&applied.text, applied.revision, applied_file, relative_to)
            }
            Ok(None) => Err(unreadable("no such file".into())),
            Err(e) => Err(unreadable(format!("cannot read the applied revision: {e}"))),
        }
    }

    /// Reads the config again from where `source` says it came from: a
    /// file, the embedded demo, or (for a cluster revision) the applied
    /// file, which then holds the latest revision applied.
    pub fn load_again(source: &ConfigSource) -> Result<Config, ConfigError> {
        match source {
            ConfigSource::Embedded => Ok(Config::demo()),
            ConfigSource::File(path) => Config::load(path),
            ConfigSource::Revision {
                applied_file,
                relative_to,
                ..
            } => Config::load_applied(applied_file, relative_to),
        }
    }
}

/// The directory a `--config` file's relative paths are resolved against.
pub fn directory_of(config_file: &Path) -> PathBuf {
    match config_file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_applied_file_round_trips_and_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("geodns-ns1.applied.toml");
        assert_eq!(read(&path).unwrap(), None, "no file yet");
        write(&path, 7, "a = 1\n").unwrap();
        assert_eq!(
            read(&path).unwrap(),
            Some(Applied {
                revision: 7,
                text: "a = 1\n".into()
            })
        );
        write(&path, 8, "b = 2\n").unwrap();
        assert_eq!(read(&path).unwrap().unwrap().revision, 8);
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind: {left:?}");
    }

    #[test]
    fn a_corrupt_applied_file_is_an_error_not_a_revision() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.applied.toml");
        for bad in [
            &b"a = 1\n"[..],
            b"# meridian: cluster config revision seven\na = 1\n",
            b"# meridian: cluster config revision 3",
            b"# meridian: cluster config revision 3\n\xff\xfe",
        ] {
            std::fs::write(&path, bad).unwrap();
            let error = read(&path).unwrap_err();
            assert_eq!(error.kind(), std::io::ErrorKind::InvalidData, "{bad:?}");
        }
    }

    #[test]
    fn a_revision_is_named_in_errors_and_resolves_paths_next_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let applied = dir.path().join("state/edge.applied.toml");
        let bad = crate::DEMO_TOML.replace("latitude = 53.35", "latitude = 153.35");
        let error = Config::from_revision(&bad, 12, &applied, Path::new("/etc/meridian"))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("cluster config revision 12: region[1].latitude:"),
            "{error}"
        );
        let with_root = crate::DEMO_TOML.replacen("[origin]", "[origin]\nroot = \"site\"", 1);
        write(&applied, 13, &with_root).unwrap();
        let config = Config::load_applied(&applied, Path::new("/etc/meridian")).unwrap();
        assert_eq!(
            config.origin.root,
            Some(PathBuf::from("/etc/meridian/site"))
        );
        assert_eq!(config.source.to_string(), "cluster config revision 13");
        let again = Config::load_again(&config.source).unwrap();
        assert_eq!(again.source, config.source);
    }
}
