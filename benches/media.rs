//! Hot paths of the media relay (`cargo bench --bench media`):
//! RTP parse, G.711 decode + encode of one 20 ms frame, the whole per-packet media work, and one
//! packet / a batch of 32 through the relay's real epoll + recvmmsg + sendmmsg path on
//! 127.0.0.1. The socket benches include the bench's own send and receive, so they bound the
//! relay's cost from above. Each bench is short (20 samples, about a second).

use std::hint::black_box;
use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use outdial::bench::gen::tone_payload;
use outdial::bench::relay::{bind_loopback, local_v4, Counters, MediaPath, StreamSpec, Worker};
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
    let mut media = MediaPath::new();
    let mut buf = Vec::with_capacity(2048);
    g.bench_function("media_path_packet", |b| {
        b.iter(|| media.process(black_box(&pkt), &mut buf))
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
    let (worker, a_addrs) =
        Worker::bind(&vec![spec; streams], Arc::new(Counters::default())).expect("worker");
    (worker, a_addrs, a_party, b_party)
}

/// Sends one packet to every stream, relays until all came out, receives them.
fn relay_round(
    worker: &mut Worker,
    a_addrs: &[std::net::SocketAddrV4],
    a_party: &UdpSocket,
    b_party: &UdpSocket,
    pkt: &[u8],
    buf: &mut [u8],
) {
    for a in a_addrs {
        a_party.send_to(pkt, a).expect("send");
    }
    let mut relayed = 0;
    while relayed < a_addrs.len() {
        relayed += worker
            .poll_once(Some(Duration::from_secs(1)))
            .expect("poll");
    }
    let mut got = 0;
    while got < a_addrs.len() {
        match b_party.recv_from(buf) {
            Ok(_) => got += 1,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) => panic!("recv: {e}"),
        }
    }
}

fn relay_paths(c: &mut Criterion) {
    let pkt = packet();
    let mut buf = [0u8; 2048];
    let mut g = c.benchmark_group("relay");
    for streams in [1usize, 32] {
        let (mut worker, a_addrs, a_party, b_party) = relay_setup(streams);
        g.throughput(Throughput::Elements(streams as u64));
        g.bench_function(format!("epoll_recvmmsg_sendmmsg_{streams}_streams"), |b| {
            b.iter(|| relay_round(&mut worker, &a_addrs, &a_party, &b_party, &pkt, &mut buf))
        });
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
