//! outdial's side of the media benchmark: the RTP relay a bridged call runs, for many calls
//! at once, on at most two worker threads.
//!
//! Each stream (one bridged call) has two UDP sockets on 127.0.0.1: leg A and leg B. What
//! arrives on leg A is parsed ([`RtpPacket::try_parse`]), decoded to PCM ([`Codec::decode`]),
//! re-encoded ([`Codec::encode`]) and sent from leg B to B's peer; what arrives on leg B goes
//! the same way to A's peer. The RTP header (SSRC, sequence number, timestamp, marker) is
//! carried over as a forwarding relay does; RTCP and payload types that are not G.711 (DTMF
//! events) pass through unchanged; datagrams that are not RTP are dropped and counted.
//!
//! Cost model (why it beats a packet-at-a-time relay): each worker owns its sockets and one
//! level-triggered epoll; one `epoll_wait` reports every ready socket, each ready socket is
//! drained with one `recvmmsg`, and what it produced leaves with one `sendmmsg` from the
//! partner leg. No locks, no channels, no allocation per packet (the batches and the PCM
//! buffer are reused), counters published once per wake-up. An optional coalescing sleep
//! after each round trades up to that much added latency for fewer wake-ups under light load.
//!
//! The unsafe system calls live in [`super::sys`]; this module is safe code.

use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use super::sys::{Epoll, RecvBatch, SendBatch};
use crate::media::rtp::{is_rtcp, write_rtp, RtpPacket};
use crate::media::{Codec, FRAME_SAMPLES};

/// Datagrams one `recvmmsg` / `sendmmsg` moves at most.
pub const BATCH: usize = 32;
/// Largest datagram relayed whole (longer ones are dropped as truncated).
const SLOT_LEN: usize = 2048;
/// Socket buffer size asked for on every relay socket (the kernel may cap it at rmem_max).
pub const SOCKET_BUFFER: usize = 1 << 20;

/// Where one stream's legs send: leg A's packets go out of leg B to `b_peer`, and back.
#[derive(Debug, Clone, Copy)]
pub struct StreamSpec {
    pub a_peer: SocketAddrV4,
    pub b_peer: SocketAddrV4,
}

/// What happened to one received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relayed {
    /// Decoded and re-encoded (G.711 audio).
    Transcoded,
    /// Forwarded unchanged (RTCP, or an RTP payload type that is not G.711).
    PassedThrough,
    /// Not RTP: dropped.
    Invalid,
}

/// The per-packet media work, sans-IO: parse → decode → (hook) → encode → write.
/// Owns the PCM scratch buffer so nothing allocates per packet.
pub struct MediaPath {
    pcm: Vec<i16>,
}

impl Default for MediaPath {
    fn default() -> Self {
        Self::new()
    }
}

impl MediaPath {
    pub fn new() -> Self {
        MediaPath {
            pcm: Vec::with_capacity(4 * FRAME_SAMPLES),
        }
    }

    /// Writes into `out` (cleared) the packet to send for the received datagram `input`.
    pub fn process(&mut self, input: &[u8], out: &mut Vec<u8>) -> Relayed {
        out.clear();
        if is_rtcp(input) {
            out.extend_from_slice(input);
            return Relayed::PassedThrough;
        }
        let packet = match RtpPacket::try_parse(input) {
            Ok(p) => p,
            Err(_) => return Relayed::Invalid,
        };
        let codec = match Codec::from_payload_type(packet.payload_type) {
            Some(c) => c,
            None => {
                out.extend_from_slice(input);
                return Relayed::PassedThrough;
            }
        };
        self.pcm.clear();
        codec.decode(packet.payload, &mut self.pcm);
        // ── Hook: per-leg processing of the 20 ms PCM frame goes here. ──
        // The jitter buffer (src/media/jitter.rs, being written) will take
        // (sequence, timestamp, pcm) and hand back the frame to play out on the other leg;
        // recording, AMD taps and mixing read `self.pcm` at the same spot. Until then the
        // frame is forwarded as received.
        write_rtp(
            out,
            packet.marker,
            packet.payload_type,
            packet.sequence,
            packet.timestamp,
            packet.ssrc,
            &[],
        );
        codec.encode(&self.pcm, out);
        Relayed::Transcoded
    }
}

