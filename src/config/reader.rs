//! Walks one parsed TOML file and turns its values into checked Rust values, collecting every
//! problem as a one-line `ConfigError` with the file, the dotted key, the value as written and
//! the line number (from toml's spans).
//!
//! It knows nothing of what the keys mean beyond "this key is a secret": callers decide ranges
//! and rules. It must never print a secret: keys named like passwords render as `***`, and
//! database URLs lose their password.

use std::ops::{Range, RangeInclusive};
use std::path::Path;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::error::{one_line, ConfigError};

pub(crate) type Val<'i> = Spanned<DeValue<'i>>;

/// Longest value shown in an error, in characters.
const MAX_SHOWN: usize = 80;

/// One file being read: its name, its text and the problems found so far.
pub(crate) struct Doc<'a> {
    pub file: &'a Path,
    text: &'a str,
    pub errors: Vec<ConfigError>,
}

/// The known keys found in one table; unknown ones were already reported.
pub(crate) struct Fields<'t, 'i> {
    prefix: String,
    found: Vec<(&'static str, &'t Val<'i>)>,
}

impl<'t, 'i> Fields<'t, 'i> {
    pub fn get(&self, name: &str) -> Option<&'t Val<'i>> {
        self.found.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    /// The dotted name shown to the user, e.g. `sip.listen_udp`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }
}

impl<'a> Doc<'a> {
    pub fn new(file: &'a Path, text: &'a str) -> Self {
        Doc {
            file,
            text,
            errors: Vec::new(),
        }
    }

    /// Parses the whole file. On a syntax error, reports the first one (later ones are mostly
    /// echoes of it) and returns None: the rest of the file is not checked.
    pub fn parse(&mut self) -> Option<Spanned<DeTable<'a>>> {
        let (table, mut errs) = DeTable::parse_recoverable(self.text);
        if errs.is_empty() {
            return Some(table);
        }
        errs.sort_by_key(|e| e.span().map(|s| s.start).unwrap_or(usize::MAX));
        let first = &errs[0];
        self.errors.push(ConfigError::Syntax {
            file: self.file.to_path_buf(),
            line: first.span().and_then(|s| self.line(&s)),
            message: first.message().to_string(),
        });
        None
    }

    /// The problems found, in line order (problems without a line last).
    pub fn finish(self) -> Vec<ConfigError> {
        let mut errors = self.errors;
        errors.sort_by_key(|e| match e {
            ConfigError::Syntax { line, .. }
            | ConfigError::Invalid { line, .. }
            | ConfigError::Key { line, .. } => line.unwrap_or(usize::MAX),
            _ => usize::MAX,
        });
        errors
    }

    /// 1-based line of a byte offset, when the span points into the text.
    pub fn line(&self, span: &Range<usize>) -> Option<usize> {
        let bytes = self.text.as_bytes();
        if span.start > bytes.len() {
            return None;
        }
        Some(bytes[..span.start].iter().filter(|b| **b == b'\n').count() + 1)
    }

    /// The value as the user wrote it, made safe to print.
    pub fn render(&self, key: &str, v: &Val<'_>) -> String {
        if is_secret_key(key) {
            return "***".to_string();
        }
        let span = v.span();
        let raw = match self.text.get(span.clone()) {
            Some(s) if !s.is_empty() => s,
            _ => return fallback_render(v.get_ref()),
        };
        if matches!(v.get_ref(), DeValue::Table(_)) && !raw.starts_with('{') {
            // A `[section]`: its span is the header only.
            return "{...}".to_string();
        }
        let mut shown = one_line(raw);
        if key.ends_with("url") {
            shown = redact_url(&shown);
        }
        shorten(&shown)
    }

    /// `key = value: reason`, at the value's line.
    pub fn invalid(&mut self, key: &str, v: &Val<'_>, reason: impl Into<String>) {
        let e = ConfigError::Invalid {
            file: self.file.to_path_buf(),
            line: self.line(&v.span()),
            key: key.to_string(),
            value: self.render(key, v),
            reason: reason.into(),
        };
        self.errors.push(e);
    }

    /// `key: reason`, e.g. for a missing key (no line) or an unknown one.
    pub fn key_error(&mut self, key: &str, span: Option<Range<usize>>, reason: impl Into<String>) {
        let line = span.and_then(|s| self.line(&s));
        self.errors.push(ConfigError::Key {
            file: self.file.to_path_buf(),
            line,
            key: key.to_string(),
            reason: reason.into(),
        });
    }

