//! Tests for config loading. The environment is passed as a map (`load_with_env`), so tests never
//! race on process variables; the one test of `Config::load`/`check` uses a variable no other
//! test touches.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use super::*;
use crate::media::srtp::SrtpPolicy;
use crate::media::RtpLatching;

/// A temporary directory holding `outdial.toml` and `sip-profiles/`.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sip-profiles")).expect("mkdir");
        Fixture { dir }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("outdial.toml")
    }

    fn profiles_dir(&self) -> PathBuf {
        self.dir.path().join("sip-profiles")
    }

    fn main(&self, text: &str) -> &Fixture {
        std::fs::write(self.config_path(), text).expect("write");
        self
    }

    fn profile(&self, file: &str, text: &str) -> &Fixture {
        std::fs::write(self.profiles_dir().join(file), text).expect("write");
        self
    }

    /// Loads; errors come back as lines with the temporary directory stripped.
    fn load(&self, env: &[(&str, &str)]) -> Result<Config, Vec<String>> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |k: &str| env.get(k).cloned();
        Config::load_with_env(
            &self.config_path(),
            false,
            &self.profiles_dir(),
            false,
            &lookup,
        )
        .map_err(|e| self.lines(&e))
    }

    fn lines(&self, e: &ConfigErrors) -> Vec<String> {
        let prefix = format!("{}/", self.dir.path().display());
        e.iter()
            .map(|e| e.to_string().replace(&prefix, ""))
            .collect()
    }

    /// Loads, expecting exactly one problem; returns its line.
    fn one_error(&self, env: &[(&str, &str)]) -> String {
        match self.load(env) {
            Ok(_) => panic!("expected an error, loaded fine"),
            Err(lines) => {
                assert_eq!(lines.len(), 1, "expected one error, got {lines:#?}");
                lines.into_iter().next().unwrap_or_default()
            }
        }
    }
}

fn main_error(toml: &str) -> String {
    Fixture::new().main(toml).one_error(&[])
}

fn profile_error(toml: &str) -> String {
    Fixture::new().profile("acme.toml", toml).one_error(&[])
}

const PROXY: &str = "proxy = \"sip.carrier.example\"\n";

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

// ---- defaults and examples -------------------------------------------------------------------

