//! Configuration: `outdial.toml` (SIP listeners, RTP ports, logging, database, HTTP) and the
//! trunk profiles in `sip-profiles/*.toml` (one carrier each, like FreeSWITCH gateways), loaded,
//! checked and handed out as plain typed values. `docs/configuration.md` documents every key.
//!
//! Loading reads the files, applies the `OUTDIAL_*` environment overrides and collects *every*
//! problem, each as one line naming the file, the key and the value (`ConfigErrors`), so that
//! `outdial check-config` can show them all at once.
//!
//! It must not open sockets, start logging or print anything: callers decide what to do with the
//! result. It never panics on user input, and never shows a password: `Secret` prints as `***`,
//! database URLs lose their password in `Debug` and in errors.

mod error;
pub mod media;
mod profile;
mod reader;
mod settings;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

pub use error::{ConfigError, ConfigErrors};

/// Where `outdial.toml` is looked for when no `--config` is given.
pub const DEFAULT_CONFIG_PATH: &str = "outdial.toml";
/// Where trunk profiles are looked for when no `--profiles` is given.
pub const DEFAULT_PROFILES_DIR: &str = "sip-profiles";

/// Everything outdial is configured with: `outdial.toml` plus the trunk profiles.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub sip: SipSettings,
    pub rtp: RtpSettings,
    pub log: LogSettings,
    pub database: DatabaseSettings,
    pub http: HttpSettings,
    pub media: MediaSettings,
    pub engine: EngineSettings,
    /// Loaded from the profiles directory, sorted by file name.
    pub profiles: Vec<Profile>,
}

/// `[sip]`: where the user agent listens and how it presents itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipSettings {
    /// UDP listener; `None` when disabled (`listen_udp = false`).
    pub listen_udp: Option<SocketAddr>,
    /// TCP listener; `None` when disabled (`listen_tcp = false`).
    pub listen_tcp: Option<SocketAddr>,
    /// Public address advertised in Via/Contact when behind NAT.
    pub external_addr: Option<IpAddr>,
    /// `User-Agent` header value.
    pub user_agent: String,
    /// DNS servers for trunk hosts (`sip.dns_servers`); empty = the system's (resolv.conf).
    pub dns_servers: Vec<SocketAddr>,
}

impl Default for SipSettings {
    fn default() -> Self {
        let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 5060);
        SipSettings {
            listen_udp: Some(any),
            listen_tcp: Some(any),
            external_addr: None,
            user_agent: default_user_agent(),
            dns_servers: Vec::new(),
        }
    }
}

/// `outdial/<version>`.
pub fn default_user_agent() -> String {
    format!("outdial/{}", env!("CARGO_PKG_VERSION"))
}

/// `[rtp]`: the media port range. `port_min < port_max`, both >= 1024, checked on load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpSettings {
    pub bind_addr: IpAddr,
    pub port_min: u16,
    pub port_max: u16,
    /// Public address advertised in SDP `c=` when behind NAT.
    pub external_addr: Option<IpAddr>,
}

impl Default for RtpSettings {
    fn default() -> Self {
        RtpSettings {
            bind_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port_min: 10000,
            port_max: 20000,
            external_addr: None,
        }
    }
}

/// `[log]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSettings {
    /// A level (`error|warn|info|debug|trace`) or an EnvFilter directive list such as
    /// `info,outdial::sip=debug`; checked on load, so `EnvFilter::new` will accept it.
    pub level: String,
    /// How each line is written (`log.format`).
    pub format: LogFormat,
}

/// The shape of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable text; colours only when the output is a terminal.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, message, fields, and the spans
    /// the line was written in, such as the attempt's ids).
    Json,
}

impl LogFormat {
    pub fn parse(s: &str) -> Option<LogFormat> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: "info".to_string(),
            format: LogFormat::Text,
        }
    }
}

/// `[database]`. `Debug` hides the URL's password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseSettings {
    /// `sqlite://…` or `postgres://…`.
    pub url: String,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: "sqlite://outdial.db".to_string(),
        }
    }
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &reader::redact_url(&self.url))
            .finish()
    }
}

