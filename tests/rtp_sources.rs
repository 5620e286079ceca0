//! Where RTP may come from during a real call: `outdial call` against a sipp UAS that streams a
//! pickup and then silence.
//!
//! * While the call is up, a plain UDP socket of the test (anyone who can reach the port range)
//!   injects RTP at our port — a loud tone and a key press, in bursts — and none of it may be
//!   heard (recording, DTMF, tone detection), take our audio, or go uncounted.
//! * A far end "behind a NAT": sipp's SDP names another port than the one it streams from (the
//!   scenario's `[media_port]` in `m=` replaced by a port nobody uses). The default
//!   `rtp_latching = "initial"` latches onto where the stream really comes from and hears it;
//!   a trunk with `rtp_latching = "off"` takes none of it.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const SIPP_WAIT: Duration = Duration::from_secs(30);

/// One RTP packet: version 2, no padding/extension/CSRC.
fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt & 0x7f];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// 1 s of a loud 1 kHz tone (what a beep detector would catch), then 1 s of DTMF "5".
fn injected_audio() -> Vec<i16> {
    let mut audio: Vec<i16> = (0..8000)
        .map(|n| {
            let x = (2.0 * std::f64::consts::PI * 1000.0 * n as f64 / 8000.0).sin();
            (20_000.0 * x) as i16
        })
        .collect();
    audio.extend(dtmf_tones("5", 0, 1000, 0));
    audio
}

/// Size of the recording's audio so far (bytes after the 44-byte header).
fn recorded_bytes(path: &Path) -> u64 {
    std::fs::metadata(path)
        .map(|m| m.len().saturating_sub(44))
        .unwrap_or(0)
}

struct Injection {
    /// RTP packets the injector sent.
    sent: u64,
    /// Datagrams that reached the injector's socket (our RTP, had it been redirected).
    received: u64,
    address: SocketAddr,
}