#[test]
fn defaults_when_file_absent() {
    let fx = Fixture::new();
    let c = fx.load(&[]).expect("defaults load");
    let any5060 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 5060);
    assert_eq!(c.sip.listen_udp, Some(any5060));
    assert_eq!(c.sip.listen_tcp, Some(any5060));
    assert_eq!(c.sip.external_addr, None);
    assert_eq!(
        c.sip.user_agent,
        format!("outdial/{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(c.rtp, RtpSettings::default());
    assert_eq!(c.rtp.bind_addr, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert_eq!((c.rtp.port_min, c.rtp.port_max), (10000, 20000));
    assert_eq!(c.rtp.external_addr, None);
    assert_eq!(c.log.level, "info");
    assert_eq!(c.database.url, "sqlite://outdial.db");
    assert_eq!(
        c.http.listen,
        "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
    );
    assert!(c.profiles.is_empty());
    assert_eq!(c.summary(), "config ok: 0 profiles");
}

#[test]
fn missing_directory_means_no_profiles_unless_explicit() {
    let fx = Fixture::new();
    let gone = fx.dir.path().join("nowhere");
    let none = |_: &str| None;
    let c = Config::load_with_env(&fx.config_path(), false, &gone, false, &none).unwrap();
    assert!(c.profiles.is_empty());
    let e = Config::load_with_env(&fx.config_path(), false, &gone, true, &none).unwrap_err();
    assert_eq!(fx.lines(&e), ["nowhere: profiles directory not found"]);
}

#[test]
fn missing_explicit_config_file_is_an_error() {
    let fx = Fixture::new();
    let none = |_: &str| None;
    let e = Config::load_with_env(&fx.config_path(), true, &fx.profiles_dir(), false, &none)
        .unwrap_err();
    assert_eq!(fx.lines(&e), ["outdial.toml: file not found"]);
}

#[test]
fn empty_file_is_the_defaults() {
    let c = Fixture::new().main("").load(&[]).unwrap();
    assert_eq!(c.sip, SipSettings::default());
    assert_eq!(c.rtp, RtpSettings::default());
}

/// The repository's example files, copied so that other profiles added to `sip-profiles/`
/// later do not change this test.
fn example_fixture() -> Fixture {
    let fx = Fixture::new();
    let main = std::fs::read_to_string(repo_file("outdial.toml")).expect("outdial.toml");
    let carrier = std::fs::read_to_string(repo_file("sip-profiles/example-carrier.toml.sample"))
        .expect("sip-profiles/example-carrier.toml.sample");
    fx.main(&main).profile("example-carrier.toml", &carrier);
    fx
}

#[test]
fn example_files_parse() {
    let fx = example_fixture();
    let c = fx
        .load(&[("EXAMPLE_CARRIER_PASSWORD", "s3cr3t-example")])
        .expect("examples load");
    assert_eq!(c.sip, SipSettings::default());
    assert_eq!(c.rtp, RtpSettings::default());
    assert_eq!(c.log, LogSettings::default());
    assert_eq!(c.database, DatabaseSettings::default());
    assert_eq!(c.http, HttpSettings::default());
    let p = c.profile("example-carrier").expect("profile");
    assert_eq!(p.trunks.len(), 1);
    assert_eq!(
        p.primary().proxy,
        HostPort::new("sip.carrier.example", 5060)
    );
    assert_eq!(p.primary().transport, Transport::Udp);
    assert_eq!(p.username.as_deref(), Some("outdial-trunk"));
    assert_eq!(
        p.password.as_ref().map(Secret::expose),
        Some("s3cr3t-example")
    );
    assert!(!p.register);
    assert_eq!(p.codecs, CodecName::ALL.to_vec());
    assert_eq!(p.max_channels, Some(30));
    assert_eq!(p.max_cps, Some(5.0));
    assert_eq!(p.ping_interval, None);
    assert_eq!(p.rtp_latching, RtpLatching::Initial);
    assert!(p.file.ends_with("sip-profiles/example-carrier.toml"));

    // Without the variable, the one problem names it, at its line.
    let text =
        std::fs::read_to_string(repo_file("sip-profiles/example-carrier.toml.sample")).unwrap();
    let line = 1 + text
        .lines()
        .position(|l| l.starts_with("password_env"))
        .expect("the example sets password_env");
    assert_eq!(
        fx.one_error(&[]),
        format!(
            "sip-profiles/example-carrier.toml: password_env = \"EXAMPLE_CARRIER_PASSWORD\": \
             environment variable EXAMPLE_CARRIER_PASSWORD is not set (line {line})"
        )
    );
}

#[test]
fn load_and_check_read_the_process_environment() {
    // The only test that touches the process environment, with a variable of its own.
    let fx = Fixture::new();
    fx.profile(
        "envtest.toml",
        "proxy = \"sip.carrier.example\"\npassword_env = \"OUTDIAL_CONFIG_TEST_ONLY_PW\"\n",
    );
    std::env::set_var("OUTDIAL_CONFIG_TEST_ONLY_PW", "from-process-env");
    let c = Config::load(&fx.config_path(), false, &fx.profiles_dir(), true).unwrap();
    assert_eq!(
        c.profiles[0].password.as_ref().map(Secret::expose),
        Some("from-process-env")
    );
    let summary = check(&fx.config_path(), false, &fx.profiles_dir(), true).unwrap();
    assert_eq!(summary, "config ok: 1 profile (envtest)");
    std::env::remove_var("OUTDIAL_CONFIG_TEST_ONLY_PW");
    let e = check(&fx.config_path(), false, &fx.profiles_dir(), true).unwrap_err();
    assert_eq!(e.len(), 1);
    assert!(e
        .to_string()
        .contains("OUTDIAL_CONFIG_TEST_ONLY_PW is not set"));
}

#[test]
fn full_main_file() {
    let c = Fixture::new()
        .main(
            r#"
[sip]
listen_udp = "127.0.0.1:5070"
listen_tcp = false
external_addr = "203.0.113.10"
user_agent = "acme-dialer"
dns_servers = ["127.0.0.1:5353", "192.0.2.53", "[2001:db8::53]:53"]
[rtp]
bind_addr = "::"
port_min = 30000
port_max = 30999
external_addr = "2001:db8::1"
[log]
level = "info,outdial::sip=debug"
format = "JSON"
[database]
url = "postgres://outdial:pw@db:5432/outdial"
[http]
listen = "[::1]:9000"
"#,
        )
        .load(&[])
        .unwrap();
    assert_eq!(c.sip.listen_udp, Some("127.0.0.1:5070".parse().unwrap()));
    assert_eq!(c.sip.listen_tcp, None);
    assert_eq!(c.sip.external_addr, Some("203.0.113.10".parse().unwrap()));
    assert_eq!(c.sip.user_agent, "acme-dialer");
    assert_eq!(
        c.sip.dns_servers,
        [
            "127.0.0.1:5353".parse::<SocketAddr>().unwrap(),
            "192.0.2.53:53".parse().unwrap(),
            "[2001:db8::53]:53".parse().unwrap()
        ]
    );
    assert_eq!(c.rtp.bind_addr, "::".parse::<IpAddr>().unwrap());
    assert_eq!((c.rtp.port_min, c.rtp.port_max), (30000, 30999));
    assert_eq!(c.rtp.external_addr, Some("2001:db8::1".parse().unwrap()));
    assert_eq!(c.log.level, "info,outdial::sip=debug");
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.database.url, "postgres://outdial:pw@db:5432/outdial");
    assert_eq!(c.http.listen, "[::1]:9000".parse::<SocketAddr>().unwrap());
    let debug = format!("{c:?}");
    assert!(!debug.contains(":pw@"), "{debug}");
    assert!(
        debug.contains("postgres://outdial:***@db:5432/outdial"),
        "{debug}"
    );
}

#[test]
fn full_profile_file() {
    let c = Fixture::new()
        .profile(
            "acme.toml",
            r#"
name = "acme-east"
proxy = "sip.acme.example"
transport = "TLS"
realm = "acme.example"
username = "trunk1"
password = "pw-inline"
register = true
register_expires = 600
from_user = "trunk1"
from_domain = "acme.example"
caller_id = "+15555550100"
pai = "<sip:+15555550100@acme.example>"
ppi = "<sip:+15555550100@acme.example>"
codecs = ["pcma", "Telephone-Event"]
max_channels = 10
max_cps = 0.5
outbound_proxy = "[2001:db8::5]"
ping_interval = 0
rtp_latching = "Always"
"#,
        )
        .load(&[])
        .unwrap();
    let p = c.profile("acme-east").unwrap();
    assert_eq!(
        p.primary().proxy,
        HostPort::with_default_port("sip.acme.example", 5061)
    );
    assert_eq!(p.primary().transport, Transport::Tls);
    assert!(p.primary().transport_explicit);
    assert_eq!(
        p.primary().name,
        "acme-east",
        "one proxy: the trunk is named as its profile"
    );
    assert_eq!(p.realm.as_deref(), Some("acme.example"));
    assert_eq!(p.password.as_ref().map(Secret::expose), Some("pw-inline"));
    assert!(p.register);
    assert_eq!(p.register_expires, 600);
    assert_eq!(p.from_user.as_deref(), Some("trunk1"));
    assert_eq!(p.from_domain.as_deref(), Some("acme.example"));
    assert_eq!(p.caller_id.as_deref(), Some("+15555550100"));
    assert!(p.pai.is_some() && p.ppi.is_some());
    assert_eq!(p.codecs, [CodecName::Pcma, CodecName::TelephoneEvent]);
    assert_eq!(p.max_channels, Some(10));
    assert_eq!(p.max_cps, Some(0.5));
    assert_eq!(
        p.primary().outbound_proxy,
        Some(HostPort::with_default_port("2001:db8::5", 5061))
    );
    assert_eq!(
        p.primary().outbound_proxy.as_ref().unwrap().to_string(),
        "[2001:db8::5]:5061"
    );
    assert_eq!(p.ping_interval, None);
    assert_eq!(p.rtp_latching, RtpLatching::Always);
}

#[test]
fn profile_name_defaults_to_file_stem_and_files_are_sorted() {
    let c = Fixture::new()
        .profile("zeta.toml", PROXY)
        .profile("alpha.toml", &format!("{PROXY}ping_interval = 20\n"))
        .profile("notes.txt", "not a profile")
        .profile(".hidden.toml", "garbage = [")
        .load(&[])
        .unwrap();
    let names: Vec<&str> = c.profiles.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["alpha", "zeta"]);
    assert_eq!(c.profiles[0].ping_interval, Some(20));
    assert_eq!(c.summary(), "config ok: 2 profiles (alpha, zeta)");
}

#[test]
fn unknown_profile_lists_known_names() {
    let c = Fixture::new()
        .profile("a.toml", PROXY)
        .profile("b.toml", PROXY)
        .load(&[])
        .unwrap();
    assert_eq!(c.profile("b").unwrap().name, "b");
    assert_eq!(
        c.profile("nope").unwrap_err().to_string(),
        "unknown profile \"nope\"; known profiles: a, b"
    );
    assert_eq!(
        Config::default().profile("x").unwrap_err().to_string(),
        "unknown profile \"x\"; no profiles are loaded"
    );
}

// ---- one rule, one line ----------------------------------------------------------------------

