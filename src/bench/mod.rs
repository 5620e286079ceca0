//! Benchmarks of outdial itself: `outdial bench media`, `outdial bench import`
//! ([`import`]: a CSV upload to `outdial serve`'s import API), `outdial bench amd`
//! ([`amd`]: answering-machine detection at N concurrent calls in real time),
//! `outdial bench bridge` ([`bridge`]: bridged calls through SIP), `outdial bench agent`
//! ([`agent`]: calls streamed to AI agents — dead air, barge-in, load; its echo agent is
//! [`echo`]) and `outdial bench soak` ([`soak`]: `outdial serve` running a campaign for an
//! hour; memory, files, threads and tasks must stay flat).
//!
//! `bench media` measures the server's own media engine ([`crate::media::engine`], through
//! [`MediaSession`](crate::media::MediaSession)s exactly as calls use them; [`calls`]) at N
//! concurrent calls of RTP on 127.0.0.1, in two shapes: bridged calls (two linked legs: each
//! packet read on one leg leaves the other at once, headers rewritten) and live calls (one
//! session each: jitter buffer, decoding, frames to the call, its own paced 20 ms stream out).
//! In the same run rtpengine in userspace relays the same traffic ([`rtpengine`]), so the
//! figures come from one machine and one moment.
//!
//! The traffic comes from a child process (`outdial bench media-gen`, [`gen`]) so that its CPU
//! is not counted as ours: N streams × 50 packets/s of 172-byte PCMU RTP from one socket with
//! sendmmsg, back on a few sinks with recvmmsg and kernel receive timestamps. The parent takes
//! its own CPU (getrusage RUSAGE_SELF: the engine's workers, the bench's frame consumer and an idle main thread) and
//! rtpengine's (/proc/PID/stat) between the generator's `window_start` and `window_end`.
//!
//! One stream = one relayed direction of one call: 50 packets/s in, 50 out. Definitions:
//! * transit = kernel receive time at the sink − time the packet was handed to sendmmsg;
//! * loss = packets sent in the window and never received back (within the drain time);
//! * jitter added = p99 over packets of |transit − median transit| (all streams together: a
//!   stream whose delay is steadily higher than another's counts);
//! * stream jitter = p99 over consecutive packets n, n+1 of one stream of
//!   |transit(n+1) − transit(n)| (RFC 3550's D: how uneven one call's packets come out).
//!
//! Linux only. Nothing here runs in the server: it is a measuring tool.

pub mod agent;
pub mod amd;
pub mod bencode;
pub mod bridge;
pub mod calls;
pub mod cps;
pub mod echo;
pub mod gen;
pub mod import;
pub mod rtpengine;
pub mod serve;
pub mod soak;
pub use crate::media::sys;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use serde::Serialize;

use crate::media::engine::{EngineConfig, EngineCounters};
use gen::{GenCommand, GenEvent, GenResult};

/// Warm-up before the counted window (endpoint learning, caches, first wake-ups).
const WARMUP_MS: u64 = 500;
/// Above this many streams the engine uses two workers unless told otherwise: one worker is
/// cheaper per packet (fewer wake-ups) but near a whole core's load its latency tail grows.
pub const ONE_WORKER_MAX_STREAMS: usize = 2500;
/// How long the generator keeps receiving after the window, for packets still in flight.
const DRAIN_MS: u64 = 300;

/// What `outdial bench media` was asked to do.
#[derive(Debug, Clone)]
pub struct MediaBenchOptions {
    pub streams: usize,
    pub seconds: f64,
    /// Engine worker threads (1 or 2; 0: 1 up to [`ONE_WORKER_MAX_STREAMS`] streams, else 2).
    pub workers: usize,
    /// The engine's tick, µs: when each worker plays out and sends what is due (it takes packets
    /// in as they arrive; see [`crate::media::engine`]).
    pub tick_us: u64,
    /// Run rtpengine too.
    pub rtpengine: bool,
    /// The rtpengine binary (default: `rtpengine` on PATH).
    pub rtpengine_bin: Option<PathBuf>,
    /// The outdial binary to run as the generator (normally `std::env::current_exe()`).
    pub exe: PathBuf,
    /// Also measure the generator against itself (its streams sent straight to its sinks):
    /// the floor under every latency and jitter figure.
    pub baseline: bool,
    /// The generator's tick, µs: packets due within a tick leave in one burst.
    pub gen_tick_us: u64,
}

