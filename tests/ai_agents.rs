//! AI-agent legs through `outdial call DEST --connect-to ws://… --json`, with independent agents
//! (tests/peers/agents/, Python from `.venv`): pipecat-ai unchanged (its runner's Twilio
//! detection, its Twilio serializer and WebSocket transport, its own REST hang-up), a strict
//! Twilio Media Streams agent written against the public protocol that checks every field of
//! every message and reports what it saw, and a jambonz `listen`-shaped L16 consumer. The callee
//! is baresip (it records what it hears) or sipp.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const SIPP_WAIT: Duration = Duration::from_secs(30);

/// The Python that runs the agents: `.venv` (made by `make setup`), or `OUTDIAL_TEST_PYTHON`.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("OUTDIAL_TEST_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        p.is_file(),
        "{} is missing: run `make setup` (it installs the AI-agent test peers)",
        p.display()
    );
    p
}

/// An agent script from tests/peers/agents/, listening on a port it picked.
struct Agent {
    child: Child,
    port: u16,
    report: PathBuf,
}

impl Agent {
    fn start(dir: &Path, script: &str, args: &[&str]) -> Agent {
        let report = dir.join(format!("{script}.report.json"));
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/peers/agents")
            .join(script);
        let mut child = Command::new(python())
            .arg(&path)
            .args(["--port", "0", "--once", "--report"])
            .arg(&report)
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join(format!("{script}.stderr"))).expect("log"))
            .spawn()
            .unwrap_or_else(|e| panic!("start {script}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        // pipecat takes a few seconds to import on a busy machine.
        let deadline = Instant::now() + Duration::from_secs(90);
        let port = loop {
            assert!(
                Instant::now() < deadline,
                "{script} did not start listening"
            );
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(p) = line.strip_prefix("LISTENING ") {
                        break p.trim().parse::<u16>().expect("port");
                    }
                }
                _ => panic!(
                    "{script} exited before listening: {}",
                    std::fs::read_to_string(dir.join(format!("{script}.stderr")))
                        .unwrap_or_default()
                ),
            }
        };
        Agent {
            child,
            port,
            report,
        }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/media", self.port)
    }

    /// The report once the agent has written it (it exits after its one connection).
    fn report(mut self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let text = std::fs::read_to_string(&self.report)
            .unwrap_or_else(|e| panic!("agent report {}: {e}", self.report.display()));
        serde_json::from_str(&text).expect("report JSON")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn connection(report: &Value) -> &Value {
    let c = &report["connections"][0];
    assert!(c.is_object(), "the agent saw no connection: {report}");
    c
}

fn assert_no_protocol_errors(report: &Value, run: &CallRun) {
    let errors = report["errors"].as_array().cloned().unwrap_or_default();
    assert!(
        errors.is_empty(),
        "the agent found protocol errors: {errors:#?}\ncall: {}\n{}",
        run.json,
        run.stderr
    );
}

fn bridge(run: &CallRun) -> &Value {
    let b = &run.json["bridge"];
    assert!(b.is_object(), "no bridge object: {}", run.json);
    b
}

/// A steady 440 Hz tone at about −12 dBFS, `secs` long.
fn tone_wav(path: &Path, secs: f64) {
    let n = (8000.0 * secs) as usize;
    let samples: Vec<i16> = (0..n)
        .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 8000.0).sin()) as i16)
        .collect();
    write_wav_8k(path, &samples);
}

/// Where audio louder than `threshold` (RMS of 20 ms) starts and ends in a recording, in samples.
fn loud_span(samples: &[i16], threshold: f64) -> Option<(usize, usize)> {
    let loud: Vec<usize> = samples
        .chunks(160)
        .enumerate()
        .filter(|(_, c)| {
            let e: f64 = c.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / c.len() as f64;
            e.sqrt() > threshold
        })
        .map(|(i, _)| i * 160)
        .collect();
    Some((*loud.first()?, *loud.last()? + 160))
}