/// `[http]`: the admin API and web page, and what it allows a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// Seconds a connection has to send a request's head (also while idle between
    /// requests).
    pub header_read_timeout_secs: u64,
    /// Seconds the server waits for the next chunk of a request body.
    pub body_timeout_secs: u64,
    /// Connections served at once; the next is answered 503 and closed.
    pub max_connections: usize,
    /// Largest CSV import body, bytes (413 above it, nothing imported).
    pub import_max_bytes: u64,
    /// Export jobs running at once (429 above it).
    pub max_export_jobs: usize,
    /// Failed logins per client address per minute before 429 (0: no limit).
    pub login_failures_per_minute: u32,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
            header_read_timeout_secs: 10,
            body_timeout_secs: 30,
            max_connections: 256,
            import_max_bytes: 100 * 1024 * 1024,
            max_export_jobs: 2,
            login_failures_per_minute: 10,
        }
    }
}

/// `[engine]`: how the campaign engine survives a shutdown, a crash and a store outage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineSettings {
    /// How long `serve` waits on SIGTERM for live calls to hang up and be recorded.
    pub shutdown_grace_secs: u64,
    /// A node whose heartbeat is older than this is dead: another node ends and records its
    /// calls.
    pub node_lease_secs: u64,
    /// Attempt results kept on disk at most while the store is unreachable; when full the
    /// engine stops dialing (results are never dropped).
    pub journal_max: u64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            shutdown_grace_secs: 40,
            node_lease_secs: 10,
            journal_max: 10_000,
        }
    }
}

/// `[media]`: where the WAV files campaigns play live (`play_message`, `voicemail_message`,
/// plan prompts): files an operator puts there are shared by every account; each account's
/// uploads go to its own subfolder. See [`media::resolve_media`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaSettings {
    /// Relative paths are taken from the working directory.
    pub dir: PathBuf,
}

/// `media`, in the working directory.
pub const DEFAULT_MEDIA_DIR: &str = "media";

impl Default for MediaSettings {
    fn default() -> Self {
        MediaSettings {
            dir: PathBuf::from(DEFAULT_MEDIA_DIR),
        }
    }
}

/// SIP transport towards a trunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// Case-insensitive `udp`, `tcp` or `tls`.
    pub fn parse(s: &str) -> Option<Transport> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Some(Transport::Udp),
            "tcp" => Some(Transport::Tcp),
            "tls" => Some(Transport::Tls),
            _ => None,
        }
    }

    /// Lowercase name, as written in profiles.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// 5060, or 5061 for TLS.
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            _ => 5060,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A codec a profile may offer, in preference order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecName {
    Pcmu,
    Pcma,
    TelephoneEvent,
    /// G.722 (built with the `g722` feature): offered only when a profile lists it, after
    /// PCMU/PCMA.
    #[cfg(feature = "g722")]
    G722,
}

impl CodecName {
    /// What a profile offers when it lists no codecs, in preference order (every codec but
    /// G.722, which is offered only when listed).
    pub const ALL: [CodecName; 3] = [CodecName::Pcmu, CodecName::Pcma, CodecName::TelephoneEvent];

    /// Case-insensitive `PCMU`, `PCMA`, `telephone-event` (or `G722` with the feature).
    pub fn parse(s: &str) -> Option<CodecName> {
        match s.to_ascii_lowercase().as_str() {
            "pcmu" => Some(CodecName::Pcmu),
            "pcma" => Some(CodecName::Pcma),
            "telephone-event" => Some(CodecName::TelephoneEvent),
            #[cfg(feature = "g722")]
            "g722" => Some(CodecName::G722),
            _ => None,
        }
    }

    /// The SDP encoding name: `PCMU`, `PCMA`, `telephone-event`, `G722`.
    pub fn as_str(self) -> &'static str {
        match self {
            CodecName::Pcmu => "PCMU",
            CodecName::Pcma => "PCMA",
            CodecName::TelephoneEvent => "telephone-event",
            #[cfg(feature = "g722")]
            CodecName::G722 => "G722",
        }
    }

    /// True for codecs that carry sound (not telephone-event).
    pub fn is_audio(self) -> bool {
        !matches!(self, CodecName::TelephoneEvent)
    }
}

impl fmt::Display for CodecName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A SIP host and port. `host` holds no brackets; `Display` adds them for IPv6: `[::1]:5060`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
    /// The port was written (`host:port`), not defaulted. RFC 3263: a host with a port is
    /// looked up with A/AAAA only; one without goes through NAPTR/SRV first.
    pub explicit_port: bool,
}

