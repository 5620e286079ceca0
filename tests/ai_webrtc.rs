//! WebRTC AI-agent legs through `outdial call DEST --connect-to http://… --json`, with an aiortc
//! agent written against the public shapes (tests/peers/agents/webrtc_agent.py, Python from
//! `.venv`): pipecat's SmallWebRTC offer/answer and WHIP (RFC 9725). Audio both ways (the
//! callee is baresip, which records what it hears, or sipp) and hang-up both ways: the agent
//! closing its peer connection ends the SIP call with our BYE; the callee hanging up closes the
//! agent's peer connection (and, for WHIP, DELETEs its session).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const SIPP_WAIT: Duration = Duration::from_secs(30);

/// The Python that runs the agent: `.venv` (made by `make setup`), or `OUTDIAL_TEST_PYTHON`.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("OUTDIAL_TEST_PYTHON") {
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

/// tests/peers/agents/webrtc_agent.py, listening on a port it picked, ending after one session.
struct Agent {
    child: Child,
    port: u16,
    report: PathBuf,
}

impl Agent {
    fn start(dir: &Path, args: &[&str]) -> Agent {
        let report = dir.join("webrtc_agent.report.json");
        let stderr = dir.join("webrtc_agent.stderr");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/agents/webrtc_agent.py");
        let mut child = Command::new(python())
            .arg(&script)
            .args(["--port", "0", "--once", "--report"])
            .arg(&report)
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("log"))
            .spawn()
            .unwrap_or_else(|e| panic!("start webrtc_agent.py: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            assert!(
                Instant::now() < deadline,
                "webrtc_agent.py did not start listening"
            );
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(p) = line.strip_prefix("LISTENING ") {
                        break p.trim().parse::<u16>().expect("port");
                    }
                }
                _ => panic!(
                    "webrtc_agent.py exited before listening: {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                ),
            }
        };
        Agent {
            child,
            port,
            report,
        }
    }

    /// pipecat SmallWebRTC's offer endpoint.
    fn smallwebrtc_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/offer", self.port)
    }

    /// The WHIP endpoint.
    fn whip_url(&self) -> String {
        format!("http://127.0.0.1:{}/whip", self.port)
    }

    /// The report once the agent has written it (it exits after its one session).
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

/// The agent's one session, checked for what every offer must be: audio first, PCMU first,
/// PCMU chosen, no errors.
fn session<'a>(report: &'a Value, run: &CallRun, shape: &str) -> &'a Value {
    let s = &report["sessions"][0];
    assert!(
        s.is_object(),
        "the agent saw no offer: {report}\n{}",
        run.stderr
    );
    let errors = report["errors"].as_array().cloned().unwrap_or_default();
    assert!(
        errors.is_empty(),
        "the agent found errors: {errors:#?}\ncall: {}\n{}",
        run.json,
        run.stderr
    );
    assert_eq!(s["shape"], shape, "{s}");
    assert_eq!(s["offer_media"], serde_json::json!(["audio"]), "audio only");
    assert_eq!(s["offer_codecs"][0], "PCMU/8000", "{}", s["offer_codecs"]);
    assert_eq!(s["codec"], "PCMU/8000", "{s}");
    assert!(s["connected"].is_object(), "never connected: {s}");
    s
}

fn bridge(run: &CallRun) -> &Value {
    let b = &run.json["bridge"];
    assert!(b.is_object(), "no bridge object: {}", run.json);
    assert_eq!(b["kind"], "webrtc", "{}", run.json);
    b
}

fn wall(stamp: &Value) -> f64 {
    stamp["wall"]
        .as_f64()
        .unwrap_or_else(|| panic!("no time in {stamp}"))
}