/// The person hears the agent and the agent hears the person; marks come back in order, each
/// once its audio has played; the agent closing its socket hangs the call up.
#[test]
fn media_streams_agent_and_person_hear_each_other_and_marks_come_back_in_order() {
    let dir = test_dir("ai-media-streams");
    let d = dir.path();
    let callee_wav = d.join("callee.wav");
    speech_wav_padded(
        &callee_wav,
        "Hello, this is Maria speaking. Who is calling, please?",
        0.3,
        6.0,
    );
    let agent_wav = d.join("agent.wav");
    speech_wav_padded(
        &agent_wav,
        "Hi Maria, this is the assistant from Acme Energy, calling about your appointment.",
        0.0,
        0.2,
    );
    let agent_heard = d.join("agent-heard.wav");
    let agent = Agent::start(
        d,
        "twilio_strict.py",
        &[
            "--say",
            agent_wav.to_str().expect("utf-8"),
            "--chunk-ms",
            "640",
            "--marks",
            "each",
            "--close-after-ms",
            "7000",
            "--record",
            agent_heard.to_str().expect("utf-8"),
        ],
    );
    let callee = Baresip::start(d, &callee_wav);
    let run = run_call(
        d,
        &[
            &callee.uri(),
            "--connect-to",
            &agent.url(),
            "--agent-param",
            "campaign_name=spring",
            "--max-duration",
            "20",
        ],
    );
    let report = agent.report();
    assert!(run.status.success(), "{}", run.stderr);
    assert_no_protocol_errors(&report, &run);
    let c = connection(&report);
    let b = bridge(&run);
    assert_eq!(b["kind"], "twilio_ws", "{}", run.json);
    assert_eq!(b["answered"], true, "{}", run.json);
    assert_eq!(b["ended_by"], "agent", "{}", run.json);
    assert_eq!(run.json["ended_by"], "agent", "{}", run.json);
    // The agent's own parameter and the call's reached `start`.
    let custom = &c["start"]["customParameters"];
    assert_eq!(custom["campaign_name"], "spring", "{c}");
    assert_eq!(custom["AnsweredBy"], "unknown", "no detection: {c}");
    assert!(custom["to_number"].as_str().is_some(), "{c}");
    // Every mark came back, in order, and none before its audio had played.
    let sent: Vec<&str> = c["sent"]["marks"]
        .as_array()
        .expect("marks")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    let echoed: Vec<&str> = c["mark_echoes"]
        .as_array()
        .expect("echoes")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert!(sent.len() >= 4, "the agent sent marks: {sent:?}");
    assert_eq!(echoed, sent, "mark echoes in order");
    // The stream's `stop`? No: the agent closed first, so it gets none; the call ended.
    assert_eq!(c["closed_by"], "agent", "{c}");
    // Audio both ways.
    let heard = callee.received_recording(Duration::from_secs(20));
    let (corr, lag) = best_correlation(&read_wav_8k(&agent_wav), &read_wav_8k(&heard), 8000 * 6);
    eprintln!("person's recording vs the agent's speech: {corr:.3} at lag {lag}");
    assert!(corr > 0.5, "the person did not hear the agent: {corr:.3}");
    let (corr, lag) = best_correlation(
        &read_wav_8k(&callee_wav)[2400..],
        &read_wav_8k(&agent_heard),
        8000 * 6,
    );
    eprintln!("agent's recording vs the person's speech: {corr:.3} at lag {lag}");
    assert!(corr > 0.5, "the agent did not hear the person: {corr:.3}");
}

