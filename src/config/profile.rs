//! Trunk profiles: every `*.toml` in the profiles directory is one carrier (`Profile`).
//!
//! Checks each file on its own (keys, types, ranges, credentials), then across files (names must
//! be unique). Passwords come from `password` or from the environment variable named by
//! `password_env`, and are never rendered: errors print `password = ***`.
//! Must not print, and must not resolve host names (the SIP layer does, at call time).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::error::ConfigError;
use super::reader::{self, Doc, Fields, Val};
use super::{CodecName, HostPort, InboundNumber, Profile, Secret, Transport, Trunk};
use crate::media::srtp::SrtpPolicy;
use crate::media::RtpLatching;

const KEYS: &[&str] = &[
    "name",
    "proxy",
    "transport",
    "realm",
    "username",
    "password",
    "password_env",
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
    "ping_down_after",
    "ping_up_after",
    "rtp_latching",
    "invite_timeout",
    "inbound_allow",
    "inbound_number",
    "inbound_route",
    "tls_ca_file",
    "tls_cert_file",
    "tls_key_file",
    "srtp",
    "trunk",
];

/// Keys of one `[[trunk]]` table.
const TRUNK_KEYS: &[&str] = &[
    "name",
    "proxy",
    "transport",
    "outbound_proxy",
    "priority",
    "weight",
    "max_channels",
    "max_cps",
    "invite_timeout",
];

/// A parsed profile and where its name came from (for the duplicate-name check).
pub(super) struct Parsed {
    pub profile: Profile,
    /// Line of the `name` key; None when the name is the file stem.
    name_line: Option<usize>,
}

/// Every `*.toml` in `dir`, sorted by file name. Hidden files (`.x.toml`) and sub-directories
/// are skipped. A missing directory is no profiles, unless `explicit`.
pub(super) fn load_dir(
    dir: &Path,
    explicit: bool,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) -> Vec<Profile> {
    let read_error = |reason: String| ConfigError::Read {
        file: dir.to_path_buf(),
        reason,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if explicit {
                errors.push(read_error("profiles directory not found".to_string()));
            }
            return Vec::new();
        }
        Err(_) if !dir.is_dir() => {
            errors.push(read_error("is not a directory".to_string()));
            return Vec::new();
        }
        Err(e) => {
            errors.push(read_error(format!(
                "cannot read the profiles directory: {e}"
            )));
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') || !name.ends_with(".toml") {
                    continue;
                }
                let path = entry.path();
                if path.is_file() {
                    files.push(path);
                }
            }
            Err(e) => {
                errors.push(read_error(format!(
                    "cannot read the profiles directory: {e}"
                )));
                return Vec::new();
            }
        }
    }
    files.sort();

    let mut profiles = Vec::new();
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    for file in files {
        let text = match reader::read_text(&file) {
            Ok(Some(text)) => text,
            Ok(None) => continue, // removed meanwhile
            Err(reason) => {
                errors.push(ConfigError::Read { file, reason });
                continue;
            }
        };
        let (parsed, file_errors) = parse(&file, &text, env);
        errors.extend(file_errors);
        let Some(parsed) = parsed else { continue };
        let name = parsed.profile.name.clone();
        if let Some(first) = seen.get(&name) {
            let from_stem = if parsed.name_line.is_none() {
                " (taken from the file name)"
            } else {
                ""
            };
            errors.push(ConfigError::Invalid {
                file: file.clone(),
                line: parsed.name_line,
                key: "name".to_string(),
                value: format!("{name:?}"),
                reason: format!(
                    "profile name already used by {}{from_stem}",
                    first.display()
                ),
            });
            continue;
        }
        seen.insert(name, file);
        profiles.push(parsed.profile);
    }
    profiles
}