/// Counters of one worker, published once per wake-up.
#[derive(Debug, Default)]
pub struct Counters {
    pub received: AtomicU64,
    pub sent: AtomicU64,
    pub invalid: AtomicU64,
    pub send_dropped: AtomicU64,
    pub io_errors: AtomicU64,
    pub wakeups: AtomicU64,
}

/// A copy of the counters summed over workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub received: u64,
    pub sent: u64,
    pub invalid: u64,
    pub send_dropped: u64,
    pub io_errors: u64,
    pub wakeups: u64,
}

impl CounterSnapshot {
    fn add(&mut self, c: &Counters) {
        self.received += c.received.load(Ordering::Relaxed);
        self.sent += c.sent.load(Ordering::Relaxed);
        self.invalid += c.invalid.load(Ordering::Relaxed);
        self.send_dropped += c.send_dropped.load(Ordering::Relaxed);
        self.io_errors += c.io_errors.load(Ordering::Relaxed);
        self.wakeups += c.wakeups.load(Ordering::Relaxed);
    }
}

/// One socket of a worker: the socket, its partner leg's index and where the partner sends.
struct Leg {
    socket: UdpSocket,
    partner: usize,
    dest: SocketAddrV4,
}

/// Binds the two legs of every stream; returns the legs plus each stream's A and B addresses.
fn bind_legs(streams: &[StreamSpec]) -> io::Result<(Vec<Leg>, Vec<SocketAddrV4>)> {
    let mut legs = Vec::with_capacity(2 * streams.len());
    let mut a_addrs = Vec::with_capacity(streams.len());
    for s in streams {
        let a = bind_loopback()?;
        let b = bind_loopback()?;
        a_addrs.push(local_v4(&a)?);
        let i = legs.len();
        // What arrives on A leaves from B towards B's peer, and the reverse.
        legs.push(Leg {
            socket: a,
            partner: i + 1,
            dest: s.b_peer,
        });
        legs.push(Leg {
            socket: b,
            partner: i,
            dest: s.a_peer,
        });
    }
    Ok((legs, a_addrs))
}

/// A non-blocking UDP socket on 127.0.0.1 with large buffers.
pub fn bind_loopback() -> io::Result<UdpSocket> {
    let s = UdpSocket::bind("127.0.0.1:0")?;
    s.set_nonblocking(true)?;
    let r = socket2::SockRef::from(&s);
    // Best effort: the kernel caps these at net.core.[rw]mem_max.
    let _ = r.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = r.set_send_buffer_size(SOCKET_BUFFER);
    Ok(s)
}

/// The IPv4 address a socket is bound to.
pub fn local_v4(s: &UdpSocket) -> io::Result<SocketAddrV4> {
    match s.local_addr()? {
        SocketAddr::V4(a) => Ok(a),
        SocketAddr::V6(a) => Err(io::Error::other(format!("{a} is not IPv4"))),
    }
}

/// One worker's event loop state. Build it on the thread that runs it.
pub struct Worker {
    epoll: Epoll,
    legs: Vec<Leg>,
    rx: RecvBatch,
    tx: SendBatch,
    media: MediaPath,
    counters: Arc<Counters>,
}

impl Worker {
    /// A worker relaying `streams` on freshly bound sockets; also returns each stream's leg A
    /// address (where the A party sends).
    pub fn bind(
        streams: &[StreamSpec],
        counters: Arc<Counters>,
    ) -> io::Result<(Worker, Vec<SocketAddrV4>)> {
        let (legs, a_addrs) = bind_legs(streams)?;
        Ok((Worker::new(legs, counters)?, a_addrs))
    }

    fn new(legs: Vec<Leg>, counters: Arc<Counters>) -> io::Result<Worker> {
        let epoll = Epoll::new(legs.len().clamp(1, 1024))?;
        for (i, leg) in legs.iter().enumerate() {
            epoll.add_readable(leg.socket.as_raw_fd(), i as u64)?;
        }
        Ok(Worker {
            epoll,
            legs,
            rx: RecvBatch::new(BATCH, SLOT_LEN, false),
            tx: SendBatch::new(BATCH, SLOT_LEN),
            media: MediaPath::new(),
            counters,
        })
    }