/// The result: outdial's figures, then rtpengine's (null when it did not run).
#[derive(Debug, Clone, Serialize)]
pub struct MediaReport {
    pub streams: usize,
    pub seconds: f64,
    /// outdial's CPU over the window, % of one core (bridged calls: linked legs).
    pub cpu_percent: f64,
    /// outdial's CPU per relayed packet, µs (bridged calls).
    pub cpu_us_per_packet: Option<f64>,
    /// Live calls (one session per stream, jitter buffer, frames to the call, its own paced
    /// stream out): outdial's CPU, % of one core...
    pub call_cpu_percent: f64,
    /// ...and per packet received (each call also sends one per packet received), µs.
    pub call_cpu_us_per_packet: Option<f64>,
    /// Live calls: packets the sessions read, packets they sent and frames the calls took off
    /// their channels, in the window.
    pub call_packets_received: u64,
    pub call_packets_sent: u64,
    pub call_frames: u64,
    pub loss_ratio: f64,
    /// p99 of |transit − median transit|, ms.
    pub jitter_added_ms_p99: f64,
    /// p99 of |transit(n+1) − transit(n)| within a stream, ms.
    pub stream_jitter_ms_p99: f64,
    pub rtpengine_cpu_percent: Option<f64>,
    pub rtpengine_cpu_us_per_packet: Option<f64>,
    pub rtpengine_loss_ratio: Option<f64>,
    pub rtpengine_jitter_added_ms_p99: Option<f64>,
    pub rtpengine_stream_jitter_ms_p99: Option<f64>,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub rtpengine_latency_ms_p50: Option<f64>,
    pub rtpengine_latency_ms_p99: Option<f64>,
    /// Packets the generator sent in the window / got back.
    pub packets_sent: u64,
    pub packets_received: u64,
    /// Packets outdial's linked legs relayed in the window (what cpu_us_per_packet divides by).
    pub packets_relayed: u64,
    pub payload_mismatches: u64,
    pub rtpengine_packets_sent: Option<u64>,
    pub rtpengine_packets_received: Option<u64>,
    /// What the live calls' jitter buffers did in the window.
    pub jitter_buffer: JitterBufferReport,
    pub workers: usize,
    pub tick_us: u64,
    pub gen_tick_us: u64,
    /// Every process on the machine over outdial's window, % of one core: when it is well above
    /// cpu_percent + generator_cpu_percent, something else was running and figures are noisy.
    pub host_cpu_percent: Option<f64>,
    pub rtpengine_host_cpu_percent: Option<f64>,
    /// Engine wake-ups per second (ticks, all workers), bridged calls.
    pub wakeups_per_s: f64,
    pub generator_cpu_percent: f64,
    pub rtpengine_generator_cpu_percent: Option<f64>,
    /// Why rtpengine's fields are null, when they are.
    pub rtpengine_skipped: Option<String>,
    /// With `--baseline` only: the generator sending straight to its own sinks (no relay).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_latency_ms_p50: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_latency_ms_p99: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_jitter_added_ms_p99: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_loss_ratio: Option<f64>,
}