/// Barge-in: the agent queues 10 s of audio at once and sends `clear` 1 s later: the person's
/// wire goes quiet at once, and the marks still pending come back right after the clear.
#[test]
fn clear_silences_the_agent_on_the_wire_and_returns_pending_marks() {
    let dir = test_dir("ai-clear");
    let d = dir.path();
    let callee_wav = d.join("callee.wav");
    speech_wav_padded(&callee_wav, "Hello?", 0.2, 8.0);
    let tone = d.join("tone.wav");
    tone_wav(&tone, 10.0);
    let agent = Agent::start(
        d,
        "twilio_strict.py",
        &[
            "--say",
            tone.to_str().expect("utf-8"),
            "--chunk-ms",
            "1000",
            "--marks",
            "each",
            "--clear-after-ms",
            "1000",
            "--close-after-ms",
            "4000",
        ],
    );
    let callee = Baresip::start(d, &callee_wav);
    let run = run_call(
        d,
        &[
            &callee.uri(),
            "--connect-to",
            &agent.url(),
            "--max-duration",
            "20",
        ],
    );
    let report = agent.report();
    assert!(run.status.success(), "{}", run.stderr);
    assert_no_protocol_errors(&report, &run);
    let c = connection(&report);
    assert_eq!(bridge(&run)["stream"]["clears"], 1, "{}", run.json);
    let echoes = c["mark_echoes"].as_array().expect("echoes");
    assert_eq!(echoes.len(), 10, "every mark comes back: {echoes:?}");
    assert!(
        echoes.iter().skip(1).all(|e| e["after_clear"] == true),
        "marks 2..10 come back because of the clear: {echoes:?}"
    );
    // The person heard about 1 s of tone, then nothing.
    let heard = read_wav_8k(&callee.received_recording(Duration::from_secs(20)));
    let (start, end) = loud_span(&heard, 1500.0).expect("the person heard the tone");
    let heard_ms = (end - start) as f64 / 8.0;
    eprintln!("tone on the person's wire for {heard_ms:.0} ms");
    assert!(
        (800.0..1200.0).contains(&heard_ms),
        "clear after 1 s of audio: the person heard {heard_ms:.0} ms"
    );
}

/// The agent hangs up through Twilio's REST call control (as pipecat's serializer does):
/// 200 with the call's status, and the SIP call ends with our BYE.
#[test]
fn twilio_rest_hangup_from_the_agent_ends_the_sip_call() {
    let dir = test_dir("ai-rest-hangup");
    let d = dir.path();
    let far = d.join("far.wav");
    speech_wav(&far, "Hello, who is this?");
    let callee = Sipp::uas(d, "uas_answer_audio.xml")
        .stream_wav(&far)
        .start();
    let control_port = free_tcp_port();
    let agent = Agent::start(
        d,
        "twilio_strict.py",
        &[
            "--hangup-rest",
            &format!("http://127.0.0.1:{control_port}"),
            "--hangup-after-ms",
            "2000",
            "--api-key",
            "test-control-key",
        ],
    );
    let mut cmd = outdial_cmd(d);
    cmd.env("OUTDIAL_CONTROL_KEY", "test-control-key");
    let run = run_call_in(
        cmd,
        &[
            &callee.uri("15551230100"),
            "--connect-to",
            &agent.url(),
            "--control-listen",
            &format!("127.0.0.1:{control_port}"),
            "--max-duration",
            "20",
        ],
        Duration::from_secs(60),
    );
    let report = agent.report();
    callee.wait(SIPP_WAIT).assert_passed("callee gets our BYE");
    assert!(run.status.success(), "{}", run.stderr);
    assert_no_protocol_errors(&report, &run);
    let c = connection(&report);
    let hangup = &c["hangup"];
    assert_eq!(hangup["status"], 200, "{hangup}");
    let body: Value = serde_json::from_str(hangup["body"].as_str().unwrap_or("{}")).expect("json");
    assert_eq!(body["status"], "completed", "{body}");
    assert_eq!(body["sid"], c["call_sid"], "{body}");
    assert_eq!(bridge(&run)["ended_by"], "agent", "{}", run.json);
    let talk = bridge(&run)["talk_ms"].as_u64().unwrap_or(0);
    assert!(
        (1500..4000).contains(&talk),
        "hung up about 2 s after start: {talk} ms"
    );
    // The stream ended with `stop`.
    let last = c["received"]
        .as_array()
        .and_then(|r| r.last())
        .map(|m| m["msg"]["event"].clone());
    assert_eq!(last, Some(Value::from("stop")), "{c}");
}