impl HostPort {
    /// A host with this port written explicitly.
    pub fn new(host: impl Into<String>, port: u16) -> HostPort {
        HostPort {
            host: host.into(),
            port,
            explicit_port: true,
        }
    }

    /// A host written without a port: `port` is the transport's default, and DNS (SRV) may
    /// name another.
    pub fn with_default_port(host: impl Into<String>, port: u16) -> HostPort {
        HostPort {
            host: host.into(),
            port,
            explicit_port: false,
        }
    }

    /// Parses `host`, `host:port`, `1.2.3.4:5060`, `[::1]:5060`, `[::1]` or `::1`; a missing port
    /// becomes `default_port`. The error is a reason fit to follow `key = "value": `.
    pub fn parse(text: &str, default_port: u16) -> Result<HostPort, String> {
        const EXPECTED: &str = "expected host or host:port such as sip.carrier.example:5060";
        if text.is_empty() {
            return Err(format!("must not be empty; {EXPECTED}"));
        }
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("sip:") || lower.starts_with("sips:") {
            return Err(format!(
                "write the host without the sip: prefix; {EXPECTED}"
            ));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("must not contain spaces; {EXPECTED}"));
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let Some((inner, after)) = rest.split_once(']') else {
                return Err(format!("missing ']' after the IPv6 address; {EXPECTED}"));
            };
            if inner.parse::<Ipv6Addr>().is_err() {
                return Err(format!("{inner:?} is not an IPv6 address; {EXPECTED}"));
            }
            let port = match after {
                "" => None,
                p => match p.strip_prefix(':') {
                    Some(p) => Some(p),
                    None => return Err(EXPECTED.to_string()),
                },
            };
            (inner, port)
        } else if text.parse::<Ipv6Addr>().is_ok() {
            (text, None)
        } else {
            match text.split_once(':') {
                Some((h, p)) => {
                    if p.contains(':') {
                        return Err(format!(
                            "write IPv6 addresses in brackets, as [::1]:5060; {EXPECTED}"
                        ));
                    }
                    (h, Some(p))
                }
                None => (text, None),
            }
        };
        if host.is_empty() {
            return Err(format!("the host is missing; {EXPECTED}"));
        }
        if !host.contains(':') && !valid_hostname(host) {
            return Err(format!("{host:?} is not a valid host name; {EXPECTED}"));
        }
        match port {
            None => Ok(HostPort::with_default_port(host, default_port)),
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => {
                    Ok(HostPort::new(host, n))
                }
                _ => Err(format!("the port {p:?} must be a number from 1 to 65535")),
            },
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Letters, digits, `-` and `_` in dot-separated, non-empty labels (IPv4 addresses pass too).
pub(crate) fn valid_hostname(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        // Looks like an IPv4 address: it must be one.
        return host.parse::<Ipv4Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A password. `Debug` and `Display` print `***`; only `expose` gives the text, for the one
/// place that computes a digest response.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// One SIP server of a carrier (a profile's `proxy`, or one of its `[[trunk]]` tables): where
/// INVITEs go, how, in which order and with which limits of its own.
#[derive(Clone, Debug, PartialEq)]
pub struct Trunk {
    /// `name` in the `[[trunk]]` table; the profile's name for a profile with one `proxy`.
    pub name: String,
    pub proxy: HostPort,
    /// `transport`, UDP when not written.
    pub transport: Transport,
    /// `transport` was written. RFC 3263: then only that transport's SRV records are asked;
    /// without it, NAPTR records may choose the transport.
    pub transport_explicit: bool,
    /// Send the requests through this hop first (an SBC), instead of straight to `proxy`.
    pub outbound_proxy: Option<HostPort>,
    /// Lower is tried first.
    pub priority: u32,
    /// Share of the calls among trunks of the same priority (RFC 2782 style); 0 = only when
    /// the others of its priority are out.
    pub weight: u32,
    /// This trunk's own concurrent calls, besides the profile's.
    pub max_channels: Option<u32>,
    /// This trunk's own calls per second, besides the profile's; > 0.
    pub max_cps: Option<f64>,
    /// How long an INVITE may go without any response (not even 100 Trying) before the call
    /// moves to the next trunk: RFC 3261 timer B (64 × T1 = 32 s) unless set shorter.
    pub invite_timeout: std::time::Duration,
}

/// Timer B of RFC 3261 (64 × T1): the default [`Trunk::invite_timeout`].
pub const TIMER_B: std::time::Duration = std::time::Duration::from_secs(32);

impl Trunk {
    /// A trunk at `proxy` over UDP, priority 1, weight 1, no limits of its own.
    pub fn new(name: impl Into<String>, proxy: HostPort) -> Trunk {
        Trunk {
            name: name.into(),
            proxy,
            transport: Transport::Udp,
            transport_explicit: false,
            outbound_proxy: None,
            priority: 1,
            weight: 1,
            max_channels: None,
            max_cps: None,
            invite_timeout: TIMER_B,
        }
    }

    /// The first hop of its requests: the outbound proxy, else the proxy.
    pub fn hop(&self) -> &HostPort {
        self.outbound_proxy.as_ref().unwrap_or(&self.proxy)
    }
}

/// One carrier: `sip-profiles/<name>.toml`: its trunks, credentials, identity and limits.
#[derive(Clone, Debug)]
pub struct Profile {
    /// `name` key, or the file stem.
    pub name: String,
    /// The file it came from (empty for profiles built in code).
    pub file: PathBuf,
    /// At least one; in the file's order (calls order them by priority, weight and health).
    pub trunks: Vec<Trunk>,
    pub realm: Option<String>,
    pub username: Option<String>,
    /// From `password` or from the variable named by `password_env`.
    pub password: Option<Secret>,
    pub register: bool,
    /// Seconds, 60..=86400.
    pub register_expires: u32,
    pub from_user: Option<String>,
    pub from_domain: Option<String>,
    pub caller_id: Option<String>,
    /// P-Asserted-Identity.
    pub pai: Option<String>,
    /// P-Preferred-Identity.
    pub ppi: Option<String>,
    /// Preference order; at least one audio codec.
    pub codecs: Vec<CodecName>,
    /// Concurrent calls over all its trunks, counted across nodes.
    pub max_channels: Option<u32>,
    /// Calls per second over all its trunks, counted across nodes; > 0.
    pub max_cps: Option<f64>,
    /// OPTIONS to every trunk every so many seconds; `None` = off (`0` in the file also means
    /// off). A trunk is down after `ping_down_after` unanswered pings in a row and up again
    /// after `ping_up_after` answered ones.
    pub ping_interval: Option<u32>,
    pub ping_down_after: u32,
    pub ping_up_after: u32,
    /// Which RTP sources besides the SDP address a call on this trunk takes.
    pub rtp_latching: crate::media::RtpLatching,
    /// Networks besides its trunks' own addresses that may send this carrier's inbound
    /// INVITEs (`inbound_allow`).
    pub inbound_allow: Vec<ipnet::IpNet>,
    /// Where an inbound call's called number (the DID) is read (`inbound_number`).
    pub inbound_number: InboundNumber,
    /// Where an inbound call goes when no campaign's contact matches its caller: a `sip:` URI
    /// or a number through this profile's trunks (`inbound_route`); `None`: 480.
    pub inbound_route: Option<String>,
    /// PEM CA certificates a TLS trunk's server certificate must chain to (`tls_ca_file`),
    /// besides the system's bundle.
    pub tls_ca_file: Option<PathBuf>,
    /// Our client certificate and its key for carriers that ask for one (`tls_cert_file`,
    /// `tls_key_file`).
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// SDES-SRTP on this trunk's calls (`srtp`: off, optional, required).
    pub srtp: crate::media::srtp::SrtpPolicy,
}

/// Which header of an inbound INVITE names the number called.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InboundNumber {
    /// The Request-URI's user part (what the carrier routed on).
    #[default]
    RequestUri,
    /// The To header's user part (carriers that rewrite the Request-URI to a registered
    /// contact).
    To,
}

impl InboundNumber {
    pub fn parse(s: &str) -> Option<InboundNumber> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "request_uri" | "ruri" => Some(InboundNumber::RequestUri),
            "to" => Some(InboundNumber::To),
            _ => None,
        }
    }
}

