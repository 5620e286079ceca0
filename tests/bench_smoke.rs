//! Smoke tests of the benches: `outdial bench media` — a short run at 20 streams must relay
//! every packet and print one JSON object with every field; with rtpengine (installed by `make
//! setup`) its fields must be filled in too (each run well under 10 s); `bench bridge` and
//! `bench agent` with a few calls through sipp. (`bench soak` has its own file, soak_smoke.rs,
//! so that its `serve` never runs beside these timing-sensitive runs.)

mod common;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

const OUTDIAL_FIELDS: &[&str] = &[
    "streams",
    "seconds",
    "cpu_percent",
    "cpu_us_per_packet",
    "loss_ratio",
    "jitter_added_ms_p99",
    "latency_ms_p50",
    "latency_ms_p99",
    "packets_sent",
    "packets_received",
    "packets_relayed",
];

const RTPENGINE_FIELDS: &[&str] = &[
    "rtpengine_cpu_percent",
    "rtpengine_cpu_us_per_packet",
    "rtpengine_loss_ratio",
    "rtpengine_jitter_added_ms_p99",
    "rtpengine_latency_ms_p50",
    "rtpengine_latency_ms_p99",
    "rtpengine_packets_sent",
    "rtpengine_packets_received",
];

/// Runs the bench and returns its one JSON object (stdout must hold nothing else).
fn bench(extra: &[&str]) -> Value {
    let out = common::run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_outdial"))
            .args([
                "bench",
                "media",
                "--streams",
                "20",
                "--seconds",
                "2",
                "--json",
            ])
            .args(extra),
        Duration::from_secs(30),
    );
    assert!(
        out.status.map(|s| s.success()).unwrap_or(false),
        "bench failed ({:?}) after {:?}\nstdout: {}\nstderr: {}",
        out.status,
        out.elapsed,
        out.stdout,
        out.stderr
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "stdout must be one JSON line: {}",
        out.stdout
    );
    let v: Value = serde_json::from_str(lines[0]).expect("JSON");
    assert!(v.is_object());
    assert_eq!(v["streams"], 20);
    assert_eq!(v["seconds"].as_f64(), Some(2.0));
    for f in OUTDIAL_FIELDS {
        assert!(v[f].is_number(), "{f} missing or null in {v}");
    }
    // 20 streams × 50 packets/s × 2 s, give or take one packet per stream at the edges.
    let sent = v["packets_sent"].as_u64().unwrap();
    assert!((1960..=2040).contains(&sent), "packets_sent {sent}");
    assert_eq!(v["loss_ratio"].as_f64(), Some(0.0), "{v}");
    assert_eq!(v["packets_received"], v["packets_sent"]);
    assert_eq!(v["payload_mismatches"], 0);
    assert!(v["cpu_us_per_packet"].as_f64().unwrap() > 0.0);
    v
}

#[test]
fn bench_media_without_rtpengine() {
    let started = std::time::Instant::now();
    let v = bench(&["--no-rtpengine"]);
    for f in RTPENGINE_FIELDS {
        assert!(v[f].is_null(), "{f} should be null in {v}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn bench_media_with_rtpengine() {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join("rtpengine").is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`rtpengine` is not installed: run `make setup` (installs rtpengine-daemon)"
    );
    let v = bench(&[]);
    assert!(v["rtpengine_skipped"].is_null(), "{v}");
    for f in RTPENGINE_FIELDS {
        assert!(v[f].is_number(), "{f} missing or null in {v}");
    }
    assert_eq!(v["rtpengine_loss_ratio"].as_f64(), Some(0.0), "{v}");
}

/// `outdial bench bridge`: 10 calls set up through SIP (sipp as the far end of both legs),
/// bridged, RTP relayed both ways between the linked legs: one JSON object, every packet
/// relayed and back, nothing lost; rtpengine left out (its half is `bench media`'s code).
#[test]
fn bench_bridge_relays_every_packet_between_bridged_legs() {
    let out = common::run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_outdial")).args([
            "bench",
            "bridge",
            "--calls",
            "10",
            "--seconds",
            "2",
            "--json",
            "--no-rtpengine",
        ]),
        Duration::from_secs(60),
    );
    assert!(
        out.status.map(|s| s.success()).unwrap_or(false),
        "bench bridge failed ({:?}) after {:?}\nstdout: {}\nstderr: {}",
        out.status,
        out.elapsed,
        out.stdout,
        out.stderr
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "stdout must be one JSON line: {}",
        out.stdout
    );
    let v: Value = serde_json::from_str(lines[0]).expect("JSON");
    assert_eq!(v["calls"], 10, "{v}");
    assert_eq!(v["streams"], 20, "{v}");
    assert_eq!(v["calls_bridged"], 10, "{v}");
    for f in [
        "cpu_percent",
        "cpu_us_per_packet",
        "loss_ratio",
        "latency_ms_p50",
        "latency_ms_p99",
        "baseline_latency_ms_p99",
        "packets_sent",
        "packets_received",
        "packets_relayed",
    ] {
        assert!(v[f].is_number(), "{f} missing or null in {v}");
    }
    // 10 calls × 2 directions × 50 packets/s × 2 s, give or take one per stream at the edges.
    let sent = v["packets_sent"].as_u64().unwrap_or(0);
    assert!((1960..=2040).contains(&sent), "packets_sent {sent}: {v}");
    assert_eq!(v["loss_ratio"].as_f64(), Some(0.0), "{v}");
    assert_eq!(v["packets_received"], v["packets_sent"], "{v}");
    assert_eq!(v["payload_mismatches"], 0, "{v}");
    // The media engine relayed them (not some other path): about as many as were sent.
    let relayed = v["packets_relayed"].as_u64().unwrap_or(0);
    assert!(
        relayed + 40 >= sent && relayed <= sent + 40,
        "relayed {relayed} of {sent} sent: {v}"
    );
    assert!(v["cpu_us_per_packet"].as_f64().unwrap_or(0.0) > 0.0, "{v}");
    assert!(v["rtpengine_cpu_us_per_packet"].is_null(), "{v}");
    assert_eq!(v["rtpengine_skipped"], "--no-rtpengine", "{v}");
}