#[test]
fn unknown_keys() {
    assert_eq!(
        main_error("[sip]\nlisten = \"0.0.0.0:5060\"\n"),
        "outdial.toml: sip.listen = \"0.0.0.0:5060\": unknown key; expected one of listen_udp, \
         listen_tcp, external_addr, user_agent, dns_servers (line 2)"
    );
    assert_eq!(
        main_error("[rtp]\nport_mni = 10000\n"),
        "outdial.toml: rtp.port_mni = 10000: unknown key; did you mean port_min? (line 2)"
    );
    assert_eq!(
        main_error("\n[metrics]\nx = 1\n"),
        "outdial.toml: [metrics]: unknown key; expected one of sip, rtp, log, database, http, media, engine (line 2)"
    );
    assert_eq!(
        main_error("[engine]\nshutdown_grace_secs = 4000\n"),
        "outdial.toml: engine.shutdown_grace_secs = 4000: must be between 0 and 3600 (line 2)"
    );
    assert_eq!(
        profile_error(&format!("{PROXY}trasport = \"udp\"\n")),
        "sip-profiles/acme.toml: trasport = \"udp\": unknown key; did you mean transport? (line 2)"
    );
}

#[test]
fn unknown_key_that_looks_like_a_password_is_not_shown() {
    let line = profile_error(&format!("{PROXY}pasword = \"hunter2\"\n"));
    assert_eq!(
        line,
        "sip-profiles/acme.toml: pasword = ***: unknown key; did you mean password? (line 2)"
    );
}

#[test]
fn syntax_errors_have_a_line() {
    assert_eq!(
        main_error("[sip]\nlisten_udp = \n"),
        "outdial.toml: invalid TOML: string values must be quoted, expected literal string (line 2)"
    );
    assert_eq!(
        profile_error(&format!(
            "{PROXY}transport = \"udp\"\ntransport = \"tcp\"\n"
        )),
        "sip-profiles/acme.toml: invalid TOML: duplicate key (line 3)"
    );
}

#[test]
fn wrong_types() {
    assert_eq!(
        profile_error(&format!("{PROXY}register = \"yes\"\n")),
        "sip-profiles/acme.toml: register = \"yes\": expected true or false (found string) (line 2)"
    );
    assert_eq!(
        main_error("sip = 5\n"),
        "outdial.toml: sip = 5: expected a table [sip] (found integer) (line 1)"
    );
    assert_eq!(
        main_error("[rtp]\nport_min = \"10000\"\n"),
        "outdial.toml: rtp.port_min = \"10000\": expected a whole number (found string) (line 2)"
    );
}

#[test]
fn duplicate_profile_names() {
    let fx = Fixture::new();
    fx.profile("a.toml", &format!("name = \"acme\"\n{PROXY}"))
        .profile("b.toml", &format!("{PROXY}name = \"acme\"\n"));
    assert_eq!(
        fx.one_error(&[]),
        "sip-profiles/b.toml: name = \"acme\": profile name already used by \
         sip-profiles/a.toml (line 2)"
    );
    let fx = Fixture::new();
    fx.profile("a.toml", &format!("name = \"b\"\n{PROXY}"))
        .profile("b.toml", PROXY);
    assert_eq!(
        fx.one_error(&[]),
        "sip-profiles/b.toml: name = \"b\": profile name already used by \
         sip-profiles/a.toml (taken from the file name)"
    );
}

#[test]
fn profile_names() {
    assert_eq!(
        profile_error(&format!("name = \"acme east\"\n{PROXY}")),
        "sip-profiles/acme.toml: name = \"acme east\": use letters, digits, '.', '_' and '-' (line 1)"
    );
    assert_eq!(
        Fixture::new()
            .profile("my carrier.toml", PROXY)
            .one_error(&[]),
        "sip-profiles/my carrier.toml: name: the file name \"my carrier\" is not a valid profile \
         name (use letters, digits, '.', '_' and '-'); rename the file or set name"
    );
}

#[test]
fn proxy_rules() {
    assert_eq!(
        profile_error("transport = \"udp\"\n"),
        "sip-profiles/acme.toml: proxy: missing; set the carrier's SIP server, e.g. \
         proxy = \"sip.carrier.example:5060\""
    );
    assert_eq!(
        profile_error("proxy = \"sip.carrier.example:99999\"\n"),
        "sip-profiles/acme.toml: proxy = \"sip.carrier.example:99999\": the port \"99999\" must \
         be a number from 1 to 65535 (line 1)"
    );
    assert_eq!(
        profile_error("proxy = \"sip:carrier.example\"\n"),
        "sip-profiles/acme.toml: proxy = \"sip:carrier.example\": write the host without the \
         sip: prefix; expected host or host:port such as sip.carrier.example:5060 (line 1)"
    );
    assert_eq!(
        profile_error(&format!("{PROXY}outbound_proxy = \"sbc..example\"\n")),
        "sip-profiles/acme.toml: outbound_proxy = \"sbc..example\": \"sbc..example\" is not a \
         valid host name; expected host or host:port such as sip.carrier.example:5060 (line 2)"
    );
}

#[test]
fn transport_rule() {
    assert_eq!(
        profile_error(&format!("{PROXY}transport = \"sctp\"\n")),
        "sip-profiles/acme.toml: transport = \"sctp\": must be one of udp, tcp, tls (line 2)"
    );
}

#[test]
fn register_needs_credentials() {
    assert_eq!(
        profile_error(&format!("{PROXY}register = true\n")),
        "sip-profiles/acme.toml: register = true: registration needs username and password \
         (missing: username, password or password_env) (line 2)"
    );
    assert_eq!(
        profile_error(&format!("{PROXY}username = \"u\"\nregister = true\n")),
        "sip-profiles/acme.toml: register = true: registration needs username and password \
         (missing: password or password_env) (line 3)"
    );
}

#[test]
fn password_and_password_env_together() {
    let line = profile_error(&format!(
        "{PROXY}password = \"hunter2\"\npassword_env = \"ACME_PW_BOTH\"\n"
    ));
    assert_eq!(
        line,
        "sip-profiles/acme.toml: password = ***: set either password or password_env, not both \
         (line 2)"
    );
}

#[test]
fn password_env_unset_or_empty() {
    let fx = Fixture::new();
    fx.profile("acme.toml", &format!("{PROXY}password_env = \"ACME_PW\"\n"));
    assert_eq!(
        fx.one_error(&[]),
        "sip-profiles/acme.toml: password_env = \"ACME_PW\": environment variable ACME_PW is \
         not set (line 2)"
    );
    assert_eq!(
        fx.one_error(&[("ACME_PW", "")]),
        "sip-profiles/acme.toml: password_env = \"ACME_PW\": environment variable ACME_PW is \
         empty (line 2)"
    );
    let c = fx.load(&[("ACME_PW", "pw")]).unwrap();
    assert_eq!(c.profiles[0].password.as_ref().unwrap().expose(), "pw");
}