impl Profile {
    /// A profile with every optional setting at its default (no auth, no registration, UDP,
    /// all codecs): for tests and for code that builds trunks without a file.
    pub fn new(name: impl Into<String>, proxy: HostPort) -> Profile {
        let name = name.into();
        Profile {
            name: name.clone(),
            file: PathBuf::new(),
            trunks: vec![Trunk::new(name.clone(), proxy)],
            realm: None,
            username: None,
            password: None,
            register: false,
            register_expires: 3600,
            from_user: None,
            from_domain: None,
            caller_id: None,
            pai: None,
            ppi: None,
            codecs: CodecName::ALL.to_vec(),
            max_channels: None,
            max_cps: None,
            ping_interval: None,
            ping_down_after: 3,
            ping_up_after: 2,
            rtp_latching: crate::media::RtpLatching::Initial,
            inbound_allow: Vec::new(),
            inbound_number: InboundNumber::RequestUri,
            inbound_route: None,
            tls_ca_file: None,
            tls_client: None,
            srtp: crate::media::srtp::SrtpPolicy::Off,
        }
    }

    /// The trunk registrations and the identity's default domain use: the first of the lowest
    /// priority in the file's order.
    pub fn primary(&self) -> &Trunk {
        // Never empty: the parser refuses a profile without a trunk and `new` makes one.
        self.trunks
            .iter()
            .min_by_key(|t| t.priority)
            .expect("a profile has at least one trunk")
    }

