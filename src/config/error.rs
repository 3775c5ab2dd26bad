//! `config::error`: what is wrong with a configuration, and where.
//!
//! Every error names the file (or the environment variable), the dotted key and
//! what was expected; `Errors` collects them all, so `ringlb check` lists every one.

use std::fmt;

// ---------------------------------------------------------------------------
// Errors.

/// One problem with the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {key}: {message}")]
pub struct ConfigError {
    /// The file (or `env RINGLB_...` for an override) the value came from.
    pub file: String,
    /// The dotted key, like `backends[2].weight`.
    pub key: String,
    /// What was wrong and what was expected.
    pub message: String,
}

/// Every problem found, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Collects errors against one source file.
pub(super) struct Errors<'a> {
    pub(super) file: &'a str,
    pub(super) list: Vec<ConfigError>,
}

impl Errors<'_> {
    pub(super) fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.list.push(ConfigError {
            file: self.file.to_string(),
            key: key.into(),
            message: message.into(),
        });
    }
}