#[test]
fn password_type_error_does_not_show_the_value() {
    assert_eq!(
        profile_error(&format!("{PROXY}password = 12345678\n")),
        "sip-profiles/acme.toml: password = ***: expected a string (found integer) (line 2)"
    );
}

#[test]
fn register_expires_range() {
    assert_eq!(
        profile_error(&format!("{PROXY}register_expires = 30\n")),
        "sip-profiles/acme.toml: register_expires = 30: must be between 60 and 86400 (line 2)"
    );
    assert_eq!(
        profile_error(&format!("{PROXY}register_expires = 100000\n")),
        "sip-profiles/acme.toml: register_expires = 100000: must be between 60 and 86400 (line 2)"
    );
}

#[test]
fn codec_rules() {
    let (supported, audio) = if cfg!(feature = "g722") {
        ("PCMU, PCMA, G722, telephone-event", "PCMU, PCMA or G722")
    } else {
        ("PCMU, PCMA, telephone-event", "PCMU or PCMA")
    };
    assert_eq!(
        profile_error(&format!("{PROXY}codecs = [\"PCMU\", \"G729\"]\n")),
        format!(
            "sip-profiles/acme.toml: codecs = [\"PCMU\", \"G729\"]: unknown codec \"G729\"; \
             supported: {supported} (line 2)"
        )
    );
    assert_eq!(
        profile_error(&format!("{PROXY}codecs = []\n")),
        "sip-profiles/acme.toml: codecs = []: must list at least one codec, such as [\"PCMU\"] \
         (line 2)"
    );
    assert_eq!(
        profile_error(&format!("{PROXY}codecs = [\"telephone-event\"]\n")),
        format!(
            "sip-profiles/acme.toml: codecs = [\"telephone-event\"]: needs an audio codec \
             ({audio}); telephone-event only carries DTMF (line 2)"
        )
    );
    assert_eq!(
        profile_error(&format!("{PROXY}codecs = [\"PCMU\", \"pcmu\"]\n")),
        "sip-profiles/acme.toml: codecs = [\"PCMU\", \"pcmu\"]: PCMU is listed twice (line 2)"
    );
    assert_eq!(
        profile_error(&format!("{PROXY}codecs = [\n  \"PCMU\",\n  0,\n]\n")),
        "sip-profiles/acme.toml: codecs = [ \"PCMU\", 0, ]: expected a list of strings (an \
         element is integer) (line 2)"
    );
}

#[test]
fn limits() {
    assert_eq!(
        profile_error(&format!("{PROXY}max_cps = 0\n")),
        "sip-profiles/acme.toml: max_cps = 0: must be greater than 0 (remove the key for no \
         limit) (line 2)"
    );
    assert_eq!(
        profile_error(&format!("{PROXY}max_cps = -1.5\n")),
        "sip-profiles/acme.toml: max_cps = -1.5: must be greater than 0 (remove the key for no \
         limit) (line 2)"
    );
    assert_eq!(
        profile_error(&format!("{PROXY}max_channels = 0\n")),
        "sip-profiles/acme.toml: max_channels = 0: must be between 1 and 4294967295 (line 2)"
    );
    assert_eq!(
        profile_error(&format!("{PROXY}ping_interval = -5\n")),
        "sip-profiles/acme.toml: ping_interval = -5: must be between 0 and 86400 (line 2)"
    );
    assert_eq!(
        profile_error(&format!("{PROXY}rtp_latching = \"sometimes\"\n")),
        "sip-profiles/acme.toml: rtp_latching = \"sometimes\": must be one of off, initial, \
         always (line 2)"
    );
    assert_eq!(
        profile_error(&format!("{PROXY}rtp_latching = true\n")),
        "sip-profiles/acme.toml: rtp_latching = true: expected a string (found boolean) (line 2)"
    );
    for (text, mode) in [
        ("off", RtpLatching::Off),
        ("initial", RtpLatching::Initial),
        ("ALWAYS", RtpLatching::Always),
    ] {
        let c = Fixture::new()
            .profile("acme.toml", &format!("{PROXY}rtp_latching = \"{text}\"\n"))
            .load(&[])
            .unwrap();
        assert_eq!(c.profiles[0].rtp_latching, mode, "{text}");
    }
    assert_eq!(
        profile_error(&format!("{PROXY}srtp = \"always\"\n")),
        "sip-profiles/acme.toml: srtp = \"always\": must be one of off, optional, required \
         (line 2)"
    );
    for (text, policy) in [
        ("off", SrtpPolicy::Off),
        ("Optional", SrtpPolicy::Optional),
        ("REQUIRED", SrtpPolicy::Required),
    ] {
        let c = Fixture::new()
            .profile("acme.toml", &format!("{PROXY}srtp = \"{text}\"\n"))
            .load(&[])
            .unwrap();
        assert_eq!(c.profiles[0].srtp, policy, "{text}");
    }
    let c = Fixture::new()
        .profile("acme.toml", PROXY)
        .load(&[])
        .unwrap();
    assert_eq!(c.profiles[0].srtp, SrtpPolicy::Off, "off unless set");
}

#[test]
fn header_values_refuse_line_breaks() {
    assert_eq!(
        profile_error(&format!("{PROXY}pai = \"<sip:1@x>\\r\\nX-Evil: 1\"\n")),
        "sip-profiles/acme.toml: pai = \"<sip:1@x>\\r\\nX-Evil: 1\": must not contain control \
         characters (line breaks, tabs) (line 2)"
    );
    assert_eq!(
        profile_error(&format!("{PROXY}caller_id = \"+1 555 0100\"\n")),
        "sip-profiles/acme.toml: caller_id = \"+1 555 0100\": expected the user part only, such \
         as +15551234567 (no spaces, no sip:, no @domain) (line 2)"
    );
}

#[test]
fn rtp_port_rules() {
    assert_eq!(
        main_error("[rtp]\nport_min = 20000\n"),
        "outdial.toml: rtp.port_min = 20000: must be less than rtp.port_max (20000) (line 2)"
    );
    assert_eq!(
        main_error("[rtp]\nport_max = 9000\n"),
        "outdial.toml: rtp.port_max = 9000: must be greater than rtp.port_min (10000) (line 2)"
    );
    assert_eq!(
        main_error("[rtp]\nport_min = 80\nport_max = 2000\n"),
        "outdial.toml: rtp.port_min = 80: must be between 1024 and 65535 (line 2)"
    );
    assert_eq!(
        main_error("[rtp]\nport_min = 10001\nport_max = 10002\n"),
        "outdial.toml: rtp.port_min = 10001: the range 10001-10002 holds no even RTP port with \
         its RTCP port after it; widen it (line 2)"
    );
    let c = Fixture::new()
        .main("[rtp]\nport_min = 10000\nport_max = 10001\n")
        .load(&[])
        .unwrap();
    assert_eq!((c.rtp.port_min, c.rtp.port_max), (10000, 10001));
}