/// Keys the person presses reach the agent as `dtmf` messages.
#[test]
fn callee_digits_reach_the_media_streams_agent() {
    let dir = test_dir("ai-dtmf");
    let d = dir.path();
    let agent = Agent::start(d, "twilio_strict.py", &["--close-after-ms", "6000"]);
    let callee = Sipp::uas(d, "uas_dtmf_then_wait.xml").start();
    let run = run_call(
        d,
        &[
            &callee.uri("15551230101"),
            "--connect-to",
            &agent.url(),
            "--max-duration",
            "15",
        ],
    );
    let report = agent.report();
    let _ = callee.wait(SIPP_WAIT);
    assert!(run.status.success(), "{}", run.stderr);
    assert_no_protocol_errors(&report, &run);
    let digits: String = connection(&report)["dtmf"]
        .as_array()
        .expect("dtmf")
        .iter()
        .filter_map(|d| d.as_str())
        .collect();
    assert_eq!(digits, "159#", "digits the agent got");
}

/// An agent set to hand off: when it closes its socket the person is bridged to a person
/// (a baresip agent), who hears the callee; the JSON shows both bridges.
#[test]
fn agent_leaving_hands_the_person_to_a_sip_agent() {
    let dir = test_dir("ai-handoff");
    let d = dir.path();
    let callee_wav = d.join("callee.wav");
    speech_wav_padded(
        &callee_wav,
        "I would rather talk to a real person about my bill, please.",
        3.0,
        4.0,
    );
    let human_wav = d.join("human.wav");
    speech_wav_padded(&human_wav, "Billing desk, Sam speaking.", 0.2, 8.0);
    let human = Baresip::start(d, &human_wav);
    let callee = Baresip::start(d, &callee_wav);
    let agent = Agent::start(d, "twilio_strict.py", &["--close-after-ms", "1500"]);
    let run = run_call(
        d,
        &[
            &callee.uri(),
            "--connect-to",
            &agent.url(),
            "--handoff-to",
            &human.uri(),
            "--max-duration",
            "12",
        ],
    );
    let report = agent.report();
    assert!(run.status.success(), "{}", run.stderr);
    assert_no_protocol_errors(&report, &run);
    let b = bridge(&run);
    assert_eq!(b["kind"], "twilio_ws", "{}", run.json);
    assert_eq!(b["ended_by"], "agent", "{}", run.json);
    let t = &run.json["transfer"];
    assert_eq!(t["kind"], "sip", "{}", run.json);
    assert_eq!(t["answered"], true, "{}", run.json);
    let heard = human.received_recording(Duration::from_secs(20));
    let (corr, lag) = best_correlation(
        &read_wav_8k(&callee_wav)[3 * 8000..],
        &read_wav_8k(&heard),
        8000 * 8,
    );
    eprintln!("human agent's recording vs the person's speech: {corr:.3} at lag {lag}");
    assert!(
        corr > 0.5,
        "the human agent did not hear the person: {corr:.3}"
    );
}

