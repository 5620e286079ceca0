//! The SIP bridge (`outdial call DEST --connect-to TARGET --json`) against real phones in the
//! places a plain sipp agent does not cover:
//!
//! - agents that REGISTER to a registrar + proxy (kamailio, `tests/peers/kamailio-registrar.cfg`)
//!   and are reached through it: audio both ways, the BYE of either side, the agent's hold and
//!   unhold, all passing the proxy (it record-routes);
//! - key presses converted between forms when one leg has no telephone-event: in-band tones
//!   from the callee reach the agent as RFC 4733 events, RFC 4733 events from the callee reach
//!   an agent without telephone-event as tones on its wire, and SIP INFO digits from the callee
//!   reach the agent as RFC 4733 events.
//!
//! The observers are the peers themselves (baresip's recordings and its log of received
//! events, sipp's scenario checks, the proxy's log) or, for tones on the wire, a plain RTP
//! capture decoded by the harness's own Goertzel detector (not outdial's).

mod common;

use std::thread;
use std::time::Duration;

use common::*;

const SIPP_WAIT: Duration = Duration::from_secs(30);

fn bridge(run: &CallRun) -> &serde_json::Value {
    let b = &run.json["bridge"];
    assert!(b.is_object(), "no bridge object: {}", run.json);
    b
}