#[test]
fn listen_rules() {
    assert_eq!(
        main_error("[sip]\nlisten_udp = \"0.0.0.0\"\n"),
        "outdial.toml: sip.listen_udp = \"0.0.0.0\": expected IP:PORT such as 0.0.0.0:5060 \
         ([::]:5060 for IPv6), or false to disable (line 2)"
    );
    assert_eq!(
        main_error("[sip]\nlisten_tcp = true\n"),
        "outdial.toml: sip.listen_tcp = true: expected an address such as \"0.0.0.0:5060\", or \
         false to disable (line 2)"
    );
    assert_eq!(
        main_error("[sip]\nlisten_udp = false\nlisten_tcp = false\n"),
        "outdial.toml: sip.listen_udp = false: sip.listen_tcp is disabled too; outdial needs at \
         least one SIP listener (line 2)"
    );
    assert_eq!(
        main_error("[http]\nlisten = \"localhost:8080\"\n"),
        "outdial.toml: http.listen = \"localhost:8080\": expected IP:PORT such as 0.0.0.0:8080 \
         ([::]:8080 for IPv6) (line 2)"
    );
    assert_eq!(
        main_error("[sip]\nexternal_addr = \"0.0.0.0\"\n"),
        "outdial.toml: sip.external_addr = \"0.0.0.0\": must be the public address peers can \
         reach, not a wildcard or multicast address (line 2)"
    );
}

#[test]
fn log_level_rules() {
    assert_eq!(
        main_error("[log]\nlevel = \"verbose\"\n"),
        "outdial.toml: log.level = \"verbose\": \"verbose\" is not a log level; use error, warn, \
         info, debug, trace, or directives such as info,outdial::sip=debug (line 2)"
    );
    let line = main_error("[log]\nlevel = \"info,outdial=loud\"\n");
    assert!(
        line.starts_with("outdial.toml: log.level = \"info,outdial=loud\": not a valid log filter"),
        "{line}"
    );
    for ok in [
        "error",
        "WARN",
        "debug",
        "trace",
        "off",
        "warn,outdial::sip=trace",
    ] {
        let c = Fixture::new()
            .main(&format!("[log]\nlevel = \"{ok}\"\n"))
            .load(&[])
            .unwrap();
        assert_eq!(c.log.level, ok);
    }
}

#[test]
fn database_url_rule_hides_the_password() {
    let line = main_error("[database]\nurl = \"mysql://root:hunter2@db/x\"\n");
    assert_eq!(
        line,
        "outdial.toml: database.url = \"mysql://root:***@db/x\": expected a sqlite:// or \
         postgres:// URL, such as sqlite://outdial.db (line 2)"
    );
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let fx = Fixture::new();
    fx.main("[rtp]\nport_min = 1\n[sip]\nlisten_udp = \"x\"\n")
        .profile(
            "acme.toml",
            "transport = \"sctp\"\ncodecs = []\nmax_cps = 0\nbogus = 1\n",
        );
    let lines = fx.load(&[("OUTDIAL_LOG", "loud")]).unwrap_err();
    assert_eq!(
        lines,
        [
            "outdial.toml: rtp.port_min = 1: must be between 1024 and 65535 (line 2)",
            "outdial.toml: sip.listen_udp = \"x\": expected IP:PORT such as 0.0.0.0:5060 \
             ([::]:5060 for IPv6), or false to disable (line 4)",
            "environment variable OUTDIAL_LOG = \"loud\": \"loud\" is not a log level; use error, \
             warn, info, debug, trace, or directives such as info,outdial::sip=debug",
            "sip-profiles/acme.toml: transport = \"sctp\": must be one of udp, tcp, tls (line 1)",
            "sip-profiles/acme.toml: codecs = []: must list at least one codec, such as \
             [\"PCMU\"] (line 2)",
            "sip-profiles/acme.toml: max_cps = 0: must be greater than 0 (remove the key for no \
             limit) (line 3)",
            "sip-profiles/acme.toml: bogus = 1: unknown key; expected one of name, proxy, \
             transport, realm, username, password, password_env, register, register_expires, \
             from_user, from_domain, caller_id, pai, ppi, codecs, max_channels, max_cps, \
             outbound_proxy, ping_interval, ping_down_after, ping_up_after, rtp_latching, \
             invite_timeout, inbound_allow, inbound_number, inbound_route, tls_ca_file, \
             tls_cert_file, tls_key_file, srtp, trunk (line 4)",
            "sip-profiles/acme.toml: proxy: missing; set the carrier's SIP server, e.g. \
             proxy = \"sip.carrier.example:5060\"",
        ]
    );
    let e = ConfigErrors(vec![]);
    assert!(e.is_empty());
}

// ---- environment overrides ------------------------------------------------------------------

#[test]
fn env_overrides() {
    let fx = Fixture::new();
    fx.main("[log]\nlevel = \"warn\"\n[rtp]\nport_min = 12000\n");
    let c = fx
        .load(&[
            ("OUTDIAL_SIP_LISTEN", "127.0.0.1:5080"),
            ("OUTDIAL_RTP_PORTS", " 40000 - 40100 "),
            ("OUTDIAL_DATABASE_URL", "postgres://u:p@localhost/test"),
            ("OUTDIAL_HTTP_LISTEN", "0.0.0.0:9090"),
            ("OUTDIAL_LOG", "debug"),
            ("OUTDIAL_LOG_FORMAT", "json"),
        ])
        .unwrap();
    let addr: SocketAddr = "127.0.0.1:5080".parse().unwrap();
    assert_eq!(c.sip.listen_udp, Some(addr));
    assert_eq!(c.sip.listen_tcp, Some(addr));
    assert_eq!((c.rtp.port_min, c.rtp.port_max), (40000, 40100));
    assert_eq!(c.database.url, "postgres://u:p@localhost/test");
    assert_eq!(c.http.listen, "0.0.0.0:9090".parse::<SocketAddr>().unwrap());
    assert_eq!(c.log.level, "debug");
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(Config::default().log.format, LogFormat::Text);
    let lines = Fixture::new()
        .main("[log]\nformat = \"xml\"\n")
        .load(&[])
        .unwrap_err();
    assert_eq!(
        lines,
        ["outdial.toml: log.format = \"xml\": must be one of text, json (line 2)"]
    );
    let lines = Fixture::new()
        .load(&[("OUTDIAL_LOG_FORMAT", "yaml")])
        .unwrap_err();
    assert_eq!(
        lines,
        ["environment variable OUTDIAL_LOG_FORMAT = \"yaml\": must be one of text, json"]
    );

    // Empty variables are unset; a listener disabled in the file stays disabled.
    let fx = Fixture::new();
    fx.main("[sip]\nlisten_tcp = false\n");
    let c = fx
        .load(&[
            ("OUTDIAL_SIP_LISTEN", "127.0.0.1:5080"),
            ("OUTDIAL_LOG", ""),
        ])
        .unwrap();
    assert_eq!(c.sip.listen_udp, Some(addr));
    assert_eq!(c.sip.listen_tcp, None);
    assert_eq!(c.log.level, "info");
}

