//! Hot paths of the media relay (`cargo bench --bench media`):
//! RTP parse, G.711 decode + encode of one 20 ms frame, the whole per-packet media work of a leg
//! (parse → jitter buffer → decode → encode → write, on a simulated 20 ms clock), and one packet
//! per stream for 1 and 32 streams through the relay worker's real tick (epoll + recvmmsg with
//! kernel timestamps → jitter buffer → sendmmsg) on 127.0.0.1. The socket benches include the
//! bench's own send and receive, so they bound the relay's cost from above. Each bench is short
//! (20 samples, about a second).

use std::hint::black_box;
use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use outdial::bench::gen::tone_payload;
use outdial::bench::relay::{
    bind_loopback, call_jitter_config, local_v4, Counters, LegMedia, StreamSpec, Worker,
};
use outdial::media::rtp::{write_rtp, RtpPacket};
use outdial::media::Codec;

fn packet() -> Vec<u8> {
    let mut p = Vec::new();
    write_rtp(
        &mut p,
        false,
        0,
        4711,
        160 * 4711,
        0x1234_5678,
        &tone_payload(),
    );
    p
}

/// Makes `pkt` packet `k` of its stream: sequence number 4711 + k, timestamp 160 × that.
fn set_sequence(pkt: &mut [u8], k: u32) {
    let seq = 4711u32.wrapping_add(k);
    pkt[2..4].copy_from_slice(&(seq as u16).to_be_bytes());
    pkt[4..8].copy_from_slice(&seq.wrapping_mul(160).to_be_bytes());
}

const FRAME: Duration = Duration::from_millis(20);

fn codec_paths(c: &mut Criterion) {
    let pkt = packet();
    let mut g = c.benchmark_group("media");
    g.throughput(Throughput::Elements(1));
    g.bench_function("rtp_parse", |b| {
        b.iter(|| RtpPacket::try_parse(black_box(&pkt)).map(|p| p.sequence))
    });
    let payload = tone_payload();
    let mut pcm = Vec::with_capacity(160);
    let mut out = Vec::with_capacity(160);
    g.bench_function("pcmu_decode_encode_frame", |b| {
        b.iter(|| {
            pcm.clear();
            Codec::Pcmu.decode(black_box(&payload), &mut pcm);
            out.clear();
            Codec::Pcmu.encode(&pcm, &mut out);
            black_box(out.len())
        })
    });
    // One leg on a simulated clock: each iteration packet k arrives 20 ms after packet k - 1
    // and the frame due then plays (packet k - 2: 40 ms of jitter buffer).
    let mut leg = LegMedia::new(call_jitter_config());
    let (mut pcm, mut buf) = (Vec::with_capacity(320), Vec::with_capacity(2048));
    let mut input = packet();
    let t0 = Instant::now();
    let mut k = 0u32;
    g.bench_function("leg_packet_jitter_decode_encode", |b| {
        b.iter(|| {
            set_sequence(&mut input, k);
            let now = t0 + FRAME * k;
            leg.receive(black_box(&input), now, &mut buf);
            let mut sent = 0;
            while leg.play(now, &mut pcm, &mut buf).is_some() {
                sent += buf.len();
            }
            k += 1;
            black_box(sent)
        })
    });
    g.finish();
}

/// A worker relaying `streams` streams from `a_party` to `b_party`.
fn relay_setup(streams: usize) -> (Worker, Vec<std::net::SocketAddrV4>, UdpSocket, UdpSocket) {
    let a_party = bind_loopback().expect("bind");
    let b_party = bind_loopback().expect("bind");
    let spec = StreamSpec {
        a_peer: local_v4(&a_party).expect("addr"),
        b_peer: local_v4(&b_party).expect("addr"),
    };
    let (worker, a_addrs) = Worker::bind(
        &vec![spec; streams],
        call_jitter_config(),
        Arc::new(Counters::default()),
    )
    .expect("worker");
    (worker, a_addrs, a_party, b_party)
}

/// Round `k` on a simulated 20 ms clock: sends packet `k` to every stream, runs one tick
/// (which takes them in and plays out the frames due, packet k - 2 of each stream once the
/// 40 ms jitter buffer has filled), receives what the tick sent.
fn relay_round(
    worker: &mut Worker,
    a_addrs: &[std::net::SocketAddrV4],
    a_party: &UdpSocket,
    b_party: &UdpSocket,
    (pkt, k, t0): (&mut [u8], u32, Instant),
    buf: &mut [u8],
) {
    set_sequence(pkt, k);
    for a in a_addrs {
        a_party.send_to(pkt, a).expect("send");
    }
    let relayed = worker.tick(t0 + FRAME * k).expect("tick");
    let mut got = 0;
    while got < relayed {
        match b_party.recv_from(buf) {
            Ok(_) => got += 1,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) => panic!("recv: {e}"),
        }
    }
}

fn relay_paths(c: &mut Criterion) {
    let mut pkt = packet();
    let mut buf = [0u8; 2048];
    let mut g = c.benchmark_group("relay");
    for streams in [1usize, 32] {
        let (mut worker, a_addrs, a_party, b_party) = relay_setup(streams);
        let t0 = Instant::now();
        let mut k = 0;
        g.throughput(Throughput::Elements(streams as u64));
        g.bench_function(
            format!("tick_jitter_recvmmsg_sendmmsg_{streams}_streams"),
            |b| {
                b.iter(|| {
                    let state = (pkt.as_mut_slice(), k, t0);
                    relay_round(&mut worker, &a_addrs, &a_party, &b_party, state, &mut buf);
                    k += 1;
                })
            },
        );
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = codec_paths, relay_paths
}
criterion_main!(benches);