/// pipecat as shipped: its runner detects Twilio from our first frames, its serializer and
/// transport carry the call, the bot's speech reaches the person, the person's reaches the bot,
/// and pipecat's own end-of-call hang-up (Twilio REST, pointed at us) ends the SIP call.
#[test]
fn pipecat_bot_talks_with_the_person_and_its_own_hangup_ends_the_call() {
    let dir = test_dir("ai-pipecat");
    let d = dir.path();
    let callee_wav = d.join("callee.wav");
    speech_wav_padded(
        &callee_wav,
        "Hello, this is Maria. Yes, I can talk now.",
        0.3,
        10.0,
    );
    let bot_wav = d.join("bot.wav");
    speech_wav_padded(
        &bot_wav,
        "Good morning Maria, this is the Acme assistant with a quick reminder.",
        0.0,
        0.2,
    );
    let bot_heard = d.join("bot-heard.wav");
    let control_port = free_tcp_port();
    let account = outdial::bridge::agent::twilio::account_sid(0);
    let agent = Agent::start(
        d,
        "pipecat_agent.py",
        &[
            "--say",
            bot_wav.to_str().expect("utf-8"),
            "--record",
            bot_heard.to_str().expect("utf-8"),
            "--end-after-ms",
            "6000",
            "--account-sid",
            &account,
            "--auth-token",
            "pipecat-key",
            "--twilio-base-url",
            &format!("http://127.0.0.1:{control_port}"),
        ],
    );
    let callee = Baresip::start(d, &callee_wav);
    let mut cmd = outdial_cmd(d);
    cmd.env("OUTDIAL_CONTROL_KEY", "pipecat-key");
    let run = run_call_in(
        cmd,
        &[
            &callee.uri(),
            "--connect-to",
            &agent.url(),
            "--control-listen",
            &format!("127.0.0.1:{control_port}"),
            "--max-duration",
            "30",
        ],
        Duration::from_secs(90),
    );
    let report = agent.report();
    assert!(run.status.success(), "{}", run.stderr);
    let session = &report["sessions"][0];
    assert_eq!(
        session["transport_type"], "twilio",
        "pipecat's detection: {report}"
    );
    assert_eq!(bridge(&run)["answered"], true, "{}", run.json);
    assert_eq!(
        run.json["ended_by"], "agent",
        "pipecat hung up: {}",
        run.json
    );
    let log = report["log"].to_string();
    assert!(
        log.contains("Successfully terminated"),
        "pipecat's own hang-up did not succeed: {log}"
    );
    assert!(
        report["errors"].as_array().is_some_and(|e| e.is_empty()),
        "{report}"
    );
    let heard = callee.received_recording(Duration::from_secs(20));
    let (corr, lag) = best_correlation(&read_wav_8k(&bot_wav), &read_wav_8k(&heard), 8000 * 6);
    eprintln!("person's recording vs pipecat's speech: {corr:.3} at lag {lag}");
    assert!(corr > 0.5, "the person did not hear the bot: {corr:.3}");
    let (corr, lag) = best_correlation(
        &read_wav_8k(&callee_wav)[2400..8000 * 4],
        &read_wav_8k(&bot_heard),
        8000 * 6,
    );
    eprintln!("pipecat's recording vs the person's speech: {corr:.3} at lag {lag}");
    assert!(corr > 0.5, "the bot did not hear the person: {corr:.3}");
}

/// pipecat interrupting itself sends `clear`: its speech stops on the person's wire.
#[test]
fn pipecat_interruption_stops_the_bot_on_the_wire() {
    let dir = test_dir("ai-pipecat-interrupt");
    let d = dir.path();
    let callee_wav = d.join("callee.wav");
    speech_wav_padded(&callee_wav, "Hello?", 0.2, 10.0);
    let tone = d.join("tone.wav");
    tone_wav(&tone, 8.0);
    let agent = Agent::start(
        d,
        "pipecat_agent.py",
        &[
            "--say",
            tone.to_str().expect("utf-8"),
            "--interrupt-after-ms",
            "1500",
        ],
    );
    let callee = Baresip::start(d, &callee_wav);
    let run = run_call(
        d,
        &[
            &callee.uri(),
            "--connect-to",
            &agent.url(),
            "--max-duration",
            "6",
        ],
    );
    let report = agent.report();
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        report["sessions"][0]["interrupted"].is_object(),
        "pipecat did not interrupt: {report}"
    );
    assert!(
        bridge(&run)["stream"]["clears"].as_u64().unwrap_or(0) >= 1,
        "no clear reached us: {}",
        run.json
    );
    let heard = read_wav_8k(&callee.received_recording(Duration::from_secs(20)));
    let (start, end) = loud_span(&heard, 1500.0).expect("the person heard the bot");
    let heard_ms = (end - start) as f64 / 8.0;
    eprintln!("bot's tone on the person's wire for {heard_ms:.0} ms");
    assert!(
        (1200.0..2200.0).contains(&heard_ms),
        "interrupted 1.5 s into its speech: the person heard {heard_ms:.0} ms"
    );
}