#[test]
fn media_dir_comes_from_the_file_or_the_environment() {
    let fx = Fixture::new();
    assert_eq!(fx.load(&[]).unwrap().media.dir, PathBuf::from("media"));
    let prompts = fx.dir.path().join("prompts");
    std::fs::create_dir(&prompts).unwrap();
    fx.main(&format!("[media]\ndir = \"{}\"\n", prompts.display()));
    assert_eq!(fx.load(&[]).unwrap().media.dir, prompts);
    // A directory that does not exist yet is fine: the first upload creates it.
    let later = fx.dir.path().join("later");
    let c = fx
        .load(&[("OUTDIAL_MEDIA_DIR", later.to_str().unwrap())])
        .unwrap();
    assert_eq!(c.media.dir, later);
}

#[test]
fn a_media_dir_that_is_a_file_is_refused() {
    let fx = Fixture::new();
    std::fs::write(fx.dir.path().join("plain"), "x").unwrap();
    let lines = fx.load(&[("OUTDIAL_MEDIA_DIR", "/dev/null")]).unwrap_err();
    assert_eq!(
        lines,
        ["environment variable OUTDIAL_MEDIA_DIR = \"/dev/null\": exists but is not a directory"]
    );
    fx.main("[media]\ndir = \"\"\n");
    let lines = fx.load(&[]).unwrap_err();
    assert_eq!(
        lines,
        ["outdial.toml: media.dir = \"\": must name a directory (line 2)"]
    );
    assert_eq!(
        main_error("[media]\nfolder = \"x\"\n"),
        "outdial.toml: media.folder = \"x\": unknown key; expected one of dir (line 2)"
    );
}

#[test]
fn env_override_errors_name_the_variable() {
    let fx = Fixture::new();
    for (var, value, expected) in [
        (
            "OUTDIAL_RTP_PORTS",
            "10000",
            "environment variable OUTDIAL_RTP_PORTS = \"10000\": expected MIN-MAX such as \
             10000-20000",
        ),
        (
            "OUTDIAL_RTP_PORTS",
            "20000-10000",
            "environment variable OUTDIAL_RTP_PORTS = \"20000-10000\": MIN must be less than MAX",
        ),
        (
            "OUTDIAL_RTP_PORTS",
            "80-2000",
            "environment variable OUTDIAL_RTP_PORTS = \"80-2000\": ports must be 1024 or above",
        ),
        (
            "OUTDIAL_RTP_PORTS",
            "a-b",
            "environment variable OUTDIAL_RTP_PORTS = \"a-b\": expected MIN-MAX such as \
             10000-20000, ports up to 65535",
        ),
        (
            "OUTDIAL_SIP_LISTEN",
            "5060",
            "environment variable OUTDIAL_SIP_LISTEN = \"5060\": expected IP:PORT such as \
             0.0.0.0:5060 ([::]:5060 for IPv6)",
        ),
        (
            "OUTDIAL_HTTP_LISTEN",
            "nope",
            "environment variable OUTDIAL_HTTP_LISTEN = \"nope\": expected IP:PORT such as \
             0.0.0.0:8080 ([::]:8080 for IPv6)",
        ),
        (
            "OUTDIAL_DATABASE_URL",
            "redis://:hunter2@r/0",
            "environment variable OUTDIAL_DATABASE_URL = \"redis://:***@r/0\": expected a \
             sqlite:// or postgres:// URL, such as sqlite://outdial.db",
        ),
    ] {
        assert_eq!(fx.one_error(&[(var, value)]), expected);
    }
}

// ---- secrets ---------------------------------------------------------------------------------

