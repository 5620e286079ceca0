//! `outdial bench agent`: people streamed to AI agents over Twilio Media Streams, through the
//! code the server runs — dead air and barge-in measured call by call, then N concurrent calls
//! bridged to an echo agent.
//!
//! Every call's callee leg is placed with [`Call::dial`] to a sipp far end (ringing 300 ms,
//! then answering with SDP whose media port is the Request-URI's user part, as
//! [`super::bridge::FAR_END_SCENARIO`]); as the flow runner does, the agent's socket is opened
//! at dial time ([`Warm::connect`]), the received audio goes through
//! [`record_call`](crate::flow::record_call) into the bridge's [`CalleeAudio`] slot, and at the
//! verdict (here: the answer) [`AgentBridge::start`] starts the stream.
//!
//! **Dead air** (`--latency-calls`, a new call every 100 ms): the agent is a Media Streams
//! server on its own thread and runtime in this process, and the callee's wire an RTP socket
//! on its own thread (the SDP answer points at it; it also sends the callee's 20 ms packets).
//! All times are CLOCK_MONOTONIC in this process:
//! * start: from calling [`AgentBridge::start`] to the agent reading `start`;
//! * first audio: from the agent sending its first `media` (3 s of tone, in 300 ms messages
//!   sent back to back, 0–40 ms after `start`, drawn at random so that the audio meets the
//!   callee leg's 20 ms sending grid at any point of it, as a real agent's does) to the first
//!   packet carrying tone arriving on the callee's socket;
//! * barge-in: 500–540 ms later (again at random) the agent sends `clear`: from sending it to
//!   the first silent packet after the last tone packet on the callee's socket.
//!
//! **Load** (`--calls`, `--seconds`): every call bridged to the echo agent ([`super::echo`], a
//! child process: its CPU is its own) and fed by the generator ([`super::gen`], a child
//! process) in its tagged mode: each 20 ms packet's payload carries its stream and sequence
//! number, and comes back — after the callee leg's jitter buffer, the call's frames, the
//! agent's socket, the echo, the callee leg's paced 20 ms stream — as a packet of that call's
//! own stream to the generator's socket, which the SDP answer named. The generator matches it
//! by payload and times it with the kernel's receive timestamp: the round trip, and every
//! frame lost on the way. Late turns are the media engine's paced sends that missed their
//! 20 ms slot ([`EngineCounters::late_sends`]); CPU is this process's (`/proc/self/stat`:
//! media engine, SIP stack, the calls' and bridges' tasks) over the generator's window.
//!
//! Linux only; needs `sipp` on PATH. It is a measuring tool: nothing here runs in the server,
//! and it must NOT change how calls or bridges behave.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use super::bridge::FarEnd;
use super::echo::{EchoCommand, EchoCounts, EchoEvent};
use super::gen::{self, GenCommand, GenEvent, GenResult};
use super::{host_cpu, host_percent, round, rtpengine, sys, GenProcess};
use crate::bridge::agent::twilio::{self, StreamIds};
use crate::bridge::agent::{AgentBridge, AgentKind, AgentTarget, OnAgentClose, StreamInfo, Warm};
use crate::bridge::{Bridge, BridgeEvent, CalleeAudio, EndedBy};
use crate::call::{Call, CallEvent, CallRequest};
use crate::config::Config;
use crate::flow::record::{listener_dropped_frames, record_call, ReplyRequest};
use crate::media::engine::{Engine, EngineCounters};
use crate::media::rtp::{write_rtp, RtpPacket};
use crate::media::session::MediaSession;
use crate::sip::UserAgent;

