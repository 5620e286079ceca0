//! `outdial bench bridge`: N bridged calls set up through the code a campaign uses, RTP relayed
//! between their legs, measured next to rtpengine relaying the same streams in the same run.
//!
//! Each call is two legs, both to one sipp process acting as a light far end (a UAS that
//! answers every INVITE with SDP and waits for the BYE; see [`FAR_END_SCENARIO`]):
//! * the callee leg is placed with [`Call::dial`], as a campaign places a call;
//! * once it answers, the agent leg is placed by [`SipBridge`] (the bridge a flow's `Connect`
//!   step starts), which links the two legs' media when the agent answers.
//!
//! INVITEs are paced (`--cps`, 200/s by default). Both legs' SDP answers point at the
//! generator's source socket (the far end's user part carries the port: `sip:m<PORT>@…`), so
//! the legs send where the generator's packets come from, as an RTP peer does, and no
//! latching happens. The generator ([`super::gen`], a child process) then sends stream 2i to
//! call i's callee leg and stream 2i+1 to its agent leg; outdial relays each packet out of the
//! other leg back to the generator, which takes it on its source socket and times it. Before
//! the window each leg's sending stream is set to the generator's stream that leaves through
//! it (SSRC, sequence number, timestamp), so the relayed packets are the ones sent and can be
//! matched (the rewriting code runs all the same).
//!
//! CPU is outdial's whole process (`/proc/self/stat`: media engine, SIP stack, the calls'
//! tasks) over the generator's window, divided by the packets the media engine relayed in it;
//! rtpengine's is `/proc/PID/stat`, divided by the packets it delivered. The generator's
//! straight loop back to its own sinks is measured too: the floor under the latency figures.
//!
//! Linux only; needs `sipp` on PATH (rtpengine optional). Nothing here runs in the server:
//! it is a measuring tool, and it must NOT change how calls or bridges behave.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{
    gen, host_cpu, host_percent, loss, measure_rtpengine, round, rtpengine, sys, GenProcess,
};
use crate::bridge::sip::SipBridge;
use crate::bridge::{Bridge, BridgeContext, BridgeEvent, EndedBy};
use crate::call::{Call, CallEvent, CallRequest};
use crate::config::Config;
use crate::media::engine::Engine;
use crate::sip::UserAgent;

/// The far end: answers every INVITE with PCMU + telephone-event SDP whose media port is the
/// number in the Request-URI's user part (`sip:m<PORT>@…`), then waits for ACK and BYE.
pub const FAR_END_SCENARIO: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="outdial bench bridge far end">
  <recv request="INVITE">
    <action>
      <ereg regexp="sip:m([0-9]+)@" search_in="msg" check_it="true" assign_to="all,port"/>
    </action>
  </recv>
  <Reference variables="all"/>
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
/// The SSRC of the generator's stream 0 in the measured run.
const SSRC_BASE: u32 = 0x5000_0000;
/// How long all calls may take to be set up and bridged, beyond the pacing itself.
const SETUP_SLACK: Duration = Duration::from_secs(30);

/// What `outdial bench bridge` was asked to do.
#[derive(Debug, Clone)]
pub struct BridgeBenchOptions {
    /// Bridged calls (two legs each).
    pub calls: usize,
    pub seconds: f64,
    /// INVITEs per second while setting up (each call sends two).
    pub cps: f64,
    pub rtpengine: bool,
    pub rtpengine_bin: Option<PathBuf>,
    /// The outdial binary to run as the generator (normally `std::env::current_exe()`).
    pub exe: PathBuf,
    /// The sipp binary (default: `sipp` on PATH).
    pub sipp_bin: PathBuf,
    /// The generator's tick, µs.
    pub gen_tick_us: u64,
}