/// Parses one profile file. Returns the profile when it could be built at all, and every
/// problem found (the profile is only usable when there are none).
pub(super) fn parse(
    file: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> (Option<Parsed>, Vec<ConfigError>) {
    let mut doc = Doc::new(file, text);
    let parsed = parse_doc(&mut doc, env);
    (parsed, doc.finish())
}

fn parse_doc(doc: &mut Doc<'_>, env: &dyn Fn(&str) -> Option<String>) -> Option<Parsed> {
    let root = doc.parse()?;
    let f = doc.fields("", root.get_ref(), KEYS);
    let stem = doc
        .file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();

    // name
    let mut name_line = None;
    let name = match f.get("name") {
        Some(v) => {
            name_line = doc.line(&v.span());
            match doc.string("name", v) {
                Some(name) => {
                    if !valid_name(&name) {
                        doc.invalid("name", v, NAME_RULE);
                    }
                    name
                }
                None => stem,
            }
        }
        None => {
            if !valid_name(&stem) {
                doc.key_error(
                    "name",
                    None,
                    format!(
                        "the file name {stem:?} is not a valid profile name ({NAME_RULE}); rename the file or set name"
                    ),
                );
            }
            stem
        }
    };

    // One trunk from the top-level keys, or several `[[trunk]]` tables; not both.
    let trunks = match f.get("trunk") {
        Some(v) => {
            for key in ["proxy", "transport", "outbound_proxy"] {
                if let Some(top) = f.get(key) {
                    doc.invalid(
                        key,
                        top,
                        "set it inside each [[trunk]] table (a profile with [[trunk]] tables has no top-level proxy)",
                    );
                }
            }
            let default_timeout = f
                .get("invite_timeout")
                .and_then(|v| seconds(doc, "invite_timeout", v));
            trunk_tables(doc, v, default_timeout)
        }
        None => {
            let mut trunk = trunk_fields(doc, &f, &name, true);
            if let (Some(t), Some(v)) = (trunk.as_mut(), f.get("invite_timeout")) {
                if let Some(d) = seconds(doc, "invite_timeout", v) {
                    t.invite_timeout = d;
                }
            }
            trunk.map(|t| vec![t])
        }
    };

    let realm = f.get("realm").and_then(|v| doc.text("realm", v));
    let username = f.get("username").and_then(|v| doc.text("username", v));

    // password / password_env
    let password_v = f.get("password");
    let password_env_v = f.get("password_env");
    let mut password = None;
    match (password_v, password_env_v) {
        (Some(v), Some(_)) => doc.invalid(
            "password",
            v,
            "set either password or password_env, not both",
        ),
        (Some(v), None) => {
            if let Some(s) = doc.string("password", v) {
                if s.is_empty() {
                    doc.invalid("password", v, "must not be empty; remove the key instead");
                } else {
                    password = Some(Secret::new(s));
                }
            }
        }
        (None, Some(v)) => {
            if let Some(var) = doc.text("password_env", v) {
                match env(&var) {
                    None => doc.invalid(
                        "password_env",
                        v,
                        format!("environment variable {var} is not set"),
                    ),
                    Some(s) if s.is_empty() => doc.invalid(
                        "password_env",
                        v,
                        format!("environment variable {var} is empty"),
                    ),
                    Some(s) => password = Some(Secret::new(s)),
                }
            }
        }
        (None, None) => {}
    }

    let mut register = false;
    if let Some(v) = f.get("register") {
        if let Some(b) = doc.boolean("register", v) {
            register = b;
            // Only complain about what is absent: a key present but wrong is reported already.
            let mut missing = Vec::new();
            if b && f.get("username").is_none() {
                missing.push("username");
            }
            if b && password_v.is_none() && password_env_v.is_none() {
                missing.push("password or password_env");
            }
            if !missing.is_empty() {
                doc.invalid(
                    "register",
                    v,
                    format!(
                        "registration needs username and password (missing: {})",
                        missing.join(", ")
                    ),
                );
            }
        }
    }
    let register_expires = f
        .get("register_expires")
        .and_then(|v| doc.integer("register_expires", v, 60..=86400))
        .map_or(3600, |n| n as u32);

    let from_user = f
        .get("from_user")
        .and_then(|v| user_part(doc, "from_user", v));
    let from_domain = f.get("from_domain").and_then(|v| {
        let s = doc.text("from_domain", v)?;
        if super::valid_hostname(&s) || s.parse::<std::net::IpAddr>().is_ok() {
            Some(s)
        } else {
            doc.invalid(
                "from_domain",
                v,
                "expected a domain or IP address such as carrier.example (no port, no sip:)",
            );
            None
        }
    });
    let caller_id = f
        .get("caller_id")
        .and_then(|v| user_part(doc, "caller_id", v));
    let pai = f.get("pai").and_then(|v| doc.text("pai", v));
    let ppi = f.get("ppi").and_then(|v| doc.text("ppi", v));

    let codecs = match f.get("codecs") {
        Some(v) => codecs(doc, v).unwrap_or_else(|| CodecName::ALL.to_vec()),
        None => CodecName::ALL.to_vec(),
    };

    let (max_channels, max_cps) = limits(doc, &f);
    let ping_interval = f
        .get("ping_interval")
        .and_then(|v| doc.integer("ping_interval", v, 0..=86400))
        .and_then(|n| if n == 0 { None } else { Some(n as u32) });
    let ping_down_after = f
        .get("ping_down_after")
        .and_then(|v| doc.integer("ping_down_after", v, 1..=100))
        .map_or(3, |n| n as u32);
    let ping_up_after = f
        .get("ping_up_after")
        .and_then(|v| doc.integer("ping_up_after", v, 1..=100))
        .map_or(2, |n| n as u32);
    let mut rtp_latching = RtpLatching::default();
    if let Some(v) = f.get("rtp_latching") {
        if let Some(s) = doc.string("rtp_latching", v) {
            match RtpLatching::parse(&s) {
                Some(mode) => rtp_latching = mode,
                None => doc.invalid("rtp_latching", v, "must be one of off, initial, always"),
            }
        }
    }

    let mut srtp = SrtpPolicy::default();
    if let Some(v) = f.get("srtp") {
        if let Some(s) = doc.string("srtp", v) {
            match SrtpPolicy::parse(&s) {
                Some(policy) => srtp = policy,
                None => doc.invalid("srtp", v, "must be one of off, optional, required"),
            }
        }
    }

    let inbound_allow = f
        .get("inbound_allow")
        .and_then(|v| networks(doc, "inbound_allow", v))
        .unwrap_or_default();

    let mut inbound_number = InboundNumber::default();
    if let Some(v) = f.get("inbound_number") {
        if let Some(s) = doc.string("inbound_number", v) {
            match InboundNumber::parse(&s) {
                Some(n) => inbound_number = n,
                None => doc.invalid("inbound_number", v, "must be one of request_uri, to"),
            }
        }
    }
    let inbound_route = f.get("inbound_route").and_then(|v| {
        let s = doc.text("inbound_route", v)?;
        let t = s.trim();
        let lower = t.to_ascii_lowercase();
        if lower.starts_with("sip:")
            || lower.starts_with("sips:")
            || crate::call::is_phone_number(t)
        {
            Some(t.to_string())
        } else {
            doc.invalid(
                "inbound_route",
                v,
                "expected a sip: URI or a phone number (where unknown callers are connected)",
            );
            None
        }
    });

    let tls_ca_file = f
        .get("tls_ca_file")
        .and_then(|v| pem_file(doc, "tls_ca_file", v));
    let tls_cert_file = f
        .get("tls_cert_file")
        .and_then(|v| pem_file(doc, "tls_cert_file", v));
    let tls_key_file = f
        .get("tls_key_file")
        .and_then(|v| pem_file(doc, "tls_key_file", v));
    for (have, key, missing) in [
        (tls_cert_file.is_some(), "tls_cert_file", "tls_key_file"),
        (tls_key_file.is_some(), "tls_key_file", "tls_cert_file"),
    ] {
        if have && f.get(missing).is_none() {
            if let Some(v) = f.get(key) {
                doc.invalid(
                    key,
                    v,
                    format!("a client certificate needs both tls_cert_file and tls_key_file (missing: {missing})"),
                );
            }
        }
    }

    let trunks = trunks?;
    let first = trunks.first()?.proxy.clone();
    let mut profile = Profile::new(name, first);
    profile.trunks = trunks;
    profile.file = doc.file.to_path_buf();
    profile.realm = realm;
    profile.username = username;
    profile.password = password;
    profile.register = register;
    profile.register_expires = register_expires;
    profile.from_user = from_user;
    profile.from_domain = from_domain;
    profile.caller_id = caller_id;
    profile.pai = pai;
    profile.ppi = ppi;
    profile.codecs = codecs;
    profile.max_channels = max_channels;
    profile.max_cps = max_cps;
    profile.ping_interval = ping_interval;
    profile.ping_down_after = ping_down_after;
    profile.inbound_allow = inbound_allow;
    profile.inbound_number = inbound_number;
    profile.inbound_route = inbound_route;
    profile.tls_ca_file = tls_ca_file;
    profile.tls_client = tls_cert_file.zip(tls_key_file);
    profile.ping_up_after = ping_up_after;
    profile.rtp_latching = rtp_latching;
    profile.srtp = srtp;
    Some(Parsed { profile, name_line })
}

/// The trunk described by `f`'s `proxy`, `transport` and `outbound_proxy` (and, inside a
/// `[[trunk]]` table, its own name, order and limits). `top` is the profile's own keys: no
/// order or limits of the trunk's (the profile's `max_channels` and `max_cps` are the group's).
fn trunk_fields(doc: &mut Doc<'_>, f: &Fields<'_, '_>, name: &str, top: bool) -> Option<Trunk> {
    // transport first: it decides the default port of proxy and outbound_proxy.
    let mut transport = Transport::Udp;
    if let Some(v) = f.get("transport") {
        if let Some(s) = doc.string(&f.key("transport"), v) {
            match Transport::parse(&s) {
                Some(t) => transport = t,
                None => doc.invalid(&f.key("transport"), v, "must be one of udp, tcp, tls"),
            }
        }
    }
    let proxy = match f.get("proxy") {
        Some(v) => host_port(doc, &f.key("proxy"), v, transport),
        None => {
            doc.key_error(
                &f.key("proxy"),
                None,
                "missing; set the carrier's SIP server, e.g. proxy = \"sip.carrier.example:5060\"",
            );
            None
        }
    };
    let outbound_proxy = f
        .get("outbound_proxy")
        .and_then(|v| host_port(doc, &f.key("outbound_proxy"), v, transport));
    let mut trunk = Trunk::new(name, proxy?);
    trunk.transport = transport;
    trunk.transport_explicit = f.get("transport").is_some();
    trunk.outbound_proxy = outbound_proxy;
    if !top {
        if let Some(v) = f.get("priority") {
            if let Some(n) = doc.integer(&f.key("priority"), v, 0..=65535) {
                trunk.priority = n as u32;
            }
        }
        if let Some(v) = f.get("weight") {
            if let Some(n) = doc.integer(&f.key("weight"), v, 0..=65535) {
                trunk.weight = n as u32;
            }
        }
        let (max_channels, max_cps) = limits(doc, f);
        trunk.max_channels = max_channels;
        trunk.max_cps = max_cps;
        if let Some(v) = f.get("invite_timeout") {
            if let Some(d) = seconds(doc, &f.key("invite_timeout"), v) {
                trunk.invite_timeout = d;
            }
        }
    }
    Some(trunk)
}

/// Every `[[trunk]]` table; `None` when one is unusable (its problems are reported).
fn trunk_tables(
    doc: &mut Doc<'_>,
    v: &Val<'_>,
    default_timeout: Option<std::time::Duration>,
) -> Option<Vec<Trunk>> {
    let toml::de::DeValue::Array(items) = v.get_ref() else {
        doc.invalid(
            "trunk",
            v,
            "expected [[trunk]] tables, one per SIP server of the carrier",
        );
        return None;
    };
    if items.is_empty() {
        doc.invalid("trunk", v, "must list at least one trunk");
        return None;
    }
    let mut trunks = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let key = format!("trunk[{}]", i + 1);
        let Some(table) = doc.table(&key, item) else {
            ok = false;
            continue;
        };
        let f = doc.fields(&format!("{key}."), table, TRUNK_KEYS);
        let name = match f.get("name") {
            Some(nv) => match doc.string(&f.key("name"), nv) {
                Some(n) if valid_name(&n) => n,
                Some(_) => {
                    doc.invalid(&f.key("name"), nv, NAME_RULE);
                    ok = false;
                    continue;
                }
                None => {
                    ok = false;
                    continue;
                }
            },
            None => format!("trunk{}", i + 1),
        };
        if let Some(same) = trunks.iter().position(|t: &Trunk| t.name == name) {
            doc.key_error(
                &f.key("name"),
                f.get("name").map(|nv| nv.span()),
                format!("trunk name {name:?} already used by trunk[{}]", same + 1),
            );
            ok = false;
            continue;
        }
        match trunk_fields(doc, &f, &name, false) {
            Some(mut t) => {
                if f.get("invite_timeout").is_none() {
                    if let Some(d) = default_timeout {
                        t.invite_timeout = d;
                    }
                }
                trunks.push(t)
            }
            None => ok = false,
        }
    }
    ok.then_some(trunks)
}