    /// Picks the known keys out of `table`, reporting every unknown key.
    pub fn fields<'t, 'i>(
        &mut self,
        prefix: &str,
        table: &'t DeTable<'i>,
        known: &[&'static str],
    ) -> Fields<'t, 'i> {
        let mut found = Vec::new();
        for (k, v) in table.iter() {
            let name: &str = k.get_ref();
            match known.iter().find(|kn| **kn == name) {
                Some(kn) => found.push((*kn, v)),
                None => {
                    let full = format!("{prefix}{name}");
                    let reason = unknown_key_reason(name, known);
                    if matches!(v.get_ref(), DeValue::Table(_)) {
                        self.key_error(&format!("[{full}]"), Some(k.span()), reason);
                    } else {
                        let shown = if looks_secret(name) {
                            "***".to_string()
                        } else {
                            self.render(&full, v)
                        };
                        let line = self.line(&k.span());
                        self.errors.push(ConfigError::Invalid {
                            file: self.file.to_path_buf(),
                            line,
                            key: full,
                            value: shown,
                            reason,
                        });
                    }
                }
            }
        }
        Fields {
            prefix: prefix.to_string(),
            found,
        }
    }

    // ---- typed getters: each reports a wrong type and returns None -------------------------

    pub fn table<'t, 'i>(&mut self, key: &str, v: &'t Val<'i>) -> Option<&'t DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                let reason = format!("expected a table [{key}] (found {})", other.type_str());
                self.invalid(key, v, reason);
                None
            }
        }
    }

    pub fn string(&mut self, key: &str, v: &Val<'_>) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => {
                let reason = format!("expected a string (found {})", other.type_str());
                self.invalid(key, v, reason);
                None
            }
        }
    }

    /// A string that goes into a SIP header or a log: not empty, no control characters.
    pub fn text(&mut self, key: &str, v: &Val<'_>) -> Option<String> {
        let s = self.string(key, v)?;
        if s.trim().is_empty() {
            self.invalid(key, v, "must not be empty; remove the key instead");
            None
        } else if s.chars().any(char::is_control) {
            self.invalid(
                key,
                v,
                "must not contain control characters (line breaks, tabs)",
            );
            None
        } else {
            Some(s)
        }
    }

    pub fn boolean(&mut self, key: &str, v: &Val<'_>) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                let reason = format!("expected true or false (found {})", other.type_str());
                self.invalid(key, v, reason);
                None
            }
        }
    }

    /// A whole number inside `range`.
    pub fn integer(&mut self, key: &str, v: &Val<'_>, range: RangeInclusive<i64>) -> Option<i64> {
        let out_of_range = format!("must be between {} and {}", range.start(), range.end());
        match v.get_ref() {
            DeValue::Integer(i) => {
                let digits = i.as_str().replace('_', "");
                match i64::from_str_radix(&digits, i.radix()) {
                    Ok(n) if range.contains(&n) => Some(n),
                    _ => {
                        self.invalid(key, v, out_of_range);
                        None
                    }
                }
            }
            other => {
                let reason = format!("expected a whole number (found {})", other.type_str());
                self.invalid(key, v, reason);
                None
            }
        }
    }

    /// Any number, integer or float.
    pub fn number(&mut self, key: &str, v: &Val<'_>) -> Option<f64> {
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(&i.as_str().replace('_', ""), i.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
            other => {
                let reason = format!("expected a number (found {})", other.type_str());
                self.invalid(key, v, reason);
                return None;
            }
        };
        if parsed.is_none() {
            self.invalid(key, v, "is not a number outdial can use");
        }
        parsed
    }

    /// An array of strings; the strings come with their own spans for precise errors.
    pub fn string_list(&mut self, key: &str, v: &Val<'_>) -> Option<Vec<String>> {
        let DeValue::Array(items) = v.get_ref() else {
            let reason = format!(
                "expected a list of strings such as [\"PCMU\"] (found {})",
                v.get_ref().type_str()
            );
            self.invalid(key, v, reason);
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => out.push(s.to_string()),
                other => {
                    let reason = format!(
                        "expected a list of strings (an element is {})",
                        other.type_str()
                    );
                    self.invalid(key, v, reason);
                    return None;
                }
            }
        }
        Some(out)
    }
}