/// A jambonz `listen`-style consumer at 16 kHz: the metadata frame first, L16 both ways at
/// the stream's rate, keys as `dtmf` events, `disconnect` hangs the call up.
#[test]
fn l16_stream_at_16_khz_carries_audio_both_ways_and_disconnect_hangs_up() {
    let dir = test_dir("ai-l16-16k");
    let d = dir.path();
    let callee_wav = d.join("callee.wav");
    speech_wav_padded(
        &callee_wav,
        "Hello, this is Maria. Who is calling?",
        0.3,
        8.0,
    );
    let agent_wav = d.join("agent.wav");
    speech_wav_padded(
        &agent_wav,
        "Hi Maria, this is the Acme assistant, calling about your appointment.",
        0.0,
        0.2,
    );
    let agent_heard = d.join("agent-heard.wav");
    let agent = Agent::start(
        d,
        "jambonz_listen.py",
        &[
            "--say",
            agent_wav.to_str().expect("utf-8"),
            "--record",
            agent_heard.to_str().expect("utf-8"),
            "--disconnect-after-ms",
            "6500",
        ],
    );
    let callee = Baresip::start(d, &callee_wav);
    let run = run_call(
        d,
        &[
            &callee.uri(),
            "--connect-to",
            &agent.url(),
            "--agent-format",
            "l16",
            "--agent-rate",
            "16000",
            "--from",
            "+15550001111",
            "--max-duration",
            "20",
        ],
    );
    let report = agent.report();
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        report["errors"].as_array().is_some_and(|e| e.is_empty()),
        "{report}"
    );
    let c = connection(&report);
    assert_eq!(c["subprotocol"], "audio.jambonz.org", "{c}");
    assert_eq!(c["sample_rate"], 16000, "{c}");
    assert_eq!(c["metadata"]["mixType"], "mono", "{c}");
    assert_eq!(c["metadata"]["from"], "+15550001111", "{c}");
    assert!(c["metadata"]["callSid"].as_str().is_some(), "{c}");
    let b = bridge(&run);
    assert_eq!(b["kind"], "l16_ws", "{}", run.json);
    assert_eq!(run.json["ended_by"], "agent", "disconnect: {}", run.json);
    let talk = b["talk_ms"].as_u64().unwrap_or(0);
    assert!(
        (5500..8000).contains(&talk),
        "disconnect after 6.5 s: {talk} ms"
    );
    let heard = callee.received_recording(Duration::from_secs(20));
    let (corr, lag) = best_correlation(&read_wav_8k(&agent_wav), &read_wav_8k(&heard), 8000 * 6);
    eprintln!("person's recording vs the agent's 16 kHz speech: {corr:.3} at lag {lag}");
    assert!(corr > 0.5, "the person did not hear the agent: {corr:.3}");
    let (corr, lag) = best_correlation(
        &read_wav_8k(&callee_wav)[2400..],
        &read_wav_8k(&agent_heard),
        8000 * 6,
    );
    eprintln!("agent's 16 kHz recording vs the person's speech: {corr:.3} at lag {lag}");
    assert!(corr > 0.5, "the agent did not hear the person: {corr:.3}");
}

/// L16 at 8 kHz: `killAudio` silences the agent on the person's wire at once, and the
/// person's keys reach the agent as `dtmf` text frames.
#[test]
fn l16_stream_at_8_khz_kill_audio_and_keys() {
    let dir = test_dir("ai-l16-8k");
    let d = dir.path();
    let tone = d.join("tone.wav");
    tone_wav(&tone, 8.0);
    let agent = Agent::start(
        d,
        "jambonz_listen.py",
        &[
            "--say",
            tone.to_str().expect("utf-8"),
            "--chunk-ms",
            "500",
            "--kill-after-ms",
            "1000",
            "--disconnect-after-ms",
            "6000",
        ],
    );
    let callee = Sipp::uas(d, "uas_dtmf_then_wait.xml").start();
    let run = run_call(
        d,
        &[
            &callee.uri("15551230102"),
            "--connect-to",
            &agent.url(),
            "--agent-format",
            "l16",
            "--max-duration",
            "15",
        ],
    );
    let report = agent.report();
    let _ = callee.wait(SIPP_WAIT);
    assert!(run.status.success(), "{}", run.stderr);
    let c = connection(&report);
    assert_eq!(c["sample_rate"], 8000, "{c}");
    let digits: String = c["dtmf"]
        .as_array()
        .expect("dtmf")
        .iter()
        .filter_map(|d| d.as_str())
        .collect();
    assert_eq!(digits, "159#", "digits the agent got: {c}");
    let b = bridge(&run);
    assert_eq!(b["stream"]["clears"], 1, "{}", run.json);
    // 8 s of tone was queued; killAudio after 1 s: about 1 s went out.
    let audio_ms = b["stream"]["agent_audio_ms"].as_u64().unwrap_or(0);
    assert!(
        audio_ms >= 7000,
        "the whole burst was queued: {audio_ms} ms"
    );
    let sent = run.json["rtp"]["sent"].as_u64().unwrap_or(0);
    assert!(sent > 0, "{}", run.json);
}

