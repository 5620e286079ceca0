//! rtpengine as the yardstick of `outdial bench media`: start it in userspace (no kernel
//! forwarding table), set up one call per stream over its ng control protocol, read its CPU
//! from /proc, delete the calls and stop it.
//!
//! ng protocol: each UDP datagram is a cookie, a space, and a bencoded dictionary; the reply
//! repeats the cookie. Requests are pipelined (a window of them in flight) and retransmitted
//! with the same cookie when no reply comes, which rtpengine answers from its cookie cache.
//! For each stream: `offer` with the A party's SDP (the generator's source), then `answer`
//! with the B party's SDP (a generator sink); the answer's reply carries the rtpengine port the
//! A party must send to, and rtpengine relays that to B.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::bencode::Value;
use super::sys;

/// Requests in flight at once on the ng socket.
const WINDOW: usize = 64;
/// rtpengine's RTP ports: the top of the kernel's ephemeral range, where nothing binds a fixed
/// port (the test harness and outdial's RTP pool keep below it) and :0 binds go around what
/// rtpengine holds. Ports other processes already hold there are lost to rtpengine, so the
/// range is twice what the calls need plus slack (and never below 1024).
fn port_range(need: u32) -> (u32, u32) {
    let want = (2 * need + 1000).min(60_000);
    let hi = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u32>().ok())
        .unwrap_or(60_999)
        .clamp(1024 + want, 65_000);
    (hi - want, hi)
}

/// The `rtpengine` binary: `explicit` when given, else the first `rtpengine` on PATH.
pub fn find(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("rtpengine"))
        .find(|p| p.is_file())
}

/// A running rtpengine child and its ng client.
pub struct Rtpengine {
    child: Child,
    ng: UdpSocket,
    log_tail: Arc<Mutex<VecDeque<String>>>,
    calls: usize,
}