/// The result; rtpengine's fields are null when it did not run.
#[derive(Debug, Clone, Serialize)]
pub struct BridgeBenchReport {
    pub calls: usize,
    /// Relayed directions: two per call, 50 packets/s each.
    pub streams: usize,
    pub seconds: f64,
    /// Calls answered and bridged (both legs up, media linked) before the window.
    pub calls_bridged: usize,
    /// Setting up every call: first INVITE → last bridge joined, s.
    pub setup_s: f64,
    /// outdial's whole process over the window, % of one core.
    pub cpu_percent: f64,
    /// outdial's CPU per relayed packet, µs.
    pub cpu_us_per_packet: Option<f64>,
    pub packets_sent: u64,
    pub packets_received: u64,
    /// Packets the media engine relayed between linked legs in the window.
    pub packets_relayed: u64,
    pub loss_ratio: f64,
    pub payload_mismatches: u64,
    /// Generator → outdial → generator, kernel receive timestamp − send time, ms.
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    /// p99 of |latency − median latency|, ms.
    pub jitter_added_ms_p99: f64,
    /// The generator straight into its own sinks: the floor under the latencies, ms.
    pub baseline_latency_ms_p50: f64,
    pub baseline_latency_ms_p99: f64,
    pub generator_cpu_percent: f64,
    pub host_cpu_percent: Option<f64>,
    pub engine_workers: usize,
    pub engine_tick_us: u64,
    pub rtpengine_cpu_percent: Option<f64>,
    pub rtpengine_cpu_us_per_packet: Option<f64>,
    pub rtpengine_packets_sent: Option<u64>,
    pub rtpengine_packets_received: Option<u64>,
    pub rtpengine_loss_ratio: Option<f64>,
    pub rtpengine_latency_ms_p50: Option<f64>,
    pub rtpengine_latency_ms_p99: Option<f64>,
    pub rtpengine_host_cpu_percent: Option<f64>,
    /// outdial's CPU per packet / rtpengine's.
    pub cpu_ratio: Option<f64>,
    /// Why rtpengine's fields are null, when they are.
    pub rtpengine_skipped: Option<String>,
}

impl BridgeBenchReport {
    /// A few lines for people.
    pub fn table(&self) -> String {
        let f = |v: Option<f64>, p: usize| v.map_or("-".into(), |x| format!("{x:.p$}"));
        let u = |v: Option<u64>| v.map_or("-".into(), |x| x.to_string());
        let mut s = format!(
            "outdial bench bridge: {} bridged calls ({} bridged, set up in {:.1} s), {} streams × 50 \
             packets/s, {} s window; media engine {} worker(s), tick {} µs\n\n",
            self.calls,
            self.calls_bridged,
            self.setup_s,
            self.streams,
            self.seconds,
            self.engine_workers,
            self.engine_tick_us
        );
        let rows = [
            (
                "CPU, % of core",
                f(Some(self.cpu_percent), 1),
                f(self.rtpengine_cpu_percent, 1),
            ),
            (
                "CPU/packet, µs",
                f(self.cpu_us_per_packet, 2),
                f(self.rtpengine_cpu_us_per_packet, 2),
            ),
            (
                "packets sent",
                self.packets_sent.to_string(),
                u(self.rtpengine_packets_sent),
            ),
            (
                "packets received",
                self.packets_received.to_string(),
                u(self.rtpengine_packets_received),
            ),
            (
                "loss, %",
                f(Some(100.0 * self.loss_ratio), 4),
                f(self.rtpengine_loss_ratio.map(|l| 100.0 * l), 4),
            ),
            (
                "latency p50, ms",
                f(Some(self.latency_ms_p50), 3),
                f(self.rtpengine_latency_ms_p50, 3),
            ),
            (
                "latency p99, ms",
                f(Some(self.latency_ms_p99), 3),
                f(self.rtpengine_latency_ms_p99, 3),
            ),
        ];
        s.push_str(&format!("{:<20}{:>14}{:>14}\n", "", "outdial", "rtpengine"));
        for (name, a, b) in rows {
            s.push_str(&format!("{name:<20}{a:>14}{b:>14}\n"));
        }
        s.push_str(&format!(
            "\nCPU ratio outdial/rtpengine per packet: {}; baseline (no relay) latency p50 {:.3} \
             ms, p99 {:.3} ms\n",
            f(self.cpu_ratio, 2),
            self.baseline_latency_ms_p50,
            self.baseline_latency_ms_p99
        ));
        if let Some(why) = &self.rtpengine_skipped {
            s.push_str(&format!("rtpengine not measured: {why}\n"));
        }
        s
    }
}

/// The sipp far end; killed when dropped.
pub(super) struct FarEnd {
    child: Child,
    port: u16,
    /// The scenario file, removed when dropped.
    scenario: PathBuf,
}

impl FarEnd {
    fn start(sipp: &Path) -> Result<FarEnd, String> {
        FarEnd::start_with(sipp, FAR_END_SCENARIO)
    }