/// Reads a UTF-8 text file; `Ok(None)` when it does not exist. The error is a one-line reason.
pub(crate) fn read_text(path: &Path) -> Result<Option<String>, String> {
    if path.is_dir() {
        return Err("is a directory, expected a file".to_string());
    }
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| "is not UTF-8 text".to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read: {e}")),
    }
}

/// Keys whose values are never printed.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    last == "password" || looks_secret(last)
}

fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n != "password_env"
        && ([
            "pass",
            "secret",
            "token",
            "credential",
            "api_key",
            "apikey",
            "pwd",
        ]
        .iter()
        .any(|w| n.contains(w))
            || n == "pw"
            || edit_distance(&n, "password") <= 3)
}

/// `postgres://user:pw@host/db` → `postgres://user:***@host/db`; anything else unchanged.
pub(crate) fn redact_url(s: &str) -> String {
    let Some(scheme_end) = s.find("://") else {
        return s.to_string();
    };
    let auth_start = scheme_end + 3;
    let rest = &s[auth_start..];
    // Passwords may hold unescaped '/' or '@': take the last '@' before any query or quote,
    // and hide everything between the user name and it (over-hiding is the safe side).
    let end = rest.find(['?', '#', '"', '\'']).unwrap_or(rest.len());
    let Some(at) = rest[..end].rfind('@') else {
        return s.to_string();
    };
    let userinfo = &rest[..at];
    let Some(colon) = userinfo.find(':') else {
        return s.to_string();
    };
    if userinfo[..colon].contains('/') {
        return s.to_string();
    }
    format!(
        "{}{}:***{}",
        &s[..auth_start],
        &userinfo[..colon],
        &s[auth_start + at..]
    )
}

fn shorten(s: &str) -> String {
    if s.chars().count() <= MAX_SHOWN {
        return s.to_string();
    }
    let cut: String = s.chars().take(MAX_SHOWN).collect();
    format!("{cut}...")
}

fn fallback_render(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => shorten(&format!("{s:?}")),
        DeValue::Integer(i) => i.to_string(),
        DeValue::Float(f) => f.to_string(),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Datetime(d) => d.to_string(),
        DeValue::Array(_) => "[...]".to_string(),
        DeValue::Table(_) => "{...}".to_string(),
    }
}

fn unknown_key_reason(name: &str, known: &[&str]) -> String {
    let close = known
        .iter()
        .map(|k| (edit_distance(&name.to_ascii_lowercase(), k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d);
    match close {
        Some((_, k)) => format!("unknown key; did you mean {k}?"),
        None => format!("unknown key; expected one of {}", known.join(", ")),
    }
}

/// Levenshtein distance, for "did you mean" hints on short key names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_url_passwords() {
        assert_eq!(
            redact_url("postgres://u:pw@db:5432/x"),
            "postgres://u:***@db:5432/x"
        );
        assert_eq!(
            redact_url("\"postgres://u:p@w@db/x\""),
            "\"postgres://u:***@db/x\""
        );
        assert_eq!(redact_url("postgres://u:a/b@db/x"), "postgres://u:***@db/x");
        assert_eq!(redact_url("postgres://u@db/x"), "postgres://u@db/x");
        assert_eq!(redact_url("sqlite://outdial.db"), "sqlite://outdial.db");
    }

    #[test]
    fn secret_keys() {
        assert!(is_secret_key("password"));
        assert!(is_secret_key("pasword"));
        assert!(is_secret_key("passwd"));
        assert!(is_secret_key("PassWord"));
        assert!(is_secret_key("auth_token"));
        assert!(!is_secret_key("password_env"));
        assert!(!is_secret_key("username"));
        for known in [
            "name",
            "proxy",
            "transport",
            "realm",
            "username",
            "register",
            "register_expires",
            "from_user",
            "from_domain",
            "caller_id",
            "pai",
            "ppi",
            "codecs",
            "max_channels",
            "max_cps",
            "outbound_proxy",
            "ping_interval",
            "sip.listen_udp",
            "sip.listen_tcp",
            "sip.external_addr",
            "sip.user_agent",
            "rtp.bind_addr",
            "rtp.port_min",
            "rtp.port_max",
            "log.level",
            "database.url",
            "http.listen",
        ] {
            assert!(!is_secret_key(known), "{known}");
        }
    }

    #[test]
    fn distance() {
        assert_eq!(edit_distance("trasport", "transport"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