impl Rtpengine {
    /// Starts rtpengine with room for `streams` calls and waits until it answers `ping`.
    pub fn start(bin: &Path, streams: usize) -> Result<Rtpengine, String> {
        let ng = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("ng socket: {e}"))?;
        // A free port for rtpengine's ng listener: bind one, note it, let it go.
        let ng_port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map_err(|e| format!("cannot find a free ng port: {e}"))?
            .port();
        // Two ports (RTP + RTCP) per side, two sides per call, plus slack.
        let need = 4 * streams as u32 + 256;
        let (port_min, port_max) = port_range(need);
        let mut child = Command::new(bin)
            .arg("--config-file=none")
            .arg("--table=-1")
            .arg("--interface=127.0.0.1")
            .arg(format!("--listen-ng=127.0.0.1:{ng_port}"))
            .arg(format!("--port-min={port_min}"))
            .arg(format!("--port-max={port_max}"))
            .arg("--foreground")
            .arg("--log-stderr")
            .arg("--log-level=4")
            .arg("--delete-delay=0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let log_tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stderr) = child.stderr.take() {
            let tail = log_tail.clone();
            let _ = std::thread::Builder::new()
                .name("rtpengine-log".into())
                .spawn(move || {
                    for line in BufReader::new(stderr).lines() {
                        let Ok(line) = line else { break };
                        if let Ok(mut t) = tail.lock() {
                            if t.len() == 8 {
                                t.pop_front();
                            }
                            t.push_back(line);
                        }
                    }
                });
        }
        ng.connect(SocketAddrV4::new(Ipv4Addr::LOCALHOST, ng_port))
            .map_err(|e| format!("ng connect: {e}"))?;
        let mut engine = Rtpengine {
            child,
            ng,
            log_tail,
            calls: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            if let Ok(Some(status)) = engine.child.try_wait() {
                return Err(format!(
                    "rtpengine exited at start ({status}): {}",
                    engine.log_line()
                ));
            }
            let ping = Value::dict([("command", Value::str("ping"))]);
            match engine.request_many(vec![ping], Duration::from_millis(200), 1) {
                Ok(r) if r[0].get("result").and_then(Value::as_text).as_deref() == Some("pong") => {
                    return Ok(engine)
                }
                _ if Instant::now() < deadline => continue,
                _ => {
                    return Err(format!(
                        "rtpengine did not answer ping on 127.0.0.1:{ng_port}: {}",
                        engine.log_line()
                    ))
                }
            }
        }
    }

    /// The last lines rtpengine logged, joined on one line.
    fn log_line(&self) -> String {
        match self.log_tail.lock() {
            Ok(t) if !t.is_empty() => t.iter().cloned().collect::<Vec<_>>().join(" | "),
            _ => "(no log output)".into(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sets up call `i` from `a[i]` to `b[i]`; returns, per call, where A must send.
    pub fn setup_calls(
        &mut self,
        a: &[SocketAddrV4],
        b: &[SocketAddrV4],
    ) -> Result<Vec<SocketAddrV4>, String> {
        let n = a.len().min(b.len());
        let offers: Vec<Value> = (0..n)
            .map(|i| {
                Value::dict([
                    ("command", Value::str("offer")),
                    ("call-id", Value::str(&call_id(i))),
                    ("from-tag", Value::str(&format!("a{i}"))),
                    ("sdp", Value::str(&sdp(a[i], i))),
                    ("ICE", Value::str("remove")),
                ])
            })
            .collect();
        self.calls = n;
        let replies = self.request_many(offers, Duration::from_secs(2), 4)?;
        for r in &replies {
            check_ok(r, "offer")?;
        }
        let answers: Vec<Value> = (0..n)
            .map(|i| {
                Value::dict([
                    ("command", Value::str("answer")),
                    ("call-id", Value::str(&call_id(i))),
                    ("from-tag", Value::str(&format!("a{i}"))),
                    ("to-tag", Value::str(&format!("b{i}"))),
                    ("sdp", Value::str(&sdp(b[i], i))),
                    ("ICE", Value::str("remove")),
                ])
            })
            .collect();
        let replies = self.request_many(answers, Duration::from_secs(2), 4)?;
        replies
            .iter()
            .map(|r| {
                check_ok(r, "answer")?;
                let body = r
                    .get("sdp")
                    .and_then(Value::as_text)
                    .ok_or("rtpengine's answer reply has no sdp")?;
                sdp_media_addr(&body)
                    .ok_or_else(|| format!("no audio address in rtpengine's SDP: {body:?}"))
            })
            .collect()
    }

    /// Deletes every call set up (best effort).
    pub fn delete_calls(&mut self) -> Result<(), String> {
        let deletes: Vec<Value> = (0..self.calls)
            .map(|i| {
                Value::dict([
                    ("command", Value::str("delete")),
                    ("call-id", Value::str(&call_id(i))),
                    ("from-tag", Value::str(&format!("a{i}"))),
                ])
            })
            .collect();
        self.calls = 0;
        let replies = self.request_many(deletes, Duration::from_secs(2), 3)?;
        for r in &replies {
            check_ok(r, "delete")?;
        }
        Ok(())
    }

    /// rtpengine's CPU time so far (user + system, all threads), in µs.
    pub fn cpu_time_us(&self) -> Option<u64> {
        proc_cpu_us(self.child.id())
    }

    /// Stops rtpengine: SIGTERM, then SIGKILL if it lingers.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // Our own child, not reaped yet: its pid cannot have been reused.
        let _ = sys::terminate(self.child.id());
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends every request, `WINDOW` at a time, and returns the replies in order.
    fn request_many(
        &mut self,
        requests: Vec<Value>,
        retry_after: Duration,
        tries: u32,
    ) -> Result<Vec<Value>, String> {
        let n = requests.len();
        let mut replies: Vec<Option<Value>> = vec![None; n];
        let mut outstanding: BTreeMap<usize, (Instant, u32)> = BTreeMap::new();
        let mut next = 0;
        let mut done = 0;
        let mut buf = vec![0u8; 65_536];
        let prefix = format!(
            "{}_{}_",
            std::process::id(),
            sys::monotonic_ns() % 1_000_000_007
        );
        let send = |ng: &UdpSocket, i: usize| -> Result<(), String> {
            let mut msg = format!("{prefix}{i} ").into_bytes();
            requests[i].encode(&mut msg);
            ng.send(&msg)
                .map(|_| ())
                .map_err(|e| format!("ng send: {e}"))
        };
        let _ = self.ng.set_read_timeout(Some(Duration::from_millis(50)));
        while done < n {
            while outstanding.len() < WINDOW && next < n {
                send(&self.ng, next)?;
                outstanding.insert(next, (Instant::now(), 1));
                next += 1;
            }
            match self.ng.recv(&mut buf) {
                Ok(len) => {
                    let data = &buf[..len];
                    let Some(space) = data.iter().position(|&b| b == b' ') else {
                        continue;
                    };
                    let cookie = String::from_utf8_lossy(&data[..space]);
                    let Some(i) = cookie
                        .strip_prefix(&prefix)
                        .and_then(|s| s.parse::<usize>().ok())
                    else {
                        continue; // a late reply to an earlier batch
                    };
                    if outstanding.remove(&i).is_some() {
                        replies[i] = Some(
                            Value::decode(&data[space + 1..])
                                .map_err(|e| format!("bad ng reply: {e}"))?,
                        );
                        done += 1;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                // ECONNREFUSED: nothing listens (yet); treat as a lost datagram.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(format!("ng receive: {e}")),
            }
            let now = Instant::now();
            let late: Vec<usize> = outstanding
                .iter()
                .filter(|(_, (at, _))| now.duration_since(*at) >= retry_after)
                .map(|(&i, _)| i)
                .collect();
            for i in late {
                let tries_so_far = outstanding.get(&i).map_or(0, |v| v.1);
                if tries_so_far >= tries {
                    return Err(format!(
                        "rtpengine did not answer request {i} after {tries} tries"
                    ));
                }
                send(&self.ng, i)?;
                outstanding.insert(i, (now, tries_so_far + 1));
            }
        }
        Ok(replies.into_iter().flatten().collect())
    }
}

impl Drop for Rtpengine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn call_id(i: usize) -> String {
    format!("outdial-bench-{}-{i}", std::process::id())
}

fn check_ok(reply: &Value, what: &str) -> Result<(), String> {
    match reply.get("result").and_then(Value::as_text).as_deref() {
        Some("ok") => Ok(()),
        other => Err(format!(
            "rtpengine refused {what}: result {:?}, {}",
            other.unwrap_or("(none)"),
            reply
                .get("error-reason")
                .and_then(Value::as_text)
                .unwrap_or_default()
        )),
    }
}

/// A minimal PCMU audio SDP for a party at `addr`.
fn sdp(addr: SocketAddrV4, i: usize) -> String {
    let ip = addr.ip();
    format!(
        "v=0\r\no=- {i} 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        addr.port()
    )
}

/// The audio address of an SDP body: the first `m=audio` port with the media-level `c=` line
/// if there is one, else the session-level one.
pub fn sdp_media_addr(body: &str) -> Option<SocketAddrV4> {
    let mut session_ip: Option<Ipv4Addr> = None;
    let mut port: Option<u16> = None;
    let mut media_ip: Option<Ipv4Addr> = None;
    for line in body.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("c=IN IP4 ") {
            let ip = rest.split('/').next()?.trim().parse().ok();
            if port.is_some() {
                media_ip = media_ip.or(ip);
            } else {
                session_ip = ip;
            }
        } else if let Some(rest) = line.strip_prefix("m=") {
            if port.is_some() {
                break;
            }
            if let Some(audio) = rest.strip_prefix("audio ") {
                port = audio.split_whitespace().next()?.parse().ok();
            }
        }
    }
    Some(SocketAddrV4::new(media_ip.or(session_ip)?, port?))
}

/// CPU time of process `pid` (user + system, all threads) from /proc/PID/stat, in µs.
pub fn proc_cpu_us(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line; `rest` starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 1_000_000 / sys::clock_ticks_per_sec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sdp_media_addr() {
        let body = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                    m=audio 30004 RTP/AVP 0\r\nc=IN IP4 127.0.0.2\r\na=rtcp:30005\r\n";
        assert_eq!(
            sdp_media_addr(body),
            Some("127.0.0.2:30004".parse().unwrap())
        );
        let body = sdp("127.0.0.1:4000".parse().unwrap(), 3);
        assert_eq!(
            sdp_media_addr(&body),
            Some("127.0.0.1:4000".parse().unwrap())
        );
        assert_eq!(sdp_media_addr("v=0\r\n"), None);
    }

    #[test]
    fn reads_own_cpu_time() {
        assert!(proc_cpu_us(std::process::id()).is_some());
        assert!(proc_cpu_us(u32::MAX).is_none());
    }
}
