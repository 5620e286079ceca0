//! SDES-SRTP with a real peer: baresip with its `srtp` module. A profile with
//! `srtp = "required"` offers RTP/SAVP with an AES_CM_128_HMAC_SHA1_80 key; baresip
//! (`mediaenc=srtp-mand`, which takes nothing but SRTP) answers with its own key, and audio must
//! go both ways: what baresip records correlates with the file we play (it could only decrypt
//! it with our key), and our recording with what baresip plays (we could only decrypt it with
//! its key), and nothing it sent (its SRTCP reports included) failed authentication.
//! `optional` falls back to plain RTP with a baresip that has no SRTP, and `required`
//! never carries audio in clear to such a peer.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

struct Call {
    run: CallRun,
    ours: std::path::PathBuf,
    rec: std::path::PathBuf,
}

fn call(d: &Path, phone: &Baresip, profile: &str) -> Call {
    let ours = d.join("ours.wav");
    speech_wav_padded(
        &ours,
        "Secure real time transport. Only the two ends can hear these words.",
        0.5,
        1.0,
    );
    let rec = d.join("received.wav");
    let run = run_call_in(
        outdial_cmd(d),
        &[
            &phone.uri(),
            "--profile",
            profile,
            "--play",
            ours.to_str().expect("utf-8"),
            "--record",
            rec.to_str().expect("utf-8"),
            "--max-duration",
            "30",
        ],
        Duration::from_secs(60),
    );
    Call { run, ours, rec }
}

fn phone_source(d: &Path) -> std::path::PathBuf {
    let wav = d.join("phone.wav");
    speech_wav_padded(
        &wav,
        "This phone encrypts its audio and records what it hears.",
        0.2,
        1.0,
    );
    wav
}

fn profiles(d: &Path) {
    for policy in ["required", "optional"] {
        write_profile(
            &d.join("sip-profiles"),
            policy,
            &format!("proxy = \"127.0.0.1:5060\"\nsrtp = \"{policy}\"\n"),
        );
    }
}

fn assert_audio_both_ways(c: &Call, phone: &Baresip) {
    let heard_by_phone = phone.received_recording(Duration::from_secs(15));
    let (corr, lag) = best_correlation(&read_wav_8k(&c.ours), &read_wav_8k(&heard_by_phone), 16000);
    eprintln!("baresip heard our file: {corr:.3} at lag {lag}");
    assert!(corr > 0.8, "baresip's recording vs our file: {corr:.3}");
    let (corr, lag) = best_correlation(&read_wav_8k(&phone.source), &read_wav_8k(&c.rec), 16000);
    eprintln!("we heard baresip: {corr:.3} at lag {lag}");
    assert!(corr > 0.8, "our recording vs baresip's source: {corr:.3}");
}

#[test]
fn required_srtp_call_to_baresip_carries_audio_both_ways() {
    let dir = test_dir("srtp-required");
    let d = dir.path();
    profiles(d);
    let phone = BaresipOptions {
        mediaenc: Some("srtp-mand".into()),
        ..BaresipOptions::default()
    }
    .start(d, &phone_source(d));
    let c = call(d, &phone, "required");
    let json = &c.run.json;
    eprintln!("{json}");
    assert_eq!(c.run.outcome(), "answered", "{json}\n{}", c.run.stderr);
    assert_eq!(json["rtp"]["srtp"], "AES_CM_128_HMAC_SHA1_80", "{json}");
    // Authentication passes: a wrong key or a broken cipher fails every packet, so what
    // fails must stay a stray or two (seen once in CI: a single packet, with one from an
    // unexpected source, around the call's ends) among the ~330 received.
    let rejected = json["rtp"]["srtp_rejected"].as_u64().unwrap_or(u64::MAX);
    assert!(rejected <= 2, "{json}");
    assert!(
        json["rtp"]["received"].as_u64().unwrap_or(0) > 100,
        "{json}"
    );
    assert_audio_both_ways(&c, &phone);
}

#[test]
fn optional_srtp_falls_back_to_plain_rtp_with_a_peer_without_it() {
    let dir = test_dir("srtp-optional");
    let d = dir.path();
    profiles(d);
    let phone = Baresip::start(d, &phone_source(d));
    let c = call(d, &phone, "optional");
    let json = &c.run.json;
    assert_eq!(c.run.outcome(), "answered", "{json}\n{}", c.run.stderr);
    assert_eq!(json["rtp"]["srtp"], serde_json::Value::Null, "{json}");
    assert_audio_both_ways(&c, &phone);
}

#[test]
fn optional_srtp_is_taken_by_a_best_effort_peer() {
    let dir = test_dir("srtp-best-effort");
    let d = dir.path();
    profiles(d);
    let phone = BaresipOptions {
        mediaenc: Some("srtp".into()),
        ..BaresipOptions::default()
    }
    .start(d, &phone_source(d));
    let c = call(d, &phone, "optional");
    let json = &c.run.json;
    assert_eq!(c.run.outcome(), "answered", "{json}\n{}", c.run.stderr);
    assert_eq!(json["rtp"]["srtp"], "AES_CM_128_HMAC_SHA1_80", "{json}");
    assert_audio_both_ways(&c, &phone);
}

#[test]
fn required_srtp_never_talks_in_clear_to_a_peer_without_it() {
    let dir = test_dir("srtp-refused");
    let d = dir.path();
    profiles(d);
    let phone = Baresip::start(d, &phone_source(d));
    let c = call(d, &phone, "required");
    let json = &c.run.json;
    assert_ne!(c.run.outcome(), "answered", "{json}\n{}", c.run.stderr);
    assert_eq!(json["rtp"]["sent"], 0, "no RTP may leave in clear: {json}");
}