/// `max_channels` and `max_cps` of a profile (the group's) or of one trunk.
fn limits(doc: &mut Doc<'_>, f: &Fields<'_, '_>) -> (Option<u32>, Option<f64>) {
    let max_channels = f
        .get("max_channels")
        .and_then(|v| doc.integer(&f.key("max_channels"), v, 1..=i64::from(u32::MAX)))
        .map(|n| n as u32);
    let max_cps = f.get("max_cps").and_then(|v| {
        let key = f.key("max_cps");
        let n = doc.number(&key, v)?;
        if n.is_finite() && n > 0.0 {
            Some(n)
        } else if !n.is_finite() {
            doc.invalid(&key, v, "must be a finite number greater than 0");
            None
        } else {
            doc.invalid(
                &key,
                v,
                "must be greater than 0 (remove the key for no limit)",
            );
            None
        }
    });
    (max_channels, max_cps)
}

/// A PEM file's path (relative to the profile's folder), which must be a readable file.
fn pem_file(doc: &mut Doc<'_>, key: &str, v: &Val<'_>) -> Option<PathBuf> {
    let text = doc.text(key, v)?;
    let path = Path::new(text.trim());
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        doc.file
            .parent()
            .map_or_else(|| path.to_path_buf(), |dir| dir.join(path))
    };
    match std::fs::File::open(&path) {
        Ok(_) if path.is_file() => Some(path),
        Ok(_) => {
            doc.invalid(key, v, format!("{} is not a file", path.display()));
            None
        }
        Err(e) => {
            doc.invalid(key, v, format!("cannot read {}: {e}", path.display()));
            None
        }
    }
}