/// From a socket of its own, once the recording holds `after_ms` of the far end's audio (so
/// its stream has been taken first), sends `injected_audio()` (over and over) to `to` for 2 s,
/// three packets per 20 ms tick (each tick more than the latch threshold in a row), and
/// listens for anything sent back.
fn inject(to: SocketAddr, recording: &Path, after_ms: u64, stop: Arc<AtomicBool>) -> Injection {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind injector");
    socket.set_nonblocking(true).expect("nonblocking");
    let address = socket.local_addr().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(30);
    while recorded_bytes(recording) < after_ms * 16 {
        assert!(
            Instant::now() < deadline && !stop.load(Ordering::Relaxed),
            "the recording never grew: no far-end audio"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let ulaw: Vec<u8> = injected_audio().into_iter().map(ulaw_encode).collect();
    let mut received = 0u64;
    let drain = |socket: &UdpSocket| {
        let mut buf = [0u8; 2048];
        let mut n = 0;
        while socket.recv_from(&mut buf).is_ok() {
            n += 1;
        }
        n
    };
    let (mut sent, mut seq, mut ts) = (0u64, 7000u16, 90_000u32);
    let start = Instant::now();
    let frames: Vec<&[u8]> = ulaw.chunks(160).collect();
    for tick in 0..100usize {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let chunk = (0..3).map(|k| frames[(3 * tick + k) % frames.len()]);
        let due = start + Duration::from_millis(20 * tick as u64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        for frame in chunk {
            let packet = rtp(0, seq, ts, 0x1A7E_C7ED, frame);
            if socket.send_to(&packet, to).is_ok() {
                sent += 1;
            }
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(160);
        }
        received += drain(&socket);
    }
    // Anything redirected to us would keep coming for as long as the call lasts.
    let listen_until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < listen_until {
        received += drain(&socket);
        thread::sleep(Duration::from_millis(20));
    }
    Injection {
        sent,
        received,
        address,
    }
}

/// The largest RMS over 100 ms windows.
fn loudest_window(samples: &[i16]) -> f64 {
    samples.chunks(800).map(rms).fold(0.0, f64::max)
}

#[test]
fn rtp_injected_during_a_call_is_not_heard_not_latched_and_counted() {
    let dir = test_dir("rtp-injection");
    let d = dir.path();
    let far_end = d.join("far_end.wav");
    // A short pickup, then silence for longer than the call.
    speech_wav_padded(&far_end, "Hello?", 0.2, 10.0);
    let rec = d.join("received.wav");
    // One RTP port pair: the injector knows where to send (an attacker would sweep).
    let (lo, hi) = free_rtp_range(2);
    let sipp = Sipp::uas(d, "uas_answer_audio.xml")
        .stream_wav(&far_end)
        .start();
    let stop = Arc::new(AtomicBool::new(false));
    let injector = {
        let (rec, stop) = (rec.clone(), Arc::clone(&stop));
        let to = SocketAddr::from(([127, 0, 0, 1], lo));
        thread::spawn(move || inject(to, &rec, 1500, stop))
    };
    let run = run_call_in(
        outdial_cmd_with_rtp(d, &format!("{lo}-{hi}")),
        &[
            &sipp.uri("inject"),
            "--record",
            rec.to_str().expect("utf-8 path"),
            "--max-duration",
            "6",
        ],
        Duration::from_secs(60),
    );
    stop.store(true, Ordering::Relaxed);
    let injection = injector.join().expect("injector");
    let sipp_run = sipp.wait(SIPP_WAIT);

    assert!(run.status.success(), "stderr: {}", run.stderr);
    assert_eq!(run.outcome(), "answered", "{}", run.json);
    sipp_run.assert_passed("answered call (needs our ACK and BYE)");
    let rtp_json = &run.json["rtp"];
    assert!(
        injection.sent >= 150,
        "the injector sent {} packets during the call: {}",
        injection.sent,
        run.json
    );

    // Not latched: our audio kept going to the far end, never to the injector.
    assert_eq!(injection.received, 0, "our RTP reached the injector");
    let latched = rtp_json["latched_to"].as_str().unwrap_or("");
    assert_ne!(
        latched,
        injection.address.to_string(),
        "latched onto the injector: {}",
        run.json
    );
    assert!(rtp_json["latched_to"].is_null(), "{}", run.json);
    let (_, received) = run.rtp();
    assert!(
        received > 150,
        "the far end's stream was taken: {}",
        run.json
    );

    // Counted: every injected packet, and nothing else.
    assert_eq!(
        rtp_json["rejected_source"].as_u64(),
        Some(injection.sent),
        "{}",
        run.json
    );

    // Not heard: no digit, no beep, and the recording is the far end's silence.
    assert_eq!(run.json["dtmf_received"], "", "{}", run.json);
    assert_eq!(run.json["tones"], serde_json::json!([]), "{}", run.json);
    let recording = read_wav_8k(&rec);
    assert!(recording.len() > 4 * 8000, "{} samples", recording.len());
    assert_eq!(decode_dtmf(&recording), "", "a key press in the recording");
    let after_pickup = &recording[8000 * 3 / 2..];
    let loudest = loudest_window(after_pickup);
    assert!(
        loudest < 500.0,
        "the injected tone is in the recording: RMS {loudest:.0} in a 100 ms window"
    );
}

/// `outdial call` (with `profile_toml` as its trunk's profile) to a sipp UAS whose SDP names
/// another port than the one it streams from; returns the call's JSON and sipp's real port.
fn call_far_end_behind_nat(name: &str, profile_toml: &str) -> (serde_json::Value, u16) {
    let dir = test_dir(name);
    let d = dir.path();
    let far_end = d.join("far_end.wav");
    speech_wav_padded(&far_end, "Hello, who is calling please?", 0.2, 4.0);
    let rec = d.join("received.wav");
    // A port nobody sends from: what the far end's NAT would leave in its SDP.
    let advertised = free_udp_port();
    let sipp = Sipp::uas(d, "uas_answer_audio.xml")
        .replace("m=audio [media_port] ", &format!("m=audio {advertised} "))
        .stream_wav(&far_end)
        .start();
    let profiles = write_profile(&d.join("profiles"), "nat", profile_toml);
    let mut cmd = outdial_cmd(d);
    cmd.arg("--profiles").arg(&profiles);
    let run = run_call_in(
        cmd,
        &[
            &sipp.uri("15551230099"),
            "--profile",
            "nat",
            "--record",
            rec.to_str().expect("utf-8 path"),
            "--max-duration",
            "4",
        ],
        Duration::from_secs(60),
    );
    let real_port = sipp.media_port;
    let sipp_run = sipp.wait(SIPP_WAIT);
    assert!(run.status.success(), "stderr: {}", run.stderr);
    assert_eq!(run.outcome(), "answered", "{}", run.json);
    sipp_run.assert_passed("answered call (needs our ACK and BYE)");
    if !run.json["rtp"]["latched_to"].is_null() {
        // What we heard is what sipp streamed.
        let (corr, lag) = best_correlation(&read_wav_8k(&far_end), &read_wav_8k(&rec), 16000);
        assert!(
            corr > 0.5,
            "recording vs sipp's stream: {corr:.3} at lag {lag}"
        );
    }
    (run.json, real_port)
}

#[test]
fn initial_latching_hears_a_far_end_behind_a_nat() {
    let (json, real_port) = call_far_end_behind_nat("rtp-nat-initial", "proxy = \"127.0.0.1:9\"\n");
    let rtp_json = &json["rtp"];
    assert_eq!(
        rtp_json["latched_to"],
        format!("127.0.0.1:{real_port}"),
        "latched onto where the stream comes from: {json}"
    );
    let (sent, received) = (
        rtp_json["sent"].as_u64().unwrap_or(0),
        rtp_json["received"].as_u64().unwrap_or(0),
    );
    assert!(sent > 150 && received > 150, "{json}");
    // Only the packets before the latch were dropped.
    let rejected = rtp_json["rejected_source"].as_u64().unwrap_or(u64::MAX);
    assert!(rejected <= 5, "{json}");
}

#[test]
fn rtp_latching_off_takes_only_the_sdp_address() {
    let (json, _) = call_far_end_behind_nat(
        "rtp-nat-off",
        "proxy = \"127.0.0.1:9\"\nrtp_latching = \"off\"\n",
    );
    // None of the stream is taken, all of it is counted, and our audio stays on the SDP
    // address.
    let rtp_json = &json["rtp"];
    assert!(rtp_json["sent"].as_u64().unwrap_or(0) > 150, "{json}");
    assert_eq!(rtp_json["received"], 0, "{json}");
    assert!(
        rtp_json["rejected_source"].as_u64().unwrap_or(0) > 150,
        "{json}"
    );
    assert!(rtp_json["latched_to"].is_null(), "{json}");
}