    /// A far end running `scenario_xml` (a UAS scenario that takes the media port from the
    /// Request-URI as [`FAR_END_SCENARIO`] does).
    pub(super) fn start_with(sipp: &Path, scenario_xml: &str) -> Result<FarEnd, String> {
        let scenario =
            std::env::temp_dir().join(format!("outdial-bench-far-end-{}.xml", std::process::id()));
        std::fs::write(&scenario, scenario_xml)
            .map_err(|e| format!("cannot write {}: {e}", scenario.display()))?;
        let port = free_udp_port()?;
        let control = free_udp_port()?;
        let child = Command::new(sipp)
            .arg("-sf")
            .arg(&scenario)
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-cp", &control.to_string()])
            .args(["-t", "u1", "-buff_size", "4194304", "-nostdin"])
            .args(["-aa", "-max_recv_loops", "10000", "-timeout", "3600s"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", sipp.display()))?;
        let far = FarEnd {
            child,
            port,
            scenario,
        };
        // sipp binds at once; give it a moment and make sure it did not exit (bad option, port).
        std::thread::sleep(Duration::from_millis(300));
        let mut far = far;
        if let Ok(Some(status)) = far.child.try_wait() {
            return Err(format!("sipp exited at start ({status})"));
        }
        Ok(far)
    }

    /// The far end's URI that makes it answer with media port `media_port`.
    pub(super) fn uri(&self, media_port: u16) -> String {
        format!("sip:m{media_port}@127.0.0.1:{}", self.port)
    }
}

impl Drop for FarEnd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.scenario);
    }
}

fn free_udp_port() -> Result<u16, String> {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free UDP port: {e}"))
}

/// One bridged call: the callee leg (a [`Call`]) and the bridge holding the agent leg.
struct Bridged {
    callee: Call,
    bridge: Box<SipBridge>,
    /// The generator sends stream 2i here (callee leg) and stream 2i+1 there (agent leg).
    callee_port: u16,
    agent_port: u16,
}

/// Places call `i` and bridges it; sets both legs' sending streams to the generator's.
async fn bridge_one(
    ua: Arc<UserAgent>,
    callee_uri: String,
    agent_uri: String,
    i: usize,
) -> Result<Bridged, String> {
    let hour = Duration::from_secs(3600);
    let ring = Duration::from_secs(30);
    let mut callee = Call::dial(ua.clone(), CallRequest::new(&callee_uri, ring, hour))
        .await
        .map_err(|e| format!("call {i}: dialing the callee: {e}"))?;
    loop {
        match callee.next_event().await {
            Some(CallEvent::Answered { .. }) => break,
            Some(CallEvent::Ended(s)) => {
                return Err(format!("call {i}: callee leg ended: {}", s.reason));
            }
            Some(_) => {}
            None => return Err(format!("call {i}: callee leg gone")),
        }
    }
    let ctx = BridgeContext {
        ua,
        callee: callee_uri.clone(),
        campaign_id: None,
        contact_id: None,
        ring_timeout: ring,
        max_duration: hour,
        tap_callee: false,
        callee_audio: Default::default(),
        stream_info: None,
        custom: Default::default(),
    };
    let mut bridge = Box::new(
        SipBridge::start(&agent_uri, None, &callee, ctx)
            .await
            .map_err(|e| format!("call {i}: {e}"))?,
    );
    loop {
        match bridge.next_event().await {
            Some(BridgeEvent::Connected) => break,
            Some(BridgeEvent::HoldCallee(_)) => {}
            Some(other) => return Err(format!("call {i}: bridge {other:?}")),
            None => return Err(format!("call {i}: bridge gone")),
        }
    }
    let (Some(a), Some(b)) = (callee.media(), bridge.agent_media()) else {
        return Err(format!("call {i}: a leg has no media session"));
    };
    // Stream 2i enters the callee leg and leaves the agent leg; 2i+1 the other way.
    let (seq, ts) = gen::stream_start(2 * i);
    b.set_rtp_stream(SSRC_BASE.wrapping_add(2 * i as u32), seq, ts);
    let (seq, ts) = gen::stream_start(2 * i + 1);
    a.set_rtp_stream(SSRC_BASE.wrapping_add(2 * i as u32 + 1), seq, ts);
    Ok(Bridged {
        callee_port: a.local_port(),
        agent_port: b.local_port(),
        callee,
        bridge,
    })
}

