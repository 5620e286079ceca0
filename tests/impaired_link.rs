//! A call to baresip over a bad link: 3 % loss, 40 ms ± 20 ms delay and 5 % extra
//! reordering on the RTP path, both ways. The audio must still correlate both
//! ways and our DTMF digits must reach baresip exactly once each.
//!
//! The link is a userspace impairment relay in this test: the kernel these
//! tests run on has no `sch_netem` (`tc qdisc … netem` answers "unknown
//! qdisc"), so `tc netem` cannot be used. outdial advertises 127.0.0.2 as its
//! RTP address (rtp.external_addr); the relay owns 127.0.0.2:PORT for each
//! port of outdial's range, impairs what baresip sends and forwards it to
//! outdial's real socket on 127.0.0.1:PORT. outdial latches (symmetric RTP)
//! onto the relay's inner socket, so its RTP comes back through the relay too.

mod common;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// Loss, base delay, jitter (uniform ±), reorder: the netem line.
const LOSS: f64 = 0.03;
const DELAY_MS: f64 = 40.0;
const JITTER_MS: f64 = 20.0;
const REORDER: f64 = 0.05;

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
/// RTP packets (sequence, payload) seen by the link.
type Captured = Arc<Mutex<Vec<(u16, Vec<u8>)>>>;

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
                            if side == 1 && n == 172 && buf[1] & 0x7f == 0 {
                                let seq = u16::from_be_bytes([buf[2], buf[3]]);
                                delivered
                                    .lock()
                                    .expect("delivered")
                                    .push((seq, buf[12..n].to_vec()));
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

#[test]
fn audio_and_dtmf_survive_loss_jitter_and_reordering() {
    let dir = test_dir("impaired");
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
    std::fs::write(
        d.join("outdial.toml"),
        "[rtp]\nbind_addr = \"127.0.0.1\"\nexternal_addr = \"127.0.0.2\"\n",
    )
    .expect("config");
    let (lo, hi) = free_rtp_range(20);
    let relay = start_relay(lo, hi);
    let phone = Baresip::start(d, &phone_wav);
    let cmd = outdial_cmd_with_rtp(d, &format!("{lo}-{hi}"));
    let run = run_call_in(
        cmd,
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
    let delivered = rebuild(&relay.delivered_to_phone.lock().expect("delivered"));
    let (forwarded, dropped) = (
        relay.forwarded.load(Ordering::Relaxed),
        relay.dropped.load(Ordering::Relaxed),
    );
    drop(relay);
    eprintln!("relay forwarded {forwarded}, dropped {dropped}");
    assert!(
        forwarded > 300,
        "the RTP went through the relay: {forwarded}"
    );
    assert!(dropped > 0, "the link lost packets");
    // The call record shows the link: loss, jitter, RTT (from baresip's RTCP reports).
    let rtp = &run.json["rtp"];
    assert!(rtp["lost"].as_i64().unwrap_or(0) > 0, "{rtp}");
    assert!(rtp["jitter_ms"].as_f64().unwrap_or(0.0) > 1.0, "{rtp}");
    assert!(rtp["concealed"].as_u64().unwrap_or(0) > 0, "{rtp}");
    eprintln!("rtp: {rtp}");

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
fn far_end_digits_cross_the_bad_link_once_each() {
    // sipp answers and presses 159# (RFC 4733, with its payload-type quirk); its packets reach
    // us through the impaired link because our SDP names the relay's address.
    let dir = test_dir("impaired-dtmf");
    let d = dir.path();
    std::fs::write(
        d.join("outdial.toml"),
        "[rtp]\nbind_addr = \"127.0.0.1\"\nexternal_addr = \"127.0.0.2\"\n",
    )
    .expect("config");
    let (lo, hi) = free_rtp_range(20);
    let relay = start_relay(lo, hi);
    let sipp = Sipp::uas(d, "uas_dtmf.xml").start();
    let cmd = outdial_cmd_with_rtp(d, &format!("{lo}-{hi}"));
    let run = run_call_in(
        cmd,
        &[&sipp.uri("15551230012"), "--max-duration", "10"],
        Duration::from_secs(30),
    );
    let sipp_run = sipp.wait(Duration::from_secs(20));
    let forwarded = relay.forwarded.load(Ordering::Relaxed);
    drop(relay);
    assert_eq!(run.outcome(), "answered", "{}", run.json);
    assert!(
        forwarded > 50,
        "sipp's RTP went through the link: {forwarded}"
    );
    assert_eq!(run.json["dtmf_received"], "159#", "{}", run.json);
    sipp_run.assert_passed("dtmf over the impaired link");
}

fn path_str(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}