/// A list of networks (`"203.0.113.0/24"`, `"2001:db8::/32"`) or single addresses.
fn networks(doc: &mut Doc<'_>, key: &str, v: &Val<'_>) -> Option<Vec<ipnet::IpNet>> {
    let items = doc.string_list(key, v)?;
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        let text = item.trim();
        let net = text.parse::<ipnet::IpNet>().ok().or_else(|| {
            text.parse::<std::net::IpAddr>()
                .ok()
                .map(ipnet::IpNet::from)
        });
        match net {
            Some(n) => out.push(n.trunc()),
            None => {
                doc.invalid(
                    key,
                    v,
                    format!(
                        "{text:?} is not an address or a network; expected such as \"203.0.113.0/24\" or \"198.51.100.7\""
                    ),
                );
                return None;
            }
        }
    }
    Some(out)
}

/// Whole or fractional seconds, 0.1 to 64 (an INVITE's time without any response).
fn seconds(doc: &mut Doc<'_>, key: &str, v: &Val<'_>) -> Option<std::time::Duration> {
    let n = doc.number(key, v)?;
    if n.is_finite() && (0.1..=64.0).contains(&n) {
        Some(std::time::Duration::from_secs_f64(n))
    } else {
        doc.invalid(
            key,
            v,
            "must be between 0.1 and 64 seconds (RFC 3261 timer B is 32)",
        );
        None
    }
}