    /// Waits up to `timeout` for ready sockets and relays everything they hold.
    /// Returns the number of datagrams sent.
    pub fn poll_once(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        let ready = self.epoll.wait(timeout)?;
        let (mut received, mut sent, mut invalid, mut dropped, mut errors) = (0, 0, 0, 0, 0);
        for e in 0..ready {
            let Some(token) = self.epoll.token(e) else {
                continue;
            };
            let idx = token as usize;
            let Some(leg) = self.legs.get(idx) else {
                continue;
            };
            let (partner, dest) = (leg.partner, leg.dest);
            // Level-triggered: a socket left with data is reported again next round, so a
            // bounded number of batches per socket keeps the others from starving.
            for _ in 0..4 {
                let n = match self.rx.recv(&self.legs[idx].socket) {
                    Ok(n) => n,
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                };
                received += n;
                for i in 0..n {
                    let input = self.rx.packet(i);
                    let media = &mut self.media;
                    if self.rx.truncated(i) {
                        invalid += 1;
                        continue;
                    }
                    let mut verdict = Relayed::Invalid;
                    let queued = self
                        .tx
                        .push(dest, |out| verdict = media.process(input, out));
                    if queued && verdict == Relayed::Invalid {
                        // Take the slot back: nothing to send for this datagram.
                        self.tx.pop();
                        invalid += 1;
                    }
                }
                if !self.tx.is_empty() {
                    let queued = self.tx.len();
                    match self.tx.send(&self.legs[partner].socket) {
                        Ok(k) => {
                            sent += k;
                            dropped += queued - k;
                        }
                        Err(_) => {
                            errors += 1;
                            dropped += queued;
                        }
                    }
                }
                if n < self.rx.capacity() {
                    break;
                }
            }
        }
        let c = &self.counters;
        c.wakeups.fetch_add(1, Ordering::Relaxed);
        if received > 0 {
            c.received.fetch_add(received as u64, Ordering::Relaxed);
            c.sent.fetch_add(sent as u64, Ordering::Relaxed);
        }
        if invalid + dropped + errors > 0 {
            c.invalid.fetch_add(invalid as u64, Ordering::Relaxed);
            c.send_dropped.fetch_add(dropped as u64, Ordering::Relaxed);
            c.io_errors.fetch_add(errors as u64, Ordering::Relaxed);
        }
        Ok(sent)
    }

    /// Relays until `stop` is set; sleeps `coalesce` after each round when it is non-zero.
    pub fn run(mut self, stop: &AtomicBool, coalesce: Duration) -> io::Result<()> {
        while !stop.load(Ordering::Relaxed) {
            self.poll_once(Some(Duration::from_millis(50)))?;
            if !coalesce.is_zero() {
                std::thread::sleep(coalesce);
            }
        }
        Ok(())
    }
}

/// The relay: worker threads, each owning a share of the streams.
pub struct Relay {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    counters: Vec<Arc<Counters>>,
    a_addrs: Vec<SocketAddrV4>,
}

