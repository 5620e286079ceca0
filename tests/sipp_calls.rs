//! `outdial call sip:…` against sipp UAS scenarios (tests/scenarios/uas_*.xml).
//!
//! sipp runs `-m 1` and exits 0 only if the whole scenario passed, so a passing sipp proves
//! that outdial sent every request the scenario waits for (ACK, BYE, CANCEL) and answered
//! what sipp sent (200 to its BYE). The JSON result and the recording are checked on our side.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const SIPP_WAIT: Duration = Duration::from_secs(20);

/// What the far end says in the audio scenarios.
const FAR_END_TEXT: &str = "Hello, you have reached the far end. Testing one two three.";
/// What we play.
const OUR_TEXT: &str = "This is outdial calling with a short test message. Goodbye.";

fn assert_ok_exit(run: &CallRun) {
    assert!(
        run.status.success(),
        "outdial call must exit 0 whatever the outcome; got {:?}\nstderr: {}",
        run.status,
        run.stderr
    );
}

fn assert_no_answer_fields(run: &CallRun) {
    assert!(run.json["answer_ms"].is_null(), "{}", run.json);
    assert!(run.json["ended_by"].is_null(), "{}", run.json);
    assert!(
        run.json["call_id"].as_str().is_some_and(|c| !c.is_empty()),
        "{}",
        run.json
    );
}