/// Two agents registered behind the proxy; the call for agent1 reaches agent1 only, through
/// the proxy. The callee (PCMA) and agent1 (PCMU) each hear the other's speech (their
/// recordings match what the other side played). Then the callee hangs up: outdial's BYE to
/// the agent passes the proxy and ends agent1's call.
#[test]
fn registered_agent_behind_a_proxy_talks_with_the_callee_until_the_callee_hangs_up() {
    let dir = test_dir("peers-registrar-audio");
    let d = dir.path();
    let callee_wav = d.join("callee.wav");
    speech_wav_padded(
        &callee_wav,
        "Hello, this is the customer. One two three four five six.",
        1.0,
        0.5,
    );
    let agent_wav = d.join("agent.wav");
    speech_wav_padded(
        &agent_wav,
        "Sales desk, this is the agent speaking. Seven eight nine ten.",
        0.5,
        0.5,
    );
    let registrar = Registrar::start(d);
    let agent1 = registrar.agent(d, "agent1", &agent_wav, false);
    let agent2 = registrar.agent(d, "agent2", &agent_wav, false);
    let callee = BaresipOptions {
        audio_codecs: "pcma".into(),
        control: true,
        ..BaresipOptions::default()
    }
    .start(d, &callee_wav);
    let run = thread::scope(|s| {
        s.spawn(|| {
            // The callee hangs up 8 s into its call (both speeches are over by then).
            if callee.wait_log("Call established", 1, Duration::from_secs(20)) {
                thread::sleep(Duration::from_secs(8));
                callee.command("hangup");
            }
        });
        run_call(
            d,
            &[
                &callee.uri(),
                "--connect-to",
                &registrar.aor("agent1"),
                "--max-duration",
                "25",
            ],
        )
    });
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(run.outcome(), "answered", "{}", run.json);
    assert_eq!(run.json["codec"], "PCMA", "{}", run.json);
    assert_eq!(
        run.json["ended_by"], "callee",
        "the callee hung up: {}",
        run.json
    );
    let b = bridge(&run);
    assert_eq!(b["answered"], true, "{}", run.json);
    assert_eq!(b["sip_code"], 200, "{}", run.json);
    assert_eq!(b["ended_by"], "callee", "{}", run.json);
    let talk = b["talk_ms"].as_u64().unwrap_or(0);
    assert!(
        (6000..10_000).contains(&talk),
        "the callee hung up about 8 s after answering: talk {talk} ms"
    );

    // Routed by the registration, to agent1 alone.
    assert_eq!(
        registrar.count("INVITE user=agent1 relayed to "),
        1,
        "{}",
        tail(&registrar.log(), 40)
    );
    assert_eq!(registrar.count("INVITE user=agent2"), 0);
    assert_eq!(agent1.calls_established(), 1);
    assert_eq!(agent2.calls_established(), 0, "agent2 was not called");

    // The callee's BYE ended agent1's call, with a BYE that went through the proxy.
    let agent_heard = agent1.received_recording(Duration::from_secs(10));
    assert_eq!(
        registrar.count("in-dialog BYE from "),
        1,
        "outdial's BYE to the agent must follow the Record-Route through the proxy:\n{}",
        tail(&registrar.log(), 40)
    );

    let (corr, lag) = best_correlation(
        &read_wav_8k(&callee_wav),
        &read_wav_8k(&agent_heard),
        8000 * 6,
    );
    eprintln!("agent's recording vs the callee's speech: {corr:.3} at lag {lag}");
    assert!(
        corr > 0.5,
        "the agent did not hear the callee: {corr:.3} at lag {lag}"
    );
    let callee_heard = callee.received_recording(Duration::from_secs(10));
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

/// A registered agent behind the proxy holds, resumes and hangs up (baresip driven through
/// its command console): its re-INVITEs and BYE pass the proxy, and the callee (sipp, which
/// requires them) gets our hold (sendonly) and unhold (sendrecv) re-INVITEs, then our BYE.
#[test]
fn registered_agent_behind_a_proxy_holds_resumes_and_hangs_up() {
    let dir = test_dir("peers-registrar-hold");
    let d = dir.path();
    let far = d.join("far.wav");
    speech_wav_padded(&far, "Hello, this is the person you called.", 0.3, 12.0);
    let agent_wav = d.join("agent.wav");
    speech_wav_padded(&agent_wav, "Sales desk.", 0.2, 0.5);
    let registrar = Registrar::start(d);
    let agent = registrar.agent(d, "agent1", &agent_wav, true);
    let callee = Sipp::uas(d, "uas_accept_hold.xml").stream_wav(&far).start();
    let wait = Duration::from_secs(10);
    let run = thread::scope(|s| {
        s.spawn(|| {
            if !agent.wait_log("Call established", 1, Duration::from_secs(20)) {
                return;
            }
            // Each step once the previous re-INVITE has passed the proxy, and a second on.
            let reinvite = format!("in-dialog INVITE from 127.0.0.1:{} ", agent.port);
            thread::sleep(Duration::from_millis(1000));
            agent.command("hold");
            if !registrar.wait_count(&reinvite, 1, wait) {
                return;
            }
            thread::sleep(Duration::from_millis(1000));
            agent.command("resume");
            if !registrar.wait_count(&reinvite, 2, wait) {
                return;
            }
            thread::sleep(Duration::from_millis(1000));
            agent.command("hangup");
        });
        run_call(
            d,
            &[
                &callee.uri("15551230010"),
                "--connect-to",
                &registrar.aor("agent1"),
                "--max-duration",
                "30",
            ],
        )
    });
    let callee_run = callee.wait(SIPP_WAIT);
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(
        run.json["ended_by"], "agent",
        "the agent hung up, we ended the callee's leg: {}",
        run.json
    );
    let b = bridge(&run);
    assert_eq!(b["answered"], true, "{}", run.json);
    assert_eq!(b["ended_by"], "agent", "{}", run.json);
    callee_run
        .assert_passed("callee leg (must see our sendonly then sendrecv re-INVITEs, then BYE)");
    assert_eq!(
        callee_run.received_requests("INVITE").len(),
        3,
        "our INVITE, then the hold and unhold re-INVITEs"
    );
    let from_agent = |method: &str| format!("in-dialog {method} from 127.0.0.1:{} ", agent.port);
    let log = tail(&registrar.log(), 40);
    assert_eq!(
        registrar.count(&from_agent("INVITE")),
        2,
        "the agent's re-INVITEs pass the proxy:\n{log}"
    );
    assert_eq!(
        registrar.count(&from_agent("BYE")),
        1,
        "the agent's BYE passes the proxy:\n{log}"
    );
    assert!(agent.log().contains("call: hold"), "baresip held the call");
    assert!(agent.log().contains("call: resume"), "baresip resumed it");
}

/// The callee's phone has no telephone-event (its SDP answers PCMU only) and its keys travel
/// as tones inside its audio ("2580"): outdial hears them and the agent (baresip, with
/// telephone-event) receives each one as an RFC 4733 event.
#[test]
fn inband_keys_from_a_callee_without_telephone_event_reach_the_agent_as_rfc4733() {
    let dir = test_dir("peers-inband-to-rfc4733");
    let d = dir.path();
    let mut keys = dtmf_tones("2580", 1000, 150, 150);
    keys.extend(std::iter::repeat_n(0i16, 8000 * 3));
    assert_eq!(
        decode_dtmf(&keys),
        "2580",
        "the harness's decoder reads the keys"
    );
    let keys_wav = d.join("keys.wav");
    write_wav_8k(&keys_wav, &keys);
    let agent_wav = d.join("agent.wav");
    speech_wav_padded(&agent_wav, "Sales desk.", 0.2, 0.5);
    let agent = Baresip::start(d, &agent_wav);
    let callee = Sipp::uas(d, "uas_pcmu_only_then_bye.xml")
        .replace("@PAUSE_MS@", "5000")
        .stream_wav(&keys_wav)
        .start();
    let run = run_call(
        d,
        &[
            &callee.uri("15551230011"),
            "--connect-to",
            &agent.uri(),
            "--max-duration",
            "15",
        ],
    );
    let callee_run = callee.wait(SIPP_WAIT);
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(bridge(&run)["answered"], true, "{}", run.json);
    assert_eq!(bridge(&run)["ended_by"], "callee", "{}", run.json);
    callee_run.assert_passed("callee without telephone-event");
    assert_eq!(
        run.json["dtmf_received"], "2580",
        "outdial heard the keys in-band: {}",
        run.json
    );
    assert!(agent.wait_call_ended(Duration::from_secs(10)));
    let log = agent.log();
    assert_eq!(
        agent.dtmf_heard(),
        "2580",
        "RFC 4733 events the agent received; log:\n{}",
        tail(&log, 40)
    );
}

/// The callee presses "159#" as RFC 4733 events; the agent (sipp, its media sent to an RTP
/// capture) answers PCMU only, without telephone-event: its wire carries the keys as tones
/// (decoded from the captured audio) and no event packet at all.
#[test]
fn rfc4733_keys_become_tones_for_an_agent_without_telephone_event() {
    let dir = test_dir("peers-rfc4733-to-inband");
    let d = dir.path();
    let capture = RtpCapture::start();
    let agent = Sipp::uas(d, "uas_pcmu_only_rtp_to.xml")
        .replace("@RTP_PORT@", &capture.port.to_string())
        .start();
    let callee = Sipp::uas(d, "uas_dtmf_then_wait.xml").start();
    let run = run_call(
        d,
        &[
            &callee.uri("15551230012"),
            "--connect-to",
            &agent.uri("agent1"),
            "--max-duration",
            "15",
        ],
    );
    let callee_run = callee.wait(SIPP_WAIT);
    let agent_run = agent.wait(SIPP_WAIT);
    let (samples, packets, other) = capture.finish_all();
    // What the agent's wire carried, to listen to when the test dir is kept.
    write_wav_8k(&d.join("agent-wire.wav"), &samples);
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(bridge(&run)["answered"], true, "{}", run.json);
    assert_eq!(run.json["dtmf_received"], "159#", "{}", run.json);
    callee_run.assert_passed("dtmf callee");
    agent_run.assert_passed("agent without telephone-event (needs our BYE)");
    let answer = &agent_run
        .sip_messages()
        .into_iter()
        .find(|m| !m.received && m.status() == Some(200))
        .expect("the agent's 200")
        .text;
    assert!(!answer.contains("telephone-event"), "{answer}");
    assert_eq!(
        other, 0,
        "no packet but PCMU for an agent without telephone-event ({packets} PCMU packets)"
    );
    assert_eq!(
        decode_dtmf(&samples),
        "159#",
        "keys in the agent's audio ({packets} PCMU packets, {:.1} s)",
        samples.len() as f64 / 8000.0
    );
}

/// The callee presses "47*" by SIP INFO (application/dtmf-relay) while its audio runs: the
/// agent (baresip) receives each key as an RFC 4733 event.
#[test]
fn sip_info_keys_from_the_callee_reach_the_agent_as_rfc4733() {
    let dir = test_dir("peers-info-to-rfc4733");
    let d = dir.path();
    let far = d.join("far.wav");
    speech_wav_padded(&far, "Hello, this is the person you called.", 0.3, 8.0);
    let agent_wav = d.join("agent.wav");
    speech_wav_padded(&agent_wav, "Sales desk.", 0.2, 0.5);
    let agent = Baresip::start(d, &agent_wav);
    let callee = Sipp::uas(d, "uas_info_dtmf.xml").stream_wav(&far).start();
    let run = run_call(
        d,
        &[
            &callee.uri("15551230013"),
            "--connect-to",
            &agent.uri(),
            "--max-duration",
            "15",
        ],
    );
    let callee_run = callee.wait(SIPP_WAIT);
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(bridge(&run)["answered"], true, "{}", run.json);
    assert_eq!(bridge(&run)["ended_by"], "callee", "{}", run.json);
    callee_run.assert_passed("callee sending SIP INFO (each needs our 200)");
    assert_eq!(run.json["dtmf_received"], "47*", "{}", run.json);
    assert!(agent.wait_call_ended(Duration::from_secs(10)));
    let log = agent.log();
    assert_eq!(
        agent.dtmf_heard(),
        "47*",
        "RFC 4733 events the agent received; log:\n{}",
        tail(&log, 40)
    );
}
