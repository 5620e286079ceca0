//! Hot paths of the media engine (`cargo bench --bench media`): RTP parse, G.711 decode +
//! encode of one 20 ms frame, one packet through a call's jitter buffer and decoder (on a
//! simulated 20 ms clock), and one packet through a linked leg's relay path (header rewrite,
//! as is and PCMU→PCMA), and the
//! tone detectors on a second of audio. Each bench is short (20 samples, about a second). `outdial bench
//! media` measures the whole engine with sockets.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use outdial::bench::calls::call_jitter_config;
use outdial::bench::gen::tone_payload;
use outdial::media::dtmf::Rfc4733Sender;
use outdial::media::jitter::JitterBuffer;
use outdial::media::link::{InKind, OutStream, RelayTx};
use outdial::media::rtp::{write_rtp, RtpPacket, RtpSender};
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
    // One call's receive path on a simulated clock: packet k arrives 20 ms after packet k - 1
    // and the frame due then plays out and is decoded (40 ms of jitter buffer).
    let mut jb = JitterBuffer::new(call_jitter_config());
    let mut input = packet();
    let t0 = Instant::now();
    let mut k = 0u32;
    g.bench_function("call_packet_jitter_decode", |b| {
        b.iter(|| {
            set_sequence(&mut input, k);
            let now = t0 + FRAME * k;
            if let Ok(p) = RtpPacket::try_parse(black_box(&input)) {
                jb.push(&p, now);
            }
            let mut decoded = 0;
            while let Some(frame) = jb.pop(now) {
                pcm.clear();
                Codec::Pcmu.decode(frame.payload, &mut pcm);
                decoded += pcm.len();
            }
            k += 1;
            black_box(decoded)
        })
    });
    g.finish();
}

fn relay_paths(c: &mut Criterion) {
    let mut g = c.benchmark_group("relay");
    g.throughput(Throughput::Elements(1));
    for (name, to) in [
        ("forward_same_codec", Codec::Pcmu),
        ("forward_pcmu_to_pcma", Codec::Pcma),
    ] {
        let mut relay = RelayTx::new();
        let mut sender = RtpSender::new(7, 0, 0);
        let mut dtmf = Rfc4733Sender::new();
        let mut input = packet();
        let mut out = Vec::with_capacity(2048);
        let mut k = 0u32;
        let to = OutStream {
            codec: to,
            dtmf_pt: Some(101),
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                set_sequence(&mut input, k);
                k += 1;
                match RtpPacket::try_parse(black_box(&input)) {
                    Ok(p) => {
                        relay.forward(
                            &p,
                            InKind::Audio(Codec::Pcmu),
                            to,
                            &mut dtmf,
                            &mut sender,
                            &mut out,
                        );
                        out.len()
                    }
                    Err(_) => 0,
                }
            })
        });
    }
    g.finish();
}

/// The beep/SIT/fax detectors on one second of non-silent audio (a 440 Hz tone under white
/// noise, so every 10 ms hop runs the spectrum): 50 frames of 20 ms, as a call's answer feeds them.
fn tone_detection(c: &mut Criterion) {
    use outdial::media::tones::ToneDetectors;
    let mut seed = 0x2545_f491u32;
    let audio: Vec<i16> = (0..8000)
        .map(|n| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let noise = (seed % 2001) as f32 - 1000.0;
            let tone = 4000.0 * (2.0 * std::f32::consts::PI * 440.0 * n as f32 / 8000.0).sin();
            (tone + noise) as i16
        })
        .collect();
    let mut g = c.benchmark_group("tones");
    g.throughput(Throughput::Elements(50));
    g.bench_function("detectors_1s_of_audio", |b| {
        let mut tones = ToneDetectors::new();
        let mut at_ms = 0u64;
        b.iter(|| {
            let mut events = 0usize;
            for frame in audio.chunks(160) {
                events += tones.process(black_box(frame), at_ms).len();
                at_ms += 20;
            }
            events
        })
    });
    // A busy node: 2,000 calls' detectors, each taking its next 20 ms frame in turn (their state
    // does not stay in the cache between two frames of one call).
    g.throughput(Throughput::Elements(2000));
    g.bench_function("detectors_2000_calls_one_frame_each", |b| {
        let mut calls: Vec<(ToneDetectors, usize)> =
            (0..2000).map(|i| (ToneDetectors::new(), i % 50)).collect();
        b.iter(|| {
            let mut events = 0usize;
            for (tones, next) in &mut calls {
                let frame = &audio[*next * 160..(*next + 1) * 160];
                events += tones.process(black_box(frame), *next as u64 * 20).len();
                *next = (*next + 1) % 50;
            }
            events
        })
    });
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
    targets = codec_paths, relay_paths, tone_detection
}
criterion_main!(benches);