impl Relay {
    /// Binds every stream's legs and starts `workers` threads (at least one); stream `i` goes to
    /// worker `i % workers`. Returns once every worker is ready.
    pub fn start(streams: &[StreamSpec], workers: usize, coalesce: Duration) -> io::Result<Relay> {
        let workers = workers.clamp(1, streams.len().max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::with_capacity(workers);
        let mut counters = Vec::with_capacity(workers);
        let mut per_worker_addrs = Vec::with_capacity(workers);
        let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
        let mut started = Ok(());
        for w in 0..workers {
            let mine: Vec<StreamSpec> = streams.iter().skip(w).step_by(workers).copied().collect();
            // Sockets are bound here (the addresses are needed at once); the epoll and the
            // batches are built on the worker's own thread.
            let (legs, a_addrs) = match bind_legs(&mine) {
                Ok(v) => v,
                Err(e) => {
                    started = Err(e);
                    break;
                }
            };
            per_worker_addrs.push(a_addrs);
            let c = Arc::new(Counters::default());
            counters.push(c.clone());
            let stop = stop.clone();
            let ready = ready_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("relay-{w}"))
                .spawn(move || {
                    let worker = match Worker::new(legs, c) {
                        Ok(w) => w,
                        Err(e) => {
                            let _ = ready.send(Err(io::Error::new(e.kind(), e.to_string())));
                            return Err(e);
                        }
                    };
                    let _ = ready.send(Ok(()));
                    worker.run(&stop, coalesce)
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    started = Err(e);
                    break;
                }
            }
        }
        drop(ready_tx);
        for _ in 0..threads.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => started = started.and(Err(e)),
                Err(_) => started = started.and(Err(io::Error::other("relay worker died"))),
            }
        }
        let mut relay = Relay {
            stop,
            threads,
            counters,
            a_addrs: Vec::new(),
        };
        if let Err(e) = started {
            let _ = relay.stop();
            return Err(e);
        }
        // Stream i lives on worker i % workers at position i / workers.
        let mut a_addrs = Vec::with_capacity(streams.len());
        for i in 0..streams.len() {
            match per_worker_addrs
                .get(i % workers)
                .and_then(|v| v.get(i / workers))
            {
                Some(a) => a_addrs.push(*a),
                None => return Err(io::Error::other("relay lost track of a stream")),
            }
        }
        relay.a_addrs = a_addrs;
        Ok(relay)
    }

    /// Where the A party of each stream sends (leg A's address), in stream order.
    pub fn a_addrs(&self) -> &[SocketAddrV4] {
        &self.a_addrs
    }

    pub fn counters(&self) -> CounterSnapshot {
        let mut s = CounterSnapshot::default();
        for c in &self.counters {
            s.add(c);
        }
        s
    }

    /// Stops and joins the workers; returns the final counters or the first worker error.
    pub fn stop(mut self) -> io::Result<CounterSnapshot> {
        self.stop.store(true, Ordering::Relaxed);
        let mut result = Ok(());
        for t in self.threads.drain(..) {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = result.and(Err(e)),
                Err(_) => result = result.and(Err(io::Error::other("relay worker panicked"))),
            }
        }
        result.map(|()| self.counters())
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::g711::linear_to_ulaw;

    fn tone() -> Vec<u8> {
        (0..160)
            .map(|i| {
                let x = (i as f64 * 2.0 * std::f64::consts::PI / 8.0 + 0.4).sin();
                linear_to_ulaw((x * 8000.0) as i16)
            })
            .collect()
    }

    #[test]
    fn pcmu_roundtrip_keeps_packet() {
        let mut pkt = Vec::new();
        write_rtp(&mut pkt, true, 0, 7, 1234, 0xABCD, &tone());
        let mut out = Vec::new();
        let mut m = MediaPath::new();
        assert_eq!(m.process(&pkt, &mut out), Relayed::Transcoded);
        assert_eq!(out, pkt);
        // Garbage is dropped, RTCP and DTMF events pass through.
        assert_eq!(m.process(&[1, 2, 3], &mut out), Relayed::Invalid);
        let rtcp = [0x80, 200, 0, 1, 0, 0, 0, 1];
        assert_eq!(m.process(&rtcp, &mut out), Relayed::PassedThrough);
        assert_eq!(out, rtcp);
        write_rtp(&mut pkt, false, 101, 8, 1234, 0xABCD, &[1, 0x80, 0, 160]);
        assert_eq!(m.process(&pkt, &mut out), Relayed::PassedThrough);
        assert_eq!(out, pkt);
    }

    #[test]
    fn relays_both_ways_between_legs() {
        let a_party = bind_loopback().unwrap();
        let b_party = bind_loopback().unwrap();
        let spec = StreamSpec {
            a_peer: local_v4(&a_party).unwrap(),
            b_peer: local_v4(&b_party).unwrap(),
        };
        let relay = Relay::start(&[spec, spec, spec], 2, Duration::ZERO).unwrap();
        assert_eq!(relay.a_addrs().len(), 3);
        let mut pkt = Vec::new();
        write_rtp(&mut pkt, false, 0, 1, 160, 42, &tone());
        for a in relay.a_addrs() {
            a_party.send_to(&pkt, a).unwrap();
        }
        let mut buf = [0u8; 2048];
        let mut got = 0;
        b_party.set_nonblocking(false).unwrap();
        b_party
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        while got < 3 {
            let (n, _) = b_party.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &pkt[..]);
            got += 1;
        }
        let c = relay.stop().unwrap();
        assert_eq!((c.received, c.sent, c.invalid), (3, 3, 0));
    }
}
