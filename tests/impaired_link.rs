//! A call to baresip over a bad link: 3 % loss, 40 ms ± 20 ms delay and 5 % extra
//! reordering on the RTP path, both ways. The audio must still correlate both ways, our DTMF
//! digits must reach baresip exactly once each, and the far end's digits (sipp `play_dtmf`)
//! must reach us exactly once each.
//!
//! The link, as the issue has it: two network namespaces this test creates (`ip netns`), one
//! for outdial and one for the phone, joined by a veth pair with
//! `tc qdisc add dev VETH root netem loss 3% delay 40ms 20ms reorder 5%` on both ends. outdial
//! runs with `ip netns exec A outdial …` on 10.77.0.1, baresip (or sipp) with
//! `ip netns exec B …` on 10.77.0.2, so SIP and RTP both cross the impaired veth. What reaches
//! the phone is read off B's end of the veth with a packet socket opened inside B. The
//! namespaces get unique names per run (`odtest-PID-RANDOM-a|b`) and are deleted on drop, also
//! when a test panics; ones left by a killed run (their PID gone) are deleted at the next
//! start.
//!
//! Each test probes netem on its own veth first. Only when the kernel has no `sch_netem`
//! (`tc qdisc … netem` answers "Error: Specified qdisc kind is unknown", as on the machine
//! these tests were written on) does it fall back to a userspace impairment relay with the
//! same loss, delay, jitter and reordering: outdial advertises 127.0.0.2 as its RTP address
//! (rtp.external_addr); the relay owns 127.0.0.2:PORT for each port of outdial's range,
//! impairs what the phone sends and forwards it to outdial's real socket on 127.0.0.1:PORT;
//! outdial latches (symmetric RTP) onto the relay's inner socket, so its RTP comes back through
//! the relay too. Either way the test prints one line saying which link it used and why, and
//! makes the same assertions.
//!
//! The netem path is exercised as far as the kernel allows even where netem itself is missing:
//! `namespaces_and_veth_carry_udp` tests the plumbing on its own (UDP both ways over the veth,
//! cleanup on drop and on panic, and netem's delay where the kernel has it), and
//! `a_call_crosses_the_namespaces_on_a_clean_veth` places the same call as the netem path
//! (outdial in A, baresip in B, the phone's side read off the veth) with no qdisc: same audio
//! and DTMF checks, no loss.
//! Needs root (CAP_NET_ADMIN), as the CI runs.

mod common;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// Loss, base delay, jitter (uniform ±), reorder: the netem line.
const LOSS: f64 = 0.03;
const DELAY_MS: f64 = 40.0;
const JITTER_MS: f64 = 20.0;
const REORDER: f64 = 0.05;
/// The same link for `tc`.
const NETEM: &[&str] = &["loss", "3%", "delay", "40ms", "20ms", "reorder", "5%"];
/// Addresses on the veth: outdial's end (namespace A) and the phone's (namespace B). Both
/// live only inside this test's namespaces, so parallel runs cannot clash.
const ADDR_A: &str = "10.77.0.1";
const ADDR_B: &str = "10.77.0.2";
/// Prefix of the namespaces these tests create.
const NETNS_PREFIX: &str = "odtest-";

// ---------------------------------------------------------------------------------------------
// network namespaces
// ---------------------------------------------------------------------------------------------

/// Runs `ip ARGS`; the error is its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    run_cmd(Command::new("ip").args(args))
}

/// Runs `ip netns exec NETNS PROGRAM ARGS`.
fn in_ns(netns: &str, program: &str, args: &[&str]) -> Result<(), String> {
    run_cmd(
        Command::new("ip")
            .args(["netns", "exec", netns, program])
            .args(args),
    )
}

fn run_cmd(cmd: &mut Command) -> Result<(), String> {
    let what = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(format!("{what}: {err}"))
    }
}

