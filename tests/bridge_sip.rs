//! The SIP bridge (B2BUA) through `outdial call DEST --connect-to TARGET --json`, with sipp
//! playing both the callee and the agent.
//!
//! sipp runs `-m 1` and exits 0 only if its whole scenario passed, so a passing agent or
//! callee proves the requests outdial sent it (the INVITE with the callee's identity and the
//! outdial headers, the BYE that ends both legs, the hold re-INVITEs).

mod common;

use std::time::Duration;

use common::*;

const SIPP_WAIT: Duration = Duration::from_secs(30);

fn bridge(run: &CallRun) -> &serde_json::Value {
    let b = &run.json["bridge"];
    assert!(b.is_object(), "no bridge object: {}", run.json);
    b
}

/// The callee hangs up (BYE after 2 s): the agent's leg gets our BYE; the agent saw the
/// callee's number as the caller.
#[test]
fn callee_bye_ends_the_agent_leg_too() {
    let dir = test_dir("bridge-callee-bye");
    let far = dir.path().join("far.wav");
    speech_wav(&far, "Hello, this is the person you called.");
    let callee = Sipp::uas(dir.path(), "uas_remote_bye.xml")
        .stream_wav(&far)
        .start();
    let agent = Sipp::uas(dir.path(), "uas_answer_audio.xml")
        .stream_wav(&far)
        .start();
    let run = run_call(
        dir.path(),
        &[
            &callee.uri("15551230001"),
            "--connect-to",
            &agent.uri("agent1"),
            "--ring-timeout",
            "10",
        ],
    );
    let agent_run = agent.wait(SIPP_WAIT);
    let callee_run = callee.wait(SIPP_WAIT);
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(run.outcome(), "answered", "{}", run.json);
    assert_eq!(run.json["ended_by"], "callee", "{}", run.json);
    let b = bridge(&run);
    assert_eq!(b["answered"], true, "{}", run.json);
    assert_eq!(b["kind"], "sip");
    assert_eq!(b["sip_code"], 200);
    assert_eq!(b["ended_by"], "callee", "{}", run.json);
    assert!(b["bridge_ms"].as_u64().is_some(), "{}", run.json);
    let talk = b["talk_ms"].as_u64().unwrap_or(0);
    assert!(
        (1000..4000).contains(&talk),
        "the callee hung up about 2 s after answering: talk {talk} ms"
    );
    assert_ne!(b["call_id"], run.json["call_id"], "two legs, two Call-IDs");
    agent_run.assert_passed("agent leg (needs our BYE once the callee hung up)");
    callee_run.assert_passed("callee leg");
    let invites = agent_run.received_requests("INVITE");
    assert_eq!(invites.len(), 1);
    let from = invites[0].header("From").unwrap_or("");
    let pai = invites[0].header("P-Asserted-Identity").unwrap_or("");
    assert!(from.contains("15551230001"), "agent's From: {from}");
    assert!(
        pai.contains("15551230001"),
        "agent's P-Asserted-Identity: {pai}"
    );
}

/// The agent hangs up: the callee gets our BYE.
#[test]
fn agent_bye_ends_the_callee_leg_too() {
    let dir = test_dir("bridge-agent-bye");
    let far = dir.path().join("far.wav");
    speech_wav(&far, "Hello, this is the person you called.");
    let callee = Sipp::uas(dir.path(), "uas_answer_audio.xml")
        .stream_wav(&far)
        .start();
    let agent = Sipp::uas(dir.path(), "uas_remote_bye.xml")
        .stream_wav(&far)
        .start();
    let run = run_call(
        dir.path(),
        &[
            &callee.uri("15551230002"),
            "--connect-to",
            &agent.uri("agent1"),
        ],
    );
    let agent_run = agent.wait(SIPP_WAIT);
    let callee_run = callee.wait(SIPP_WAIT);
    assert!(run.status.success(), "{}", run.stderr);
    // Our BYE on the callee's leg followed the agent's: the call was ended by the agent.
    assert_eq!(run.json["ended_by"], "agent", "{}", run.json);
    let b = bridge(&run);
    assert_eq!(b["answered"], true, "{}", run.json);
    assert_eq!(b["ended_by"], "agent", "{}", run.json);
    callee_run.assert_passed("callee leg (needs our BYE once the agent hung up)");
    agent_run.assert_passed("agent leg");
}

