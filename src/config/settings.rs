//! `outdial.toml` (`[sip]`, `[rtp]`, `[log]`, `[database]`, `[http]`, `[media]`, `[engine]`) and the `OUTDIAL_*`
//! environment overrides applied after it.
//!
//! Starts from the built-in defaults, so every key is optional and a missing file (when not
//! named explicitly) is the defaults. Collects every problem; must not print or open sockets.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use toml::de::DeTable;

use super::error::ConfigError;
use super::reader::{self, Doc, Fields, Val};
use super::{
    Config, DatabaseSettings, EngineSettings, HttpSettings, LogFormat, LogSettings, MediaSettings,
    RtpSettings, SipSettings,
};

const TOP: &[&str] = &["sip", "rtp", "log", "database", "http", "media", "engine"];
const SIP: &[&str] = &[
    "listen_udp",
    "listen_tcp",
    "external_addr",
    "user_agent",
    "dns_servers",
];
const RTP: &[&str] = &["bind_addr", "port_min", "port_max", "external_addr"];
const LOG: &[&str] = &["level", "format"];
const DATABASE: &[&str] = &["url"];
const HTTP: &[&str] = &[
    "listen",
    "header_read_timeout_secs",
    "body_timeout_secs",
    "max_connections",
    "import_max_bytes",
    "max_export_jobs",
    "login_failures_per_minute",
];
const MEDIA: &[&str] = &["dir"];
const ENGINE: &[&str] = &["shutdown_grace_secs", "node_lease_secs", "journal_max"];

pub(crate) const ENV_SIP_LISTEN: &str = "OUTDIAL_SIP_LISTEN";
pub(crate) const ENV_RTP_PORTS: &str = "OUTDIAL_RTP_PORTS";
pub(crate) const ENV_DATABASE_URL: &str = "OUTDIAL_DATABASE_URL";
pub(crate) const ENV_HTTP_LISTEN: &str = "OUTDIAL_HTTP_LISTEN";
pub(crate) const ENV_LOG: &str = "OUTDIAL_LOG";
pub(crate) const ENV_LOG_FORMAT: &str = "OUTDIAL_LOG_FORMAT";
pub(crate) const ENV_MEDIA_DIR: &str = "OUTDIAL_MEDIA_DIR";

const LISTEN_EXPECTED: &str = "expected IP:PORT such as 0.0.0.0:5060 ([::]:5060 for IPv6)";

/// Reads `path` (defaults when absent and not `explicit`), then applies the environment.
pub(super) fn load(
    path: &Path,
    explicit: bool,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) -> Config {
    let mut config = Config::default();
    match reader::read_text(path) {
        Ok(Some(text)) => {
            let mut doc = Doc::new(path, &text);
            parse_file(&mut doc, &mut config);
            errors.extend(doc.finish());
        }
        Ok(None) if !explicit => {}
        Ok(None) => errors.push(ConfigError::Read {
            file: path.to_path_buf(),
            reason: "file not found".to_string(),
        }),
        Err(reason) => errors.push(ConfigError::Read {
            file: path.to_path_buf(),
            reason,
        }),
    }
    apply_env(&mut config, env, errors);
    config
}

fn parse_file(doc: &mut Doc<'_>, config: &mut Config) {
    let Some(root) = doc.parse() else { return };
    let top = doc.fields("", root.get_ref(), TOP);
    if let Some(t) = section(doc, &top, "sip") {
        parse_sip(doc, t, &mut config.sip);
    }
    if let Some(t) = section(doc, &top, "rtp") {
        parse_rtp(doc, t, &mut config.rtp);
    }
    if let Some(t) = section(doc, &top, "log") {
        parse_log(doc, t, &mut config.log);
    }
    if let Some(t) = section(doc, &top, "database") {
        parse_database(doc, t, &mut config.database);
    }
    if let Some(t) = section(doc, &top, "http") {
        parse_http(doc, t, &mut config.http);
    }
    if let Some(t) = section(doc, &top, "media") {
        parse_media(doc, t, &mut config.media);
    }
    if let Some(t) = section(doc, &top, "engine") {
        parse_engine(doc, t, &mut config.engine);
    }
}

