//! Configuration errors that name the file, the key and the reason.

use crate::ConfigSource;
use crate::file::File;
use std::fmt;

/// Why a configuration was refused.
///
/// Displayed as `FILE: KEY: REASON`, e.g.
/// `meridian.toml: region[1].latitude: must be between -90 and 90, got 153.35`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file (or `<embedded demo config>`).
    pub file: String,
    /// The key, as a TOML path such as `region[1].latitude`; empty when the
    /// problem is the file as a whole.
    pub key: String,
    /// What is wrong, in words.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(
        source: &ConfigSource,
        key: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError {
            file: source.to_string(),
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.reason)
        }
    }
}

/// Parses the TOML into the file structs, keeping the path of the key that
/// failed (serde alone only reports the innermost message).
pub(crate) fn parse(text: &str, source: &ConfigSource) -> Result<File, ConfigError> {
    let deserializer = toml::de::Deserializer::parse(text)
        .map_err(|e| ConfigError::new(source, "", located(text, &e)))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = located(text, &inner);
        // serde reports a missing field at the enclosing table's path and
        // names the field only in the message; put it in the key.
        let key = match (missing_field_name(inner.message()), path.as_str()) {
            (Some(field), ".") => field.to_owned(),
            (Some(field), _) => format!("{path}.{field}"),
            (None, ".") => String::new(),
            (None, _) => path,
        };
        ConfigError::new(source, key, message)
    })
}

/// The message of a TOML error followed by its line and column.
fn located(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("{message} (line {line}, column {column})")
        }
        None => message.to_owned(),
    }
}

/// "missing field `http_port`" → `http_port`.
fn missing_field_name(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}
