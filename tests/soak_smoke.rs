//! Smoke test of `outdial bench soak`: half a minute at 6 calls through `outdial serve`.
//! Its own test binary (test binaries run one after another), so that its `serve` and AMD never
//! share the CPU with bench_smoke.rs's timing-sensitive runs.

mod common;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

/// `bench soak` for half a minute at 6 calls: `serve` ran the campaign (calls were live
/// throughout the window, attempts recorded, AMD called some people), every reading was
/// taken, and the idle server after the drain has no live call left.
#[test]
fn bench_soak_runs_serve_and_reads_it() {
    let out = common::run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_outdial")).args([
            "bench",
            "soak",
            "--calls",
            "6",
            "--minutes",
            "0.5",
            "--sample-secs",
            "2",
            "--call-secs",
            "4",
            "--json",
        ]),
        Duration::from_secs(240),
    );
    assert!(
        out.status.map(|s| s.success()).unwrap_or(false),
        "bench soak failed ({:?}) after {:?}\nstdout: {}\nstderr: {}",
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
    assert_eq!(v["calls"], 6, "{v}");
    let samples = v["samples"].as_array().expect("samples");
    assert!(
        samples.len() >= 10,
        "{} readings in 30 s: {v}",
        samples.len()
    );
    for s in samples {
        assert!(s["rss_mib"].as_f64().unwrap_or(0.0) > 1.0, "{s}");
        assert!(s["open_files"].as_u64().unwrap_or(0) > 3, "{s}");
        assert!(s["tasks"].as_u64().unwrap_or(0) > 0, "{s}");
    }
    // Calls were up during the window (busy and declined numbers end at once, so not always
    // all six).
    assert!(v["live_calls_mean"].as_f64().unwrap_or(0.0) >= 2.0, "{v}");
    let attempts = v["attempts"].as_i64().unwrap_or(0);
    assert!(
        attempts >= 12,
        "{attempts} attempts in 30 s at 6 calls: {v}"
    );
    assert!(v["answered"].as_i64().unwrap_or(0) > 0, "{v}");
    assert!(v["human_answered"].as_i64().unwrap_or(0) > 0, "{v}");
    assert!(
        v["human_answered"].as_i64() < v["answered"].as_i64(),
        "voicemail must not be called people: {v}"
    );
    // Idle again: the calls' tasks are gone (a task kept per call would show here).
    let before = v["idle_before"]["tasks"].as_u64().unwrap_or(0);
    let after = v["idle_after"]["tasks"].as_u64().unwrap_or(u64::MAX);
    assert!(
        after <= before + 3,
        "tasks idle before {before}, after {after}: {v}"
    );
}
