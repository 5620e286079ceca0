//! Configuration errors: one value per problem, each displayed as one line that names the file,
//! the key and the value (or the environment variable), plus the line number when known.
//!
//! Values are rendered by the caller, already redacted: this module never sees a password.
//! It must not print multi-line text: every field is flattened to one line on display.

use std::fmt;
use std::path::PathBuf;

/// One problem in the configuration, worded for the person who wrote it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A file or directory could not be read (missing, permissions, not UTF-8, …).
    #[error("{}: {}", .file.display(), one_line(.reason))]
    Read { file: PathBuf, reason: String },

    /// The file is not valid TOML.
    #[error("{}: invalid TOML: {}{}", .file.display(), one_line(.message), at_line(*.line))]
    Syntax {
        file: PathBuf,
        line: Option<usize>,
        message: String,
    },

    /// A key holds a value that is not allowed. `value` is as written (or `***` for secrets).
    #[error("{}: {} = {}: {}{}", .file.display(), .key, one_line(.value), one_line(.reason), at_line(*.line))]
    Invalid {
        file: PathBuf,
        line: Option<usize>,
        key: String,
        value: String,
        reason: String,
    },

    /// A key is unknown, or a required key is missing.
    #[error("{}: {}: {}{}", .file.display(), .key, one_line(.reason), at_line(*.line))]
    Key {
        file: PathBuf,
        line: Option<usize>,
        key: String,
        reason: String,
    },

    /// An `OUTDIAL_*` environment override holds a value that is not allowed.
    #[error("environment variable {var} = {}: {}", one_line(.value), one_line(.reason))]
    Env {
        var: String,
        value: String,
        reason: String,
    },

    /// `Config::profile` was asked for a name no profile file defines.
    #[error("unknown profile {name:?}; {}", known_list(.known))]
    UnknownProfile { name: String, known: Vec<String> },
}

/// Every problem found while loading, in file order: `check-config` prints one line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The problems, in the order they were found (file by file, line by line).
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

fn at_line(line: Option<usize>) -> String {
    match line {
        Some(n) => format!(" (line {n})"),
        None => String::new(),
    }
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "no profiles are loaded".to_string()
    } else {
        format!("known profiles: {}", known.join(", "))
    }
}

/// Collapses line breaks and runs of whitespace that contain them, so a message stays one line.
pub(crate) fn one_line(s: &str) -> String {
    if !s.contains(['\n', '\r']) {
        return s.to_string();
    }
    s.split(['\n', '\r'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