/// Sets up every call, paced; returns them in call order.
async fn bridge_all(
    ua: Arc<UserAgent>,
    far: &FarEnd,
    media_port: u16,
    calls: usize,
    cps: f64,
) -> Result<Vec<Bridged>, String> {
    // Two INVITEs per call: start a call every 2/cps s.
    let gap = Duration::from_secs_f64((2.0 / cps.max(1.0)).min(1.0));
    let mut tasks = Vec::with_capacity(calls);
    let mut tick = tokio::time::interval(gap);
    for i in 0..calls {
        tick.tick().await;
        let (callee, agent) = (far.uri(media_port), far.uri(media_port));
        tasks.push(tokio::spawn(bridge_one(ua.clone(), callee, agent, i)));
    }
    let mut out = Vec::with_capacity(calls);
    let mut first_err = None;
    for t in tasks {
        match t.await {
            Ok(Ok(b)) => out.push(b),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(format!("a call's task failed: {e}"));
            }
        }
    }
    match first_err {
        Some(e) => {
            hang_up(out).await;
            Err(e)
        }
        None => Ok(out),
    }
}

/// Ends every bridge and callee leg (BYEs to the far end), waiting a little for them.
async fn hang_up(calls: Vec<Bridged>) {
    let mut tasks = Vec::with_capacity(calls.len());
    for mut c in calls {
        tasks.push(tokio::spawn(async move {
            c.bridge.stop(EndedBy::System);
            let _ = c.bridge.finish().await;
            c.callee.hangup();
            while c.callee.next_event().await.is_some() {}
        }));
    }
    let all = futures_util::future::join_all(tasks);
    let _ = tokio::time::timeout(Duration::from_secs(10), all).await;
}