const NAME_RULE: &str = "use letters, digits, '.', '_' and '-'";

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn host_port(doc: &mut Doc<'_>, key: &str, v: &Val<'_>, transport: Transport) -> Option<HostPort> {
    let s = doc.string(key, v)?;
    match HostPort::parse(&s, transport.default_port()) {
        Ok(hp) => Some(hp),
        Err(reason) => {
            doc.invalid(key, v, reason);
            None
        }
    }
}

/// The user part of a SIP URI (a number or a name): no spaces, no `@`, no `sip:`.
fn user_part(doc: &mut Doc<'_>, key: &str, v: &Val<'_>) -> Option<String> {
    let s = doc.text(key, v)?;
    if s.contains(|c: char| c.is_whitespace() || matches!(c, '@' | '<' | '>' | '"' | ';'))
        || s.to_ascii_lowercase().starts_with("sip:")
    {
        doc.invalid(
            key,
            v,
            "expected the user part only, such as +15551234567 (no spaces, no sip:, no @domain)",
        );
        return None;
    }
    Some(s)
}

fn codecs(doc: &mut Doc<'_>, v: &Val<'_>) -> Option<Vec<CodecName>> {
    let names = doc.string_list("codecs", v)?;
    if names.is_empty() {
        doc.invalid(
            "codecs",
            v,
            "must list at least one codec, such as [\"PCMU\"]",
        );
        return None;
    }
    let mut out = Vec::with_capacity(names.len());
    for name in &names {
        match CodecName::parse(name) {
            None if name.eq_ignore_ascii_case("G722") && !cfg!(feature = "g722") => {
                doc.invalid(
                    "codecs",
                    v,
                    "G722 needs outdial built with the g722 feature (cargo build --features g722)",
                );
                return None;
            }
            None => {
                let supported = if cfg!(feature = "g722") {
                    "PCMU, PCMA, G722, telephone-event"
                } else {
                    "PCMU, PCMA, telephone-event"
                };
                doc.invalid(
                    "codecs",
                    v,
                    format!("unknown codec {name:?}; supported: {supported}"),
                );
                return None;
            }
            Some(c) if out.contains(&c) => {
                doc.invalid("codecs", v, format!("{c} is listed twice"));
                return None;
            }
            Some(c) => out.push(c),
        }
    }
    if !out.iter().any(|c| c.is_audio()) {
        doc.invalid(
            "codecs",
            v,
            if cfg!(feature = "g722") {
                "needs an audio codec (PCMU, PCMA or G722); telephone-event only carries DTMF"
            } else {
                "needs an audio codec (PCMU or PCMA); telephone-event only carries DTMF"
            },
        );
        return None;
    }
    Some(out)
}