/// The far end: 180, 300 ms of ringing (the agent's socket opens meanwhile, as it does while
/// a real call rings), then 200 with PCMU + telephone-event SDP whose media port is the
/// Request-URI's user part (`sip:m<PORT>@…`); then waits for ACK and BYE.
pub const FAR_END_SCENARIO: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="outdial bench agent far end">
  <recv request="INVITE">
    <action>
      <ereg regexp="sip:m([0-9]+)@" search_in="msg" check_it="true" assign_to="all,port"/>
    </action>
  </recv>
  <Reference variables="all"/>
  <send>
    <![CDATA[

      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="300"/>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=far 1 1 IN IP4 127.0.0.1
      s=-
      c=IN IP4 127.0.0.1
      t=0 0
      m=audio [$port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-16
      a=sendrecv

    ]]>
  </send>
  <recv request="ACK"/>
  <recv request="BYE"/>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
"#;

/// The media ports the calls' legs take.
const RTP_PORT_MIN: u16 = 30_000;
const RTP_PORT_MAX: u16 = 59_999;
/// A new dead-air call this often.
const LATENCY_GAP: Duration = Duration::from_millis(100);
/// The agent's speech in the dead-air calls: this many 20 ms frames of tone...
const SPEECH_FRAMES: usize = 150;
/// ...sent as messages of this many frames, back to back.
const SPEECH_CHUNK_FRAMES: usize = 15;
/// From `start` to the agent's first `media`: up to this, at random...
const THINK_MAX_MS: u64 = 40;
/// ...and from its first `media` to its `clear`: this, plus up to [`THINK_MAX_MS`] at random.
const BARGE_IN_AFTER: Duration = Duration::from_millis(500);
/// After the `clear`, the call stays up this long (silence on the wire to see).
const AFTER_CLEAR: Duration = Duration::from_millis(300);
/// Anything one call waits for (an answer, an event) at most.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// The generator's warm-up before the load window, and its drain after it.
const WARMUP_MS: u64 = 500;
const DRAIN_MS: u64 = 1000;
/// How long all load calls may take to be set up, beyond the pacing itself.
const SETUP_SLACK: Duration = Duration::from_secs(30);
/// Errors kept in the report (the first ones).
const ERRORS_KEPT: usize = 5;

/// What `outdial bench agent` was asked to do.
#[derive(Debug, Clone)]
pub struct AgentBenchOptions {
    /// Concurrent calls bridged to the echo agent (0: no load phase).
    pub calls: usize,
    /// The load window, s.
    pub seconds: f64,
    /// Calls measured for dead air and barge-in (0: none).
    pub latency_calls: usize,
    /// INVITEs per second while setting the load calls up.
    pub cps: f64,
    /// The outdial binary to run as the generator and the echo agent.
    pub exe: PathBuf,
    pub sipp_bin: PathBuf,
    /// The generator's tick, µs.
    pub gen_tick_us: u64,
}

/// The result. Times in ms; a phase not run leaves its fields null.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AgentBenchReport {
    pub calls: usize,
    pub seconds: f64,
    pub latency_calls: usize,
    /// Dead-air calls that gave all three figures.
    pub latency_calls_measured: usize,
    /// Of those, calls whose agent socket was open (`connected` read) before the verdict.
    pub warm_at_verdict: usize,
    /// `AgentBridge::start` → `start` read by the agent.
    pub start_ms_p50: Option<f64>,
    pub start_ms_p99: Option<f64>,
    pub start_ms_max: Option<f64>,
    /// The agent's first `media` sent → first packet with that audio on the callee's socket.
    pub first_audio_ms_p50: Option<f64>,
    pub first_audio_ms_p99: Option<f64>,
    pub first_audio_ms_max: Option<f64>,
    /// `clear` sent → the callee's wire silent.
    pub barge_in_ms_p50: Option<f64>,
    pub barge_in_ms_p99: Option<f64>,
    pub barge_in_ms_max: Option<f64>,
    /// Why dead-air calls failed (the first few).
    pub latency_errors: Vec<String>,

    /// Load calls set up and streaming to the echo agent.
    pub calls_bridged: usize,
    /// Setting every load call up (first INVITE → last stream started), s.
    pub setup_s: Option<f64>,
    /// outdial's whole process over the window, % of one core.
    pub cpu_percent: Option<f64>,
    /// The echo agent's process, % of one core.
    pub agent_cpu_percent: Option<f64>,
    pub generator_cpu_percent: Option<f64>,
    /// Every process on the machine over the window, % of one core.
    pub host_cpu_percent: Option<f64>,
    pub engine_workers: usize,
    pub engine_tick_us: u64,
    /// Packets the media engine sent in the window...
    pub engine_sends: Option<u64>,
    /// ...of which paced ones that missed their 20 ms slot (or were skipped).
    pub late_sends: Option<u64>,
    /// The window: generator packets sent into the callee legs...
    pub frames_sent: Option<u64>,
    /// ...of those, back on the callee legs' wire with their bytes intact or not...
    pub frames_echoed: Option<u64>,
    pub loss_ratio: Option<f64>,
    pub payload_mismatches: Option<u64>,
    pub duplicates: Option<u64>,
    /// ...and how long it took: generator → callee leg → agent → callee leg → generator.
    pub round_trip_ms_p50: Option<f64>,
    pub round_trip_ms_p99: Option<f64>,
    pub round_trip_ms_max: Option<f64>,
    /// The whole run (warm-up, window, drain), stage by stage: packets into the callee legs,
    pub frames_sent_total: Option<u64>,
    /// received by them,
    pub rtp_received_by_callees: Option<u64>,
    /// dropped by their jitter buffers (late) or never played (lost in their turn),
    pub jitter_late: Option<u64>,
    pub jitter_lost: Option<u64>,
    /// made up by them (a packet missing in its turn, or after the generator stopped),
    pub jitter_concealed: Option<u64>,
    /// dropped because the call's frame channel was full,
    pub frames_dropped_media_channel: Option<u64>,
    /// dropped because the agent bridge's channel was full,
    pub frames_dropped_agent_channel: Option<u64>,
    /// sent to the agent (made-up frames included),
    pub frames_to_agent: Option<u64>,
    /// read by the agent (of which the generator's own audio: `agent_tagged_frames`),
    pub agent_frames_received: Option<u64>,
    pub agent_tagged_frames: Option<u64>,
    /// echoed by it,
    pub agent_frames_echoed: Option<u64>,
    /// and back on the callee legs' wire, intact.
    pub frames_echoed_total: Option<u64>,
    /// `frames_sent_total − frames_echoed_total`.
    pub frames_lost_total: Option<u64>,
    /// Why load calls failed (the first few).
    pub load_errors: Vec<String>,
}