#[test]
fn passwords_never_appear_in_output() {
    const PW: &str = "hunter2-very-secret";
    let fx = Fixture::new();
    fx.profile(
        "acme.toml",
        &format!("{PROXY}username = \"u\"\npassword = \"{PW}\"\nregister = true\n"),
    );
    let c = fx.load(&[]).unwrap();
    let p = c.profile("acme").unwrap();
    assert_eq!(p.password.as_ref().unwrap().expose(), PW);
    for shown in [
        format!("{p:?}"),
        format!("{c:?}"),
        format!("{}", p.password.as_ref().unwrap()),
        format!("{:?}", p.password.as_ref().unwrap()),
    ] {
        assert!(!shown.contains(PW), "{shown}");
    }
    assert!(format!("{p:?}").contains("password: Some(***)"));

    // Errors around the password: every line shows *** instead.
    let fx = Fixture::new();
    fx.profile(
        "acme.toml",
        &format!("{PROXY}password = \"{PW}\"\npassword_env = \"X_PW\"\n"),
    )
    .profile("b.toml", &format!("{PROXY}password = [\"{PW}\"]\n"))
    .profile("c.toml", &format!("{PROXY}pass_word = \"{PW}\"\n"))
    .profile("d.toml", &format!("{PROXY}password = \"{PW}\n"));
    let none = |_: &str| None;
    let e = Config::load_with_env(&fx.config_path(), false, &fx.profiles_dir(), false, &none)
        .unwrap_err();
    assert_eq!(e.len(), 4, "{e}");
    for shown in [e.to_string(), format!("{e:?}")] {
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    // Parsed from text, too.
    let e = Profile::from_toml(
        Path::new("x.toml"),
        &format!("proxy = \"h\"\npassword = \"{PW}\"\nregister_expires = 1\n"),
        &none,
    )
    .unwrap_err();
    assert!(!e.to_string().contains(PW));
}

#[test]
fn dns_servers_are_addresses() {
    assert_eq!(
        main_error("[sip]\ndns_servers = [\"ns1.example\"]\n"),
        "outdial.toml: sip.dns_servers = [\"ns1.example\"]: \"ns1.example\" is not a name server \
         address; expected a list of name server addresses such as [\"192.0.2.53\", \
         \"[2001:db8::53]:5353\"] (line 2)"
    );
    assert_eq!(
        main_error("[sip]\ndns_servers = \"127.0.0.1\"\n"),
        "outdial.toml: sip.dns_servers = \"127.0.0.1\": expected a list of strings such as \
         [\"PCMU\"] (found string) (line 2)"
    );
    assert!(main_error("[sip]\ndns_servers = [\"0.0.0.0:53\"]\n").contains("is not a name server"));
    assert!(main_error("[sip]\ndns_servers = [\"127.0.0.1:0\"]\n").contains("is not a name server"));
    let c = Fixture::new()
        .main("[sip]\ndns_servers = []\n")
        .load(&[])
        .unwrap();
    assert!(
        c.sip.dns_servers.is_empty(),
        "empty = the system's resolv.conf"
    );
}

#[test]
fn a_profile_without_transport_lets_dns_choose() {
    let c = Fixture::new()
        .profile("plain.toml", "proxy = \"trunk.example\"\n")
        .profile(
            "tcp.toml",
            "proxy = \"trunk.example:5070\"\ntransport = \"tcp\"\n",
        )
        .load(&[])
        .unwrap();
    let plain = c.profile("plain").unwrap();
    assert!(!plain.primary().transport_explicit && !plain.primary().proxy.explicit_port);
    let tcp = c.profile("tcp").unwrap();
    assert!(tcp.primary().transport_explicit && tcp.primary().proxy.explicit_port);
    assert_eq!(tcp.primary().proxy.port, 5070);
}

// ---- small types ---------------------------------------------------------------------------

#[test]
fn host_port_parsing_and_display() {
    let ok = |s: &str, d: u16| HostPort::parse(s, d).unwrap();
    assert_eq!(
        ok("sip.example.com", 5060),
        HostPort::with_default_port("sip.example.com", 5060)
    );
    assert!(ok("sip.example.com:5060", 5060).explicit_port);
    assert!(!ok("[::1]", 5060).explicit_port);
    assert_eq!(
        ok("sip.example.com:5080", 5060).to_string(),
        "sip.example.com:5080"
    );
    assert_eq!(ok("10.0.0.1", 5061).to_string(), "10.0.0.1:5061");
    assert_eq!(ok("[::1]:5070", 5060), HostPort::new("::1", 5070));
    assert_eq!(ok("[::1]", 5060).to_string(), "[::1]:5060");
    assert_eq!(ok("::1", 5061).to_string(), "[::1]:5061");
    for bad in [
        "",
        "host:",
        "host:0",
        "host:65536",
        "host:+5",
        "[::1",
        "[nope]:5060",
        "a b",
        "1:2:3:x",
        "300.1.1.1",
        "-bad.example",
        "sips:x",
    ] {
        assert!(HostPort::parse(bad, 5060).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn names_parse_case_insensitively() {
    assert_eq!(Transport::parse("TCP"), Some(Transport::Tcp));
    assert_eq!(Transport::Tls.default_port(), 5061);
    assert_eq!(Transport::Udp.to_string(), "udp");
    assert_eq!(CodecName::parse("pcmu"), Some(CodecName::Pcmu));
    assert_eq!(
        CodecName::parse("TELEPHONE-EVENT"),
        Some(CodecName::TelephoneEvent)
    );
    assert_eq!(CodecName::parse("opus"), None);
    assert_eq!(CodecName::TelephoneEvent.to_string(), "telephone-event");
    assert!(!CodecName::TelephoneEvent.is_audio());
}

#[cfg(feature = "g722")]
#[test]
fn g722_is_a_codec_a_profile_may_list() {
    assert_eq!(CodecName::parse("g722"), Some(CodecName::G722));
    assert!(CodecName::G722.is_audio());
    assert!(
        !CodecName::ALL.contains(&CodecName::G722),
        "offered only when listed"
    );
    let fx = Fixture::new();
    fx.profile(
        "acme.toml",
        &format!("{PROXY}codecs = [\"G722\", \"PCMA\"]\n"),
    );
    let c = fx.load(&[]).expect("valid");
    assert_eq!(c.profiles[0].codecs, [CodecName::G722, CodecName::Pcma]);
}

#[cfg(not(feature = "g722"))]
#[test]
fn g722_without_the_feature_says_how_to_get_it() {
    assert_eq!(CodecName::parse("G722"), None);
    assert_eq!(
        profile_error(&format!("{PROXY}codecs = [\"PCMU\", \"G722\"]\n")),
        "sip-profiles/acme.toml: codecs = [\"PCMU\", \"G722\"]: G722 needs outdial built with \
         the g722 feature (cargo build --features g722) (line 2)"
    );
}

#[test]
fn non_utf8_and_directory_paths_are_errors() {
    let fx = Fixture::new();
    std::fs::write(fx.profiles_dir().join("bin.toml"), [0xff, 0xfe, 0x00]).unwrap();
    assert_eq!(
        fx.one_error(&[]),
        "sip-profiles/bin.toml: is not UTF-8 text"
    );
    let fx = Fixture::new();
    std::fs::create_dir(fx.config_path()).unwrap();
    assert_eq!(
        fx.one_error(&[]),
        "outdial.toml: is a directory, expected a file"
    );
}

#[test]
fn odd_inputs_give_one_line_errors_without_panicking() {
    let odd = [
        "[[sip]]\nlisten_udp = \"0.0.0.0:5060\"\n",
        "sip = { listen_udp = 1 }\n",
        "\"sip\".\"listen udp\" = 1\n",
        "[sip]\nuser_agent = \"\"\"\nmulti\nline\n\"\"\"\n",
        "[sip]\nuser_agent = \"\u{1F4DE}\u{0}\"\n",
        "[rtp]\nport_min = 99999999999999999999999\n",
        "[rtp]\nport_min = 1.5\nport_max = inf\n",
        "[log]\nlevel = [\"info\"]\n",
        "[database]\nurl = 1979-05-27T07:32:00Z\n",
        "=\n",
        "\u{FEFF}[sip]\n",
        &format!("[sip]\nuser_agent = {}\n", "x".repeat(500)),
        &format!("[sip]\nlisten_udp = \"{}\"\n", "9".repeat(500)),
    ];
    for text in odd {
        let fx = Fixture::new();
        fx.main(text).profile("p.toml", text);
        if let Err(lines) = fx.load(&[]) {
            for line in lines {
                assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
                assert!(line.len() < 500, "{line}");
            }
        }
    }
    // Profile-specific odd values.
    for text in [
        "proxy = [\"a\"]\n",
        "proxy = \"[::1]:\"\n",
        "proxy = \"\u{e9}t\u{e9}.example\"\n",
        "proxy = \"h\"\npassword = { nested = \"hunter2\" }\n",
        "proxy = \"h\"\npassword.x = \"hunter2\"\n",
        "proxy = \"h\"\nmax_cps = nan\n",
        "proxy = \"h\"\nmax_cps = 1e400\n",
        "proxy = \"h\"\nmax_cps = -inf\n",
        "proxy = \"h\"\nname = \"\"\n",
    ] {
        let fx = Fixture::new();
        fx.profile("p.toml", text);
        let lines = fx.load(&[]).expect_err(text);
        for line in &lines {
            assert!(!line.contains('\n'), "{line:?}");
            assert!(!line.contains("hunter2"), "{line}");
        }
    }
}

#[test]
fn trunk_tables_make_a_group_in_priority_order() {
    let c = Fixture::new()
        .profile(
            "acme.toml",
            "max_channels = 40\ninvite_timeout = 4\nping_interval = 10\nping_down_after = 2\n\
             \n[[trunk]]\nname = \"east\"\nproxy = \"sip-east.acme.example\"\npriority = 2\n\
             \n[[trunk]]\nname = \"west\"\nproxy = \"sip-west.acme.example:5080\"\n\
             transport = \"tcp\"\npriority = 1\nweight = 3\nmax_channels = 10\nmax_cps = 2\n\
             invite_timeout = 1.5\noutbound_proxy = \"sbc.acme.example\"\n",
        )
        .load(&[])
        .expect("group loads");
    let p = c.profile("acme").unwrap();
    assert_eq!(
        p.max_channels,
        Some(40),
        "the profile's limit is the group's"
    );
    assert_eq!(p.ping_down_after, 2);
    assert_eq!(p.ping_up_after, 2);
    let names: Vec<&str> = p.trunks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["east", "west"], "file order is kept");
    let east = &p.trunks[0];
    assert_eq!(
        east.proxy,
        HostPort::with_default_port("sip-east.acme.example", 5060)
    );
    assert!(!east.transport_explicit);
    assert_eq!((east.priority, east.weight), (2, 1));
    assert_eq!(east.invite_timeout, std::time::Duration::from_secs(4));
    assert_eq!(east.max_channels, None);
    let west = &p.trunks[1];
    assert_eq!(west.transport, Transport::Tcp);
    assert!(west.transport_explicit);
    assert_eq!(west.proxy, HostPort::new("sip-west.acme.example", 5080));
    assert_eq!((west.priority, west.weight), (1, 3));
    assert_eq!((west.max_channels, west.max_cps), (Some(10), Some(2.0)));
    assert_eq!(west.invite_timeout, std::time::Duration::from_millis(1500));
    assert_eq!(
        west.outbound_proxy,
        Some(HostPort::with_default_port("sbc.acme.example", 5060))
    );
    assert_eq!(p.primary().name, "west", "the lowest priority registers");
}

#[test]
fn trunk_table_rules() {
    assert_eq!(
        profile_error(&format!("{PROXY}[[trunk]]\nproxy = \"b.example\"\n")),
        "sip-profiles/acme.toml: proxy = \"sip.carrier.example\": set it inside each [[trunk]] \
         table (a profile with [[trunk]] tables has no top-level proxy) (line 1)"
    );
    assert_eq!(
        profile_error("[[trunk]]\nname = \"a\"\nproxy = \"a.example\"\n[[trunk]]\nname = \"a\"\nproxy = \"b.example\"\n"),
        "sip-profiles/acme.toml: trunk[2].name: trunk name \"a\" already used by trunk[1] (line 5)"
    );
    assert_eq!(
        profile_error("[[trunk]]\nname = \"a\"\n"),
        "sip-profiles/acme.toml: trunk[1].proxy: missing; set the carrier's SIP server, e.g. \
         proxy = \"sip.carrier.example:5060\""
    );
    assert_eq!(
        profile_error("[[trunk]]\nproxy = \"a.example\"\ninvite_timeout = 100\n"),
        "sip-profiles/acme.toml: trunk[1].invite_timeout = 100: must be between 0.1 and 64 \
         seconds (RFC 3261 timer B is 32) (line 3)"
    );
    assert_eq!(
        profile_error("[[trunk]]\nproxy = \"a.example\"\nregister = true\n"),
        "sip-profiles/acme.toml: trunk[1].register = true: unknown key; expected one of name, \
         proxy, transport, outbound_proxy, priority, weight, max_channels, max_cps, \
         invite_timeout (line 3)"
    );
}

#[test]
fn inbound_allow_takes_networks_and_addresses() {
    let c = Fixture::new()
        .profile(
            "acme.toml",
            &format!("{PROXY}inbound_allow = [\"203.0.113.9/24\", \"198.51.100.7\", \"2001:db8::/32\"]\n"),
        )
        .load(&[])
        .expect("loads");
    let p = c.profile("acme").unwrap();
    let nets: Vec<String> = p.inbound_allow.iter().map(|n| n.to_string()).collect();
    assert_eq!(
        nets,
        ["203.0.113.0/24", "198.51.100.7/32", "2001:db8::/32"],
        "host bits are dropped"
    );
    assert_eq!(
        profile_error(&format!("{PROXY}inbound_allow = [\"carrier.example\"]\n")),
        "sip-profiles/acme.toml: inbound_allow = [\"carrier.example\"]: \"carrier.example\" is not \
         an address or a network; expected such as \"203.0.113.0/24\" or \"198.51.100.7\" (line 2)"
    );
}

#[test]
fn inbound_number_and_route_say_where_the_did_is_and_where_strangers_go() {
    let c = Fixture::new()
        .profile(
            "acme.toml",
            &format!(
                "{PROXY}inbound_number = \"to\"\ninbound_route = \"sip:reception@pbx.example\"\n"
            ),
        )
        .load(&[])
        .expect("loads");
    let p = c.profile("acme").unwrap();
    assert_eq!(p.inbound_number, crate::config::InboundNumber::To);
    assert_eq!(
        p.inbound_route.as_deref(),
        Some("sip:reception@pbx.example")
    );
    let c = Fixture::new()
        .profile("acme.toml", PROXY)
        .load(&[])
        .expect("loads");
    let p = c.profile("acme").unwrap();
    assert_eq!(p.inbound_number, crate::config::InboundNumber::RequestUri);
    assert_eq!(p.inbound_route, None);
    assert_eq!(
        profile_error(&format!("{PROXY}inbound_number = \"from\"\n")),
        "sip-profiles/acme.toml: inbound_number = \"from\": must be one of request_uri, to (line 2)"
    );
    assert_eq!(
        profile_error(&format!("{PROXY}inbound_route = \"reception\"\n")),
        "sip-profiles/acme.toml: inbound_route = \"reception\": expected a sip: URI or a phone \
         number (where unknown callers are connected) (line 2)"
    );
}

#[test]
fn tls_files_must_be_readable_and_a_client_certificate_needs_its_key() {
    let err = profile_error(&format!("{PROXY}tls_ca_file = \"no-such-ca.pem\"\n"));
    assert!(
        err.starts_with("sip-profiles/acme.toml: tls_ca_file = \"no-such-ca.pem\": cannot read ")
            && err.contains("no-such-ca.pem"),
        "{err}"
    );
    let f = Fixture::new();
    std::fs::write(
        f.profiles_dir().join("client.pem"),
        "-----BEGIN CERTIFICATE-----\n",
    )
    .unwrap();
    let err = f
        .profile(
            "acme.toml",
            &format!("{PROXY}tls_cert_file = \"client.pem\"\n"),
        )
        .one_error(&[]);
    assert_eq!(
        err,
        "sip-profiles/acme.toml: tls_cert_file = \"client.pem\": a client certificate needs both \
         tls_cert_file and tls_key_file (missing: tls_key_file) (line 2)"
    );
}
