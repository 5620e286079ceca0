//! RFC 3263 resolution of trunk hosts against a DNS server of our own: a profile whose proxy
//! is a made-up domain with no port and no transport, `sip.dns_servers` pointing at
//! tests/peers/dns_server.py (dnslib, on 127.0.0.1, Python from `.venv`) that serves its
//! NAPTR (UDP first, TCP second), SRV (priority 10 and a weighted priority 20) and A records
//! with short TTLs and logs every question, and a sipp UAS at the priority-10 target.
//!
//! Checked through the library API (one user agent, so one resolver and one cache): the order
//! of the targets, the call's INVITE reaching the first one with the domain (no port) in its
//! Request-URI, a second call within the TTL asking no question, a call after the TTL asking
//! again, and a "no such name" answer kept for its negative TTL. A second test: an SRV target
//! that answers 503 moves the call to the next target.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{test_dir, write_profile, Sipp};
use outdial::call::{Call, CallEvent, CallRequest};
use outdial::config::{Config, Transport};
use outdial::sip::UserAgent;

/// The TTL of every record in the zone, seconds.
const TTL_S: u64 = 5;
/// The negative TTL (the SOA's minimum field), seconds.
const NEGATIVE_TTL_S: u64 = 5;
const DOMAIN: &str = "trunk.outdial.test";

/// The Python that runs the DNS server: `.venv` (made by `make setup`), or `OUTDIAL_TEST_PYTHON`.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("OUTDIAL_TEST_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        p.is_file(),
        "{} is missing: run `make setup` (it installs dnslib for the DNS test peer)",
        p.display()
    );
    p
}