impl AgentBenchReport {
    /// A few lines for people.
    pub fn table(&self) -> String {
        let f = |v: Option<f64>| v.map_or("-".into(), |x| format!("{x:.2}"));
        let u = |v: Option<u64>| v.map_or("-".into(), |x| x.to_string());
        let goal = |v: Option<f64>, max: f64| match v {
            Some(x) if x <= max => "met",
            Some(_) => "NOT met",
            None => "-",
        };
        let mut s = format!(
            "outdial bench agent: Twilio Media Streams bridges\n\ndead air over {} calls ({} \
             measured, {} with the agent's socket open at the verdict):\n",
            self.latency_calls, self.latency_calls_measured, self.warm_at_verdict
        );
        s.push_str(&format!(
            "{:<42}{:>9}{:>9}{:>9}{:>8}\n",
            "ms", "p50", "p99", "max", "goal"
        ));
        for (name, p50, p99, max, limit) in [
            (
                "verdict → `start` at the agent",
                self.start_ms_p50,
                self.start_ms_p99,
                self.start_ms_max,
                20.0,
            ),
            (
                "agent's first `media` → callee's wire",
                self.first_audio_ms_p50,
                self.first_audio_ms_p99,
                self.first_audio_ms_max,
                40.0,
            ),
            (
                "`clear` → callee's wire silent",
                self.barge_in_ms_p50,
                self.barge_in_ms_p99,
                self.barge_in_ms_max,
                40.0,
            ),
        ] {
            s.push_str(&format!(
                "{name:<42}{:>9}{:>9}{:>9}  ≤ {limit} p99: {}\n",
                f(p50),
                f(p99),
                f(max),
                goal(p99, limit)
            ));
        }
        for e in &self.latency_errors {
            s.push_str(&format!("  failed: {e}\n"));
        }
        s.push_str(&format!(
            "\nload: {} calls ({} streaming, set up in {} s) bridged to a local echo agent, {} s \
             window; media engine {} worker(s), tick {} µs\n",
            self.calls,
            self.calls_bridged,
            f(self.setup_s),
            self.seconds,
            self.engine_workers,
            self.engine_tick_us
        ));
        s.push_str(&format!(
            "  CPU, % of a core: outdial {}, echo agent {}, generator {}, whole machine {}\n",
            f(self.cpu_percent),
            f(self.agent_cpu_percent),
            f(self.generator_cpu_percent),
            f(self.host_cpu_percent)
        ));
        s.push_str(&format!(
            "  late 20 ms sends: {} of {} (goal 0)\n",
            u(self.late_sends),
            u(self.engine_sends)
        ));
        s.push_str(&format!(
            "  window: {} frames sent, {} back intact ({} mismatched), loss {} (goal 0); round \
             trip callee → agent → callee p50 {} ms, p99 {} ms, max {} ms\n",
            u(self.frames_sent),
            u(self.frames_echoed),
            u(self.payload_mismatches),
            self.loss_ratio
                .map_or("-".into(), |l| format!("{:.4} %", 100.0 * l)),
            f(self.round_trip_ms_p50),
            f(self.round_trip_ms_p99),
            f(self.round_trip_ms_max)
        ));
        s.push_str(&format!(
            "  whole run: {} sent → {} received by the callee legs (jitter buffers: {} late, {} \
             lost, {} made up) → {} dropped on the call's channel, {} on the agent's → {} sent \
             to the agent, {} read by it ({} of the generator's) → {} echoed → {} back intact: \
             {} lost\n",
            u(self.frames_sent_total),
            u(self.rtp_received_by_callees),
            u(self.jitter_late),
            u(self.jitter_lost),
            u(self.jitter_concealed),
            u(self.frames_dropped_media_channel),
            u(self.frames_dropped_agent_channel),
            u(self.frames_to_agent),
            u(self.agent_frames_received),
            u(self.agent_tagged_frames),
            u(self.agent_frames_echoed),
            u(self.frames_echoed_total),
            u(self.frames_lost_total)
        ));
        for e in &self.load_errors {
            s.push_str(&format!("  failed: {e}\n"));
        }
        s
    }
}

/// Runs `outdial bench agent`.
pub fn run(opts: &AgentBenchOptions) -> Result<AgentBenchReport, String> {
    if opts.calls == 0 && opts.latency_calls == 0 {
        return Err("nothing to do: --calls and --latency-calls are both 0".into());
    }
    if opts.calls as f64 * 50.0 * opts.seconds > 50e6 {
        return Err(format!(
            "{} calls for {} s is over 50 million packets: shorten --seconds",
            opts.calls, opts.seconds
        ));
    }
    // Per call: RTP + RTCP sockets and the agent's socket here, the agent's end in the echo
    // agent (it raises its own limit); slack for the dead-air calls' sinks and sipp.
    let want_files = 4 * opts.calls as u64 + 1024;
    match sys::raise_nofile(want_files) {
        Ok(have) if have < 3 * opts.calls as u64 + 256 => {
            return Err(format!(
                "open-file limit is {have}, {} calls need about {}: raise `ulimit -n`",
                opts.calls,
                3 * opts.calls + 256
            ))
        }
        Ok(_) => {}
        Err(e) => return Err(format!("cannot read the open-file limit: {e}")),
    }
    let far = FarEnd::start_with(&opts.sipp_bin, FAR_END_SCENARIO)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let mut config = Config::default();
    config.sip.listen_udp = Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0));
    config.sip.listen_tcp = None;
    config.rtp.bind_addr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    config.rtp.port_min = RTP_PORT_MIN;
    config.rtp.port_max = RTP_PORT_MAX;
    let ua = runtime
        .block_on(UserAgent::start(&config))
        .map_err(|e| format!("cannot start the SIP user agent: {e}"))?;
    let engine = Engine::global().map_err(|e| e.to_string())?;
    let mut report = AgentBenchReport {
        calls: opts.calls,
        seconds: opts.seconds,
        latency_calls: opts.latency_calls,
        engine_workers: engine.config().workers,
        engine_tick_us: engine.config().tick.as_micros() as u64,
        ..AgentBenchReport::default()
    };
    let result = (|| {
        if opts.latency_calls > 0 {
            run_dead_air(&runtime, &ua, &far, opts.latency_calls, &mut report)?;
        }
        if opts.calls > 0 {
            run_load(&runtime, &ua, &far, &engine, opts, &mut report)?;
        }
        Ok::<(), String>(())
    })();
    drop(ua);
    runtime.shutdown_timeout(Duration::from_secs(2));
    drop(far);
    result.map(|()| report)
}

/// The target every bench call streams to.
fn agent_target(url: String) -> AgentTarget {
    AgentTarget {
        kind: AgentKind::TwilioWs,
        url,
        headers: Vec::new(),
        custom_parameters: BTreeMap::new(),
        sample_rate: 8000,
        on_close: OnAgentClose::Hangup,
    }
}