/// An answered call with audio both ways: we play, sipp streams, we record.
fn answered_with_audio(name: &str, transport: Transport) {
    let dir = test_dir(name);
    let d = dir.path();
    let far_end = d.join("far_end.wav");
    speech_wav_padded(&far_end, FAR_END_TEXT, 0.2, 0.3);
    let ours = d.join("ours.wav");
    // longer than the far end's stream, so our recording holds all of it
    speech_wav_padded(&ours, OUR_TEXT, 0.2, 2.5);
    let rec = d.join("received.wav");

    let sipp = Sipp::uas(d, "uas_answer_audio.xml")
        .transport(transport)
        .stream_wav(&far_end)
        .start();
    let run = run_call(
        d,
        &[
            &sipp.uri("test"),
            "--play",
            path_str(&ours),
            "--record",
            path_str(&rec),
            "--max-duration",
            "15",
        ],
    );
    let sipp_run = sipp.wait(SIPP_WAIT);

    assert_ok_exit(&run);
    assert_eq!(run.outcome(), "answered", "{}", run.json);
    assert_eq!(run.sip_code(), Some(200), "{}", run.json);
    assert_eq!(run.json["reason"], "OK", "{}", run.json);
    assert_eq!(run.json["ended_by"], "system", "{}", run.json);
    assert_eq!(run.json["codec"], "PCMU", "{}", run.json);
    assert!(run.json["answer_ms"].is_u64(), "{}", run.json);
    assert!(run.json["ring_ms"].is_u64(), "{}", run.json);
    let (sent, received) = run.rtp();
    assert!(sent > 100, "rtp.sent = {sent}: {}", run.json);
    assert!(received > 100, "rtp.received = {received}: {}", run.json);
    let ours_len_ms = read_wav_8k(&ours).len() as u64 / 8;
    let duration = run.json["duration_ms"].as_u64().unwrap_or(0);
    assert!(
        duration + 300 >= ours_len_ms && duration < ours_len_ms + 3000,
        "--play should hang up right after the file ({ours_len_ms} ms); duration_ms = {duration}"
    );

    sipp_run.assert_passed("answered call (needs our ACK and BYE)");
    assert_eq!(sipp_run.received_requests("ACK").len(), 1);
    let byes = sipp_run.received_requests("BYE");
    assert_eq!(byes.len(), 1);
    let call_id = run.json["call_id"].as_str().unwrap();
    assert_eq!(byes[0].header("Call-ID"), Some(call_id));

    let reference = read_wav_8k(&far_end);
    let received_audio = read_wav_8k(&rec);
    assert!(
        received_audio.len() > 8000,
        "recording holds {} samples",
        received_audio.len()
    );
    let (corr, lag) = best_correlation(&reference, &received_audio, 16000);
    eprintln!("our --record vs sipp's stream: {corr:.3} at lag {lag}");
    assert!(
        corr > 0.5,
        "our recording does not match what sipp streamed: correlation {corr:.3} at lag {lag}"
    );
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn answered_call_with_audio_over_udp() {
    answered_with_audio("answered-udp", Transport::Udp);
}

#[test]
fn answered_call_with_audio_over_tcp() {
    answered_with_audio("answered-tcp", Transport::Tcp);
}

/// A call that ends with a final error response.
fn rejected_call(name: &str, scenario: &str, code: u64, outcome: &str) {
    let dir = test_dir(name);
    let sipp = Sipp::uas(dir.path(), scenario).start();
    let run = run_call(
        dir.path(),
        &[&sipp.uri("15551230000"), "--max-duration", "10"],
    );
    let sipp_run = sipp.wait(SIPP_WAIT);
    assert_ok_exit(&run);
    assert_eq!(run.outcome(), outcome, "{}", run.json);
    assert_eq!(run.sip_code(), Some(code), "{}", run.json);
    assert_no_answer_fields(&run);
    assert!(run.json["ring_ms"].is_u64(), "180 was sent: {}", run.json);
    assert!(
        run.elapsed < Duration::from_secs(8),
        "took {:?}",
        run.elapsed
    );
    sipp_run.assert_passed(&format!("{scenario} (needs our ACK for the {code})"));
    assert_eq!(sipp_run.received_requests("ACK").len(), 1);
    assert_eq!(sipp_run.received_requests("INVITE").len(), 1);
}

#[test]
fn busy_486_is_busy() {
    rejected_call("busy", "uas_busy.xml", 486, "busy");
}

#[test]
fn decline_603_is_rejected() {
    rejected_call("reject", "uas_reject.xml", 603, "rejected");
}

#[test]
fn not_found_404_is_invalid_number() {
    rejected_call("404", "uas_404.xml", 404, "invalid_number");
}

#[test]
fn temporarily_unavailable_480_is_unavailable() {
    rejected_call("480", "uas_480.xml", 480, "unavailable");
}

#[test]
fn service_unavailable_503_is_failed() {
    rejected_call("503", "uas_503.xml", 503, "failed");
}

#[test]
fn ring_timeout_cancels_the_call() {
    let dir = test_dir("ring-timeout");
    let sipp = Sipp::uas(dir.path(), "uas_ring_forever.xml").start();
    let run = run_call(
        dir.path(),
        &[
            &sipp.uri("15551230001"),
            "--ring-timeout",
            "2",
            "--max-duration",
            "10",
        ],
    );
    let sipp_run = sipp.wait(SIPP_WAIT);
    assert_ok_exit(&run);
    assert_eq!(run.outcome(), "no_answer", "{}", run.json);
    assert_no_answer_fields(&run);
    assert!(run.json["ring_ms"].is_u64(), "{}", run.json);
    assert!(
        run.elapsed < Duration::from_secs(6),
        "a 2 s ring timeout took {:?}",
        run.elapsed
    );
    assert!(
        run.elapsed >= Duration::from_millis(1900),
        "gave up after {:?}, before the 2 s ring timeout",
        run.elapsed
    );
    let cancels = sipp_run.received_requests("CANCEL");
    assert_eq!(
        cancels.len(),
        1,
        "sipp saw no CANCEL:\n{}",
        sipp_run.messages
    );
    sipp_run.assert_passed("ring forever (needs our CANCEL and the ACK for 487)");
}

#[test]
fn early_media_before_answer_is_counted() {
    let dir = test_dir("early-media");
    let far_end = dir.path().join("far_end.wav");
    speech_wav_padded(
        &far_end,
        "Please hold while we connect your call. This is early media.",
        0.0,
        1.0,
    );
    let sipp = Sipp::uas(dir.path(), "uas_early_media.xml")
        .stream_wav(&far_end)
        .start();
    let run = run_call(
        dir.path(),
        &[&sipp.uri("15551230002"), "--max-duration", "3"],
    );
    let sipp_run = sipp.wait(SIPP_WAIT);
    assert_ok_exit(&run);
    assert_eq!(run.outcome(), "answered", "{}", run.json);
    assert_eq!(run.sip_code(), Some(200), "{}", run.json);
    let early = run.json["early_media"]["received"].as_u64().unwrap_or(0);
    assert!(
        early > 50,
        "2 s of early media, but early_media.received = {early}: {}",
        run.json
    );
    assert_eq!(run.json["ended_by"], "max_duration", "{}", run.json);
    let answer_ms = run.json["answer_ms"].as_u64().unwrap_or(0);
    assert!(answer_ms >= 1800, "answer_ms = {answer_ms}: {}", run.json);
    sipp_run.assert_passed("early media (needs our ACK and BYE)");
}

#[test]
fn remote_bye_ends_the_call() {
    let dir = test_dir("remote-bye");
    let far_end = dir.path().join("far_end.wav");
    speech_wav(&far_end, FAR_END_TEXT);
    let sipp = Sipp::uas(dir.path(), "uas_remote_bye.xml")
        .stream_wav(&far_end)
        .start();
    let run = run_call(
        dir.path(),
        &[&sipp.uri("15551230003"), "--max-duration", "12"],
    );
    let sipp_run = sipp.wait(SIPP_WAIT);
    assert_ok_exit(&run);
    assert_eq!(run.outcome(), "answered", "{}", run.json);
    assert_eq!(run.json["ended_by"], "callee", "{}", run.json);
    let duration = run.json["duration_ms"].as_u64().unwrap_or(0);
    assert!(
        (1800..6000).contains(&duration),
        "sipp hangs up 2 s after the ACK; duration_ms = {duration}"
    );
    assert!(
        run.elapsed < Duration::from_secs(8),
        "took {:?}",
        run.elapsed
    );
    let (_, received) = run.rtp();
    assert!(received > 50, "rtp.received = {received}");
    assert_eq!(
        sipp_run.received_requests("BYE").len(),
        0,
        "we must not send our own BYE after the remote one"
    );
    sipp_run.assert_passed("remote BYE (needs our 200 to its BYE)");
}

#[test]
fn from_flag_sets_the_caller_id() {
    let dir = test_dir("caller-id");
    let sipp = Sipp::uas(dir.path(), "uas_busy.xml").start();
    let run = run_call(
        dir.path(),
        &[&sipp.uri("15551230004"), "--from", "15550001111"],
    );
    let sipp_run = sipp.wait(SIPP_WAIT);
    assert_ok_exit(&run);
    assert_eq!(run.outcome(), "busy", "{}", run.json);
    let invites = sipp_run.received_requests("INVITE");
    assert_eq!(invites.len(), 1);
    let from = invites[0].header("From").unwrap_or("");
    assert!(
        from.contains("15550001111"),
        "INVITE From does not carry --from: {from}"
    );
    assert!(
        invites[0]
            .first_line
            .starts_with("INVITE sip:15551230004@127.0.0.1"),
        "{}",
        invites[0].first_line
    );
}

#[test]
fn answer_crossing_our_cancel_is_acked_and_ended_with_bye() {
    let dir = test_dir("answer-after-cancel");
    let sipp = Sipp::uas(dir.path(), "uas_answer_after_cancel.xml").start();
    let run = run_call(
        dir.path(),
        &[
            &sipp.uri("15551230009"),
            "--ring-timeout",
            "2",
            "--max-duration",
            "10",
        ],
    );
    let sipp_run = sipp.wait(SIPP_WAIT);
    assert_ok_exit(&run);
    assert_eq!(run.outcome(), "no_answer", "{}", run.json);
    assert_eq!(run.sip_code(), Some(200), "{}", run.json);
    assert_eq!(run.json["duration_ms"], 0, "{}", run.json);
    assert_eq!(sipp_run.received_requests("CANCEL").len(), 1);
    assert_eq!(
        sipp_run.received_requests("BYE").len(),
        1,
        "the late 200 must be ended with a BYE:\n{}",
        sipp_run.messages
    );
    sipp_run.assert_passed("answer after CANCEL (needs our ACK, then our BYE)");
}

#[test]
fn invite_401_and_stale_nonce_are_answered_once_each() {
    let dir = test_dir("auth-stale");
    let sipp = Sipp::uas(dir.path(), "uas_auth_stale.xml").start();
    let profiles = write_profile(
        &dir.path().join("profiles"),
        "uas",
        "proxy = \"127.0.0.1:9\"\nusername = \"alice\"\npassword = \"wonderland\"\n",
    );
    let mut cmd = outdial_cmd(dir.path());
    cmd.arg("--profiles").arg(&profiles);
    // A sip: URI dialed directly, with the profile lending its credentials.
    let run = run_call_in(
        cmd,
        &[
            &sipp.uri("15551230010"),
            "--profile",
            "uas",
            "--max-duration",
            "1",
        ],
        Duration::from_secs(30),
    );
    let sipp_run = sipp.wait(SIPP_WAIT);
    assert_ok_exit(&run);
    assert_eq!(run.outcome(), "answered", "{}", run.json);
    assert_eq!(
        sipp_run.received_requests("INVITE").len(),
        3,
        "one INVITE per challenge, the stale one included:\n{}",
        sipp_run.messages
    );
    sipp_run.assert_passed("401 then stale=true 401, each answered with the new nonce");
}

#[test]
fn rfc4733_digits_from_the_far_end_are_reported_once_each() {
    let dir = test_dir("dtmf-in");
    // sipp's play_dtmf sends telephone-events with payload type 96 although its SDP says 101,
    // preceded by zero-length padding events: both are real-world quirks to survive.
    let sipp = Sipp::uas(dir.path(), "uas_dtmf.xml").start();
    let run = run_call(
        dir.path(),
        &[&sipp.uri("15551230011"), "--max-duration", "10"],
    );
    let sipp_run = sipp.wait(SIPP_WAIT);
    assert_ok_exit(&run);
    assert_eq!(run.outcome(), "answered", "{}", run.json);
    assert_eq!(run.json["dtmf_received"], "159#", "{}", run.json);
    sipp_run.assert_passed("dtmf (plays 159# then hangs up)");
}

#[test]
fn stereo_recording_holds_both_sides() {
    let dir = test_dir("stereo");
    let d = dir.path();
    let far_end = d.join("far_end.wav");
    speech_wav_padded(&far_end, FAR_END_TEXT, 0.2, 0.3);
    let ours = d.join("ours.wav");
    speech_wav_padded(&ours, OUR_TEXT, 0.2, 2.5);
    let rec = d.join("stereo.wav");
    let sipp = Sipp::uas(d, "uas_answer_audio.xml")
        .stream_wav(&far_end)
        .start();
    let run = run_call(
        d,
        &[
            &sipp.uri("test"),
            "--play",
            path_str(&ours),
            "--record",
            path_str(&rec),
            "--record-mode",
            "stereo",
            "--max-duration",
            "15",
        ],
    );
    let sipp_run = sipp.wait(SIPP_WAIT);
    assert_ok_exit(&run);
    assert_eq!(run.outcome(), "answered", "{}", run.json);
    sipp_run.assert_passed("answered call");

    let mut reader = hound::WavReader::open(&rec).expect("stereo recording");
    let spec = reader.spec();
    assert_eq!((spec.channels, spec.sample_rate), (2, 8000));
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect();
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
    let (heard, _) = best_correlation(&read_wav_8k(&far_end), &left, 16000);
    let (said, _) = best_correlation(&read_wav_8k(&ours), &right, 16000);
    assert!(heard > 0.5, "left channel = what we heard: {heard:.3}");
    assert!(said > 0.5, "right channel = what we sent: {said:.3}");
    // And the sides are not swapped.
    let (crossed, _) = best_correlation(&read_wav_8k(&ours), &left, 16000);
    assert!(
        crossed < heard,
        "left should not look like our own audio: {crossed:.3}"
    );
}

/// A Special Information Tone as 8 kHz samples: three tones of (Hz, ms), then 1 s of silence.
fn sit_tone(tones: [(f64, f64); 3]) -> Vec<i16> {
    let mut out = vec![0i16; 800];
    for (hz, ms) in tones {
        let n = (ms * 8.0) as usize;
        out.extend((0..n).map(|i| {
            (8000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / 8000.0).sin()) as i16
        }));
    }
    out.extend(std::iter::repeat_n(0i16, 8000));
    out
}

