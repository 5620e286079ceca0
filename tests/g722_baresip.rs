//! G.722 with a real peer (only with `--features g722`): a profile listing G722 makes outdial
//! offer PCMU, then G722 (payload type 9); baresip, taking only G.722 (its SpanDSP-based
//! `g722` module), answers with it. Audio must go both ways in G.722: what baresip records
//! correlates with the file we play, and our recording with what baresip plays.
//!
//! `cargo test --features g722 --test g722_baresip`
#![cfg(feature = "g722")]

mod common;

use std::time::Duration;

use common::*;

#[test]
fn g722_call_to_baresip_carries_audio_both_ways() {
    let dir = test_dir("g722");
    let d = dir.path();
    let ours = d.join("ours.wav");
    speech_wav_padded(
        &ours,
        "Wideband audio, seven two two. Both ends should hear every word.",
        0.5,
        1.0,
    );
    let phone_wav = d.join("phone.wav");
    speech_wav_padded(
        &phone_wav,
        "This phone speaks G seven twenty two and records what it hears.",
        0.2,
        1.0,
    );
    let rec = d.join("received.wav");
    write_profile(
        &d.join("sip-profiles"),
        "wide",
        "proxy = \"127.0.0.1:5060\"\ncodecs = [\"PCMU\", \"G722\", \"telephone-event\"]\n",
    );
    let phone = Baresip::start_with_codecs(d, &phone_wav, &At::loopback(), "G722/16000/1");
    let run = run_call_in(
        outdial_cmd(d),
        &[
            &phone.uri(),
            "--profile",
            "wide",
            "--play",
            ours.to_str().expect("utf-8"),
            "--record",
            rec.to_str().expect("utf-8"),
            "--max-duration",
            "30",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.outcome(), "answered", "{}\n{}", run.json, run.stderr);
    assert_eq!(run.json["codec"], "G722", "{}", run.json);
    let heard_by_phone = phone.received_recording(Duration::from_secs(15));
    assert!(
        phone.log().contains("G722"),
        "baresip used G.722; log:\n{}",
        tail(&phone.log(), 40)
    );

    let (corr, lag) = best_correlation(&read_wav_8k(&ours), &read_wav_8k(&heard_by_phone), 16000);
    eprintln!("baresip heard our file: {corr:.3} at lag {lag}");
    assert!(corr > 0.8, "baresip's recording vs our file: {corr:.3}");
    let (corr, lag) = best_correlation(&read_wav_8k(&phone.source), &read_wav_8k(&rec), 16000);
    eprintln!("we heard baresip: {corr:.3} at lag {lag}");
    assert!(corr > 0.8, "our recording vs baresip's source: {corr:.3}");
}