/// Who a bench call is, to the agent.
fn stream_info(to: &str) -> StreamInfo {
    StreamInfo {
        ids: StreamIds {
            account_sid: twilio::account_sid(0),
            call_sid: twilio::random_sid("CA"),
            stream_sid: twilio::random_sid("MZ"),
        },
        from: String::new(),
        to: to.to_string(),
    }
}

/// What the runner passes at the verdict (a person, detected).
fn verdict_parameters() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("AnsweredBy".to_string(), "human".to_string()),
        ("amd_verdict".to_string(), "human".to_string()),
    ])
}

/// A callee leg as the runner holds it while the agent is streamed to (and, for the bench's
/// own counters, its media session until the leg ends).
struct Leg {
    call: Call,
    bridge: AgentBridge,
    media: Arc<MediaSession>,
    recording: tokio::task::JoinHandle<Result<(), crate::media::MediaError>>,
    /// The runner keeps the reply channel open for the call's life; so does the bench.
    _replies: mpsc::UnboundedSender<ReplyRequest>,
}

/// Places a call as the runner does, up to the answer: the agent's socket warming meanwhile.
/// Returns the call, the warm socket, the frames' slot and the recording task.
async fn dial_warm(
    ua: Arc<UserAgent>,
    uri: &str,
    agent_url: &str,
    info: StreamInfo,
) -> Result<
    (
        Call,
        Warm,
        CalleeAudio,
        tokio::task::JoinHandle<Result<(), crate::media::MediaError>>,
        mpsc::UnboundedSender<ReplyRequest>,
    ),
    String,
> {
    let hour = Duration::from_secs(3600);
    let mut call = Call::dial(ua, CallRequest::new(uri, STEP_TIMEOUT, hour))
        .await
        .map_err(|e| format!("dialing: {e}"))?;
    let warm = Warm::connect(agent_target(agent_url.to_string()), info);
    let callee_audio = CalleeAudio::default();
    let (replies, reply_rx) = mpsc::unbounded_channel();
    let recording = tokio::spawn(record_call(
        call.take_audio(),
        call.take_sent_audio(),
        None,
        reply_rx,
        callee_audio.clone(),
        None,
        None,
    ));
    Ok((call, warm, callee_audio, recording, replies))
}

/// Waits for the answer.
async fn answered(call: &mut Call) -> Result<(), String> {
    let wait = async {
        loop {
            match call.next_event().await {
                Some(CallEvent::Answered { .. }) => return Ok(()),
                Some(CallEvent::Ended(s)) => return Err(format!("ended: {}", s.reason)),
                Some(_) => {}
                None => return Err("the call's task is gone".to_string()),
            }
        }
    };
    tokio::time::timeout(STEP_TIMEOUT, wait)
        .await
        .map_err(|_| "no answer".to_string())?
}

/// Waits for the stream to start (`start` sent).
async fn connected(bridge: &mut AgentBridge) -> Result<(), String> {
    match tokio::time::timeout(STEP_TIMEOUT, bridge.next_event()).await {
        Ok(Some(BridgeEvent::Connected)) => Ok(()),
        Ok(other) => Err(format!("agent bridge: {other:?}")),
        Err(_) => Err("the agent's stream did not start".into()),
    }
}

/// Ends a leg as the runner does: the bridge stopped and finished, the callee hung up.
/// Returns the bridge's frames sent to the agent.
async fn end_leg(mut leg: Leg) -> u64 {
    // The call's task owns its media session: let go first, as the runner holds none.
    drop(leg.media);
    leg.bridge.stop(EndedBy::System);
    let report = Box::new(leg.bridge).finish().await;
    leg.call.hangup();
    let _ = tokio::time::timeout(STEP_TIMEOUT, async {
        while leg.call.next_event().await.is_some() {}
    })
    .await;
    drop(leg.call);
    drop(leg._replies);
    let _ = tokio::time::timeout(STEP_TIMEOUT, leg.recording).await;
    report.stream.map_or(0, |s| s.frames_to_agent)
}

// ── dead air ──

/// What the dead-air agent saw of one stream, CLOCK_MONOTONIC ns.
#[derive(Debug, Clone, Copy, Default)]
struct AgentTimes {
    connected: u64,
    start: u64,
    first_media: u64,
    clear: Option<u64>,
}

type TimesBySid = Arc<Mutex<HashMap<String, AgentTimes>>>;