#[test]
fn a_vacant_code_sit_in_early_media_then_404_is_an_invalid_number() {
    let dir = test_dir("sit-404");
    let d = dir.path();
    let wav = d.join("sit.wav");
    // VC: 985.2 Hz long, 1370.6 Hz short, 1776.7 Hz long.
    write_wav_8k(
        &wav,
        &sit_tone([(985.2, 380.0), (1370.6, 274.0), (1776.7, 380.0)]),
    );
    let sipp = Sipp::uas(d, "uas_183_sit_404.xml").stream_wav(&wav).start();
    let run = run_call(d, &[&sipp.uri("15551230404"), "--ring-timeout", "20"]);
    let sipp_run = sipp.wait(SIPP_WAIT);
    assert_ok_exit(&run);
    assert_eq!(run.outcome(), "invalid_number", "{}", run.json);
    assert_eq!(run.sip_code(), Some(404), "{}", run.json);
    assert_eq!(run.json["sit"], "VC", "{}", run.json);
    assert_eq!(run.json["reason"], "SIT VC in early media", "{}", run.json);
    sipp_run.assert_passed("183, SIT, 404 (needs our ACK)");
}

#[test]
fn a_reorder_sit_in_early_media_with_no_final_response_is_cancelled_as_unavailable() {
    let dir = test_dir("sit-no-final");
    let d = dir.path();
    let wav = d.join("sit.wav");
    // RO: 913.8 Hz short, 1428.5 Hz long, 1776.7 Hz long.
    write_wav_8k(
        &wav,
        &sit_tone([(913.8, 274.0), (1428.5, 380.0), (1776.7, 380.0)]),
    );
    let sipp = Sipp::uas(d, "uas_183_sit_no_final.xml")
        .stream_wav(&wav)
        .start();
    let run = run_call(d, &[&sipp.uri("15551230487"), "--ring-timeout", "20"]);
    let sipp_run = sipp.wait(SIPP_WAIT);
    assert_ok_exit(&run);
    assert_eq!(run.outcome(), "unavailable", "{}", run.json);
    assert_eq!(run.json["sit"], "RO", "{}", run.json);
    assert!(
        run.elapsed < Duration::from_secs(12),
        "cancelled soon after the SIT, not at the 20 s ring timeout: {:?}",
        run.elapsed
    );
    sipp_run.assert_passed("183, SIT, our CANCEL, 487 (needs our CANCEL and ACK)");
}