/// Runs `outdial bench bridge`. A failure of the rtpengine half is reported in
/// `rtpengine_skipped`, not as an error.
pub fn run(opts: &BridgeBenchOptions) -> Result<BridgeBenchReport, String> {
    if opts.calls == 0 {
        return Err("--calls must be at least 1".into());
    }
    let streams = 2 * opts.calls;
    if streams as f64 * 50.0 * opts.seconds > 100e6 {
        return Err(format!(
            "{} calls for {} s is over 100 million packets: shorten --seconds",
            opts.calls, opts.seconds
        ));
    }
    let port_pairs = usize::from(RTP_PORT_MAX - RTP_PORT_MIN) / 2;
    if 2 * opts.calls > port_pairs {
        return Err(format!(
            "--calls {}: at most {} (two RTP port pairs per call in {RTP_PORT_MIN}-{RTP_PORT_MAX})",
            opts.calls,
            port_pairs / 2
        ));
    }
    // Per call: 4 RTP/RTCP sockets here, 4 in rtpengine (it inherits our limit); slack.
    let want_files = 8 * opts.calls as u64 + 1024;
    match sys::raise_nofile(want_files) {
        Ok(have) if have < 4 * opts.calls as u64 + 256 => {
            return Err(format!(
                "open-file limit is {have}, {} calls need about {}: raise `ulimit -n`",
                opts.calls,
                4 * opts.calls + 256
            ))
        }
        Ok(_) => {}
        Err(e) => return Err(format!("cannot read the open-file limit: {e}")),
    }
    let mut gen = GenProcess::spawn(&opts.exe, streams)?;
    gen.tick_us = opts.gen_tick_us;
    let far = FarEnd::start(&opts.sipp_bin)?;

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
    let media_port = gen.source.port();
    let setup_started = Instant::now();
    let setup = runtime.block_on(async {
        let ua = UserAgent::start(&config)
            .await
            .map_err(|e| format!("cannot start the SIP user agent: {e}"))?;
        let pacing = Duration::from_secs_f64(2.0 * opts.calls as f64 / opts.cps.max(1.0));
        tokio::time::timeout(
            pacing + SETUP_SLACK,
            bridge_all(ua.clone(), &far, media_port, opts.calls, opts.cps),
        )
        .await
        .map_err(|_| {
            format!(
                "setting up {} calls took over {:?}",
                opts.calls,
                pacing + SETUP_SLACK
            )
        })?
        .map(|calls| (ua, calls))
    });
    let (ua, calls) = setup?;
    let setup_s = setup_started.elapsed().as_secs_f64();

    let mut targets = Vec::with_capacity(streams);
    for c in &calls {
        targets.push(SocketAddrV4::new(Ipv4Addr::LOCALHOST, c.callee_port));
        targets.push(SocketAddrV4::new(Ipv4Addr::LOCALHOST, c.agent_port));
    }
    let engine = Engine::global().map_err(|e| e.to_string())?;
    let pid = std::process::id();
    let snapshot = || {
        (
            rtpengine::proc_cpu_us(pid),
            sys::monotonic_ns(),
            engine.counters(),
            host_cpu(),
        )
    };
    gen.recv_on_source = true;
    let phase = gen.run_phase(targets, opts.seconds, SSRC_BASE, snapshot);
    gen.recv_on_source = false;
    let calls_bridged = calls.len();
    runtime.block_on(hang_up(calls));
    drop(ua);
    runtime.shutdown_timeout(Duration::from_secs(2));
    drop(far);
    let (res, (cpu0, wall0, c0, h0), (cpu1, wall1, c1, h1)) = phase?;
    let (Some(cpu0), Some(cpu1)) = (cpu0, cpu1) else {
        return Err("cannot read /proc/self/stat: cannot measure outdial's CPU".into());
    };
    let wall_us = (wall1.saturating_sub(wall0) / 1000).max(1) as f64;
    let cpu_us = cpu1.saturating_sub(cpu0) as f64;
    let relayed = c1.relayed.saturating_sub(c0.relayed);
    let engine_config = engine.config();

    // The floor: the generator straight into its sinks.
    let sinks = (0..streams).map(|i| gen.sink(i)).collect();
    let (base, (), ()) = gen.run_phase(sinks, opts.seconds.min(3.0), 0x3000_0000, || ())?;

    let mut report = BridgeBenchReport {
        calls: opts.calls,
        streams,
        seconds: opts.seconds,
        calls_bridged,
        setup_s: round(setup_s, 2),
        cpu_percent: round(100.0 * cpu_us / wall_us, 2),
        cpu_us_per_packet: (relayed > 0).then(|| round(cpu_us / relayed as f64, 3)),
        packets_sent: res.sent,
        packets_received: res.received,
        packets_relayed: relayed,
        loss_ratio: round(loss(&res), 6),
        payload_mismatches: res.payload_mismatches,
        latency_ms_p50: round(res.transit_us_p50 / 1000.0, 3),
        latency_ms_p99: round(res.transit_us_p99 / 1000.0, 3),
        jitter_added_ms_p99: round(res.jitter_us_p99 / 1000.0, 3),
        baseline_latency_ms_p50: round(base.transit_us_p50 / 1000.0, 3),
        baseline_latency_ms_p99: round(base.transit_us_p99 / 1000.0, 3),
        generator_cpu_percent: round(res.cpu_percent, 2),
        host_cpu_percent: host_percent(h0, h1),
        engine_workers: engine_config.workers,
        engine_tick_us: engine_config.tick.as_micros() as u64,
        rtpengine_cpu_percent: None,
        rtpengine_cpu_us_per_packet: None,
        rtpengine_packets_sent: None,
        rtpengine_packets_received: None,
        rtpengine_loss_ratio: None,
        rtpengine_latency_ms_p50: None,
        rtpengine_latency_ms_p99: None,
        rtpengine_host_cpu_percent: None,
        cpu_ratio: None,
        rtpengine_skipped: None,
    };
    report.rtpengine_skipped = if !opts.rtpengine {
        Some("--no-rtpengine".to_string())
    } else {
        match rtpengine::find(opts.rtpengine_bin.as_deref()) {
            None => Some("rtpengine not found on PATH (apt-get install rtpengine-daemon)".into()),
            Some(bin) => run_rtpengine(&mut gen, &bin, streams, opts.seconds, &mut report).err(),
        }
    };
    report.cpu_ratio = match (report.cpu_us_per_packet, report.rtpengine_cpu_us_per_packet) {
        (Some(a), Some(b)) if b > 0.0 => Some(round(a / b, 3)),
        _ => None,
    };
    gen.exit();
    Ok(report)
}

/// rtpengine relaying the same streams: one rtpengine call per stream, from the generator's
/// source to its sink.
fn run_rtpengine(
    gen: &mut GenProcess,
    bin: &Path,
    streams: usize,
    seconds: f64,
    report: &mut BridgeBenchReport,
) -> Result<(), String> {
    let r = measure_rtpengine(gen, bin, streams, seconds)?;
    let res = &r.result;
    report.rtpengine_cpu_percent = Some(r.cpu_percent);
    report.rtpengine_cpu_us_per_packet = r.cpu_us_per_packet;
    report.rtpengine_packets_sent = Some(res.sent);
    report.rtpengine_packets_received = Some(res.received);
    report.rtpengine_loss_ratio = Some(round(loss(res), 6));
    report.rtpengine_latency_ms_p50 = Some(round(res.transit_us_p50 / 1000.0, 3));
    report.rtpengine_latency_ms_p99 = Some(round(res.transit_us_p99 / 1000.0, 3));
    report.rtpengine_host_cpu_percent = r.host_cpu_percent;
    Ok(())
}