fn parse_engine(doc: &mut Doc<'_>, t: &DeTable<'_>, engine: &mut EngineSettings) {
    let f = doc.fields("engine.", t, ENGINE);
    if let Some(v) = f.get("shutdown_grace_secs") {
        if let Some(n) = doc.integer(&f.key("shutdown_grace_secs"), v, 0..=3600) {
            engine.shutdown_grace_secs = n as u64;
        }
    }
    if let Some(v) = f.get("node_lease_secs") {
        if let Some(n) = doc.integer(&f.key("node_lease_secs"), v, 3..=3600) {
            engine.node_lease_secs = n as u64;
        }
    }
    if let Some(v) = f.get("journal_max") {
        if let Some(n) = doc.integer(&f.key("journal_max"), v, 1..=10_000_000) {
            engine.journal_max = n as u64;
        }
    }
}

fn section<'t, 'i>(doc: &mut Doc<'_>, top: &Fields<'t, 'i>, name: &str) -> Option<&'t DeTable<'i>> {
    let v = top.get(name)?;
    doc.table(name, v)
}

fn parse_sip(doc: &mut Doc<'_>, t: &DeTable<'_>, sip: &mut SipSettings) {
    let f = doc.fields("sip.", t, SIP);
    let udp = f.get("listen_udp");
    let tcp = f.get("listen_tcp");
    if let Some(v) = udp {
        if let Some(a) = listener(doc, &f.key("listen_udp"), v) {
            sip.listen_udp = a;
        }
    }
    if let Some(v) = tcp {
        if let Some(a) = listener(doc, &f.key("listen_tcp"), v) {
            sip.listen_tcp = a;
        }
    }
    if sip.listen_udp.is_none() && sip.listen_tcp.is_none() {
        if let Some(v) = udp {
            doc.invalid(
                "sip.listen_udp",
                v,
                "sip.listen_tcp is disabled too; outdial needs at least one SIP listener",
            );
        }
    }
    if let Some(v) = f.get("external_addr") {
        if let Some(ip) = external_addr(doc, &f.key("external_addr"), v) {
            sip.external_addr = Some(ip);
        }
    }
    if let Some(v) = f.get("user_agent") {
        if let Some(s) = doc.text(&f.key("user_agent"), v) {
            sip.user_agent = s;
        }
    }
    if let Some(v) = f.get("dns_servers") {
        if let Some(servers) = dns_servers(doc, &f.key("dns_servers"), v) {
            sip.dns_servers = servers;
        }
    }
}

/// Most name servers `sip.dns_servers` may list.
const MAX_DNS_SERVERS: usize = 8;

/// `sip.dns_servers`: a list of `IP` or `IP:PORT` (port 53 when not written); empty = the
/// system's resolv.conf.
fn dns_servers(doc: &mut Doc<'_>, key: &str, v: &Val<'_>) -> Option<Vec<SocketAddr>> {
    const EXPECTED: &str =
        "expected a list of name server addresses such as [\"192.0.2.53\", \"[2001:db8::53]:5353\"]";
    let items = doc.string_list(key, v)?;
    if items.len() > MAX_DNS_SERVERS {
        doc.invalid(key, v, format!("at most {MAX_DNS_SERVERS} name servers"));
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        let parsed = item.parse::<SocketAddr>().ok().or_else(|| {
            item.parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 53))
        });
        match parsed {
            Some(a) if a.port() != 0 && !a.ip().is_unspecified() && !a.ip().is_multicast() => {
                out.push(a)
            }
            _ => {
                doc.invalid(
                    key,
                    v,
                    format!("{item:?} is not a name server address; {EXPECTED}"),
                );
                return None;
            }
        }
    }
    Some(out)
}

/// An address string, or `false` for "disabled".
fn listener(doc: &mut Doc<'_>, key: &str, v: &Val<'_>) -> Option<Option<SocketAddr>> {
    match v.get_ref() {
        toml::de::DeValue::Boolean(false) => Some(None),
        toml::de::DeValue::String(s) => match parse_listen(s) {
            Ok(a) => Some(Some(a)),
            Err(reason) => {
                doc.invalid(key, v, format!("{reason}, or false to disable"));
                None
            }
        },
        _ => {
            doc.invalid(
                key,
                v,
                "expected an address such as \"0.0.0.0:5060\", or false to disable",
            );
            None
        }
    }
}

