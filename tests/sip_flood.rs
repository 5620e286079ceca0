//! SIP floods at outdial's own UDP port. An INVITE flood from one source, far above the limit,
//! while `outdial call` places a real call to a sipp UAS: the call goes through with its audio,
//! the flood gets what the README documents (403 within the per-source limit — the flood's
//! source is no trunk of outdial's —, a few 503 with
//! Retry-After, silence beyond), and outdial's memory stays flat. A flood of malformed
//! datagrams from many sources at `outdial serve`: it keeps answering, and its log holds a
//! few lines, not one per datagram.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const SIPP_WAIT: Duration = Duration::from_secs(30);

/// An out-of-dialog INVITE (no To tag) from `from_port`, unique by `n`.
fn invite(n: u64, target_port: u16, from_port: u16) -> String {
    format!(
        "INVITE sip:flood@127.0.0.1:{target_port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{from_port};branch=z9hG4bK-fl{n};rport\r\n\
         From: <sip:flood@127.0.0.1>;tag=f{n}\r\n\
         To: <sip:flood@127.0.0.1>\r\n\
         Call-ID: flood-{n}@127.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Max-Forwards: 70\r\n\
         Contact: <sip:flood@127.0.0.1:{from_port}>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The INVITEs the flood got a final response to, by code (retransmissions of a response
/// count once), and how many 503s carried `Retry-After: 10`.
#[derive(Default, Debug)]
struct Answers {
    by_code: HashMap<u16, HashSet<String>>,
    retry_after: u64,
}

impl Answers {
    fn count(&self, code: u16) -> u64 {
        self.by_code.get(&code).map_or(0, |s| s.len() as u64)
    }
}

/// Waits for `child` at most `timeout`, reading its stdout and stderr.
fn finish(
    mut child: Child,
    timeout: Duration,
) -> (Option<std::process::ExitStatus>, String, String) {
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for outdial: {e}"),
        }
    };
    (
        status,
        out_reader.join().unwrap_or_default(),
        err_reader.join().unwrap_or_default(),
    )
}

#[test]
fn an_invite_flood_is_limited_while_a_real_call_goes_through() {
    let dir = test_dir("sip-flood");
    let d = dir.path();
    let far_end = d.join("far_end.wav");
    speech_wav_padded(&far_end, "Hello, this is the far end speaking.", 0.2, 6.0);
    let sipp = Sipp::uas(d, "uas_answer_audio.xml")
        .stream_wav(&far_end)
        .start();
    let sip_port = free_tcp_port();
    let mut cmd = outdial_cmd(d);
    cmd.env("OUTDIAL_SIP_LISTEN", format!("127.0.0.1:{sip_port}"))
        .arg("call")
        .arg(sipp.uri("legit"))
        .args(["--max-duration", "5", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("start outdial call");
    let pid = child.id();

    let deadline = Instant::now() + Duration::from_secs(20);
    while !port_bound(sip_port, false) {
        assert!(
            Instant::now() < deadline,
            "outdial never bound its SIP port"
        );
        thread::sleep(Duration::from_millis(10));
    }
    let baseline = rss_kib(pid).expect("outdial's RSS");

    // The flood: 10,000 INVITEs a second for 2 s from one socket, and a reader counting what
    // comes back; the RSS is sampled meanwhile.
    let flood = UdpSocket::bind("127.0.0.1:0").expect("bind flood socket");
    let flood_port = flood.local_addr().expect("addr").port();
    flood
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let socket = flood.try_clone().expect("clone");
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let mut answers = Answers::default();
            let mut buf = [0u8; 4096];
            loop {
                match socket.recv_from(&mut buf) {
                    Ok((n, _)) => {
                        let text = String::from_utf8_lossy(&buf[..n]);
                        let code: u16 = text
                            .split(' ')
                            .nth(1)
                            .and_then(|c| c.parse().ok())
                            .unwrap_or(0);
                        let call_id = text
                            .lines()
                            .find_map(|l| l.strip_prefix("Call-ID:"))
                            .unwrap_or("")
                            .trim()
                            .to_string();
                        let first =
                            code >= 200 && answers.by_code.entry(code).or_default().insert(call_id);
                        if first && code == 503 && text.contains("\r\nRetry-After: 10\r\n") {
                            answers.retry_after += 1;
                        }
                    }
                    Err(_) if done.load(Ordering::Relaxed) => return answers,
                    Err(_) => {}
                }
            }
        })
    };
    let sampler = {
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid).unwrap_or(0));
                thread::sleep(Duration::from_millis(50));
            }
            peak
        })
    };
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < Duration::from_secs(2) {
        for _ in 0..100 {
            let msg = invite(sent, sip_port, flood_port);
            if flood
                .send_to(msg.as_bytes(), ("127.0.0.1", sip_port))
                .is_ok()
            {
                sent += 1;
            }
        }
        // 100 every 10 ms.
        let due = started + Duration::from_millis(10 * (sent / 100));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
    }
    let flood_secs = started.elapsed().as_secs_f64();
    // Let late answers (retransmitted 403s) arrive, then stop the reader and the sampler. The
    // limit refills until the last datagram has been read: count that time too.
    thread::sleep(Duration::from_millis(600));
    done.store(true, Ordering::Relaxed);
    let limited_secs = started.elapsed().as_secs_f64() + 0.2;
    let answers = reader.join().expect("reader");
    let peak = sampler.join().expect("sampler");

    let (status, stdout, stderr) = finish(child, Duration::from_secs(60));
    let sipp_run = sipp.wait(SIPP_WAIT);
    eprintln!(
        "flood: {sent} INVITEs in {flood_secs:.1} s; {} answered 403, {} answered 503; \
         RSS {baseline} KiB -> peak {peak} KiB",
        answers.count(403),
        answers.count(503)
    );

    // The real call went through, audio and all.
    assert!(status.is_some_and(|s| s.success()), "stderr: {stderr}");
    let json = parse_one_json_object(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(json["outcome"], "answered", "{json}");
    assert_eq!(json["sip_code"], 200, "{json}");
    let received = json["rtp"]["received"].as_u64().unwrap_or(0);
    assert!(received > 150, "far-end audio during the flood: {json}");
    sipp_run.assert_passed("the legit call (needs our ACK and BYE)");

    // The flood got what is documented: 403 within the per-source limit (a burst of 40, then
    // 20/s), a few 503s with Retry-After (5, then 2/s), nothing for the rest.
    assert!(sent > 10_000, "the flood sent {sent}");
    let allowed = 40.0 + 20.0 * limited_secs;
    let got_403 = answers.count(403);
    assert!(got_403 >= 40, "the burst at least: {got_403}");
    assert!(
        (got_403 as f64) <= allowed + 10.0,
        "{got_403} INVITEs reached the stack, at most {allowed:.0} may"
    );
    let got_503 = answers.count(503);
    assert!(
        got_503 >= 5 && (got_503 as f64) <= 5.0 + 2.0 * limited_secs + 1.0,
        "{got_503} answered 503"
    );
    assert_eq!(answers.retry_after, got_503, "every 503 says when to retry");
    let others: u64 = answers
        .by_code
        .iter()
        .filter(|(c, _)| !matches!(**c, 403 | 503))
        .map(|(_, ids)| ids.len() as u64)
        .sum();
    assert_eq!(others, 0, "{answers:?}");

    // Memory stayed flat: no state for the dropped INVITEs.
    assert!(
        peak.saturating_sub(baseline) < 20 * 1024,
        "RSS grew from {baseline} KiB to {peak} KiB during the flood"
    );
    // The flood is logged in a line or two, not one per INVITE.
    let flood_lines = stderr.lines().filter(|l| l.contains("flood limit")).count();
    assert!(
        (1..=3).contains(&flood_lines),
        "{flood_lines} lines:\n{stderr}"
    );
}

