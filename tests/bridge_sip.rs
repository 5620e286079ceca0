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
    assert_eq!(run.json["hangup"], "remote", "{}", run.json);
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
    assert_eq!(run.json["hangup"], "local", "{}", run.json);
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
    assert_eq!(run.json["hangup"], "local", "{}", run.json);
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
    assert_eq!(run.json["hangup"], "transferred", "{}", run.json);
    let b = bridge(&run);
    assert_eq!(b["kind"], "refer", "{}", run.json);
    assert_eq!(b["answered"], true, "{}", run.json);
    assert_eq!(b["sip_code"], 200, "{}", run.json);
    assert_eq!(b["target"], target);
    callee_run.assert_passed("callee (REFER with the Refer-To, NOTIFYs answered, our BYE)");
    assert_eq!(callee_run.received_requests("REFER").len(), 1);
}