fn external_addr(doc: &mut Doc<'_>, key: &str, v: &Val<'_>) -> Option<IpAddr> {
    let s = doc.string(key, v)?;
    match s.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() || ip.is_multicast() => {
            doc.invalid(
                key,
                v,
                "must be the public address peers can reach, not a wildcard or multicast address",
            );
            None
        }
        Ok(ip) => Some(ip),
        Err(_) => {
            doc.invalid(
                key,
                v,
                "expected an IP address such as 203.0.113.10 (no port)",
            );
            None
        }
    }
}

fn parse_rtp(doc: &mut Doc<'_>, t: &DeTable<'_>, rtp: &mut RtpSettings) {
    let f = doc.fields("rtp.", t, RTP);
    if let Some(v) = f.get("bind_addr") {
        let key = f.key("bind_addr");
        if let Some(s) = doc.string(&key, v) {
            match s.parse::<IpAddr>() {
                Ok(ip) if !ip.is_multicast() => rtp.bind_addr = ip,
                _ => doc.invalid(
                    &key,
                    v,
                    "expected a local IP address such as 0.0.0.0 (no port)",
                ),
            }
        }
    }
    if let Some(v) = f.get("external_addr") {
        if let Some(ip) = external_addr(doc, &f.key("external_addr"), v) {
            rtp.external_addr = Some(ip);
        }
    }
    let min_v = f.get("port_min");
    let max_v = f.get("port_max");
    let min = min_v.map(|v| doc.integer(&f.key("port_min"), v, 1024..=65535));
    let max = max_v.map(|v| doc.integer(&f.key("port_max"), v, 1024..=65535));
    // Stop when either written value was bad: it was reported already.
    if matches!(min, Some(None)) || matches!(max, Some(None)) {
        return;
    }
    let lo = min.flatten().map_or(rtp.port_min, |n| n as u16);
    let hi = max.flatten().map_or(rtp.port_max, |n| n as u16);
    if let Err(problem) = check_port_range(lo, hi) {
        // Blame the key the user wrote (port_min when both are written).
        let blamed = match (min_v, max_v) {
            (Some(v), _) => Some(("rtp.port_min", v)),
            (None, Some(v)) => Some(("rtp.port_max", v)),
            (None, None) => None, // the defaults are fine
        };
        if let Some((key, v)) = blamed {
            let reason = match problem {
                RangeProblem::Order if min_v.is_some() => {
                    format!("must be less than rtp.port_max ({hi})")
                }
                RangeProblem::Order => format!("must be greater than rtp.port_min ({lo})"),
                RangeProblem::NoPair => no_pair_reason(lo, hi),
            };
            doc.invalid(key, v, reason);
        }
    }
    rtp.port_min = lo;
    rtp.port_max = hi;
}

fn parse_log(doc: &mut Doc<'_>, t: &DeTable<'_>, log: &mut LogSettings) {
    let f = doc.fields("log.", t, LOG);
    if let Some(v) = f.get("level") {
        let key = f.key("level");
        if let Some(s) = doc.string(&key, v) {
            match check_level(&s) {
                Ok(()) => log.level = s.trim().to_string(),
                Err(reason) => doc.invalid(&key, v, reason),
            }
        }
    }
    if let Some(v) = f.get("format") {
        let key = f.key("format");
        if let Some(s) = doc.string(&key, v) {
            match LogFormat::parse(&s) {
                Some(format) => log.format = format,
                None => doc.invalid(&key, v, LOG_FORMAT_EXPECTED),
            }
        }
    }
}

const LOG_FORMAT_EXPECTED: &str = "must be one of text, json";

fn parse_database(doc: &mut Doc<'_>, t: &DeTable<'_>, db: &mut DatabaseSettings) {
    let f = doc.fields("database.", t, DATABASE);
    if let Some(v) = f.get("url") {
        let key = f.key("url");
        if let Some(s) = doc.text(&key, v) {
            match check_database_url(&s) {
                Ok(()) => db.url = s,
                Err(reason) => doc.invalid(&key, v, reason),
            }
        }
    }
}