#[test]
fn a_302_is_followed_to_its_contact_and_kept_on_record() {
    let dir = test_dir("redirect-302");
    let d = dir.path();
    let target_dir = d.join("target");
    std::fs::create_dir_all(&target_dir).unwrap();
    let target = Sipp::uas(&target_dir, "uas_answer_wait_bye.xml").start();
    let contact = target.uri("15551230302");
    let redirector = Sipp::uas(d, "uas_302.xml")
        .replace("@TARGET@", &contact)
        .start();
    let run = run_call(d, &[&redirector.uri("15551230302"), "--max-duration", "1"]);
    let redirector_run = redirector.wait(SIPP_WAIT);
    let target_run = target.wait(SIPP_WAIT);
    assert_ok_exit(&run);
    assert_eq!(run.outcome(), "answered", "{}", run.json);
    assert_eq!(run.json["failover"][0]["code"], 302, "{}", run.json);
    assert!(
        run.json["failover"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.ends_with(&format!("redirected to {contact}"))),
        "{}",
        run.json
    );
    redirector_run.assert_passed("302 (needs our ACK)");
    target_run.assert_passed("the redirect target answers (needs our ACK and BYE)");
    let invites = target_run.received_requests("INVITE");
    assert_eq!(invites.len(), 1);
}