/// Deletes namespaces left by runs that were killed before their cleanup (their PID is gone).
fn reap_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(NETNS_PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if !pid.is_empty() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// Two network namespaces joined by a veth pair (A: 10.77.0.1, B: 10.77.0.2, loopback up in
/// both). Dropping it deletes both namespaces, which takes the veth pair with them.
struct NetnsPair {
    a: String,
    b: String,
    veth_a: String,
    veth_b: String,
}

impl NetnsPair {
    fn create() -> Result<NetnsPair, String> {
        reap_stale_namespaces();
        let id = format!("{:06x}", random_u64() & 0xff_ffff);
        let pid = std::process::id();
        let pair = NetnsPair {
            a: format!("{NETNS_PREFIX}{pid}-{id}-a"),
            b: format!("{NETNS_PREFIX}{pid}-{id}-b"),
            // Interface names: 15 characters at most.
            veth_a: format!("od{id}a"),
            veth_b: format!("od{id}b"),
        };
        // From here on, dropping `pair` removes whatever was made.
        ip(&["netns", "add", &pair.a])?;
        ip(&["netns", "add", &pair.b])?;
        ip(&[
            "link",
            "add",
            &pair.veth_a,
            "type",
            "veth",
            "peer",
            "name",
            &pair.veth_b,
        ])?;
        if let Err(e) = ip(&["link", "set", &pair.veth_a, "netns", &pair.a])
            .and_then(|()| ip(&["link", "set", &pair.veth_b, "netns", &pair.b]))
        {
            let _ = ip(&["link", "del", &pair.veth_a]);
            return Err(e);
        }
        for (ns, dev, addr) in [
            (&pair.a, &pair.veth_a, ADDR_A),
            (&pair.b, &pair.veth_b, ADDR_B),
        ] {
            in_ns(ns, "ip", &["link", "set", "lo", "up"])?;
            in_ns(
                ns,
                "ip",
                &["addr", "add", &format!("{addr}/24"), "dev", dev],
            )?;
            in_ns(ns, "ip", &["link", "set", dev, "up"])?;
        }
        Ok(pair)
    }

    /// Puts netem with `spec` on both ends of the veth.
    fn netem(&self, spec: &[&str]) -> Result<(), String> {
        for (ns, dev) in [(&self.a, &self.veth_a), (&self.b, &self.veth_b)] {
            let mut args = vec!["qdisc", "add", "dev", dev.as_str(), "root", "netem"];
            args.extend_from_slice(spec);
            in_ns(ns, "tc", &args)?;
        }
        Ok(())
    }

    /// Packets both netem qdiscs sent on and dropped, from `tc -s qdisc`.
    fn netem_counts(&self) -> (u64, u64) {
        let (mut sent, mut dropped) = (0, 0);
        for (ns, dev) in [(&self.a, &self.veth_a), (&self.b, &self.veth_b)] {
            let out = Command::new("ip")
                .args(["netns", "exec", ns, "tc", "-s", "qdisc", "show", "dev", dev])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            // " Sent 1234 bytes 56 pkt (dropped 7, overlimits 0 requeues 0)"
            let words: Vec<&str> = out.split_whitespace().collect();
            for (i, w) in words.iter().enumerate() {
                let next = |k: usize| {
                    words
                        .get(i + k)
                        .and_then(|v| v.trim_end_matches(',').parse::<u64>().ok())
                };
                if *w == "bytes" {
                    sent += next(1).unwrap_or(0);
                } else if *w == "(dropped" {
                    dropped += next(1).unwrap_or(0);
                }
            }
        }
        (sent, dropped)
    }

    /// `ip netns exec NETNS PROGRAM`, to add arguments and run.
    fn command(netns: &str, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns]).arg(program);
        cmd
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Runs `f` on a thread that has entered network namespace `netns`: sockets it opens live
/// there (and stay there once the thread is gone).
fn in_netns<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{netns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns(2) on a valid namespace descriptor; it changes only this thread,
            // which ends when `f` returns.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread")
    })
}

/// RTP packets (sequence, payload) seen by the link.
type Captured = Arc<Mutex<Vec<(u16, Vec<u8>)>>>;