impl MediaReport {
    /// A table for people.
    pub fn table(&self) -> String {
        let f = |v: Option<f64>, prec: usize| match v {
            Some(x) => format!("{x:.prec$}"),
            None => "-".into(),
        };
        let u = |v: Option<u64>| v.map_or("-".into(), |x| x.to_string());
        let pct = |v: Option<f64>| v.map_or("-".into(), |x| format!("{:.4} %", 100.0 * x));
        let mut s = format!(
            "outdial bench media: {} streams × 50 packets/s (172-byte PCMU RTP), {} s window, 127.0.0.1\n\
             media engine (the server's): {} worker thread(s), tick {} µs, {:.0} wake-ups/s; generator tick {} µs\n\
             live calls' jitter buffers {}-{} ms, {} ms to start: {} frames played, {} concealed, {} late, {} duplicates\n\n",
            self.streams,
            self.seconds,
            self.workers,
            self.tick_us,
            self.wakeups_per_s,
            self.gen_tick_us,
            self.jitter_buffer.min_ms,
            self.jitter_buffer.max_ms,
            self.jitter_buffer.initial_ms,
            self.jitter_buffer.played,
            self.jitter_buffer.concealed,
            self.jitter_buffer.late,
            self.jitter_buffer.duplicates,
        );
        let rows: Vec<(&str, String, String)> = vec![
            (
                "bridged: CPU, % of core",
                f(Some(self.cpu_percent), 1),
                f(self.rtpengine_cpu_percent, 1),
            ),
            (
                "bridged: CPU/packet, µs",
                f(self.cpu_us_per_packet, 2),
                f(self.rtpengine_cpu_us_per_packet, 2),
            ),
            (
                "live call: CPU, %",
                f(Some(self.call_cpu_percent), 1),
                "-".into(),
            ),
            (
                "live call: CPU/pkt, µs",
                f(self.call_cpu_us_per_packet, 2),
                "-".into(),
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
                "loss",
                pct(Some(self.loss_ratio)),
                pct(self.rtpengine_loss_ratio),
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
            (
                "jitter added p99, ms",
                f(Some(self.jitter_added_ms_p99), 3),
                f(self.rtpengine_jitter_added_ms_p99, 3),
            ),
            (
                "stream jitter p99, ms",
                f(Some(self.stream_jitter_ms_p99), 3),
                f(self.rtpengine_stream_jitter_ms_p99, 3),
            ),
            (
                "generator CPU, %",
                f(Some(self.generator_cpu_percent), 1),
                f(self.rtpengine_generator_cpu_percent, 1),
            ),
            (
                "whole machine CPU, %",
                f(self.host_cpu_percent, 1),
                f(self.rtpengine_host_cpu_percent, 1),
            ),
        ];
        s.push_str(&format!("{:<24}{:>14}{:>14}\n", "", "outdial", "rtpengine"));
        for (name, a, b) in rows {
            s.push_str(&format!("{name:<24}{a:>14}{b:>14}\n"));
        }
        if let (Some(p50), Some(p99), Some(j)) = (
            self.baseline_latency_ms_p50,
            self.baseline_latency_ms_p99,
            self.baseline_jitter_added_ms_p99,
        ) {
            s.push_str(&format!(
                "\nbaseline (generator straight to its sinks): latency p50 {p50:.3} ms, \
                 p99 {p99:.3} ms, jitter p99 {j:.3} ms\n"
            ));
        }
        if let Some(why) = &self.rtpengine_skipped {
            s.push_str(&format!("\nrtpengine not measured: {why}\n"));
        }
        s.push_str(
            "\nlatency = kernel receive time at the sink − time handed to sendmmsg; \
             jitter added = p99 of |latency − median latency|, all streams; stream jitter = p99 of \
             |latency(n+1) − latency(n)| within a stream; one stream = one relayed direction.\n\
             Latency, loss and jitter are the bridged calls'; a live call's packets are its own \
             stream, so that shape reports CPU only.\n",
        );
        s
    }
}

/// The live calls' jitter buffers over the measured window: their settings (those of a real
/// call) and what they did, summed over calls.
#[derive(Debug, Clone, Serialize)]
pub struct JitterBufferReport {
    pub min_ms: u64,
    pub initial_ms: u64,
    pub max_ms: u64,
    /// Turns that played a received packet.
    pub played: u64,
    /// Turns with no packet to play (counted, not sent).
    pub concealed: u64,
    /// Packets dropped because their turn had passed.
    pub late: u64,
    /// Packets dropped as received before.
    pub duplicates: u64,
}

/// The generator child process and its control pipes.
struct GenProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    source: SocketAddrV4,
    sinks: Vec<SocketAddrV4>,
    tick_us: u64,
    /// Relayed packets come back to the source socket too (bridged calls' legs answer there).
    recv_on_source: bool,
}