/// SmallWebRTC: the person hears the agent and the agent hears the person; the call's
/// parameters and verdict arrive in `request_data`; the agent closing its peer connection
/// hangs the call up at once (not after ICE consent runs out).
#[test]
fn smallwebrtc_agent_and_person_hear_each_other_and_the_agent_closing_hangs_up() {
    let dir = test_dir("ai-webrtc-smallwebrtc");
    let d = dir.path();
    let callee_wav = d.join("callee.wav");
    speech_wav_padded(
        &callee_wav,
        "Hello, this is Maria speaking. Who is calling, please?",
        0.3,
        8.0,
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
        &[
            "--say",
            agent_wav.to_str().expect("utf-8"),
            "--close-after-ms",
            "6000",
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
            &agent.smallwebrtc_url(),
            "--agent-param",
            "campaign_name=spring",
            "--max-duration",
            "20",
        ],
    );
    let report = agent.report();
    assert!(run.status.success(), "{}", run.stderr);
    let s = session(&report, &run, "smallwebrtc");
    let b = bridge(&run);
    assert_eq!(b["answered"], true, "{}", run.json);
    assert_eq!(b["ended_by"], "agent", "{}", run.json);
    assert_eq!(run.json["ended_by"], "agent", "{}", run.json);
    assert!(b["stream"]["connect_ms"].as_u64().is_some(), "{}", run.json);
    // The agent's own parameter and the call's reached request_data.
    let data = &s["request_data"];
    assert_eq!(data["campaign_name"], "spring", "{s}");
    assert_eq!(data["AnsweredBy"], "unknown", "no detection: {s}");
    assert!(
        data["call_sid"]
            .as_str()
            .is_some_and(|c| c.starts_with("CA")),
        "{s}"
    );
    assert_eq!(data["to_number"], callee.uri().as_str(), "{s}");
    // Hung up on the agent's close_notify: the bridge lasted about the agent's 6 s, not the
    // 6 s plus the several seconds ICE consent would take to run out.
    let talk = b["talk_ms"].as_u64().unwrap_or(0);
    assert!(
        (5500..7500).contains(&talk),
        "the agent closed 6 s after connecting: talk {talk} ms"
    );
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

/// WHIP: audio both ways; the callee hanging up sends the session's DELETE and the agent's peer
/// connection closes.
#[test]
fn whip_agent_and_person_hear_each_other_and_the_callee_hanging_up_deletes_the_session() {
    let dir = test_dir("ai-webrtc-whip");
    let d = dir.path();
    let callee_wav = d.join("callee.wav");
    speech_wav_padded(
        &callee_wav,
        "Hello, this is Maria speaking. Who is calling, please?",
        0.3,
        8.0,
    );
    let agent_wav = d.join("agent.wav");
    speech_wav_padded(
        &agent_wav,
        "Good morning, I am calling from the clinic about tomorrow.",
        0.0,
        0.2,
    );
    let agent_heard = d.join("agent-heard.wav");
    let agent = Agent::start(
        d,
        &[
            "--say",
            agent_wav.to_str().expect("utf-8"),
            "--record",
            agent_heard.to_str().expect("utf-8"),
        ],
    );
    let callee = BaresipOptions {
        control: true,
        ..BaresipOptions::default()
    }
    .start(d, &callee_wav);
    let run = std::thread::scope(|s| {
        s.spawn(|| {
            // The callee hangs up 7 s into its call (both speeches are over by then).
            if callee.wait_log("Call established", 1, Duration::from_secs(20)) {
                std::thread::sleep(Duration::from_secs(7));
                callee.command("hangup");
            }
        });
        run_call(
            d,
            &[
                &callee.uri(),
                "--connect-to",
                &agent.whip_url(),
                "--agent-format",
                "whip",
                "--max-duration",
                "20",
            ],
        )
    });
    let report = agent.report();
    assert!(run.status.success(), "{}", run.stderr);
    let s = session(&report, &run, "whip");
    let b = bridge(&run);
    assert_eq!(b["answered"], true, "{}", run.json);
    assert_eq!(b["ended_by"], "callee", "{}", run.json);
    // The DELETE arrived and ended the session.
    assert!(
        s["close_requested"].is_object(),
        "no DELETE reached the agent: {s}"
    );
    assert!(s["ended"].is_object(), "{s}");
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

/// SmallWebRTC has no DELETE: the callee's BYE closes our peer connection, and the agent sees
/// its connection close within a second (not after its consent checks time out).
#[test]
fn callee_bye_closes_the_smallwebrtc_agents_peer_connection() {
    let dir = test_dir("ai-webrtc-callee-bye");
    let d = dir.path();
    let far = d.join("far.wav");
    speech_wav(&far, "Hello, who is this?");
    let callee = Sipp::uas(d, "uas_pcmu_only_then_bye.xml")
        .replace("@PAUSE_MS@", "3000")
        .stream_wav(&far)
        .start();
    let agent = Agent::start(d, &["--echo"]);
    let run = run_call(
        d,
        &[
            &callee.uri("15551230200"),
            "--connect-to",
            &agent.smallwebrtc_url(),
            "--max-duration",
            "20",
        ],
    );
    let ended_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let report = agent.report();
    callee.wait(SIPP_WAIT).assert_passed("callee hangs up");
    assert!(run.status.success(), "{}", run.stderr);
    let s = session(&report, &run, "smallwebrtc");
    assert_eq!(bridge(&run)["ended_by"], "callee", "{}", run.json);
    let closed = s["states"]
        .as_array()
        .expect("states")
        .iter()
        .find(|st| st["kind"] == "connection" && st["state"] == "closed")
        .unwrap_or_else(|| panic!("the agent's peer connection never closed: {s}"));
    assert!(
        wall(closed) < ended_at + 1.0,
        "the agent's connection closed {:.1} s after outdial exited",
        wall(closed) - ended_at
    );
    assert!(
        s["audio_in"]["frames"].as_u64().unwrap_or(0) > 50,
        "the agent got the callee's audio: {s}"
    );
}

/// WHIP: the agent closing its peer connection ends the SIP call with our BYE (sipp requires
/// it), about when the agent closed.
#[test]
fn whip_agent_closing_sends_bye_to_the_callee() {
    let dir = test_dir("ai-webrtc-agent-bye");
    let d = dir.path();
    let far = d.join("far.wav");
    speech_wav(&far, "Hello, who is this?");
    let callee = Sipp::uas(d, "uas_answer_audio.xml")
        .stream_wav(&far)
        .start();
    let agent = Agent::start(d, &["--echo", "--close-after-ms", "2000"]);
    let run = run_call(
        d,
        &[
            &callee.uri("15551230201"),
            "--connect-to",
            &agent.whip_url(),
            "--agent-format",
            "whip",
            "--max-duration",
            "20",
        ],
    );
    let report = agent.report();
    callee.wait(SIPP_WAIT).assert_passed("callee gets our BYE");
    assert!(run.status.success(), "{}", run.stderr);
    session(&report, &run, "whip");
    let b = bridge(&run);
    assert_eq!(b["ended_by"], "agent", "{}", run.json);
    let talk = b["talk_ms"].as_u64().unwrap_or(0);
    assert!(
        (1500..3500).contains(&talk),
        "hung up about 2 s after connecting: {talk} ms"
    );
}

/// An agent that cannot be reached: the bridge fails with the reason in the record, and the
/// call is hung up (sipp requires our BYE).
#[test]
fn unreachable_webrtc_agent_fails_the_bridge_and_hangs_up() {
    let dir = test_dir("ai-webrtc-unreachable");
    let d = dir.path();
    let far = d.join("far.wav");
    speech_wav(&far, "Hello?");
    let callee = Sipp::uas(d, "uas_answer_audio.xml")
        .stream_wav(&far)
        .start();
    let port = free_tcp_port();
    let run = run_call(
        d,
        &[
            &callee.uri("15551230202"),
            "--connect-to",
            &format!("http://127.0.0.1:{port}/api/offer"),
            "--max-duration",
            "20",
        ],
    );
    callee.wait(SIPP_WAIT).assert_passed("callee gets our BYE");
    assert!(run.status.success(), "{}", run.stderr);
    let b = bridge(&run);
    assert_eq!(b["answered"], false, "{}", run.json);
    let error = b["stream"]["error"].as_str().unwrap_or("");
    assert!(
        error.contains(&format!("127.0.0.1:{port}")),
        "the error names the agent: {}",
        run.json
    );
}