struct Serve {
    child: Option<Child>,
    port: u16,
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn options(branch: &str, client_port: u16) -> String {
    format!(
        "OPTIONS sip:outdial@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{client_port};branch=z9hG4bK-{branch};rport\r\n\
         From: <sip:probe@127.0.0.1>;tag=t-{branch}\r\n\
         To: <sip:outdial@127.0.0.1>\r\n\
         Call-ID: {branch}@probe\r\n\
         CSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Sends OPTIONS from a socket bound on `ip` until one is answered 200 (at most `within`).
fn answers_options(ip: &str, port: u16, within: Duration) -> bool {
    let c = UdpSocket::bind((ip, 0)).expect("bind client");
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let cp = c.local_addr().expect("addr").port();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    let mut n = 0;
    while Instant::now() < deadline {
        n += 1;
        let _ = c.send_to(
            options(&format!("probe{n}"), cp).as_bytes(),
            ("127.0.0.1", port),
        );
        while let Ok((len, _)) = c.recv_from(&mut buf) {
            if buf[..len].starts_with(b"SIP/2.0 200") {
                return true;
            }
        }
    }
    false
}

#[test]
fn a_malformed_flood_is_survived_and_logged_in_a_few_lines() {
    let dir = test_dir("sip-malformed-flood");
    let port = free_tcp_port();
    let (lo, hi) = free_rtp_range(20);
    let stderr_path = dir.path().join("serve.log");
    let child = Command::new(outdial_bin())
        .arg("serve")
        .current_dir(dir.path())
        .env("OUTDIAL_SIP_LISTEN", format!("127.0.0.1:{port}"))
        .env("OUTDIAL_RTP_PORTS", format!("{lo}-{hi}"))
        .env("OUTDIAL_HTTP_LISTEN", "127.0.0.1:0")
        .env_remove("RUST_LOG")
        .env_remove("OUTDIAL_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).expect("log file"))
        .spawn()
        .expect("spawn outdial serve");
    let mut server = Serve {
        child: Some(child),
        port,
    };
    assert!(
        answers_options("127.0.0.1", server.port, Duration::from_secs(20)),
        "outdial serve does not answer OPTIONS"
    );

    // 5,000 malformed requests (a broken CSeq: each would be answered 400) from 50 sources.
    let mut sent = 0;
    for source in 0..50u8 {
        let ip = format!("127.0.1.{}", source + 1);
        let s = UdpSocket::bind((ip.as_str(), 0)).expect("bind a loopback source");
        let sp = s.local_addr().expect("addr").port();
        for k in 0..100 {
            let bad =
                options(&format!("bad{source}x{k}"), sp).replace("CSeq: 1 OPTIONS", "CSeq: x");
            if s.send_to(bad.as_bytes(), ("127.0.0.1", server.port))
                .is_ok()
            {
                sent += 1;
            }
        }
    }
    assert_eq!(sent, 5000);
    // Still serving, for a source that did not flood.
    assert!(
        answers_options("127.0.0.9", server.port, Duration::from_secs(10)),
        "outdial serve stopped answering after the malformed flood"
    );
    let mut child = server.child.take().expect("child");
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&stderr_path).expect("read log");
    let malformed = log.lines().filter(|l| l.contains("malformed SIP")).count();
    let limited = log.lines().filter(|l| l.contains("flood limit")).count();
    assert!(
        (1..=2).contains(&malformed),
        "{malformed} lines about malformed datagrams:\n{log}"
    );
    assert!(
        limited <= 2,
        "{limited} lines about the flood limit:\n{log}"
    );
    assert!(log.lines().count() < 30, "{log}");
}