impl GenProcess {
    fn spawn(exe: &std::path::Path, streams: usize) -> Result<GenProcess, String> {
        let mut child = Command::new(exe)
            .args(["bench", "media-gen", "--streams", &streams.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the generator {}: {e}", exe.display()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("generator pipes missing".into());
        };
        let mut g = GenProcess {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            source: SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 0),
            sinks: Vec::new(),
            tick_us: gen::TICK_NS / 1000,
            recv_on_source: false,
        };
        match g.next_event()? {
            GenEvent::Ready { source, sinks } if !sinks.is_empty() => {
                g.source = source;
                g.sinks = sinks;
                Ok(g)
            }
            GenEvent::Error { message } => Err(message),
            other => Err(format!("generator said {other:?} instead of ready")),
        }
    }

    fn next_event(&mut self) -> Result<GenEvent, String> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => Err("the generator exited early".into()),
            Ok(_) => serde_json::from_str(line.trim())
                .map_err(|e| format!("unreadable generator event {line:?}: {e}")),
            Err(e) => Err(format!("reading the generator: {e}")),
        }
    }

    fn send(&mut self, cmd: &GenCommand) -> Result<(), String> {
        let line = serde_json::to_string(cmd).map_err(|e| e.to_string())?;
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("writing to the generator: {e}"))
    }

    /// Where stream `i`'s packets must be delivered.
    fn sink(&self, i: usize) -> SocketAddrV4 {
        self.sinks[i % self.sinks.len()]
    }

    /// Runs one measured phase; `at_start` / `at_end` snapshot whatever is being measured.
    fn run_phase<T>(
        &mut self,
        targets: Vec<SocketAddrV4>,
        seconds: f64,
        ssrc_base: u32,
        mut snapshot: impl FnMut() -> T,
    ) -> Result<(GenResult, T, T), String> {
        self.send(&GenCommand::Run {
            targets,
            warmup_ms: WARMUP_MS,
            seconds,
            drain_ms: DRAIN_MS,
            ssrc_base,
            tick_us: self.tick_us,
            recv_on_source: self.recv_on_source,
            tagged: false,
        })?;
        let mut start = None;
        let mut end = None;
        loop {
            match self.next_event()? {
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

    fn exit(mut self) {
        let _ = self.send(&GenCommand::Exit);
        let _ = self.child.wait();
    }
}

impl Drop for GenProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Loss as a ratio of what was sent.
fn loss(r: &GenResult) -> f64 {
    if r.sent == 0 {
        return 0.0;
    }
    r.sent.saturating_sub(r.received) as f64 / r.sent as f64
}

/// Busy and total jiffies of all CPUs, and the number of CPUs, from /proc/stat.
fn host_cpu() -> Option<(u64, u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut lines = stat.lines();
    let all: Vec<u64> = lines
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let cpus = lines.filter(|l| l.starts_with("cpu")).count() as u64;
    // user nice system idle iowait irq softirq steal …: idle and iowait are not busy.
    let total: u64 = all.iter().take(8).sum();
    let idle = all.get(3)? + all.get(4).copied().unwrap_or(0);
    Some((total - idle, total, cpus.max(1)))
}

/// Host CPU between two [`host_cpu`] readings, % of one core.
fn host_percent(a: Option<(u64, u64, u64)>, b: Option<(u64, u64, u64)>) -> Option<f64> {
    let ((busy0, total0, cpus), (busy1, total1, _)) = (a?, b?);
    let total = total1.checked_sub(total0).filter(|&t| t > 0)?;
    let busy = busy1.saturating_sub(busy0);
    Some(round(100.0 * busy as f64 * cpus as f64 / total as f64, 1))
}

fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

/// Runs `outdial bench media`. Errors are about outdial's own measurement; a failure of the
/// rtpengine half is reported in `rtpengine_skipped` and on stderr, not as an error.
pub fn run_media(opts: &MediaBenchOptions) -> Result<MediaReport, String> {
    if opts.streams == 0 {
        return Err("--streams must be at least 1".into());
    }
    // The generator keeps one 4-byte transit time per packet.
    if opts.streams as f64 * 50.0 * opts.seconds > 100e6 {
        return Err(format!(
            "{} streams for {} s is over 100 million packets: shorten --seconds",
            opts.streams, opts.seconds
        ));
    }
    // 2 sockets per stream here, 4 per call in rtpengine (it inherits our limit), slack.
    let want_files = 4 * opts.streams as u64 + 1024;
    match sys::raise_nofile(want_files) {
        Ok(have) if have < 2 * opts.streams as u64 + 64 => {
            return Err(format!(
                "open-file limit is {have}, {} streams need about {}: raise `ulimit -n`",
                opts.streams,
                2 * opts.streams + 64
            ))
        }
        Ok(_) => {}
        Err(e) => return Err(format!("cannot read the open-file limit: {e}")),
    }
    let mut gen = GenProcess::spawn(&opts.exe, opts.streams)?;
    gen.tick_us = opts.gen_tick_us;

    // ── outdial, bridged calls: linked legs ──
    let workers = match opts.workers {
        0 if opts.streams > ONE_WORKER_MAX_STREAMS => 2,
        0 => 1,
        w => w.min(2),
    };
    // At the process's priority, like the rtpengine it is compared with.
    let config = EngineConfig {
        workers,
        tick: Duration::from_micros(opts.tick_us),
        realtime: false,
    };
    let sinks: Vec<SocketAddrV4> = (0..opts.streams).map(|i| gen.sink(i)).collect();
    const LINKED_SSRC_BASE: u32 = 0x1000_0000;
    let linked = calls::Linked::start(config, gen.source, &sinks, LINKED_SSRC_BASE)?;
    let targets = linked.a_addrs().to_vec();
    let snapshot = |c: &dyn Fn() -> EngineCounters| {
        (
            sys::cpu_time_us(false).ok(),
            sys::monotonic_ns(),
            c(),
            host_cpu(),
        )
    };
    let counters = || linked.engine().counters();
    let phase = gen.run_phase(targets, opts.seconds, LINKED_SSRC_BASE, || {
        snapshot(&counters)
    });
    drop(linked);
    let (res, (cpu0, wall0, c0, h0), (cpu1, wall1, c1, h1)) = phase?;
    let (Some(cpu0), Some(cpu1)) = (cpu0, cpu1) else {
        return Err("getrusage failed: cannot measure outdial's CPU".into());
    };
    let wall_us = (wall1.saturating_sub(wall0) / 1000).max(1) as f64;
    let cpu_us = cpu1.saturating_sub(cpu0) as f64;
    let relayed = c1.relayed.saturating_sub(c0.relayed);
    let jitter = calls::call_jitter_config();
    let mut report = MediaReport {
        streams: opts.streams,
        seconds: opts.seconds,
        cpu_percent: round(100.0 * cpu_us / wall_us, 2),
        cpu_us_per_packet: (relayed > 0).then(|| round(cpu_us / relayed as f64, 3)),
        call_cpu_percent: 0.0,
        call_cpu_us_per_packet: None,
        call_packets_received: 0,
        call_packets_sent: 0,
        call_frames: 0,
        loss_ratio: round(loss(&res), 6),
        jitter_added_ms_p99: round(res.jitter_us_p99 / 1000.0, 3),
        stream_jitter_ms_p99: round(res.stream_jitter_us_p99 / 1000.0, 3),
        rtpengine_cpu_percent: None,
        rtpengine_cpu_us_per_packet: None,
        rtpengine_loss_ratio: None,
        rtpengine_jitter_added_ms_p99: None,
        rtpengine_stream_jitter_ms_p99: None,
        latency_ms_p50: round(res.transit_us_p50 / 1000.0, 3),
        latency_ms_p99: round(res.transit_us_p99 / 1000.0, 3),
        rtpengine_latency_ms_p50: None,
        rtpengine_latency_ms_p99: None,
        packets_sent: res.sent,
        packets_received: res.received,
        packets_relayed: relayed,
        payload_mismatches: res.payload_mismatches,
        rtpengine_packets_sent: None,
        rtpengine_packets_received: None,
        jitter_buffer: JitterBufferReport {
            min_ms: jitter.min_delay.as_millis() as u64,
            initial_ms: jitter.initial_delay.as_millis() as u64,
            max_ms: jitter.max_delay.as_millis() as u64,
            played: 0,
            concealed: 0,
            late: 0,
            duplicates: 0,
        },
        workers,
        tick_us: opts.tick_us,
        gen_tick_us: opts.gen_tick_us,
        host_cpu_percent: host_percent(h0, h1),
        rtpengine_host_cpu_percent: None,
        wakeups_per_s: round(
            c1.wakeups.saturating_sub(c0.wakeups) as f64 / (wall_us / 1e6),
            0,
        ),
        generator_cpu_percent: round(res.cpu_percent, 2),
        rtpengine_generator_cpu_percent: None,
        rtpengine_skipped: None,
        baseline_latency_ms_p50: None,
        baseline_latency_ms_p99: None,
        baseline_jitter_added_ms_p99: None,
        baseline_loss_ratio: None,
    };

    // ── outdial, live calls: one session each, through the jitter buffer ──
    let live = calls::Calls::start(config, gen.source, opts.streams)?;
    let targets = live.addrs().to_vec();
    let live_snapshot = || {
        (
            sys::cpu_time_us(false).ok(),
            sys::monotonic_ns(),
            live.engine().counters(),
            live.frames(),
            live.jitter_totals(),
        )
    };
    let phase = gen.run_phase(targets, opts.seconds, 0x4000_0000, live_snapshot);
    let (_, (cpu0, wall0, c0, f0, j0), (cpu1, wall1, c1, f1, j1)) = phase?;
    drop(live);
    if let (Some(cpu0), Some(cpu1)) = (cpu0, cpu1) {
        let wall_us = (wall1.saturating_sub(wall0) / 1000).max(1) as f64;
        let cpu_us = cpu1.saturating_sub(cpu0) as f64;
        let received = c1.received.saturating_sub(c0.received);
        report.call_cpu_percent = round(100.0 * cpu_us / wall_us, 2);
        report.call_cpu_us_per_packet = (received > 0).then(|| round(cpu_us / received as f64, 3));
        report.call_packets_received = received;
        report.call_packets_sent = c1.sent.saturating_sub(c0.sent);
        report.call_frames = f1.saturating_sub(f0);
        let d = |k: usize| j1[k].saturating_sub(j0[k]);
        report.jitter_buffer.played = d(0);
        report.jitter_buffer.concealed = d(1);
        report.jitter_buffer.late = d(2);
        report.jitter_buffer.duplicates = d(3);
    }

    // ── baseline: nothing between the generator and its sinks ──
    if opts.baseline {
        let targets = (0..opts.streams).map(|i| gen.sink(i)).collect();
        let (res, (), ()) = gen.run_phase(targets, opts.seconds, 0x3000_0000, || ())?;
        report.baseline_latency_ms_p50 = Some(round(res.transit_us_p50 / 1000.0, 3));
        report.baseline_latency_ms_p99 = Some(round(res.transit_us_p99 / 1000.0, 3));
        report.baseline_jitter_added_ms_p99 = Some(round(res.jitter_us_p99 / 1000.0, 3));
        report.baseline_loss_ratio = Some(round(loss(&res), 6));
    }

    // ── rtpengine ──
    let skipped = if !opts.rtpengine {
        Some("--no-rtpengine".to_string())
    } else {
        match rtpengine::find(opts.rtpengine_bin.as_deref()) {
            None => Some("rtpengine not found on PATH (apt-get install rtpengine-daemon)".into()),
            Some(bin) => run_rtpengine(&mut gen, &bin, opts, &mut report).err(),
        }
    };
    report.rtpengine_skipped = skipped;
    gen.exit();
    Ok(report)
}

fn run_rtpengine(
    gen: &mut GenProcess,
    bin: &std::path::Path,
    opts: &MediaBenchOptions,
    report: &mut MediaReport,
) -> Result<(), String> {
    let r = measure_rtpengine(gen, bin, opts.streams, opts.seconds)?;
    let res = &r.result;
    report.rtpengine_cpu_percent = Some(r.cpu_percent);
    report.rtpengine_cpu_us_per_packet = r.cpu_us_per_packet;
    report.rtpengine_loss_ratio = Some(round(loss(res), 6));
    report.rtpengine_jitter_added_ms_p99 = Some(round(res.jitter_us_p99 / 1000.0, 3));
    report.rtpengine_stream_jitter_ms_p99 = Some(round(res.stream_jitter_us_p99 / 1000.0, 3));
    report.rtpengine_latency_ms_p50 = Some(round(res.transit_us_p50 / 1000.0, 3));
    report.rtpengine_latency_ms_p99 = Some(round(res.transit_us_p99 / 1000.0, 3));
    report.rtpengine_packets_sent = Some(res.sent);
    report.rtpengine_packets_received = Some(res.received);
    report.rtpengine_generator_cpu_percent = Some(round(res.cpu_percent, 2));
    report.rtpengine_host_cpu_percent = r.host_cpu_percent;
    Ok(())
}

/// What rtpengine did with the generator's streams in one measured window.
struct RtpengineRun {
    result: GenResult,
    /// rtpengine's CPU over the window, % of one core.
    cpu_percent: f64,
    /// Its CPU per packet relayed, µs (`None` when nothing came through).
    cpu_us_per_packet: Option<f64>,
    /// Every process on the machine over the window, % of one core.
    host_cpu_percent: Option<f64>,
}

/// rtpengine (userspace) relaying `streams` streams from the generator's source to its sinks
/// for `seconds`: one rtpengine call per stream, its CPU read from `/proc/PID/stat`.
fn measure_rtpengine(
    gen: &mut GenProcess,
    bin: &std::path::Path,
    streams: usize,
    seconds: f64,
) -> Result<RtpengineRun, String> {
    let mut engine = rtpengine::Rtpengine::start(bin, streams)?;
    let a: Vec<SocketAddrV4> = vec![gen.source; streams];
    let b: Vec<SocketAddrV4> = (0..streams).map(|i| gen.sink(i)).collect();
    let targets = engine.setup_calls(&a, &b)?;
    let pid = engine.pid();
    let snapshot = || (rtpengine::proc_cpu_us(pid), sys::monotonic_ns(), host_cpu());
    let phase = gen.run_phase(targets, seconds, 0x2000_0000, snapshot);
    let deleted = engine.delete_calls();
    engine.stop();
    let (result, (cpu0, wall0, h0), (cpu1, wall1, h1)) = phase?;
    if let Err(e) = deleted {
        eprintln!("outdial: bench: deleting rtpengine's calls: {e}");
    }
    let (Some(cpu0), Some(cpu1)) = (cpu0, cpu1) else {
        return Err(format!("cannot read /proc/{pid}/stat"));
    };
    let wall_us = (wall1.saturating_sub(wall0) / 1000).max(1) as f64;
    let cpu_us = cpu1.saturating_sub(cpu0) as f64;
    Ok(RtpengineRun {
        cpu_percent: round(100.0 * cpu_us / wall_us, 2),
        cpu_us_per_packet: (result.received > 0).then(|| round(cpu_us / result.received as f64, 3)),
        host_cpu_percent: host_percent(h0, h1),
        result,
    })
}