/// A busy agent: nobody to connect to; the callee is hung up on and the bridge is on record
/// as not answered, with the agent's 486.
#[test]
fn busy_agent_is_not_bridged_and_the_callee_is_released() {
    let dir = test_dir("bridge-busy");
    let far = dir.path().join("far.wav");
    speech_wav(&far, "Hello, this is the person you called.");
    let callee = Sipp::uas(dir.path(), "uas_answer_audio.xml")
        .stream_wav(&far)
        .start();
    let agent = Sipp::uas(dir.path(), "uas_busy.xml").start();
    let run = run_call(
        dir.path(),
        &[
            &callee.uri("15551230003"),
            "--connect-to",
            &agent.uri("agent1"),
        ],
    );
    let agent_run = agent.wait(SIPP_WAIT);
    let callee_run = callee.wait(SIPP_WAIT);
    let b = bridge(&run);
    assert_eq!(b["answered"], false, "{}", run.json);
    assert_eq!(b["sip_code"], 486, "{}", run.json);
    assert!(b["ended_by"].is_null(), "{}", run.json);
    assert_eq!(b["talk_ms"], 0);
    assert_eq!(run.json["ended_by"], "system", "{}", run.json);
    assert!(
        run.elapsed < Duration::from_secs(10),
        "released at once: {:?}",
        run.elapsed
    );
    callee_run.assert_passed("callee leg (needs our BYE)");
    agent_run.assert_passed("agent leg (needs our ACK for the 486)");
}

/// The agent holds and unholds (re-INVITEs sendonly, then sendrecv): the callee gets our
/// hold and unhold re-INVITEs; then the agent hangs up and the callee gets our BYE.
#[test]
fn agent_hold_and_unhold_reach_the_callee() {
    let dir = test_dir("bridge-hold");
    let far = dir.path().join("far.wav");
    speech_wav(&far, "Hello, this is the person you called.");
    let callee = Sipp::uas(dir.path(), "uas_accept_hold.xml")
        .stream_wav(&far)
        .start();
    let unhold_port = free_udp_port();
    let agent = Sipp::uas(dir.path(), "uas_reinvite.xml")
        .replace("@UNHOLD_PORT@", &unhold_port.to_string())
        .start();
    let run = run_call(
        dir.path(),
        &[
            &callee.uri("15551230004"),
            "--connect-to",
            &agent.uri("agent1"),
        ],
    );
    let agent_run = agent.wait(SIPP_WAIT);
    let callee_run = callee.wait(SIPP_WAIT);
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(bridge(&run)["ended_by"], "agent", "{}", run.json);
    agent_run.assert_passed("agent leg (holds, unholds, hangs up)");
    callee_run
        .assert_passed("callee leg (must see our sendonly then sendrecv re-INVITEs, then BYE)");
    let reinvites = callee_run.received_requests("INVITE");
    assert_eq!(
        reinvites.len(),
        3,
        "our INVITE, then the hold and unhold re-INVITEs"
    );
}

/// `--transfer refer`: the callee is sent REFER to the target, follows it (NOTIFY 100, then
/// 200), and our leg ends with our BYE — the media released.
#[test]
fn refer_transfer_releases_our_leg_once_the_target_answered() {
    let dir = test_dir("bridge-refer");
    let far = dir.path().join("far.wav");
    speech_wav(&far, "Hello, this is the person you called.");
    let target = "sip:agent7@example.net";
    let callee = Sipp::uas(dir.path(), "uas_accept_refer.xml")
        .replace("@REFER_TO@", "agent7@example.net")
        .start();
    let run = run_call(
        dir.path(),
        &[
            &callee.uri("15551230005"),
            "--connect-to",
            target,
            "--transfer",
            "refer",
        ],
    );
    let callee_run = callee.wait(SIPP_WAIT);
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(run.json["ended_by"], "transferred", "{}", run.json);
    let b = bridge(&run);
    assert_eq!(b["kind"], "refer", "{}", run.json);
    assert_eq!(b["answered"], true, "{}", run.json);
    assert_eq!(b["sip_code"], 200, "{}", run.json);
    assert_eq!(b["target"], target);
    callee_run.assert_passed("callee (REFER with the Refer-To, NOTIFYs answered, our BYE)");
    assert_eq!(callee_run.received_requests("REFER").len(), 1);
}