/// The 20 ms PCMU frame in an RTP datagram: (sequence, payload).
fn pcmu_frame(datagram: &[u8]) -> Option<(u16, Vec<u8>)> {
    let is_pcmu = datagram.len() == 172 && datagram[0] >> 6 == 2 && datagram[1] & 0x7f == 0;
    is_pcmu.then(|| {
        (
            u16::from_be_bytes([datagram[2], datagram[3]]),
            datagram[12..].to_vec(),
        )
    })
}

/// Reads, inside namespace B, every IPv4/UDP packet that arrives from A over the veth (after
/// netem did its work on A's end) and keeps the PCMU frames: what the link delivered to the
/// phone.
struct Capture {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    frames: Captured,
}

impl Capture {
    fn start(netns_b: &str) -> Capture {
        let sock = in_netns(netns_b, || {
            let proto = i32::from((libc::ETH_P_IP as u16).to_be());
            socket2::Socket::new(
                socket2::Domain::PACKET,
                socket2::Type::DGRAM,
                Some(socket2::Protocol::from(proto)),
            )
        })
        .expect("packet socket in namespace B");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let frames: Captured = Arc::new(Mutex::new(Vec::new()));
        let (a, b): (std::net::Ipv4Addr, std::net::Ipv4Addr) =
            (ADDR_A.parse().expect("A"), ADDR_B.parse().expect("B"));
        let thread = {
            let (stop, frames) = (stop.clone(), frames.clone());
            std::thread::spawn(move || {
                let mut sock = sock;
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    let Ok(n) = std::io::Read::read(&mut sock, &mut buf) else {
                        continue;
                    };
                    let ip = &buf[..n];
                    let ihl = usize::from(ip.first().map_or(0, |b| b & 0x0f)) * 4;
                    if n < ihl + 8 || ip[0] >> 4 != 4 || ip[9] != 17 {
                        continue;
                    }
                    let src = std::net::Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
                    let dst = std::net::Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
                    if src != a || dst != b {
                        continue;
                    }
                    if let Some(frame) = pcmu_frame(&ip[ihl + 8..]) {
                        frames.lock().expect("frames").push(frame);
                    }
                }
            })
        };
        Capture {
            stop,
            thread: Some(thread),
            frames,
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// the link, either way
// ---------------------------------------------------------------------------------------------

/// The bad link a test call crosses.
enum Link {
    /// A veth between namespace A (outdial) and B (the phone); netem on both ends unless
    /// `impaired` is false (the plumbing check).
    Netns {
        capture: Capture,
        net: NetnsPair,
        impaired: bool,
    },
    /// The userspace relay on 127.0.0.2 (outdial and the phone on this machine's loopback).
    Userspace { relay: Relay },
}

/// A link plus outdial's RTP port range.
struct LinkSetup {
    link: Link,
    rtp: (u16, u16),
}

impl LinkSetup {
    /// netem between two fresh namespaces when the kernel has it, else the userspace relay.
    /// Prints which, and why.
    fn open() -> LinkSetup {
        let rtp = free_rtp_range(20);
        let link = match NetnsPair::create() {
            Err(e) => panic!("cannot create network namespaces and a veth pair (needs root): {e}"),
            Ok(net) => match net.netem(NETEM) {
                Ok(()) => {
                    eprintln!(
                        "impaired link: tc netem ({}) on a veth pair between network \
                         namespaces {} (outdial) and {} (phone)",
                        NETEM.join(" "),
                        net.a,
                        net.b
                    );
                    Link::Netns {
                        capture: Capture::start(&net.b),
                        net,
                        impaired: true,
                    }
                }
                Err(e) => {
                    let why = e.lines().last().unwrap_or("").to_string();
                    drop(net);
                    eprintln!(
                        "impaired link: userspace relay on 127.0.0.2 (same loss, delay, jitter \
                         and reordering), because this kernel cannot run tc netem: {why}"
                    );
                    Link::Userspace {
                        relay: start_relay(rtp.0, rtp.1),
                    }
                }
            },
        };
        LinkSetup { link, rtp }
    }

    /// The namespaces and the veth of the netem path, without netem (any kernel).
    fn clean_veth() -> LinkSetup {
        let net = NetnsPair::create().expect("network namespaces and a veth pair (needs root)");
        eprintln!(
            "link: a clean veth pair between network namespaces {} (outdial) and {} (phone)",
            net.a, net.b
        );
        LinkSetup {
            link: Link::Netns {
                capture: Capture::start(&net.b),
                net,
                impaired: false,
            },
            rtp: free_rtp_range(20),
        }
    }

    fn impaired(&self) -> bool {
        match &self.link {
            Link::Netns { impaired, .. } => *impaired,
            Link::Userspace { .. } => true,
        }
    }

    /// Where the phone (baresip or sipp) runs.
    fn phone(&self) -> At {
        match &self.link {
            Link::Netns { net, .. } => At::netns(&net.b, ADDR_B),
            Link::Userspace { .. } => At::loopback(),
        }
    }

    /// `outdial` set up for this link (outdial.toml written into `dir`).
    fn outdial(&self, dir: &Path) -> Command {
        let rtp = format!("{}-{}", self.rtp.0, self.rtp.1);
        match &self.link {
            Link::Netns { net, .. } => {
                std::fs::write(
                    dir.join("outdial.toml"),
                    format!("[rtp]\nbind_addr = \"{ADDR_A}\"\n"),
                )
                .expect("config");
                let mut cmd = NetnsPair::command(&net.a, &outdial_bin());
                cmd.current_dir(dir);
                for (key, _) in std::env::vars_os() {
                    if key.to_string_lossy().starts_with("OUTDIAL_") {
                        cmd.env_remove(&key);
                    }
                }
                cmd.env_remove("RUST_LOG")
                    .env("OUTDIAL_SIP_LISTEN", format!("{ADDR_A}:0"))
                    .env("OUTDIAL_RTP_PORTS", rtp);
                cmd
            }
            Link::Userspace { .. } => {
                std::fs::write(
                    dir.join("outdial.toml"),
                    "[rtp]\nbind_addr = \"127.0.0.1\"\nexternal_addr = \"127.0.0.2\"\n",
                )
                .expect("config");
                outdial_cmd_with_rtp(dir, &rtp)
            }
        }
    }

    /// The PCMU frames from outdial that the link delivered to the phone.
    fn delivered_to_phone(&self) -> Vec<(u16, Vec<u8>)> {
        let frames = match &self.link {
            Link::Netns { capture, .. } => &capture.frames,
            Link::Userspace { relay } => &relay.delivered_to_phone,
        };
        frames.lock().expect("frames").clone()
    }

    /// Datagrams the link passed on and dropped, both ways.
    fn counts(&self) -> (u64, u64) {
        match &self.link {
            Link::Netns {
                net,
                impaired: true,
                ..
            } => net.netem_counts(),
            // No qdisc to ask: what reached the phone, nothing dropped on purpose.
            Link::Netns { capture, .. } => (capture.frames.lock().expect("frames").len() as u64, 0),
            Link::Userspace { relay } => (
                relay.forwarded.load(Ordering::Relaxed),
                relay.dropped.load(Ordering::Relaxed),
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// the userspace relay (only where netem is missing)
// ---------------------------------------------------------------------------------------------

struct Relay {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    forwarded: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    /// PCMU packets from outdial that the link delivered: (sequence, payload).
    delivered_to_phone: Captured,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Small xorshift: the test must not depend on a crate for randomness.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A datagram waiting in the link: (due, order, socket index, destination, bytes).
type InFlight = (Instant, u64, usize, SocketAddr, Vec<u8>);
type Queue = Arc<Mutex<BinaryHeap<Reverse<InFlight>>>>;

/// Relays outer 127.0.0.2:p <-> inner socket -> 127.0.0.1:p for every port p in lo..=hi.
fn start_relay(lo: u16, hi: u16) -> Relay {
    let stop = Arc::new(AtomicBool::new(false));
    let forwarded = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let queue: Queue = Arc::new(Mutex::new(BinaryHeap::new()));
    let delivered_to_phone: Captured = Arc::new(Mutex::new(Vec::new()));
    let mut sockets = Vec::new(); // (outer, inner, outdial's real address)
    for p in lo..=hi {
        let outer = UdpSocket::bind(("127.0.0.2", p)).expect("bind relay outer");
        let inner = UdpSocket::bind("127.0.0.1:0").expect("bind relay inner");
        for s in [&outer, &inner] {
            s.set_nonblocking(true).expect("nonblocking");
        }
        sockets.push((outer, inner, SocketAddr::from(([127, 0, 0, 1], p))));
    }
    let sockets = Arc::new(sockets);
    let mut threads = Vec::new();
    // Receivers: one thread polls every socket (short timeouts) and schedules sends.
    {
        let (stop, queue, sockets, dropped) = (
            stop.clone(),
            queue.clone(),
            sockets.clone(),
            dropped.clone(),
        );
        let delivered = delivered_to_phone.clone();
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng(0x5eed_1234_abcd_9876);
            let mut peers: HashMap<usize, SocketAddr> = HashMap::new();
            let mut seq = 0u64;
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                let mut idle = true;
                for (i, (outer, inner, real)) in sockets.iter().enumerate() {
                    // Outer side: from baresip, to outdial's real socket via `inner`.
                    // Inner side: from outdial, back to baresip via `outer`.
                    for (side, sock) in [(0usize, outer), (1usize, inner)] {
                        while let Ok((n, from)) = sock.recv_from(&mut buf) {
                            idle = false;
                            let dest = if side == 0 {
                                peers.insert(i, from);
                                *real
                            } else {
                                match peers.get(&i) {
                                    Some(p) => *p,
                                    None => continue,
                                }
                            };
                            if rng.next() < LOSS {
                                dropped.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            // What reaches the phone from outdial (PCMU, 20 ms).
                            if side == 1 {
                                if let Some(p) = pcmu_frame(&buf[..n]) {
                                    delivered.lock().expect("delivered").push(p);
                                }
                            }
                            let mut delay = DELAY_MS + (rng.next() * 2.0 - 1.0) * JITTER_MS;
                            if rng.next() < REORDER {
                                delay += 40.0;
                            }
                            let due =
                                Instant::now() + Duration::from_micros((delay * 1000.0) as u64);
                            seq += 1;
                            // Send from the other socket of the pair.
                            let via = i * 2 + (1 - side);
                            queue.lock().expect("queue").push(Reverse((
                                due,
                                seq,
                                via,
                                dest,
                                buf[..n].to_vec(),
                            )));
                        }
                    }
                }
                if idle {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }));
    }
    // Sender: sends each datagram when due.
    {
        let (stop, queue, sockets, forwarded) = (
            stop.clone(),
            queue.clone(),
            sockets.clone(),
            forwarded.clone(),
        );
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let next = {
                    let mut q = queue.lock().expect("queue");
                    match q.peek() {
                        Some(Reverse((due, ..))) if *due <= Instant::now() => q.pop(),
                        _ => None,
                    }
                };
                match next {
                    Some(Reverse((_, _, via, dest, bytes))) => {
                        let (outer, inner, _) = &sockets[via / 2];
                        let sock = if via % 2 == 0 { outer } else { inner };
                        if sock.send_to(&bytes, dest).is_ok() {
                            forwarded.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    None => std::thread::sleep(Duration::from_micros(200)),
                }
            }
        }));
    }
    Relay {
        stop,
        threads,
        forwarded,
        dropped,
        delivered_to_phone,
    }
}

/// The audio the link delivered to the phone, rebuilt from RTP sequence numbers: a lost
/// packet is 20 ms of silence, so the result stays time-aligned. (baresip 1.0.0's own
/// recording skips frames its jitter buffer misses, which shortens it and defeats an
/// alignment-based comparison; this is what it was given.)
fn rebuild(packets: &[(u16, Vec<u8>)]) -> Vec<i16> {
    let Some((first, _)) = packets.first() else {
        return Vec::new();
    };
    let mut by_index: HashMap<i64, &[u8]> = HashMap::new();
    for (seq, payload) in packets {
        let delta = seq.wrapping_sub(*first) as i16 as i64;
        by_index.insert(delta, payload);
    }
    let lo = by_index.keys().min().copied().unwrap_or(0);
    let hi = by_index.keys().max().copied().unwrap_or(0);
    let mut out = Vec::new();
    for i in lo..=hi {
        match by_index.get(&i) {
            Some(p) => out.extend(p.iter().map(|b| ulaw_decode(*b))),
            None => out.extend(std::iter::repeat_n(0i16, 160)),
        }
    }
    out
}

/// A call to baresip across `link`: we play a file and press 1357, baresip plays its own and
/// records; checks that audio got through both ways and every digit arrived once, and, on an
/// impaired link, that the link and our call record show the damage.
fn call_baresip_across(link: LinkSetup, name: &str) {
    let dir = test_dir(name);
    let d = dir.path();
    let ours = d.join("ours.wav");
    speech_wav_padded(
        &ours,
        "This call crosses a bad network. Seven eight nine. The words should still come through.",
        1.0,
        1.0,
    );
    let phone_wav = d.join("phone.wav");
    speech_wav_padded(
        &phone_wav,
        "Hello, you have reached the lossy line. Please leave your digits after the tone.",
        0.2,
        1.0,
    );
    let rec = d.join("received.wav");
    let phone = Baresip::start_at(d, &phone_wav, &link.phone());
    let run = run_call_in(
        link.outdial(d),
        &[
            &phone.uri(),
            "--dtmf",
            "1357",
            "--play",
            path_str(&ours),
            "--record",
            path_str(&rec),
            "--max-duration",
            "30",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.outcome(), "answered", "{}\n{}", run.json, run.stderr);
    assert!(phone.wait_call_ended(Duration::from_secs(15)));
    let delivered = rebuild(&link.delivered_to_phone());
    let (forwarded, dropped) = link.counts();
    let impaired = link.impaired();
    drop(link);
    eprintln!("link forwarded {forwarded}, dropped {dropped}");
    assert!(
        forwarded > 300,
        "the RTP went through the link: {forwarded}"
    );
    let rtp = &run.json["rtp"];
    eprintln!("rtp: {rtp}");
    if impaired {
        assert!(dropped > 0, "the link lost packets");
        // The call record shows the link: loss, jitter, RTT (from baresip's RTCP reports).
        assert!(rtp["lost"].as_i64().unwrap_or(0) > 0, "{rtp}");
        assert!(rtp["jitter_ms"].as_f64().unwrap_or(0.0) > 1.0, "{rtp}");
        assert!(rtp["concealed"].as_u64().unwrap_or(0) > 0, "{rtp}");
    } else {
        assert_eq!(rtp["lost"].as_i64(), Some(0), "{rtp}");
    }

    let (corr, lag) = best_correlation(&read_wav_8k(&ours), &delivered, 16000);
    eprintln!("the phone was given our file: {corr:.3} at lag {lag}");
    assert!(corr > 0.8, "what the link delivered vs our file: {corr:.3}");
    let (corr, lag) = best_correlation(&read_wav_8k(&phone.source), &read_wav_8k(&rec), 16000);
    eprintln!("we heard baresip: {corr:.3} at lag {lag}");
    assert!(corr > 0.8, "our recording vs baresip's source: {corr:.3}");

    assert_eq!(
        phone.dtmf_heard(),
        "1357",
        "each digit exactly once; baresip log:\n{}",
        tail(&phone.log(), 40)
    );
}

#[test]
fn audio_and_dtmf_survive_loss_jitter_and_reordering() {
    call_baresip_across(LinkSetup::open(), "impaired");
}

#[test]
fn a_call_crosses_the_namespaces_on_a_clean_veth() {
    // The netem path minus netem, on any kernel: outdial in one namespace, baresip in the
    // other, the phone's side read off the veth.
    call_baresip_across(LinkSetup::clean_veth(), "netns-clean");
}

#[test]
fn far_end_digits_cross_the_bad_link_once_each() {
    // sipp answers and presses 159# (RFC 4733, with its payload-type quirk); its packets reach
    // us through the impaired link.
    let dir = test_dir("impaired-dtmf");
    let d = dir.path();
    let link = LinkSetup::open();
    let sipp = Sipp::uas(d, "uas_dtmf.xml").at(link.phone()).start();
    let run = run_call_in(
        link.outdial(d),
        &[&sipp.uri("15551230012"), "--max-duration", "10"],
        Duration::from_secs(30),
    );
    let sipp_run = sipp.wait(Duration::from_secs(20));
    let (forwarded, _) = link.counts();
    drop(link);
    assert_eq!(run.outcome(), "answered", "{}", run.json);
    assert!(
        forwarded > 50,
        "sipp's RTP went through the link: {forwarded}"
    );
    assert_eq!(run.json["dtmf_received"], "159#", "{}", run.json);
    sipp_run.assert_passed("dtmf over the impaired link");
}

#[test]
fn namespaces_and_veth_carry_udp() {
    // The netem path's plumbing, whatever the kernel: two namespaces, a veth pair, addresses,
    // UDP both ways, cleanup on drop and on panic.
    let net = NetnsPair::create().expect("network namespaces and a veth pair (needs root)");
    let a = in_netns(&net.a, || UdpSocket::bind((ADDR_A, 0))).expect("bind in A");
    let b = in_netns(&net.b, || UdpSocket::bind((ADDR_B, 0))).expect("bind in B");
    for s in [&a, &b] {
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
    }
    let mut buf = [0u8; 64];
    a.send_to(b"over the veth", b.local_addr().expect("addr"))
        .expect("send A to B");
    let (n, from) = b.recv_from(&mut buf).expect("B receives from A");
    assert_eq!(
        (&buf[..n], from),
        (&b"over the veth"[..], a.local_addr().expect("addr"))
    );
    b.send_to(b"and back", from).expect("send B to A");
    let (n, from) = a.recv_from(&mut buf).expect("A receives from B");
    assert_eq!(
        (&buf[..n], from),
        (&b"and back"[..], b.local_addr().expect("addr"))
    );

    // netem, where the kernel has it: every datagram waits 40 ± 20 ms each way.
    match net.netem(&["delay", "40ms", "20ms"]) {
        Ok(()) => {
            let t = Instant::now();
            a.send_to(b"slow", b.local_addr().expect("addr"))
                .expect("send");
            b.recv_from(&mut buf).expect("delayed datagram");
            let took = t.elapsed();
            assert!(took >= Duration::from_millis(19), "netem delay: {took:?}");
            eprintln!("netem delayed a datagram by {took:?}");
        }
        Err(e) => eprintln!(
            "netem not checked: this kernel cannot run it ({})",
            e.lines().last().unwrap_or("")
        ),
    }

    let names = [net.a.clone(), net.b.clone()];
    drop(net);
    let listed = |name: &str| {
        Command::new("ip")
            .args(["netns", "list"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains(name))
            .unwrap_or(false)
    };
    for n in &names {
        assert!(!listed(n), "{n} deleted on drop");
    }
    // A test that panics with the pair alive still deletes it (the panic message below is
    // this check's, on purpose).
    let made = Arc::new(Mutex::new(Vec::new()));
    let seen = made.clone();
    let panicked = std::thread::spawn(move || {
        let net = NetnsPair::create().expect("pair");
        seen.lock().expect("names").push(net.a.clone());
        panic!("on purpose, with the namespaces alive");
    })
    .join();
    assert!(panicked.is_err());
    for n in made.lock().expect("names").iter() {
        assert!(!listed(n), "{n} deleted when its test panicked");
    }
}

fn path_str(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}