fn parse_http(doc: &mut Doc<'_>, t: &DeTable<'_>, http: &mut HttpSettings) {
    let f = doc.fields("http.", t, HTTP);
    if let Some(v) = f.get("listen") {
        let key = f.key("listen");
        if let Some(s) = doc.string(&key, v) {
            match parse_listen(&s) {
                Ok(a) => http.listen = a,
                Err(reason) => doc.invalid(&key, v, reason.replace("5060", "8080")),
            }
        }
    }
    let mut int = |name: &str, range: std::ops::RangeInclusive<i64>| {
        f.get(name)
            .and_then(|v| doc.integer(&f.key(name), v, range))
            .map(|n| n.max(0) as u64)
    };
    if let Some(n) = int("header_read_timeout_secs", 1..=3600) {
        http.header_read_timeout_secs = n;
    }
    if let Some(n) = int("body_timeout_secs", 1..=3600) {
        http.body_timeout_secs = n;
    }
    if let Some(n) = int("max_connections", 1..=1_000_000) {
        http.max_connections = n as usize;
    }
    if let Some(n) = int("import_max_bytes", 1024..=i64::MAX) {
        http.import_max_bytes = n;
    }
    if let Some(n) = int("max_export_jobs", 1..=1000) {
        http.max_export_jobs = n as usize;
    }
    if let Some(n) = int("login_failures_per_minute", 0..=1_000_000) {
        http.login_failures_per_minute = n as u32;
    }
}

fn parse_media(doc: &mut Doc<'_>, t: &DeTable<'_>, media: &mut MediaSettings) {
    let f = doc.fields("media.", t, MEDIA);
    if let Some(v) = f.get("dir") {
        let key = f.key("dir");
        if let Some(s) = doc.string(&key, v) {
            match check_media_dir(&s) {
                Ok(dir) => media.dir = dir,
                Err(reason) => doc.invalid(&key, v, reason),
            }
        }
    }
}

/// The media directory: a non-empty path that, when it exists, is a readable directory
/// (a missing one is created when the first file is uploaded).
pub(crate) fn check_media_dir(s: &str) -> Result<PathBuf, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("must name a directory".to_string());
    }
    let dir = PathBuf::from(s);
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => match std::fs::read_dir(&dir) {
            Ok(_) => Ok(dir),
            Err(e) => Err(format!("cannot read the directory: {e}")),
        },
        Ok(_) => Err("exists but is not a directory".to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(dir),
        Err(e) => Err(format!("cannot be checked: {e}")),
    }
}