    /// Parses one profile file's text. `file` names it in errors and gives the default name;
    /// `env` looks up `password_env`.
    pub fn from_toml(
        file: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Profile, ConfigErrors> {
        let (parsed, errors) = profile::parse(file, text, env);
        match parsed {
            Some(p) if errors.is_empty() => Ok(p.profile),
            _ => Err(ConfigErrors(errors)),
        }
    }
}

impl Config {
    /// Loads `config_path` and every `*.toml` in `profiles_dir` (sorted by file name), then
    /// applies the environment overrides (`OUTDIAL_SIP_LISTEN`, `OUTDIAL_RTP_PORTS`,
    /// `OUTDIAL_DATABASE_URL`, `OUTDIAL_HTTP_LISTEN`, `OUTDIAL_LOG`, `OUTDIAL_LOG_FORMAT`,
    /// `OUTDIAL_MEDIA_DIR`; empty = unset).
    ///
    /// A missing config file means built-in defaults unless `explicit`; a missing profiles
    /// directory means no profiles unless `profiles_explicit`. Every problem is returned.
    pub fn load(
        config_path: &Path,
        explicit: bool,
        profiles_dir: &Path,
        profiles_explicit: bool,
    ) -> Result<Config, ConfigErrors> {
        Config::load_with_env(
            config_path,
            explicit,
            profiles_dir,
            profiles_explicit,
            &process_env,
        )
    }

    /// `load` with the environment given as a lookup function (tests pass a map, so they never
    /// touch the process environment).
    pub fn load_with_env(
        config_path: &Path,
        explicit: bool,
        profiles_dir: &Path,
        profiles_explicit: bool,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let mut config = settings::load(config_path, explicit, env, &mut errors);
        config.profiles = profile::load_dir(profiles_dir, profiles_explicit, env, &mut errors);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The profile called `name`; an unknown name gives one line listing the known ones.
    pub fn profile(&self, name: &str) -> Result<&Profile, ConfigError> {
        self.profiles
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| ConfigError::UnknownProfile {
                name: name.to_string(),
                known: self.profiles.iter().map(|p| p.name.clone()).collect(),
            })
    }

    /// `config ok: 2 profiles (acme, backup)`.
    pub fn summary(&self) -> String {
        let names: Vec<&str> = self.profiles.iter().map(|p| p.name.as_str()).collect();
        match names.len() {
            0 => "config ok: 0 profiles".to_string(),
            1 => format!("config ok: 1 profile ({})", names[0]),
            n => format!("config ok: {n} profiles ({})", names.join(", ")),
        }
    }
}

/// What `outdial check-config` runs: loads everything and returns the summary line, or every
/// problem found.
pub fn check(
    config_path: &Path,
    explicit: bool,
    profiles_dir: &Path,
    profiles_explicit: bool,
) -> Result<String, ConfigErrors> {
    Config::load(config_path, explicit, profiles_dir, profiles_explicit).map(|c| c.summary())
}

fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}
