//! Answering-machine detection on real calls: `outdial call … --amd MODE` against sipp UAS
//! peers that answer and stream a person's pickup or a voicemail greeting with its beep (raw
//! µ-law over RTP), so the verdict comes from audio that crossed the network.
//!
//! Needs `make setup` for the ml, text and auto modes (ONNX Runtime, the converted Whisper
//! model in the model cache).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const SIPP_WAIT: Duration = Duration::from_secs(30);

/// "Hello?" after 0.4 s, then a person waiting in silence.
fn human_pickup(path: &Path) {
    speech_wav_padded(path, "Hello?", 0.4, 6.0);
}

fn call_with_amd(d: &Path, far_end: &Path, mode: &str) -> (CallRun, serde_json::Value) {
    let sipp = Sipp::uas(d, "uas_answer_audio.xml")
        .stream_wav(far_end)
        .start();
    let run = run_call(
        d,
        &[&sipp.uri("amd"), "--amd", mode, "--max-duration", "25"],
    );
    let sipp_run = sipp.wait(SIPP_WAIT);
    assert!(run.status.success(), "stderr: {}", run.stderr);
    assert_eq!(run.outcome(), "answered", "{}", run.json);
    sipp_run.assert_passed("answered call with AMD (needs our ACK and BYE)");
    let amd = run.json["amd"].clone();
    assert!(amd.is_object(), "no amd object in {}", run.json);
    (run, amd)
}

fn check_human(mode: &str) {
    let dir = test_dir(&format!("amd-human-{mode}"));
    let d = dir.path();
    let far_end = d.join("human.wav");
    human_pickup(&far_end);
    let (run, amd) = call_with_amd(d, &far_end, mode);
    assert_eq!(amd["verdict"], "human", "{amd}");
    assert_eq!(amd["answered_by"], "human", "{amd}");
    assert_eq!(amd["mode"], mode, "{amd}");
    let decision = amd["decision_ms"].as_u64().expect("decision_ms");
    // Speech from 0.4 s to about 1 s; a person is known well before the 6 s of silence end.
    assert!(
        (900..=3500).contains(&decision),
        "decision at {decision} ms: {amd}"
    );
    // Without --play the call hangs up once detection is done.
    let duration = run.json["duration_ms"].as_u64().unwrap_or(u64::MAX);
    assert!(
        duration < decision + 2500,
        "hung up at {duration} ms: {}",
        run.json
    );
}

fn check_machine(mode: &str) {
    let dir = test_dir(&format!("amd-machine-{mode}"));
    let d = dir.path();
    let far_end = d.join("voicemail.wav");
    let beep_at = voicemail_with_beep(d, &far_end);
    let (run, amd) = call_with_amd(d, &far_end, mode);
    assert_eq!(amd["verdict"], "machine", "{amd}");
    assert_eq!(amd["answered_by"], "machine_end_beep", "{amd}");
    assert_eq!(amd["status"], "MACHINE", "{amd}");
    let beep = amd["beep_ms"].as_u64().expect("beep_ms");
    // Audio time starts at the answer; sipp starts streaming after our ACK.
    assert!(
        beep + 40 >= beep_at && beep <= beep_at + 250,
        "beep found at {beep} ms, streamed at {beep_at} ms after sipp's start: {amd}"
    );
    let decision = amd["decision_ms"].as_u64().expect("decision_ms");
    assert!(
        decision < beep_at,
        "the machine is known before its beep: {amd}"
    );
    // After the answer the AMD's detectors are the call's: the beep is in the call's tones
    // once (not a second time from the media session's), in received-audio time.
    let beeps: Vec<&serde_json::Value> = run.json["tones"]
        .as_array()
        .map(|t| t.iter().filter(|t| t["type"] == "beep").collect())
        .unwrap_or_default();
    assert_eq!(beeps.len(), 1, "{}", run.json);
    let onset = beeps[0]["onset_ms"].as_u64().expect("onset_ms");
    assert!(
        onset + 40 >= beep_at && onset <= beep_at + 250,
        "the call's beep at {onset} ms, streamed at {beep_at} ms: {}",
        run.json
    );
}

#[test]
fn heuristic_tells_a_person_over_rtp() {
    check_human("heuristic");
}

#[test]
fn heuristic_finds_the_machine_and_its_beep_over_rtp() {
    check_machine("heuristic");
}

#[test]
fn ml_tells_a_person_over_rtp() {
    check_human("ml");
}

#[test]
fn ml_finds_the_machine_and_its_beep_over_rtp() {
    check_machine("ml");
}

#[test]
fn text_tells_a_person_over_rtp() {
    check_human("text");
}

#[test]
fn text_finds_the_machine_and_its_beep_over_rtp() {
    check_machine("text");
}

#[test]
fn auto_finds_the_machine_and_its_beep_over_rtp() {
    check_machine("auto");
}

#[test]
fn text_mode_without_its_model_is_refused_in_one_line_before_dialing() {
    let dir = test_dir("amd-text");
    let empty = dir.path().join("no-models");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let out = outdial_cmd(dir.path())
        .env("OUTDIAL_MODEL_DIR", &empty)
        .env_remove("ORT_DYLIB_PATH")
        .args(["call", "sip:nobody@127.0.0.1:9", "--amd", "text", "--json"])
        .output()
        .expect("run outdial");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing dialed, nothing printed");
    let lines = stderr_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("text mode") && lines[0].contains("make setup"),
        "{stderr}"
    );
}