fn path_str(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Audio both ways through the bridge, between a callee that speaks only PCMA and an agent
/// that speaks only PCMU (baresip on both legs, each playing speech and recording what it
/// hears): each side's recording matches what the other side played, so the relay carries
/// the audio and transcodes it. We end the call at --max-duration: both legs get our BYE.
#[test]
fn bridged_audio_crosses_both_ways_pcma_callee_to_pcmu_agent() {
    let dir = test_dir("bridge-audio");
    let d = dir.path();
    let callee_wav = d.join("callee.wav");
    speech_wav_padded(
        &callee_wav,
        "Hello, this is the customer. One two three four five six.",
        0.2,
        0.5,
    );
    let agent_wav = d.join("agent.wav");
    speech_wav_padded(
        &agent_wav,
        "Sales desk, this is the agent speaking. Seven eight nine ten.",
        0.2,
        0.5,
    );
    let callee = Baresip::start_with_codecs(d, &callee_wav, &At::loopback(), "pcma");
    let agent = Baresip::start_with_codecs(d, &agent_wav, &At::loopback(), "pcmu");
    let run = run_call(
        d,
        &[
            &callee.uri(),
            "--connect-to",
            &agent.uri(),
            "--max-duration",
            "9",
        ],
    );
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(run.outcome(), "answered", "{}", run.json);
    assert_eq!(run.json["codec"], "PCMA", "{}", run.json);
    assert_eq!(run.json["ended_by"], "max_duration", "{}", run.json);
    let b = bridge(&run);
    assert_eq!(b["answered"], true, "{}", run.json);
    assert_eq!(
        b["ended_by"], "max_duration",
        "our limit ended it: {}",
        run.json
    );
    assert_eq!(agent.calls_established(), 1);

    let agent_heard = agent.received_recording(Duration::from_secs(15));
    let (corr, lag) = best_correlation(
        &read_wav_8k(&callee_wav),
        &read_wav_8k(&agent_heard),
        8000 * 6,
    );
    eprintln!("agent's recording vs the callee's speech: {corr:.3} at lag {lag}");
    assert!(
        corr > 0.5,
        "the agent did not hear the callee: {corr:.3} at lag {lag} ({})",
        path_str(&agent_heard)
    );
    let callee_heard = callee.received_recording(Duration::from_secs(15));
    let (corr, lag) = best_correlation(
        &read_wav_8k(&agent_wav),
        &read_wav_8k(&callee_heard),
        8000 * 6,
    );
    eprintln!("callee's recording vs the agent's speech: {corr:.3} at lag {lag}");
    assert!(
        corr > 0.5,
        "the callee did not hear the agent: {corr:.3} at lag {lag}"
    );
}

/// The callee's RFC 4733 key presses (sipp plays "159#") cross the bridge: the agent
/// (baresip) logs each digit once.
#[test]
fn callee_digits_reach_the_agent() {
    let dir = test_dir("bridge-dtmf");
    let d = dir.path();
    let agent_wav = d.join("agent.wav");
    speech_wav_padded(&agent_wav, "Sales desk.", 0.2, 0.5);
    let agent = Baresip::start(d, &agent_wav);
    let callee = Sipp::uas(d, "uas_dtmf_then_wait.xml").start();
    let run = run_call(
        d,
        &[
            &callee.uri("15551230006"),
            "--connect-to",
            &agent.uri(),
            "--max-duration",
            "15",
        ],
    );
    let callee_run = callee.wait(SIPP_WAIT);
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(bridge(&run)["answered"], true, "{}", run.json);
    assert_eq!(run.json["dtmf_received"], "159#", "{}", run.json);
    callee_run.assert_passed("dtmf callee");
    assert!(agent.wait_call_ended(Duration::from_secs(10)));
    // sipp sends nothing after its last key, so baresip's jitter buffer never plays out the
    // end of that last event ('#'): the keys before it are reported ended, once each, and the
    // last one started.
    let log = agent.log();
    assert_eq!(
        agent.dtmf_heard(),
        "159",
        "digits the agent heard; log:\n{}",
        tail(&log, 40)
    );
    assert!(
        log.contains("received event: '#'"),
        "the last key did not reach the agent; log:\n{}",
        tail(&log, 40)
    );
    // sipp pads with zero-length events of code 0 before its first key: no key '0' for
    // the agent.
    assert!(
        !log.contains("received event: '0'"),
        "a key the callee never pressed reached the agent; log:\n{}",
        tail(&log, 40)
    );
}

/// Nobody takes the call (the target is busy): the person is abandoned and hears the abandon
/// message — it starts within 2 s of the answer (no detection: the answer is the verdict), as
/// the person's own recording shows (baresip records what it hears).
#[test]
fn busy_target_abandons_the_person_with_the_message_within_2_s() {
    let dir = test_dir("bridge-abandon");
    let d = dir.path();
    let callee_wav = d.join("callee.wav");
    speech_wav_padded(&callee_wav, "Hello?", 0.2, 0.5);
    let abandon = d.join("abandon.wav");
    speech_wav_padded(
        &abandon,
        "This is Acme Energy. Sorry we missed you. Call us back at five five five, one two one two.",
        0.0,
        0.3,
    );
    let callee = Baresip::start(d, &callee_wav);
    let agent = Sipp::uas(d, "uas_busy.xml").start();
    let run = run_call(
        d,
        &[
            &callee.uri(),
            "--connect-to",
            &agent.uri("agent1"),
            "--queue-timeout",
            "2",
            "--abandon-message",
            path_str(&abandon),
        ],
    );
    agent.wait(SIPP_WAIT).assert_passed("busy agent");
    assert!(run.status.success(), "{}", run.stderr);
    let b = bridge(&run);
    assert_eq!(b["answered"], false, "{}", run.json);
    assert_eq!(b["abandoned"], true, "{}", run.json);
    assert_eq!(
        run.json["ended_by"], "system",
        "hung up after the message: {}",
        run.json
    );
    let heard = callee.received_recording(Duration::from_secs(20));
    let (corr, lag) = best_correlation(&read_wav_8k(&abandon), &read_wav_8k(&heard), 8000 * 5);
    eprintln!("callee's recording vs the abandon message: {corr:.3} at lag {lag}");
    assert!(
        corr > 0.5,
        "the person did not hear the abandon message: {corr:.3}"
    );
    assert!(
        (0..16000).contains(&lag),
        "the abandon message started {:.2} s after the answer (must be within 2 s)",
        lag as f64 / 8000.0
    );
}