/// The dead-air agent: a Media Streams server on its own thread and runtime.
struct SpeakingAgent {
    port: u16,
    times: TimesBySid,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl SpeakingAgent {
    fn start() -> Result<SpeakingAgent, String> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| format!("the dead-air agent cannot listen: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let times = TimesBySid::default();
        let (stop, stopped) = oneshot::channel::<()>();
        let shared = Arc::clone(&times);
        let speech = Arc::new(speech_messages());
        let thread = std::thread::Builder::new()
            .name("bench-agent".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let accept = async {
                        while let Ok((stream, _)) = listener.accept().await {
                            tokio::spawn(speak(stream, Arc::clone(&shared), Arc::clone(&speech)));
                        }
                    };
                    tokio::select! {
                        _ = accept => {}
                        _ = stopped => {}
                    }
                });
            })
            .map_err(|e| format!("cannot start the dead-air agent: {e}"))?;
        Ok(SpeakingAgent {
            port,
            times,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    fn times(&self, call_sid: &str) -> Option<AgentTimes> {
        self.times
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(call_sid)
            .copied()
    }
}

impl Drop for SpeakingAgent {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The agent's speech: [`SPEECH_FRAMES`] frames of tone in `media` messages of
/// [`SPEECH_CHUNK_FRAMES`] (base64 µ-law; the stream SID is filled in per call).
fn speech_messages() -> Vec<String> {
    let tone = gen::tone_payload();
    (0..SPEECH_FRAMES.div_ceil(SPEECH_CHUNK_FRAMES))
        .map(|k| {
            let frames = SPEECH_CHUNK_FRAMES.min(SPEECH_FRAMES - k * SPEECH_CHUNK_FRAMES);
            let bytes: Vec<u8> = tone.iter().copied().cycle().take(160 * frames).collect();
            base64::engine::general_purpose::STANDARD.encode(bytes)
        })
        .collect()
}

/// One stream at the dead-air agent: notes when `connected` and `start` arrive, speaks a moment
/// later and sends `clear` about [`BARGE_IN_AFTER`] after that.
async fn speak(stream: tokio::net::TcpStream, times: TimesBySid, speech: Arc<Vec<String>>) {
    let _ = stream.set_nodelay(true);
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let mut connected = 0u64;
    let mut stream_sid = String::new();
    let mut call_sid = String::new();
    let mut start_at = 0u64;
    let mut speak_at: Option<tokio::time::Instant> = None;
    let mut clear_at: Option<tokio::time::Instant> = None;
    let think = || Duration::from_micros(rand::random_range(0..=THINK_MAX_MS * 1000));
    loop {
        let sleep = async {
            match speak_at.or(clear_at) {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = ws.next() => {
                let now = sys::monotonic_ns();
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                    Some(Ok(_)) => continue,
                };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(text.as_str()) else {
                    continue;
                };
                match v["event"].as_str() {
                    Some("connected") => connected = now,
                    Some("start") => {
                        stream_sid = v["streamSid"].as_str().unwrap_or_default().to_string();
                        call_sid = v["start"]["callSid"].as_str().unwrap_or_default().to_string();
                        start_at = now;
                        speak_at = Some(tokio::time::Instant::now() + think());
                    }
                    _ => {}
                }
            }
            _ = sleep => {
                if speak_at.take().is_some() {
                    let messages: Vec<String> = speech
                        .iter()
                        .map(|payload| {
                            serde_json::json!({
                                "event": "media",
                                "streamSid": stream_sid,
                                "media": {"payload": payload},
                            })
                            .to_string()
                        })
                        .collect();
                    let first_media = sys::monotonic_ns();
                    for m in messages {
                        if ws.feed(Message::text(m)).await.is_err() {
                            return;
                        }
                    }
                    if ws.flush().await.is_err() {
                        return;
                    }
                    times.lock().unwrap_or_else(|p| p.into_inner()).insert(
                        call_sid.clone(),
                        AgentTimes {
                            connected,
                            start: start_at,
                            first_media,
                            clear: None,
                        },
                    );
                    clear_at = Some(tokio::time::Instant::now() + BARGE_IN_AFTER + think());
                    continue;
                }
                clear_at = None;
                let clear =
                    serde_json::json!({"event": "clear", "streamSid": stream_sid}).to_string();
                let at = sys::monotonic_ns();
                if ws.send(Message::text(clear)).await.is_err() {
                    return;
                }
                let mut times = times.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(t) = times.get_mut(&call_sid) {
                    t.clear = Some(at);
                }
            }
        }
    }
}

/// The callee's side of the wire in a dead-air call: an RTP socket on its own thread that
/// notes when each packet arrives and whether it carries sound, and sends the callee's own
/// 20 ms packets to the leg once its port is known.
struct WireSink {
    port: u16,
    leg_port: Arc<AtomicU16>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<(u64, bool)>>,
}

impl WireSink {
    fn start() -> Result<WireSink, String> {
        let socket =
            UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("cannot bind an RTP sink: {e}"))?;
        let port = socket.local_addr().map_err(|e| e.to_string())?.port();
        let leg_port = Arc::new(AtomicU16::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (lp, st) = (Arc::clone(&leg_port), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("bench-wire".into())
            .spawn(move || wire_loop(&socket, &lp, &st))
            .map_err(|e| format!("cannot start an RTP sink: {e}"))?;
        Ok(WireSink {
            port,
            leg_port,
            stop,
            thread,
        })
    }

    /// Stops it; every packet seen: (arrival, CLOCK_MONOTONIC ns; carried sound).
    fn finish(self) -> Vec<(u64, bool)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

fn wire_loop(socket: &UdpSocket, leg_port: &AtomicU16, stop: &AtomicBool) -> Vec<(u64, bool)> {
    let period = 20_000_000u64;
    let mut seen = Vec::with_capacity(256);
    let mut buf = [0u8; 2048];
    let mut packet = Vec::with_capacity(200);
    let payload = gen::tone_payload();
    let (mut seq, mut ts) = (1u16, 0u32);
    let mut next_send = sys::monotonic_ns();
    while !stop.load(Ordering::Relaxed) {
        let now = sys::monotonic_ns();
        if now >= next_send {
            let port = leg_port.load(Ordering::Relaxed);
            if port != 0 {
                write_rtp(&mut packet, seq == 1, 0, seq, ts, 0x0BE7_C0DE, &payload);
                let _ = socket.send_to(&packet, (Ipv4Addr::LOCALHOST, port));
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(160);
            }
            next_send = (next_send + period).max(now + 1);
        }
        let wait = next_send.saturating_sub(sys::monotonic_ns()).max(100_000);
        if socket
            .set_read_timeout(Some(Duration::from_nanos(wait)))
            .is_err()
        {
            break;
        }
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => {
                let at = sys::monotonic_ns();
                if let Ok(p) = RtpPacket::try_parse(&buf[..n]) {
                    // PCMU silence is 0xFF throughout.
                    seen.push((at, p.payload.iter().any(|&b| b != 0xFF)));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(_) => break,
        }
    }
    seen
}

/// One dead-air call's figures, ms.
#[derive(Debug, Clone, Copy)]
struct DeadAir {
    start: f64,
    first_audio: f64,
    barge_in: f64,
    warm: bool,
}

/// From the wire's log and the agent's times: first audio and barge-in, ms.
fn wire_figures(seen: &[(u64, bool)], t: &AgentTimes) -> Result<(f64, f64), String> {
    let clear = t.clear.ok_or("the agent never sent `clear`")?;
    let first = seen
        .iter()
        .find(|(at, sound)| *sound && *at >= t.first_media)
        .ok_or("the agent's audio never reached the callee's wire")?;
    let last_sound = seen
        .iter()
        .rposition(|(_, sound)| *sound)
        .ok_or("no sound on the wire")?;
    let silent = seen
        .get(last_sound + 1)
        .ok_or("the wire never went silent after `clear`")?;
    let ms = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1e6;
    Ok((ms(t.first_media, first.0), ms(clear, silent.0)))
}

/// One dead-air call, end to end.
async fn dead_air_call(
    ua: Arc<UserAgent>,
    far_uri: impl Fn(u16) -> String,
    agent_url: String,
    agent_times: impl Fn(&str) -> Option<AgentTimes>,
) -> Result<DeadAir, String> {
    let sink = WireSink::start()?;
    let uri = far_uri(sink.port);
    let info = stream_info(&uri);
    let call_sid = info.ids.call_sid.clone();
    let result = async {
        let (mut call, warm, callee_audio, recording, replies) =
            dial_warm(ua, &uri, &agent_url, info).await?;
        let media = call.media().ok_or("the call has no media session")?;
        sink.leg_port.store(media.local_port(), Ordering::Relaxed);
        answered(&mut call).await?;
        // The verdict: the stream starts, through the runner's own call.
        let verdict = sys::monotonic_ns();
        let bridge = AgentBridge::start(
            warm,
            call.media(),
            callee_audio.clone(),
            verdict_parameters(),
        );
        let mut leg = Leg {
            call,
            bridge,
            media,
            recording,
            _replies: replies,
        };
        let streamed = async {
            connected(&mut leg.bridge).await?;
            let deadline = Instant::now() + STEP_TIMEOUT;
            loop {
                if agent_times(&call_sid).is_some_and(|t| t.clear.is_some()) {
                    break;
                }
                if Instant::now() > deadline {
                    return Err("the agent did not get to `clear`".to_string());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(AFTER_CLEAR).await;
            Ok(())
        }
        .await;
        end_leg(leg).await;
        streamed.map(|()| verdict)
    }
    .await;
    let seen = sink.finish();
    let verdict = result?;
    let t = agent_times(&call_sid).ok_or("the agent never saw `start`")?;
    let (first_audio, barge_in) = wire_figures(&seen, &t)?;
    Ok(DeadAir {
        start: t.start.saturating_sub(verdict) as f64 / 1e6,
        first_audio,
        barge_in,
        warm: t.connected != 0 && t.connected < verdict,
    })
}

fn run_dead_air(
    runtime: &tokio::runtime::Runtime,
    ua: &Arc<UserAgent>,
    far: &FarEnd,
    calls: usize,
    report: &mut AgentBenchReport,
) -> Result<(), String> {
    let agent = Arc::new(SpeakingAgent::start()?);
    let url = format!("ws://127.0.0.1:{}/", agent.port);
    // The far end's URI for a media port: `sip:m<PORT>@…`.
    let far_base = far.uri(0);
    let results = runtime.block_on(async {
        let mut tasks = Vec::with_capacity(calls);
        let mut tick = tokio::time::interval(LATENCY_GAP);
        for _ in 0..calls {
            tick.tick().await;
            let agent = Arc::clone(&agent);
            let far_base = far_base.clone();
            let far_uri =
                move |port: u16| far_base.replacen("sip:m0@", &format!("sip:m{port}@"), 1);
            tasks.push(tokio::spawn(dead_air_call(
                ua.clone(),
                far_uri,
                url.clone(),
                move |sid: &str| agent.times(sid),
            )));
        }
        let mut out = Vec::with_capacity(calls);
        for t in tasks {
            out.push(match t.await {
                Ok(r) => r,
                Err(e) => Err(format!("a call's task failed: {e}")),
            });
        }
        out
    });
    drop(agent);
    let mut start = Vec::new();
    let mut first = Vec::new();
    let mut barge = Vec::new();
    for r in results {
        match r {
            Ok(d) => {
                start.push(d.start);
                first.push(d.first_audio);
                barge.push(d.barge_in);
                report.warm_at_verdict += usize::from(d.warm);
            }
            Err(e) if report.latency_errors.len() < ERRORS_KEPT => report.latency_errors.push(e),
            Err(_) => {}
        }
    }
    report.latency_calls_measured = start.len();
    let q = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (
            quantile(v, 0.50).map(|x| round(x, 3)),
            quantile(v, 0.99).map(|x| round(x, 3)),
            v.last().map(|x| round(*x, 3)),
        )
    };
    (
        report.start_ms_p50,
        report.start_ms_p99,
        report.start_ms_max,
    ) = q(&mut start);
    (
        report.first_audio_ms_p50,
        report.first_audio_ms_p99,
        report.first_audio_ms_max,
    ) = q(&mut first);
    (
        report.barge_in_ms_p50,
        report.barge_in_ms_p99,
        report.barge_in_ms_max,
    ) = q(&mut barge);
    Ok(())
}

/// The `q` quantile of sorted values (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

// ── load ──

/// The echo agent child process and its control pipes.
struct EchoProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    port: u16,
}

impl EchoProcess {
    fn spawn(exe: &Path) -> Result<EchoProcess, String> {
        let mut child = Command::new(exe)
            .args(["bench", "agent-echo"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the echo agent {}: {e}", exe.display()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("echo agent pipes missing".into());
        };
        let mut e = EchoProcess {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            port: 0,
        };
        match e.next_event()? {
            EchoEvent::Ready { port } => {
                e.port = port;
                Ok(e)
            }
            EchoEvent::Error { message } => Err(message),
            other => Err(format!("echo agent said {other:?} instead of ready")),
        }
    }

    fn next_event(&mut self) -> Result<EchoEvent, String> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => Err("the echo agent exited early".into()),
            Ok(_) => serde_json::from_str(line.trim())
                .map_err(|e| format!("unreadable echo agent event {line:?}: {e}")),
            Err(e) => Err(format!("reading the echo agent: {e}")),
        }
    }

    fn counts(&mut self) -> Result<EchoCounts, String> {
        let line = serde_json::to_string(&EchoCommand::Counts).map_err(|e| e.to_string())?;
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("writing to the echo agent: {e}"))?;
        match self.next_event()? {
            EchoEvent::Counts(c) => Ok(c),
            other => Err(format!("echo agent said {other:?} instead of its counts")),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for EchoProcess {
    fn drop(&mut self) {
        if let Ok(line) = serde_json::to_string(&EchoCommand::Exit) {
            let _ = writeln!(self.stdin, "{line}").and_then(|()| self.stdin.flush());
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One load call, from dial to a started stream.
async fn load_call(ua: Arc<UserAgent>, uri: String, agent_url: String) -> Result<Leg, String> {
    let info = stream_info(&uri);
    let (mut call, warm, callee_audio, recording, replies) =
        dial_warm(ua, &uri, &agent_url, info).await?;
    let media = call.media().ok_or("the call has no media session")?;
    answered(&mut call).await?;
    let bridge = AgentBridge::start(warm, call.media(), callee_audio, verdict_parameters());
    let mut leg = Leg {
        call,
        bridge,
        media,
        recording,
        _replies: replies,
    };
    if let Err(e) = connected(&mut leg.bridge).await {
        end_leg(leg).await;
        return Err(e);
    }
    Ok(leg)
}

/// Sets up every load call, paced; returns those that started and the first errors.
async fn load_all(
    ua: &Arc<UserAgent>,
    uri: &str,
    agent_url: &str,
    calls: usize,
    cps: f64,
) -> (Vec<Leg>, Vec<String>) {
    let gap = Duration::from_secs_f64((1.0 / cps.max(1.0)).min(1.0));
    let mut tick = tokio::time::interval(gap);
    let mut tasks = Vec::with_capacity(calls);
    for _ in 0..calls {
        tick.tick().await;
        tasks.push(tokio::spawn(load_call(
            ua.clone(),
            uri.to_string(),
            agent_url.to_string(),
        )));
    }
    let mut legs = Vec::with_capacity(calls);
    let mut errors = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(leg)) => legs.push(leg),
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(format!("a call's task failed: {e}")),
        }
    }
    (legs, errors)
}

/// What is read at the window's edges.
type Snapshot = (
    Option<u64>,
    Option<u64>,
    u64,
    EngineCounters,
    Option<(u64, u64, u64)>,
);

/// The generator's tagged run into the callee legs; snapshots at the window's edges.
fn tagged_phase(
    gen: &mut GenProcess,
    targets: Vec<SocketAddrV4>,
    seconds: f64,
    mut snapshot: impl FnMut() -> Snapshot,
) -> Result<(GenResult, Snapshot, Snapshot), String> {
    gen.send(&GenCommand::Run {
        targets,
        warmup_ms: WARMUP_MS,
        seconds,
        drain_ms: DRAIN_MS,
        ssrc_base: 0x6000_0000,
        tick_us: gen.tick_us,
        recv_on_source: true,
        tagged: true,
    })?;
    let (mut start, mut end) = (None, None);
    loop {
        match gen.next_event()? {
            GenEvent::WindowStart => start = Some(snapshot()),
            GenEvent::WindowEnd => end = Some(snapshot()),
            GenEvent::Result(r) => {
                return match (start, end) {
                    (Some(s), Some(e)) => Ok((r, s, e)),
                    _ => Err("the generator skipped its window events".into()),
                }
            }
            GenEvent::Error { message } => return Err(message),
            GenEvent::Ready { .. } => {}
        }
    }
}

fn run_load(
    runtime: &tokio::runtime::Runtime,
    ua: &Arc<UserAgent>,
    far: &FarEnd,
    engine: &Engine,
    opts: &AgentBenchOptions,
    report: &mut AgentBenchReport,
) -> Result<(), String> {
    let mut echo = EchoProcess::spawn(&opts.exe)?;
    let mut gen = GenProcess::spawn(&opts.exe, opts.calls)?;
    gen.tick_us = opts.gen_tick_us;
    let agent_url = format!("ws://127.0.0.1:{}/", echo.port);
    let uri = far.uri(gen.source.port());
    let dropped0 = listener_dropped_frames();
    let setup_started = Instant::now();
    let pacing = Duration::from_secs_f64(opts.calls as f64 / opts.cps.max(1.0));
    let setup = runtime.block_on(async {
        tokio::time::timeout(
            pacing + SETUP_SLACK,
            load_all(ua, &uri, &agent_url, opts.calls, opts.cps),
        )
        .await
    });
    let (legs, errors) = setup.map_err(|_| {
        format!(
            "setting up {} calls took over {:?}",
            opts.calls,
            pacing + SETUP_SLACK
        )
    })?;
    report.setup_s = Some(round(setup_started.elapsed().as_secs_f64(), 2));
    report.calls_bridged = legs.len();
    report.load_errors = errors.into_iter().take(ERRORS_KEPT).collect();
    if legs.is_empty() {
        return Err(format!(
            "no load call started: {}",
            report.load_errors.join("; ")
        ));
    }
    let targets: Vec<SocketAddrV4> = legs
        .iter()
        .map(|l| SocketAddrV4::new(Ipv4Addr::LOCALHOST, l.media.local_port()))
        .collect();
    let (pid, echo_pid) = (std::process::id(), echo.pid());
    let snapshot = || {
        (
            rtpengine::proc_cpu_us(pid),
            rtpengine::proc_cpu_us(echo_pid),
            sys::monotonic_ns(),
            engine.counters(),
            host_cpu(),
        )
    };
    let phase = tagged_phase(&mut gen, targets, opts.seconds, snapshot);
    // Let the last frames land before reading the stages' counters.
    std::thread::sleep(Duration::from_millis(300));
    let (mut received, mut dropped_media, mut late, mut lost, mut concealed) = (0, 0, 0, 0, 0);
    for l in &legs {
        let s = l.media.stats();
        received += s.received;
        dropped_media += s.dropped_frames;
        late += s.jitter_buffer.late;
        lost += s.jitter_buffer.lost;
        concealed += s.jitter_buffer.concealed;
    }
    let counts = echo.counts();
    let to_agent: u64 = runtime.block_on(async {
        let tasks: Vec<_> = legs.into_iter().map(|l| tokio::spawn(end_leg(l))).collect();
        let mut sum = 0;
        for t in tasks {
            sum += t.await.unwrap_or(0);
        }
        sum
    });
    let (res, (cpu0, ecpu0, wall0, c0, h0), (cpu1, ecpu1, wall1, c1, h1)) = phase?;
    let counts = counts?;
    gen.exit();
    drop(echo);
    let wall_us = (wall1.saturating_sub(wall0) / 1000).max(1) as f64;
    let pct = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => Some(round(100.0 * b.saturating_sub(a) as f64 / wall_us, 2)),
        _ => None,
    };
    report.cpu_percent = pct(cpu0, cpu1);
    report.agent_cpu_percent = pct(ecpu0, ecpu1);
    report.generator_cpu_percent = Some(round(res.cpu_percent, 2));
    report.host_cpu_percent = host_percent(h0, h1);
    report.engine_sends = Some(c1.sent.saturating_sub(c0.sent));
    report.late_sends = Some(c1.late_sends.saturating_sub(c0.late_sends));
    report.frames_sent = Some(res.sent);
    report.frames_echoed = Some(res.received);
    report.loss_ratio = Some(if res.sent == 0 {
        0.0
    } else {
        round(
            res.sent.saturating_sub(res.received) as f64 / res.sent as f64,
            6,
        )
    });
    report.payload_mismatches = Some(res.payload_mismatches);
    report.duplicates = Some(res.duplicates);
    report.round_trip_ms_p50 = Some(round(res.transit_us_p50 / 1000.0, 3));
    report.round_trip_ms_p99 = Some(round(res.transit_us_p99 / 1000.0, 3));
    report.round_trip_ms_max = Some(round(res.transit_us_max / 1000.0, 3));
    report.frames_sent_total = Some(res.sent_total);
    report.rtp_received_by_callees = Some(received);
    report.jitter_late = Some(late);
    report.jitter_lost = Some(lost);
    report.jitter_concealed = Some(concealed);
    report.frames_dropped_media_channel = Some(dropped_media);
    report.frames_dropped_agent_channel = Some(listener_dropped_frames().saturating_sub(dropped0));
    report.frames_to_agent = Some(to_agent);
    report.agent_frames_received = Some(counts.media_in);
    report.agent_tagged_frames = Some(counts.tagged_in);
    report.agent_frames_echoed = Some(counts.media_out);
    report.frames_echoed_total = Some(res.received_total);
    report.frames_lost_total = Some(res.sent_total.saturating_sub(res.received_total));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_figures_read_first_audio_and_silence_after_the_last_sound() {
        let ms = 1_000_000u64;
        let t = AgentTimes {
            connected: 1,
            start: 5 * ms,
            first_media: 10 * ms,
            clear: Some(100 * ms),
        };
        // Silence, then sound from 32 ms, still sound once after the clear, then silence.
        let mut seen: Vec<(u64, bool)> = vec![(0, false), (12 * ms, false)];
        seen.extend((0..5).map(|k| ((32 + 20 * k) * ms, true)));
        seen.extend([(112 * ms, false), (132 * ms, false)]);
        let (first, barge) = wire_figures(&seen, &t).expect("figures");
        assert_eq!(first, 22.0);
        assert_eq!(barge, 12.0);
        // Audio that never stops: no silence to time.
        let endless: Vec<(u64, bool)> = (0..10).map(|k| ((20 + 20 * k) * ms, true)).collect();
        assert!(wire_figures(&endless, &t).is_err());
        // Never any sound after the first media.
        assert!(wire_figures(&[(0, true), (20 * ms, false)], &t).is_err());
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(50.0));
        assert_eq!(quantile(&v, 0.99), Some(99.0));
        assert_eq!(quantile(&v[..1], 0.99), Some(1.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn speech_is_the_whole_tone_in_chunks() {
        let m = speech_messages();
        assert_eq!(m.len(), SPEECH_FRAMES / SPEECH_CHUNK_FRAMES);
        let bytes: usize = m
            .iter()
            .map(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map(|v| v.len())
                    .unwrap_or(0)
            })
            .sum();
        assert_eq!(bytes, 160 * SPEECH_FRAMES);
    }
}
