//! `config::error`: what is wrong with a configuration, and where.
//!
//! Every error names the file (or the environment variable), the dotted key and
//! what was expected; `Errors` collects them all, so `ringlb check` lists every one.

use std::fmt;

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

/// Collects errors (and warnings) against one source file.
pub(super) struct Errors<'a> {
    /// The file every error is reported against.
    pub(super) file: &'a str,
    /// The errors, in the order found.
    pub(super) list: Vec<ConfigError>,
    /// Problems that do not stop the configuration from working.
    pub(super) warnings: Vec<ConfigError>,
}

impl<'a> Errors<'a> {
    /// An empty collection for `file`.
    pub(super) fn new(file: &'a str) -> Self {
        Errors {
            file,
            list: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Records an error for `key`. A key already reported keeps its first error: a
    /// value that did not convert is replaced by a default, and the rules that then
    /// see the default must not report the same key again.
    pub(super) fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let error = ConfigError {
            file: self.file.to_string(),
            key: key.into(),
            message: message.into(),
        };
        self.push_error(error);
    }

    /// Records an error from another source (an environment variable).
    pub(super) fn push_error(&mut self, error: ConfigError) {
        if !self
            .list
            .iter()
            .any(|e| e.key == error.key && e.file == error.file)
        {
            self.list.push(error);
        }
    }

    /// Records a warning for `key`.
    pub(super) fn warn(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(ConfigError {
            file: self.file.to_string(),
            key: key.into(),
            message: message.into(),
        });
    }
}