/// Applies the `OUTDIAL_*` overrides. Empty variables count as unset.
fn apply_env(
    config: &mut Config,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) {
    let get = |name: &str| {
        env(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let env_error = |var: &str, value: &str, reason: String| ConfigError::Env {
        var: var.to_string(),
        value: format!("{value:?}"),
        reason,
    };

    if let Some(v) = get(ENV_SIP_LISTEN) {
        match parse_listen(&v) {
            // Moves the enabled listeners; one disabled in the file stays disabled.
            Ok(a) => {
                if config.sip.listen_udp.is_some() {
                    config.sip.listen_udp = Some(a);
                }
                if config.sip.listen_tcp.is_some() {
                    config.sip.listen_tcp = Some(a);
                }
            }
            Err(reason) => errors.push(env_error(ENV_SIP_LISTEN, &v, reason.to_string())),
        }
    }
    if let Some(v) = get(ENV_RTP_PORTS) {
        match parse_port_range(&v) {
            Ok((lo, hi)) => {
                config.rtp.port_min = lo;
                config.rtp.port_max = hi;
            }
            Err(reason) => errors.push(env_error(ENV_RTP_PORTS, &v, reason)),
        }
    }
    if let Some(v) = get(ENV_DATABASE_URL) {
        match check_database_url(&v) {
            Ok(()) => config.database.url = v,
            Err(reason) => errors.push(ConfigError::Env {
                var: ENV_DATABASE_URL.to_string(),
                value: reader::redact_url(&format!("{v:?}")),
                reason,
            }),
        }
    }
    if let Some(v) = get(ENV_HTTP_LISTEN) {
        match parse_listen(&v) {
            Ok(a) => config.http.listen = a,
            Err(reason) => errors.push(env_error(
                ENV_HTTP_LISTEN,
                &v,
                reason.replace("5060", "8080"),
            )),
        }
    }
    if let Some(v) = get(ENV_MEDIA_DIR) {
        match check_media_dir(&v) {
            Ok(dir) => config.media.dir = dir,
            Err(reason) => errors.push(env_error(ENV_MEDIA_DIR, &v, reason)),
        }
    }
    if let Some(v) = get(ENV_LOG) {
        match check_level(&v) {
            Ok(()) => config.log.level = v,
            Err(reason) => errors.push(env_error(ENV_LOG, &v, reason)),
        }
    }
    if let Some(v) = get(ENV_LOG_FORMAT) {
        match LogFormat::parse(&v) {
            Some(format) => config.log.format = format,
            None => errors.push(env_error(
                ENV_LOG_FORMAT,
                &v,
                LOG_FORMAT_EXPECTED.to_string(),
            )),
        }
    }
}

/// `IP:PORT`; port 0 (any free port) is allowed.
pub(crate) fn parse_listen(s: &str) -> Result<SocketAddr, &'static str> {
    s.trim().parse::<SocketAddr>().map_err(|_| LISTEN_EXPECTED)
}

enum RangeProblem {
    /// min >= max
    Order,
    /// no even port p with p + 1 inside the range
    NoPair,
}

fn check_port_range(lo: u16, hi: u16) -> Result<(), RangeProblem> {
    if lo >= hi {
        return Err(RangeProblem::Order);
    }
    let first_even = if lo.is_multiple_of(2) {
        lo
    } else {
        lo.saturating_add(1)
    };
    if first_even >= hi {
        return Err(RangeProblem::NoPair);
    }
    Ok(())
}

fn no_pair_reason(lo: u16, hi: u16) -> String {
    format!("the range {lo}-{hi} holds no even RTP port with its RTCP port after it; widen it")
}

/// `MIN-MAX`, both >= 1024, MIN < MAX, holding at least one RTP/RTCP pair.
pub(crate) fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    const EXPECTED: &str = "expected MIN-MAX such as 10000-20000";
    let Some((a, b)) = s.split_once('-') else {
        return Err(EXPECTED.to_string());
    };
    let (Ok(lo), Ok(hi)) = (a.trim().parse::<u16>(), b.trim().parse::<u16>()) else {
        return Err(format!("{EXPECTED}, ports up to 65535"));
    };
    if lo < 1024 || hi < 1024 {
        return Err("ports must be 1024 or above".to_string());
    }
    match check_port_range(lo, hi) {
        Ok(()) => Ok((lo, hi)),
        Err(RangeProblem::Order) => Err("MIN must be less than MAX".to_string()),
        Err(RangeProblem::NoPair) => Err(no_pair_reason(lo, hi)),
    }
}

const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// A level, or a comma-separated EnvFilter directive list (`info,outdial::sip=debug`).
/// Bare words must be levels: a bare `infoo` would be a valid EnvFilter *target* and silently
/// turn on tracing for nothing, so it is refused here.
pub(crate) fn check_level(s: &str) -> Result<(), String> {
    const HINT: &str =
        "use error, warn, info, debug, trace, or directives such as info,outdial::sip=debug";
    let s = s.trim();
    if s.is_empty() {
        return Err(format!("must not be empty; {HINT}"));
    }
    for directive in s.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if !directive.contains(['=', '['])
            && !LEVELS.contains(&directive.to_ascii_lowercase().as_str())
        {
            return Err(format!("{directive:?} is not a log level; {HINT}"));
        }
    }
    match tracing_subscriber::EnvFilter::builder().parse(s) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("not a valid log filter ({e}); {HINT}")),
    }
}

/// `sqlite:…` or `postgres://…` / `postgresql://…`.
pub(crate) fn check_database_url(s: &str) -> Result<(), String> {
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("sqlite:")
        || lower.starts_with("postgres://")
        || lower.starts_with("postgresql://")
    {
        Ok(())
    } else {
        Err("expected a sqlite:// or postgres:// URL, such as sqlite://outdial.db".to_string())
    }
}