/// tests/peers/dns_server.py serving `zone`, on a port it picked.
struct DnsPeer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl DnsPeer {
    fn start(dir: &Path, zone: &str) -> DnsPeer {
        let zone_file = dir.join("zone.txt");
        std::fs::write(&zone_file, zone).expect("write zone");
        let log = dir.join("questions.log");
        std::fs::write(&log, "").expect("create question log");
        let stderr = dir.join("dns_server.stderr");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/dns_server.py");
        let mut child = Command::new("timeout")
            .arg("300")
            .arg(python())
            .arg(&script)
            .arg("--zone")
            .arg(&zone_file)
            .arg("--log")
            .arg(&log)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("start the DNS server: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let port = match lines.next() {
            Some(Ok(line)) if line.starts_with("LISTENING ") => line["LISTENING ".len()..]
                .trim()
                .parse::<u16>()
                .expect("port"),
            other => panic!(
                "the DNS server did not start ({other:?}): {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            ),
        };
        DnsPeer { child, port, log }
    }

    /// Every question asked so far, "NAME TYPE".
    fn questions(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn count(&self, question: &str) -> usize {
        self.questions().iter().filter(|q| *q == question).count()
    }
}

impl Drop for DnsPeer {
    fn drop(&mut self) {
        // SIGTERM to `timeout`, which passes it on to the server: a SIGKILL would leave the
        // Python process running without its guard.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// The carrier's zone: NAPTR for UDP (order 10) and TCP (order 20); UDP SRV at priority 10
/// (`pri`, port `a`) and priority 20 (`b1` weight 60 at `b`, `b2` weight 40 at `c`); TCP SRV
/// at `pri` port `t`.
fn zone(a: u16, b: u16, c: u16, t: u16) -> String {
    format!(
        "$ORIGIN outdial.test.\n\
         $TTL {TTL_S}\n\
         @ IN SOA ns.outdial.test. admin.outdial.test. 1 60 60 60 {NEGATIVE_TTL_S}\n\
         trunk IN NAPTR 20 10 \"s\" \"SIP+D2T\" \"\" _sip._tcp.trunk.outdial.test.\n\
         trunk IN NAPTR 10 10 \"s\" \"SIP+D2U\" \"\" _sip._udp.trunk.outdial.test.\n\
         _sip._udp.trunk IN SRV 20 60 {b} b1.trunk.outdial.test.\n\
         _sip._udp.trunk IN SRV 10 0 {a} pri.trunk.outdial.test.\n\
         _sip._udp.trunk IN SRV 20 40 {c} b2.trunk.outdial.test.\n\
         _sip._tcp.trunk IN SRV 10 0 {t} pri.trunk.outdial.test.\n\
         pri.trunk IN A 127.0.0.1\n\
         b1.trunk IN A 127.0.0.1\n\
         b2.trunk IN A 127.0.0.1\n\
         direct IN A 127.0.0.1\n"
    )
}

fn load(dir: &Path, dns_port: u16) -> Config {
    let (lo, hi) = common::free_rtp_range(20);
    std::fs::write(
        dir.join("outdial.toml"),
        format!("[sip]\ndns_servers = [\"127.0.0.1:{dns_port}\"]\n"),
    )
    .expect("write outdial.toml");
    write_profile(
        &dir.join("profiles"),
        "carrier",
        &format!("proxy = \"{DOMAIN}\"\n"),
    );
    let env: HashMap<String, String> = [
        ("OUTDIAL_SIP_LISTEN".to_string(), "127.0.0.1:0".to_string()),
        ("OUTDIAL_RTP_PORTS".to_string(), format!("{lo}-{hi}")),
    ]
    .into_iter()
    .collect();
    Config::load_with_env(
        &dir.join("outdial.toml"),
        true,
        &dir.join("profiles"),
        true,
        &|k| env.get(k).cloned(),
    )
    .unwrap_or_else(|e| panic!("config: {e}"))
}

/// Dials the trunk and returns the final SIP code once the call has ended.
async fn call(ua: &Arc<UserAgent>, config: &Config) -> Option<u16> {
    let mut req = CallRequest::new(
        "15551230000",
        Duration::from_secs(10),
        Duration::from_secs(10),
    );
    req.profile = Some(config.profile("carrier").expect("profile").clone());
    let mut call = Call::dial(ua.clone(), req).await.expect("dial");
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match call.next_event().await {
                Some(CallEvent::Ended(summary)) => return summary.sip_code,
                Some(_) => {}
                None => return None,
            }
        }
    })
    .await;
    ended.expect("the call ended in time")
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naptr_and_srv_choose_the_target_and_answers_are_cached_for_their_ttl() {
    let dir = test_dir("dns");
    // The priority-10 target answers (486 to both calls); nothing listens at the others.
    let sipp = Sipp::uas(dir.path(), "uas_busy.xml")
        .args(["-m", "2"])
        .start();
    let (b, c, t) = (
        common::free_udp_port(),
        common::free_udp_port(),
        common::free_tcp_port(),
    );
    let dns = DnsPeer::start(dir.path(), &zone(sipp.port, b, c, t));
    let config = load(dir.path(), dns.port);
    let ua = UserAgent::start(&config).await.expect("user agent");
    let profile = config.profile("carrier").expect("profile").clone();
    assert!(!profile.primary().proxy.explicit_port && !profile.primary().transport_explicit);

    // NAPTR (UDP before TCP) → SRV by priority → A: priority 10 first, the weighted
    // priority-20 pair next in either order, then the TCP target.
    let resolved_at = Instant::now();
    let targets = ua
        .trunk_targets(profile.primary())
        .await
        .expect("the trunk resolves");
    let seen: Vec<(SocketAddr, Transport, &str)> = targets
        .iter()
        .map(|t| (t.addr, t.transport, t.host.as_str()))
        .collect();
    assert_eq!(seen.len(), 4, "{seen:?}\n{:?}", dns.questions());
    assert_eq!(
        seen[0],
        (local(sipp.port), Transport::Udp, "pri.trunk.outdial.test")
    );
    let mut middle = vec![seen[1], seen[2]];
    middle.sort_by_key(|s| s.2);
    assert_eq!(
        middle,
        [
            (local(b), Transport::Udp, "b1.trunk.outdial.test"),
            (local(c), Transport::Udp, "b2.trunk.outdial.test")
        ]
    );
    assert_eq!(
        seen[3],
        (local(t), Transport::Tcp, "pri.trunk.outdial.test")
    );
    let first = dns.questions();
    for q in [
        "trunk.outdial.test. NAPTR",
        "_sip._udp.trunk.outdial.test. SRV",
        "_sip._tcp.trunk.outdial.test. SRV",
        "pri.trunk.outdial.test. A",
        "b1.trunk.outdial.test. A",
        "b2.trunk.outdial.test. A",
    ] {
        assert!(first.iter().any(|f| f == q), "{q} not asked: {first:?}");
    }

    // A call within the TTL: to the priority-10 target, no new question.
    assert_eq!(call(&ua, &config).await, Some(486));
    assert!(
        resolved_at.elapsed() < Duration::from_secs(TTL_S),
        "the first call took longer than the TTL: the cache check below would mean nothing"
    );
    assert_eq!(
        dns.questions(),
        first,
        "a call within the TTL asked the DNS server again"
    );

    // After the TTL the records are asked again.
    tokio::time::sleep(Duration::from_secs(TTL_S + 1).saturating_sub(resolved_at.elapsed())).await;
    assert_eq!(call(&ua, &config).await, Some(486));
    assert_eq!(
        dns.count("trunk.outdial.test. NAPTR"),
        2,
        "NAPTR not asked again after its TTL: {:?}",
        dns.questions()
    );
    assert_eq!(dns.count("_sip._udp.trunk.outdial.test. SRV"), 2);
    assert_eq!(dns.count("pri.trunk.outdial.test. A"), 2);

    let run = sipp.wait(Duration::from_secs(10));
    assert!(run.passed, "sipp: {}\n{}", run.errors, run.screen);
    let invites: Vec<_> = run
        .sip_messages()
        .into_iter()
        .filter(|m| m.received && m.method() == Some("INVITE"))
        .collect();
    assert_eq!(
        invites.len(),
        2,
        "both calls reached the priority-10 target"
    );
    assert_eq!(
        invites[0].first_line,
        format!("INVITE sip:15551230000@{DOMAIN} SIP/2.0"),
        "the Request-URI names the domain, without a port"
    );

    // A written port: A/AAAA only, no NAPTR or SRV for that name.
    let direct = ua
        .resolve("direct.outdial.test", Some(5099), None)
        .await
        .expect("direct resolves");
    assert_eq!(direct[0].addr, local(5099));
    let asked: Vec<_> = dns
        .questions()
        .into_iter()
        .filter(|q| q.contains("direct.outdial.test"))
        .collect();
    assert_eq!(asked, ["direct.outdial.test. A"]);

    // "No such name" is kept for the SOA's negative TTL: asked once for two lookups.
    let missing = || ua.resolve("nowhere.outdial.test", Some(5060), None);
    let err = missing().await.expect_err("no such host");
    assert!(
        err.to_string().contains("nowhere.outdial.test:5060"),
        "{err}"
    );
    missing().await.expect_err("still no such host");
    assert_eq!(
        dns.count("nowhere.outdial.test. A"),
        1,
        "{:?}",
        dns.questions()
    );
    ua.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_srv_target_fails_over_to_the_next_one() {
    let dir = test_dir("dns-failover");
    let d = dir.path();
    let first_dir = d.join("pri");
    let next_dir = d.join("next");
    std::fs::create_dir_all(&first_dir).unwrap();
    std::fs::create_dir_all(&next_dir).unwrap();
    // The priority-10 target is overloaded (503 at once); both priority-20 targets are the
    // same far end, which answers busy, so whichever the weights draw takes the call.
    let overloaded = Sipp::uas(&first_dir, "uas_503_at_once.xml").start();
    let next = Sipp::uas(&next_dir, "uas_busy.xml").start();
    let t = common::free_tcp_port();
    let dns = DnsPeer::start(d, &zone(overloaded.port, next.port, next.port, t));
    let config = load(d, dns.port);
    let ua = UserAgent::start(&config).await.expect("user agent");

    let mut req = CallRequest::new(
        "15551230000",
        Duration::from_secs(10),
        Duration::from_secs(10),
    );
    req.profile = Some(config.profile("carrier").expect("profile").clone());
    let mut call = Call::dial(ua.clone(), req).await.expect("dial");
    let summary = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match call.next_event().await {
                Some(CallEvent::Ended(summary)) => return Some(summary),
                Some(_) => {}
                None => return None,
            }
        }
    })
    .await
    .expect("the call ended in time")
    .expect("a summary");

    assert_eq!(summary.sip_code, Some(486), "{summary:?}");
    assert_eq!(summary.trunk.as_deref(), Some("carrier"));
    assert_eq!(summary.failover.len(), 1, "{summary:?}");
    assert_eq!(summary.failover[0].code, Some(503));
    overloaded
        .wait(Duration::from_secs(10))
        .assert_passed("503 at the priority-10 target (needs our ACK)");
    next.wait(Duration::from_secs(10))
        .assert_passed("the priority-20 target takes the call");
    ua.shutdown().await;
}