/// `outdial bench agent`: a few dead-air calls to its in-process Media Streams agent, then a
/// few calls streamed to its echo agent: one JSON object; the three dead-air figures measured
/// for every call; every frame of the generator back on the callee's wire, intact, with no
/// late 20 ms send.
#[test]
fn bench_agent_measures_dead_air_and_echoes_every_frame() {
    let out = common::run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_outdial")).args([
            "bench",
            "agent",
            "--calls",
            "5",
            "--seconds",
            "2",
            "--latency-calls",
            "5",
            "--json",
        ]),
        Duration::from_secs(90),
    );
    assert!(
        out.status.map(|s| s.success()).unwrap_or(false),
        "bench agent failed ({:?}) after {:?}\nstdout: {}\nstderr: {}",
        out.status,
        out.elapsed,
        out.stdout,
        out.stderr
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "stdout must be one JSON line: {}",
        out.stdout
    );
    let v: Value = serde_json::from_str(lines[0]).expect("JSON");
    assert_eq!(v["calls"], 5, "{v}");
    assert_eq!(v["latency_calls"], 5, "{v}");
    assert_eq!(v["latency_calls_measured"], 5, "{v}");
    assert_eq!(v["warm_at_verdict"], 5, "{v}");
    // Each dead-air figure is measured, positive and far below the time the agent spoke
    // (3 s): an audio queue that `clear` did not drop would read as ~2.5 s.
    for f in ["start_ms_p99", "first_audio_ms_p99", "barge_in_ms_p99"] {
        let x = v[f].as_f64().unwrap_or(-1.0);
        assert!(x > 0.0 && x < 1000.0, "{f} = {x}: {v}");
    }
    assert_eq!(v["calls_bridged"], 5, "{v}");
    for f in [
        "cpu_percent",
        "agent_cpu_percent",
        "round_trip_ms_p50",
        "round_trip_ms_p99",
        "late_sends",
        "engine_sends",
    ] {
        assert!(v[f].is_number(), "{f} missing or null in {v}");
    }
    // 5 calls × 50 packets/s × 2 s, give or take one per call at the edges.
    let sent = v["frames_sent"].as_u64().unwrap_or(0);
    assert!((490..=510).contains(&sent), "frames_sent {sent}: {v}");
    // Every frame came back from the agent on the callee's wire, its bytes intact.
    assert_eq!(v["frames_echoed"], v["frames_sent"], "{v}");
    assert_eq!(v["payload_mismatches"], 0, "{v}");
    assert_eq!(v["frames_lost_total"], 0, "{v}");
    assert_eq!(v["frames_echoed_total"], v["frames_sent_total"], "{v}");
    assert_eq!(v["agent_tagged_frames"], v["frames_sent_total"], "{v}");
    assert_eq!(v["frames_dropped_agent_channel"], 0, "{v}");
    // The callee legs sent their 20 ms packets, none late (the engine counts them). The
    // engine's counters are read at the generator's window edges while the echoes trail the
    // generator by one round trip, so up to two packets per call fall on the other side.
    assert!(v["engine_sends"].as_u64().unwrap_or(0) + 10 >= sent, "{v}");
    assert_eq!(v["late_sends"], 0, "{v}");
    // The round trip goes through the jitter buffer (≥ 20 ms) and back: well under a second.
    let rt = v["round_trip_ms_p50"].as_f64().unwrap_or(0.0);
    assert!((20.0..1000.0).contains(&rt), "round trip {rt}: {v}");
}