/// A voicemail never reaches the bot: with AMD, the agent's socket is opened while the machine
/// greets (warm), and closed without `start` once it is judged a machine; no audio crosses.
#[test]
fn a_machine_never_reaches_the_agent() {
    let dir = test_dir("ai-machine");
    let d = dir.path();
    let far_end = d.join("voicemail.wav");
    voicemail_with_beep(d, &far_end);
    let agent = Agent::start(d, "twilio_strict.py", &[]);
    let callee = Sipp::uas(d, "uas_answer_audio.xml")
        .stream_wav(&far_end)
        .start();
    let run = run_call(
        d,
        &[
            &callee.uri("15551230103"),
            "--amd",
            "heuristic",
            "--connect-to",
            &agent.url(),
            "--max-duration",
            "25",
        ],
    );
    let report = agent.report();
    let _ = callee.wait(SIPP_WAIT);
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(run.json["amd"]["verdict"], "machine", "{}", run.json);
    let c = connection(&report);
    assert!(
        c["start"].is_null(),
        "a machine was streamed to the agent: {c}"
    );
    assert_eq!(c["inbound_media"]["count"], 0, "{c}");
    let events: Vec<&str> = c["received"]
        .as_array()
        .expect("received")
        .iter()
        .filter_map(|m| m["msg"]["event"].as_str())
        .collect();
    assert_eq!(
        events,
        ["connected"],
        "only the warm socket's first frame: {c}"
    );
    assert!(
        run.json["bridge"].is_null() || run.json["bridge"]["answered"] == false,
        "{}",
        run.json
    );
}

/// With AMD, a person is streamed the moment they are detected: `start` says AnsweredBy human.
#[test]
fn a_person_detected_by_amd_reaches_the_agent_with_answered_by_human() {
    let dir = test_dir("ai-amd-human");
    let d = dir.path();
    let far_end = d.join("hello.wav");
    speech_wav_padded(&far_end, "Hello?", 0.4, 8.0);
    let agent = Agent::start(d, "twilio_strict.py", &["--close-after-ms", "2000"]);
    let callee = Sipp::uas(d, "uas_answer_audio.xml")
        .stream_wav(&far_end)
        .start();
    let run = run_call(
        d,
        &[
            &callee.uri("15551230104"),
            "--amd",
            "heuristic",
            "--connect-to",
            &agent.url(),
            "--max-duration",
            "25",
        ],
    );
    let report = agent.report();
    let _ = callee.wait(SIPP_WAIT);
    assert!(run.status.success(), "{}", run.stderr);
    assert_no_protocol_errors(&report, &run);
    assert_eq!(run.json["amd"]["verdict"], "human", "{}", run.json);
    let c = connection(&report);
    assert_eq!(c["start"]["customParameters"]["AnsweredBy"], "human", "{c}");
    assert_eq!(
        c["start"]["customParameters"]["amd_verdict"], "human",
        "{c}"
    );
    // Warm: the socket was open before the verdict, so `start` followed it at once.
    let connect_ms = bridge(&run)["stream"]["connect_ms"]
        .as_u64()
        .unwrap_or(u64::MAX);
    let decision = run.json["amd"]["decision_ms"].as_u64().unwrap_or(0);
    let answer = run.json["answer_ms"].as_u64().unwrap_or(0);
    assert!(
        connect_ms < answer + decision,
        "the socket opened ({connect_ms} ms) before the verdict ({} ms)",
        answer + decision
    );
}