#[test]
fn a_reliable_183_is_pracked_before_the_answer() {
    let dir = test_dir("prack");
    let sipp = Sipp::uas(dir.path(), "uas_100rel.xml").start();
    let run = run_call(
        dir.path(),
        &[&sipp.uri("15551230100"), "--max-duration", "1"],
    );
    let sipp_run = sipp.wait(SIPP_WAIT);
    assert_ok_exit(&run);
    assert_eq!(run.outcome(), "answered", "{}", run.json);
    sipp_run.assert_passed("Supported: 100rel, PRACK with RAck, then the answer, ACK and BYE");
    let pracks = sipp_run.received_requests("PRACK");
    assert_eq!(pracks.len(), 1, "{}", sipp_run.messages);
}

#[test]
fn a_session_timer_we_refresh_gets_a_reinvite_at_half_its_interval() {
    let dir = test_dir("session-timer-refresh");
    let sipp = Sipp::uas(dir.path(), "uas_session_timer.xml")
        .replace("@EXPIRES@", "4")
        .start();
    // 3.5 s up: the refresh is due at 2 s, our BYE at 3.5 s.
    let run = run_call(
        dir.path(),
        &[&sipp.uri("15551234028"), "--max-duration", "3.5"],
    );
    let sipp_run = sipp.wait(SIPP_WAIT);
    assert_ok_exit(&run);
    assert_eq!(run.outcome(), "answered", "{}", run.json);
    sipp_run.assert_passed("refresher=uac: our re-INVITE before the BYE");
    assert_eq!(
        sipp_run.received_requests("INVITE").len(),
        2,
        "{}",
        sipp_run.messages
    );
}

#[test]
fn a_session_the_far_end_never_refreshes_ends_with_our_bye() {
    let dir = test_dir("session-timer-expiry");
    let sipp = Sipp::uas(dir.path(), "uas_session_timer_expiry.xml")
        .replace("@EXPIRES@", "3")
        .start();
    let run = run_call(
        dir.path(),
        &[&sipp.uri("15551234029"), "--max-duration", "30"],
    );
    let sipp_run = sipp.wait(SIPP_WAIT);
    assert_ok_exit(&run);
    assert_eq!(run.outcome(), "answered", "{}", run.json);
    let duration = run.json["duration_ms"].as_u64().unwrap_or(0);
    // Expiry 3 s less min(32 s, 1 s).
    assert!(
        (1_800..3_000).contains(&duration),
        "BYE 2 s into a 3 s session nobody refreshed: duration_ms = {duration}"
    );
    assert_eq!(
        run.json["reason"], "session timer expired: no refresh within 3 s",
        "{}",
        run.json
    );
    sipp_run.assert_passed("refresher=uas and no refresh: our BYE");
}
