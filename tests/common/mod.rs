//! Shared harness for the integration tests that drive `outdial` against real peers.
//!
//! - ports: every port a peer listens on is picked here, outside the kernel's ephemeral range
//!   (so outdial's own `:0` binds never take them), at random, checked free, and remembered in a
//!   process-wide set (so tests running in parallel in one binary never share one).
//! - `outdial_cmd` / `run_call`: the binary under test, from a temp dir, on free ports, with the
//!   `--json` result parsed and checked to be the only thing on stdout.
//! - audio: speech WAVs from espeak-ng + sox, raw µ-law for sipp's `rtp_stream`, WAV reading,
//!   G.711 µ-law, and `best_correlation` (envelope cross-correlation, robust to G.711 and delay).
//! - peers: `Sipp` (UAS or UAC, scenarios from `tests/scenarios/`), `Kamailio` (a carrier with
//!   proxy digest auth, `tests/peers/kamailio.cfg`), `Baresip` (a headless auto-answering phone
//!   that plays a WAV and records what it hears).
//!
//! Every peer runs as a child process (under `timeout`, so none outlives a killed test run),
//! logs into the test's temp dir, is stopped on drop, and prints its log tail when the test
//! panics. Every wait here is bounded. Nothing here talks to anything but 127.0.0.1, except
//! a peer placed with [`At::netns`] inside a network namespace a test made for itself.
#![allow(dead_code)]

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Longest any peer may live (seconds): `timeout` kills it after this even if the test process
/// died without cleaning up.
const PEER_LIFETIME_S: u32 = 300;

// ---------------------------------------------------------------------------------------------
// temp dirs and tools
// ---------------------------------------------------------------------------------------------

/// A fresh temp dir for one test. Set `OUTDIAL_KEEP_TEST_DIRS=1` to keep it for inspection.
pub fn test_dir(name: &str) -> tempfile::TempDir {
    let mut dir = tempfile::Builder::new()
        .prefix(&format!("outdial-{name}-"))
        .tempdir()
        .expect("create temp dir");
    if std::env::var_os("OUTDIAL_KEEP_TEST_DIRS").is_some() {
        dir.disable_cleanup(true);
        eprintln!("[{name}] keeping test dir {}", dir.path().display());
    }
    dir
}

/// Panics with a clear message when an external tool that `make setup` installs is missing.
pub fn require_tool(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is not installed: run `make setup` (installs sip-tester, baresip, kamailio, sox, espeak-ng)"
    );
}

/// Runs a helper command to completion (bounded), panicking with its output on failure.
pub fn run_tool(cmd: &mut Command, what: &str) {
    let out = run_with_timeout(cmd, Duration::from_secs(60));
    assert!(
        out.status.map(|s| s.success()).unwrap_or(false),
        "{what} failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status,
        out.stdout,
        out.stderr
    );
}

/// What a bounded run produced. `status` is None when it had to be killed at the deadline.
pub struct RunOutput {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs `cmd` with stdin closed and stdout/stderr captured; kills it at `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> RunOutput {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
    let mut out_pipe = child.stdout.take().expect("stdout pipe");
    let mut err_pipe = child.stderr.take().expect("stderr pipe");
    let out_reader = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out_pipe.read_to_end(&mut s);
        s
    });
    let err_reader = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err_pipe.read_to_end(&mut s);
        s
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for {:?}: {e}", cmd.get_program()),
        }
    };
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    RunOutput {
        status,
        stdout,
        stderr,
        elapsed,
    }
}

// ---------------------------------------------------------------------------------------------
// ports
// ---------------------------------------------------------------------------------------------

fn taken() -> &'static Mutex<HashSet<u16>> {
    static TAKEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    TAKEN.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A small xorshift generator seeded from the clock, the pid and a counter (no `rand` needed).
pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for _ in 0..4 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

/// The window ports are picked from: below (or above) the kernel's ephemeral range, so that
/// sockets bound to port 0 (outdial's SIP listener, sipp's and kamailio's own sockets) never
/// land on a port a test reserved for a peer that has not bound it yet.
fn port_window() -> (u16, u16) {
    let (lo, hi) = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|v| v.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    if lo >= 16000 {
        (12000, (lo - 1).min(65000) as u16)
    } else if hi <= 50000 {
        ((hi + 1) as u16, 65000)
    } else {
        (20000, 30000)
    }
}

fn udp_free(port: u16) -> bool {
    // the wildcard bind fails if any address has the port bound (no SO_REUSEADDR here)
    UdpSocket::bind(("0.0.0.0", port)).is_ok()
}

fn tcp_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Reserves `n` consecutive ports (base is even) that are free for UDP, and for TCP too when
/// `tcp`; returns the base. Never returns a port reserved earlier in this process.
pub fn reserve_ports(n: u16, tcp: bool) -> u16 {
    let (lo, hi) = port_window();
    let span = u64::from(hi - lo - n - 2);
    for _ in 0..2000 {
        let base = (lo + (random_u64() % span) as u16) & !1;
        let mut set = taken().lock().unwrap();
        if (base..base + n).any(|p| set.contains(&p)) {
            continue;
        }
        if (base..base + n).all(|p| udp_free(p) && (!tcp || tcp_free(p))) {
            set.extend(base..base + n);
            return base;
        }
    }
    panic!("no {n} free consecutive ports in {lo}-{hi}");
}

/// One free UDP port.
pub fn free_udp_port() -> u16 {
    reserve_ports(1, false)
}

/// One port free for both UDP and TCP (a SIP listener).
pub fn free_tcp_port() -> u16 {
    reserve_ports(1, true)
}

/// A free RTP range of `n` ports, as (first, last) inclusive.
pub fn free_rtp_range(n: u16) -> (u16, u16) {
    let base = reserve_ports(n, false);
    (base, base + n - 1)
}

/// Whether something on this machine has 127.0.0.1:port (or 0.0.0.0:port) bound for UDP, or
/// listening for TCP. Reads /proc so it never races the peer for the port.
pub fn port_bound(port: u16, tcp: bool) -> bool {
    port_bound_in(None, port, tcp)
}

/// [`port_bound`] in network namespace `netns` (`None`: ours), read there with
/// `ip netns exec NETNS cat /proc/net/…`.
pub fn port_bound_in(netns: Option<&str>, port: u16, tcp: bool) -> bool {
    let files: &[&str] = if tcp {
        &["/proc/net/tcp", "/proc/net/tcp6"]
    } else {
        &["/proc/net/udp", "/proc/net/udp6"]
    };
    let hex_port = format!(":{port:04X}");
    for f in files {
        let text = match netns {
            None => fs::read_to_string(f).ok(),
            Some(ns) => Command::new("ip")
                .args(["netns", "exec", ns, "cat", f])
                .stderr(Stdio::null())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned()),
        };
        let Some(text) = text else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 4 || !cols[1].ends_with(&hex_port) {
                continue;
            }
            // TCP: state 0A is LISTEN. UDP: any entry bound to the port.
            if !tcp || cols[3] == "0A" {
                return true;
            }
        }
    }
    false
}

// ---------------------------------------------------------------------------------------------
// outdial
// ---------------------------------------------------------------------------------------------

/// Path of the binary under test.
pub fn outdial_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_outdial"))
}

/// `outdial` run from `dir` (so no stray outdial.toml is picked up), its SIP listener on
/// 127.0.0.1:0, a free RTP range of 20 ports, and no OUTDIAL_* or RUST_LOG from the parent.
pub fn outdial_cmd(dir: &Path) -> Command {
    let (lo, hi) = free_rtp_range(20);
    outdial_cmd_with_rtp(dir, &format!("{lo}-{hi}"))
}

/// Like `outdial_cmd` with an explicit OUTDIAL_RTP_PORTS value.
pub fn outdial_cmd_with_rtp(dir: &Path, rtp_ports: &str) -> Command {
    let mut cmd = Command::new(outdial_bin());
    cmd.current_dir(dir);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OUTDIAL_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env_remove("RUST_LOG")
        .env("OUTDIAL_SIP_LISTEN", "127.0.0.1:0")
        // `serve` also opens the admin API: never the shared default port in tests.
        .env("OUTDIAL_HTTP_LISTEN", "127.0.0.1:0")
        .env("OUTDIAL_RTP_PORTS", rtp_ports);
    cmd
}

/// One `outdial call … --json` run.
pub struct CallRun {
    /// The one JSON object printed on stdout.
    pub json: Value,
    pub stderr: String,
    pub status: ExitStatus,
    pub elapsed: Duration,
}

impl CallRun {
    pub fn outcome(&self) -> &str {
        self.json["outcome"].as_str().unwrap_or("<missing>")
    }
    pub fn sip_code(&self) -> Option<u64> {
        self.json["sip_code"].as_u64()
    }
    /// `rtp.sent`, `rtp.received`.
    pub fn rtp(&self) -> (u64, u64) {
        (
            self.json["rtp"]["sent"].as_u64().unwrap_or(0),
            self.json["rtp"]["received"].as_u64().unwrap_or(0),
        )
    }
}

/// `outdial call ARGS --json` from `dir` (see `outdial_cmd`), bounded at 60 s.
pub fn run_call(dir: &Path, args: &[&str]) -> CallRun {
    run_call_in(outdial_cmd(dir), args, Duration::from_secs(60))
}

/// `CMD call ARGS --json`: `cmd` may carry global options (`--profiles DIR`) and env already.
/// Panics unless the run ends in time and stdout holds exactly one JSON object.
pub fn run_call_in(mut cmd: Command, args: &[&str], timeout: Duration) -> CallRun {
    cmd.arg("call").args(args).arg("--json");
    let printable = format!("{cmd:?}");
    let out = run_with_timeout(&mut cmd, timeout);
    let Some(status) = out.status else {
        panic!(
            "outdial did not finish within {timeout:?}: {printable}\nstdout: {}\nstderr: {}",
            out.stdout, out.stderr
        );
    };
    let json = parse_one_json_object(&out.stdout).unwrap_or_else(|why| {
        panic!(
            "outdial call: {why} (exit {status:?})\ncommand: {printable}\nstdout: {}\nstderr: {}",
            out.stdout, out.stderr
        )
    });
    CallRun {
        json,
        stderr: out.stderr,
        status,
        elapsed: out.elapsed,
    }
}

/// Stdout must be exactly one JSON object (whitespace around it allowed).
pub fn parse_one_json_object(stdout: &str) -> Result<Value, String> {
    let mut values = Vec::new();
    for v in serde_json::Deserializer::from_str(stdout).into_iter::<Value>() {
        match v {
            Ok(v) => values.push(v),
            Err(e) => return Err(format!("stdout is not only JSON: {e}")),
        }
    }
    match values.len() {
        1 if values[0].is_object() => Ok(values.pop().unwrap()),
        1 => Err("stdout holds JSON but not an object".to_string()),
        n => Err(format!(
            "expected exactly one JSON object on stdout, found {n}"
        )),
    }
}

/// The non-empty lines of a stderr text.
pub fn stderr_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// What a campaign test's `outdial serve` runs on in `dir`: `outdial.toml` (SIP on a free
/// loopback UDP port and no TCP, `rtp_ports` RTP ports on loopback, the SQLite store
/// `outdial.db`, the admin API on `http_port`) and the trunk profile `far-end` to
/// `127.0.0.1:sip_port` (the sipp far end).
pub fn write_serve_config(dir: &Path, sip_port: u16, http_port: u16, rtp_ports: u16) {
    let (lo, hi) = free_rtp_range(rtp_ports);
    fs::write(
        dir.join("outdial.toml"),
        format!(
            "[sip]\nlisten_udp = \"127.0.0.1:0\"\nlisten_tcp = false\n\n\
             [rtp]\nbind_addr = \"127.0.0.1\"\nport_min = {lo}\nport_max = {hi}\n\n\
             [database]\nurl = \"sqlite://{}\"\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n",
            dir.join("outdial.db").display()
        ),
    )
    .expect("write outdial.toml");
    write_profile(
        &dir.join("sip-profiles"),
        "far-end",
        &format!("proxy = \"127.0.0.1:{sip_port}\"\n"),
    );
}

/// Writes `PROFILES_DIR/NAME.toml` (creating the dir) and returns the dir.
pub fn write_profile(profiles_dir: &Path, name: &str, toml: &str) -> PathBuf {
    fs::create_dir_all(profiles_dir).expect("create profiles dir");
    fs::write(profiles_dir.join(format!("{name}.toml")), toml).expect("write profile");
    profiles_dir.to_path_buf()
}

// ---------------------------------------------------------------------------------------------
// audio
// ---------------------------------------------------------------------------------------------

/// Speech as an 8 kHz mono 16-bit WAV: espeak-ng, then sox, with 0.3 s of silence before and
/// 0.7 s after.
pub fn speech_wav(path: &Path, text: &str) {
    speech_wav_padded(path, text, 0.3, 0.7);
}

/// Like `speech_wav` with explicit lead and tail silence (seconds).
pub fn speech_wav_padded(path: &Path, text: &str, lead_s: f64, tail_s: f64) {
    require_tool("espeak-ng");
    require_tool("sox");
    let raw = path.with_extension("espeak.wav");
    run_tool(
        Command::new("espeak-ng")
            .args(["-v", "en-us", "-s", "150", "-w"])
            .arg(&raw)
            .arg(text),
        "espeak-ng",
    );
    run_tool(
        Command::new("sox")
            .arg(&raw)
            .args(["-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer"])
            .arg(path)
            .args(["pad", &format!("{lead_s}"), &format!("{tail_s}")]),
        "sox (speech to 8 kHz)",
    );
    let _ = fs::remove_file(raw);
}

/// Converts any WAV to 8 kHz mono 16-bit, appending `tail_s` seconds of silence.
pub fn to_8k_mono_padded(input: &Path, output: &Path, tail_s: f64) {
    require_tool("sox");
    run_tool(
        Command::new("sox")
            .arg(input)
            .args(["-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer"])
            .arg(output)
            .args(["pad", "0", &format!("{tail_s}")]),
        "sox (to 8 kHz mono)",
    );
}

/// Raw 8 kHz µ-law (no header), as sipp 3.6.1's `rtp_stream` needs: `sox in.wav -t ul out`.
pub fn to_ulaw_raw(wav: &Path, raw: &Path) {
    require_tool("sox");
    run_tool(
        Command::new("sox")
            .arg(wav)
            .args(["-r", "8000", "-c", "1", "-t", "ul"])
            .arg(raw),
        "sox (to raw µ-law)",
    );
}

/// A WAV's samples as 8 kHz mono i16. Anything else (other rate, stereo, 8-bit, float) is
/// converted with sox first.
pub fn read_wav_8k(path: &Path) -> Vec<i16> {
    let reader =
        hound::WavReader::open(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let spec = reader.spec();
    if spec.sample_rate == 8000
        && spec.channels == 1
        && spec.bits_per_sample == 16
        && spec.sample_format == hound::SampleFormat::Int
    {
        return reader
            .into_samples::<i16>()
            .map(|s| s.expect("wav sample"))
            .collect();
    }
    drop(reader);
    let tmp = tempfile::Builder::new()
        .suffix(".wav")
        .tempfile()
        .expect("temp wav");
    to_8k_mono_padded(path, tmp.path(), 0.0);
    read_wav_8k(tmp.path())
}

/// Writes 8 kHz mono 16-bit samples as a WAV.
pub fn write_wav_8k(path: &Path, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for s in samples {
        w.write_sample(*s).expect("write sample");
    }
    w.finalize().expect("finalize wav");
}

/// Decodes a raw µ-law file.
pub fn read_ulaw_raw(path: &Path) -> Vec<i16> {
    fs::read(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .into_iter()
        .map(ulaw_decode)
        .collect()
}

const ULAW_BIAS: i32 = 0x84;

/// G.711 µ-law encoding of one sample.
pub fn ulaw_encode(sample: i16) -> u8 {
    let mut x = i32::from(sample);
    let sign = if x < 0 {
        x = -x;
        0x80
    } else {
        0
    };
    x = x.min(32635) + ULAW_BIAS;
    let mut exp = 7;
    let mut mask = 0x4000;
    while exp > 0 && x & mask == 0 {
        exp -= 1;
        mask >>= 1;
    }
    let mantissa = (x >> (exp + 3)) & 0x0F;
    !((sign | (exp << 4) | mantissa) as u8)
}

/// G.711 µ-law decoding of one byte.
pub fn ulaw_decode(byte: u8) -> i16 {
    let u = !byte;
    let exp = i32::from((u >> 4) & 0x07);
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exp) - ULAW_BIAS;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// Root-mean-square level of a signal (0 for an empty one).
pub fn rms(x: &[i16]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / x.len() as f64).sqrt()
}

const ENV_BLOCK: usize = 80; // 10 ms at 8 kHz
const ENV_HOP: usize = 40; // 5 ms

/// Mean absolute level over 10 ms blocks every 5 ms.
fn envelope(x: &[i16]) -> Vec<f64> {
    if x.len() < ENV_BLOCK {
        return Vec::new();
    }
    (0..=(x.len() - ENV_BLOCK) / ENV_HOP)
        .map(|k| {
            let block = &x[k * ENV_HOP..k * ENV_HOP + ENV_BLOCK];
            block.iter().map(|&s| f64::from(s).abs()).sum::<f64>() / ENV_BLOCK as f64
        })
        .collect()
}

/// How well `received` contains `reference`, allowing a delay of up to `max_lag_samples`
/// either way (8 kHz signals). Returns (peak normalized cross-correlation, lag in samples):
/// `received[i + lag] ≈ reference[i]`, so a positive lag means `received` is late.
///
/// Works on the 10 ms amplitude envelopes (5 ms hop), Pearson-normalized over the overlap of
/// the two at each lag, so G.711 distortion, gain, a few lost packets and jitter-buffer slips
/// barely move it; the overlap must cover at least half of the shorter signal (or 0.25 s),
/// so a recording that holds only part of a long reference still scores. The same speech
/// scores > 0.9; unrelated speech about 0.3–0.4; noise or silence below that.
/// Work is O(envelope length × lags): a few ms for 20 s signals and ±2 s.
pub fn best_correlation(reference: &[i16], received: &[i16], max_lag_samples: usize) -> (f64, i64) {
    let a = envelope(reference);
    let b = envelope(received);
    if a.len() < 2 || b.len() < 2 {
        return (0.0, 0);
    }
    let shorter = a.len().min(b.len());
    let min_overlap = (shorter / 2).max(50).min(shorter) as i64;
    let prefix = |v: &[f64]| {
        let mut s = vec![0.0; v.len() + 1];
        let mut s2 = vec![0.0; v.len() + 1];
        for (i, x) in v.iter().enumerate() {
            s[i + 1] = s[i] + x;
            s2[i + 1] = s2[i] + x * x;
        }
        (s, s2)
    };
    let (pa, pa2) = prefix(&a);
    let (pb, pb2) = prefix(&b);
    let max_lag = (max_lag_samples / ENV_HOP) as i64;
    let (na, nb) = (a.len() as i64, b.len() as i64);
    let mut best = (f64::MIN, 0i64);
    for lag in -max_lag..=max_lag {
        let i0 = 0.max(-lag);
        let i1 = na.min(nb - lag);
        let n = i1 - i0;
        if n < min_overlap {
            continue;
        }
        let (i0u, i1u) = (i0 as usize, i1 as usize);
        let (j0u, j1u) = ((i0 + lag) as usize, (i1 + lag) as usize);
        let nf = n as f64;
        let sa = pa[i1u] - pa[i0u];
        let sb = pb[j1u] - pb[j0u];
        let va = (pa2[i1u] - pa2[i0u]) - sa * sa / nf;
        let vb = (pb2[j1u] - pb2[j0u]) - sb * sb / nf;
        if va <= 1e-9 * nf || vb <= 1e-9 * nf {
            continue;
        }
        let sab: f64 = a[i0u..i1u]
            .iter()
            .zip(&b[j0u..j1u])
            .map(|(x, y)| x * y)
            .sum();
        let c = (sab - sa * sb / nf) / (va * vb).sqrt();
        if c > best.0 {
            best = (c, lag);
        }
    }
    if best.0 == f64::MIN {
        (0.0, 0)
    } else {
        (best.0, best.1 * ENV_HOP as i64)
    }
}

// ---------------------------------------------------------------------------------------------
// DTMF as audio (independent of outdial's own tone code)
// ---------------------------------------------------------------------------------------------

const DTMF_ROWS_HZ: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
const DTMF_COLS_HZ: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const DTMF_KEYPAD: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// Key presses as audio (8 kHz): `lead_ms` of silence, then per digit its row and column
/// sines (each ≈ −10 dBm0) for `tone_ms` and `gap_ms` of silence.
pub fn dtmf_tones(digits: &str, lead_ms: u32, tone_ms: u32, gap_ms: u32) -> Vec<i16> {
    let mut out = vec![0i16; lead_ms as usize * 8];
    for digit in digits.chars() {
        let (row, col) = DTMF_KEYPAD
            .iter()
            .enumerate()
            .find_map(|(r, keys)| keys.iter().position(|&k| k == digit).map(|c| (r, c)))
            .unwrap_or_else(|| panic!("not a DTMF key: {digit:?}"));
        let (f1, f2) = (DTMF_ROWS_HZ[row], DTMF_COLS_HZ[col]);
        out.extend((0..tone_ms as usize * 8).map(|n| {
            let t = n as f64 / 8000.0;
            let tau = 2.0 * std::f64::consts::PI;
            (7000.0 * ((tau * f1 * t).sin() + (tau * f2 * t).sin())) as i16
        }));
        out.extend(std::iter::repeat_n(0i16, gap_ms as usize * 8));
    }
    out
}

/// Power of `x` at `hz` (8 kHz), Goertzel, normalized so that a pure sine at `hz` holding all
/// of the block's energy scores 1 when divided by the block's energy × N / 2.
fn goertzel_power(x: &[f64], hz: f64) -> f64 {
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * hz / 8000.0).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &v in x {
        let s0 = v + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// The key presses in 8 kHz audio, in order, each once: a plain Goertzel detector over 20 ms
/// blocks every 10 ms. A block counts for a key when the block is not quiet, its strongest
/// row and column tones each hold ≥ 20 % of its energy and together ≥ 70 %; a key is pressed
/// after 3 such blocks in a row (≈ 40 ms) and released after 2 blocks without it.
pub fn decode_dtmf(samples: &[i16]) -> String {
    const N: usize = 160;
    const HOP: usize = 80;
    let mut out = String::new();
    let (mut candidate, mut run) = (None::<char>, 0u32);
    let (mut pressed, mut missing) = (None::<char>, 0u32);
    let mut start = 0;
    while start + N <= samples.len() {
        let block: Vec<f64> = samples[start..start + N]
            .iter()
            .map(|&s| f64::from(s))
            .collect();
        start += HOP;
        let energy: f64 = block.iter().map(|v| v * v).sum();
        let mut key = None;
        if energy / N as f64 > 300.0 * 300.0 {
            let share = |hz: f64| goertzel_power(&block, hz) / (energy * N as f64 / 2.0);
            let best = |freqs: &[f64; 4]| {
                freqs
                    .iter()
                    .map(|&f| share(f))
                    .enumerate()
                    .fold((0, 0.0), |b, (i, p)| if p > b.1 { (i, p) } else { b })
            };
            let (r, pr) = best(&DTMF_ROWS_HZ);
            let (c, pc) = best(&DTMF_COLS_HZ);
            if pr >= 0.2 && pc >= 0.2 && pr + pc >= 0.7 {
                key = Some(DTMF_KEYPAD[r][c]);
            }
        }
        if key.is_some() && key == candidate {
            run += 1;
        } else {
            candidate = key;
            run = u32::from(key.is_some());
        }
        match pressed {
            Some(p) if key == Some(p) => missing = 0,
            Some(_) => {
                missing += 1;
                if missing >= 2 {
                    pressed = None;
                }
            }
            None => {}
        }
        if pressed.is_none() && run >= 3 {
            if let Some(k) = candidate {
                out.push(k);
                pressed = Some(k);
                missing = 0;
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// peer processes
// ---------------------------------------------------------------------------------------------

/// Where a peer runs and which address it uses: 127.0.0.1 in our own network namespace by
/// default, or an address inside a network namespace a test created (`ip netns`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    /// `ip netns exec NETNS …` runs the peer there; `None`: our own namespace.
    pub netns: Option<String>,
    /// The address it listens on and puts in its SDP.
    pub ip: String,
}

impl At {
    pub fn loopback() -> At {
        At {
            netns: None,
            ip: "127.0.0.1".into(),
        }
    }

    pub fn netns(netns: &str, ip: &str) -> At {
        At {
            netns: Some(netns.into()),
            ip: ip.into(),
        }
    }
}

/// A peer child process: own process group, stdout+stderr into `log`, bounded lifetime.
struct Peer {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    status: Option<ExitStatus>,
    /// The network namespace it runs in (for the bound-port checks).
    netns: Option<String>,
}

impl Peer {
    /// Starts `program args…` under `timeout PEER_LIFETIME_S` in `cwd`, logging into `log`.
    fn spawn(name: &str, cwd: &Path, program: &str, args: &[String], log: PathBuf) -> Peer {
        Self::spawn_in(None, name, cwd, program, args, log)
    }

    /// Like [`Peer::spawn`], inside network namespace `netns` when given.
    fn spawn_in(
        netns: Option<&str>,
        name: &str,
        cwd: &Path,
        program: &str,
        args: &[String],
        log: PathBuf,
    ) -> Peer {
        require_tool(program);
        let out = File::create(&log).expect("create peer log");
        let err = out.try_clone().expect("clone log handle");
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "5", &PEER_LIFETIME_S.to_string()]);
        if let Some(ns) = netns {
            cmd.args(["ip", "netns", "exec", ns]);
        }
        cmd.arg(program)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Peer {
            name: name.to_string(),
            child: Some(child),
            log,
            status: None,
            netns: netns.map(str::to_string),
        }
    }

    fn log_text(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Exit status if it has ended (reaps it).
    fn poll(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(st)) = child.try_wait() {
                    self.status = Some(st);
                }
            }
        }
        self.status
    }

    /// Waits for the process to end by itself; None at the deadline (it keeps running).
    fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.poll() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Panics (with the log) if the process has already exited.
    fn assert_running(&mut self, while_doing: &str) {
        if let Some(st) = self.poll() {
            panic!(
                "{} exited ({st}) while {while_doing}; log:\n{}",
                self.name,
                tail(&self.log_text(), 80)
            );
        }
    }

    /// Waits until it has bound `port` (UDP and/or TCP listen).
    fn wait_bound(&mut self, port: u16, udp: bool, tcp: bool, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_running(&format!("starting (waiting for port {port})"));
            let ns = self.netns.as_deref();
            if (!udp || port_bound_in(ns, port, false)) && (!tcp || port_bound_in(ns, port, true)) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} did not bind port {port} within {timeout:?}; log:\n{}",
                    self.name,
                    tail(&self.log_text(), 80)
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM to the whole group, then SIGKILL after 3 s.
    fn stop(&mut self) {
        if self.poll().is_some() {
            return;
        }
        let Some(child) = self.child.as_mut() else {
            return;
        };
        let pgid = child.id();
        signal_group(pgid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                self.status = Some(st);
                // the leader is gone; make sure no child of it lingers
                signal_group(pgid, "KILL");
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        signal_group(pgid, "KILL");
        let _ = child.kill();
        self.status = child.wait().ok();
    }
}

fn signal_group(pgid: u32, signal: &str) {
    // `kill` is a shell builtin everywhere, so this needs no extra package or crate. (dash,
    // Debian's sh, takes no `--`: `kill -TERM -PGID`.)
    let _ = Command::new("sh")
        .args(["-c", &format!("kill -{signal} -{pgid} 2>/dev/null")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!(
                "----- {} log ({}) -----\n{}\n----- end of {} log -----",
                self.name,
                self.log.display(),
                tail(&self.log_text(), 60),
                self.name
            );
        }
    }
}

/// The last `n` lines of a text.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Text of `tests/scenarios/NAME`.
pub fn scenario_text(name: &str) -> String {
    let path = repo_file(&format!("tests/scenarios/{name}"));
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

static PEER_SEQ: AtomicU64 = AtomicU64::new(0);

fn next_seq() -> u64 {
    PEER_SEQ.fetch_add(1, Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------------
// sipp
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Builds a sipp run. `Sipp::uas(dir, "uas_busy.xml")…start()`.
pub struct SippBuilder {
    dir: PathBuf,
    scenario_name: String,
    scenario: String,
    remote: Option<String>,
    transport: Transport,
    args: Vec<String>,
    at: At,
}

impl SippBuilder {
    /// Runs sipp at `at` (a network namespace and address) instead of 127.0.0.1.
    pub fn at(mut self, at: At) -> Self {
        self.at = at;
        self
    }

    /// Over TCP (`-t t1`) instead of UDP (`-t u1`).
    pub fn tcp(mut self) -> Self {
        self.transport = Transport::Tcp;
        self
    }

    pub fn transport(mut self, t: Transport) -> Self {
        self.transport = t;
        self
    }

    /// Extra sipp arguments (`-key name value`, `-s user`, `-au`, `-d`, …).
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Replaces `@NAME@` in the scenario text before it is written.
    pub fn replace(mut self, placeholder: &str, value: &str) -> Self {
        self.scenario = self.scenario.replace(placeholder, value);
        self
    }

    /// Makes `stream.ulaw` (what the scenarios' `rtp_stream` plays) from a WAV.
    pub fn stream_wav(self, wav: &Path) -> Self {
        to_ulaw_raw(wav, &self.dir.join("stream.ulaw"));
        self
    }

    /// Starts sipp and, for a UAS, waits until it listens.
    pub fn start(self) -> Sipp {
        require_tool("sipp");
        let seq = next_seq();
        let stem = self.scenario_name.trim_end_matches(".xml").to_string();
        let tag = format!("{stem}-{seq}");
        let sf = format!("{tag}.xml");
        let scenario = if self.transport == Transport::Tcp {
            // sipp 3.6.1 over TCP counts a call as failed ("FailedTcpClosed") when the peer
            // closes the connection before the scenario ends, even inside <timewait>: a
            // client that hangs up and exits would fail every TCP scenario. Over TCP there
            // are no retransmissions to absorb, so the timewait has no use there anyway.
            self.scenario
                .lines()
                .filter(|l| !l.trim_start().starts_with("<timewait"))
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            self.scenario
        };
        fs::write(self.dir.join(&sf), scenario).expect("write scenario");
        let port = free_tcp_port();
        let media_port = reserve_ports(4, false); // sipp binds media_port and media_port + 2
        let control_port = free_udp_port();
        let messages = self.dir.join(format!("{tag}_messages.log"));
        let errors = self.dir.join(format!("{tag}_errors.log"));
        let mut args: Vec<String> = Vec::new();
        if let Some(remote) = &self.remote {
            args.push(remote.clone());
        }
        let t = match self.transport {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
        };
        for a in [
            "-sf",
            &sf,
            "-t",
            t,
            "-i",
            &self.at.ip,
            "-mi",
            &self.at.ip,
            "-p",
            &port.to_string(),
            "-mp",
            &media_port.to_string(),
            "-cp",
            &control_port.to_string(),
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "120s",
            "-trace_msg",
            "-message_file",
            &messages.to_string_lossy(),
            "-trace_err",
            "-error_file",
            &errors.to_string_lossy(),
        ] {
            args.push(a.to_string());
        }
        args.extend(self.args);
        let mut peer = Peer::spawn_in(
            self.at.netns.as_deref(),
            &format!("sipp {}", self.scenario_name),
            &self.dir,
            "sipp",
            &args,
            self.dir.join(format!("{tag}_screen.log")),
        );
        if self.remote.is_none() {
            let tcp = self.transport == Transport::Tcp;
            peer.wait_bound(port, !tcp, tcp, Duration::from_secs(10));
        }
        Sipp {
            peer,
            port,
            media_port,
            transport: self.transport,
            messages,
            errors,
            ip: self.at.ip,
        }
    }
}

/// A running sipp (`-m 1`: it exits after one call; exit 0 only if that call passed).
pub struct Sipp {
    peer: Peer,
    pub port: u16,
    pub media_port: u16,
    pub transport: Transport,
    messages: PathBuf,
    errors: PathBuf,
    /// The address it listens on.
    ip: String,
}

impl Sipp {
    /// A UAS running `tests/scenarios/SCENARIO` (written into `dir`; sipp runs from `dir`).
    pub fn uas(dir: &Path, scenario: &str) -> SippBuilder {
        SippBuilder {
            dir: dir.to_path_buf(),
            scenario_name: scenario.to_string(),
            scenario: scenario_text(scenario),
            remote: None,
            transport: Transport::Udp,
            args: Vec::new(),
            at: At::loopback(),
        }
    }

    /// A UAC running `tests/scenarios/SCENARIO` against `remote` (host:port).
    pub fn uac(dir: &Path, scenario: &str, remote: &str) -> SippBuilder {
        let mut b = Self::uas(dir, scenario);
        b.remote = Some(remote.to_string());
        b
    }

    /// `sip:USER@127.0.0.1:PORT` (its address), with `;transport=tcp` over TCP.
    pub fn uri(&self, user: &str) -> String {
        match self.transport {
            Transport::Udp => format!("sip:{user}@{}:{}", self.ip, self.port),
            Transport::Tcp => format!("sip:{user}@{}:{};transport=tcp", self.ip, self.port),
        }
    }

    /// Waits for sipp to finish its one call; stops it at the deadline (then `passed` is false).
    pub fn wait(mut self, timeout: Duration) -> SippRun {
        let status = self.peer.wait_timeout(timeout);
        let timed_out = status.is_none();
        if timed_out {
            self.peer.stop();
        }
        let read = |p: &Path| {
            fs::read(p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        SippRun {
            passed: status.map(|s| s.success()).unwrap_or(false),
            exit_code: status.and_then(|s| s.code()),
            timed_out,
            messages: read(&self.messages),
            errors: read(&self.errors),
            screen: self.peer.log_text(),
        }
    }
}

/// What a finished sipp run left.
pub struct SippRun {
    /// Exit code 0: every call of the scenario succeeded.
    pub passed: bool,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// `-trace_msg` log: every SIP message sent and received.
    pub messages: String,
    /// `-trace_err` log: unexpected messages and errors.
    pub errors: String,
    /// sipp's stdout/stderr (statistics screens).
    pub screen: String,
}

/// One SIP message from sipp's message log.
#[derive(Clone, Debug)]
pub struct SipMessage {
    pub received: bool,
    /// Request line or status line.
    pub first_line: String,
    pub text: String,
}

impl SipMessage {
    /// The method of a request (None for a response).
    pub fn method(&self) -> Option<&str> {
        if self.first_line.starts_with("SIP/2.0") {
            None
        } else {
            self.first_line.split_whitespace().next()
        }
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        self.first_line
            .strip_prefix("SIP/2.0 ")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|c| c.parse().ok())
    }

    /// First value of a header (case-insensitive name, compact forms not handled).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.text.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

impl SippRun {
    /// Every message in the log, in order.
    pub fn sip_messages(&self) -> Vec<SipMessage> {
        let mut out = Vec::new();
        for chunk in self
            .messages
            .split("\n-----------------------------------------------")
        {
            let mut lines = chunk.lines().skip_while(|l| !l.contains(" message "));
            let Some(header) = lines.next() else {
                continue;
            };
            let received = header.contains("message received");
            let body: Vec<&str> = lines.skip_while(|l| l.trim().is_empty()).collect();
            let Some(first) = body.first() else {
                continue;
            };
            out.push(SipMessage {
                received,
                first_line: first.trim().to_string(),
                text: body.join("\n"),
            });
        }
        out
    }

    /// Requests with this method that sipp received.
    pub fn received_requests(&self, method: &str) -> Vec<SipMessage> {
        self.sip_messages()
            .into_iter()
            .filter(|m| m.received && m.method() == Some(method))
            .collect()
    }

    /// Responses with this code that sipp received.
    pub fn received_responses(&self, code: u16) -> Vec<SipMessage> {
        self.sip_messages()
            .into_iter()
            .filter(|m| m.received && m.status() == Some(code))
            .collect()
    }

    /// Panics with the logs unless the scenario passed.
    pub fn assert_passed(&self, what: &str) {
        assert!(
            self.passed,
            "sipp scenario failed for {what} (exit {:?}, timed out: {})\nerrors:\n{}\nmessages:\n{}\nscreen:\n{}",
            self.exit_code,
            self.timed_out,
            tail(&self.errors, 40),
            tail(&self.messages, 120),
            tail(&self.screen, 30)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// RTP capture (for checking what a peer sends)
// ---------------------------------------------------------------------------------------------

/// Listens on a UDP port and keeps the payloads of PT 0 (PCMU) packets, decoded; counts
/// packets of any other payload type.
pub struct RtpCapture {
    pub port: u16,
    state: Arc<Mutex<Captured>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Captured {
    samples: Vec<i16>,
    packets: usize,
    other: usize,
}

impl RtpCapture {
    pub fn start() -> RtpCapture {
        let port = reserve_ports(2, false);
        let sock = UdpSocket::bind(("127.0.0.1", port)).expect("bind rtp capture");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let state = Arc::new(Mutex::new(Captured::default()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let handle = thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !sp.load(Ordering::Relaxed) {
                if let Ok((n, _)) = sock.recv_from(&mut buf) {
                    if n <= 12 {
                        continue;
                    }
                    if buf[1] & 0x7f != 0 {
                        st.lock().unwrap().other += 1;
                        continue;
                    }
                    let cc = usize::from(buf[0] & 0x0f);
                    let start = 12 + 4 * cc;
                    if n > start {
                        let mut g = st.lock().unwrap();
                        g.samples
                            .extend(buf[start..n].iter().map(|&b| ulaw_decode(b)));
                        g.packets += 1;
                    }
                }
            }
        });
        RtpCapture {
            port,
            state,
            stop,
            handle: Some(handle),
        }
    }

    /// Stops listening; returns (decoded samples, packet count).
    pub fn finish(self) -> (Vec<i16>, usize) {
        let (samples, packets, _) = self.finish_all();
        (samples, packets)
    }

    /// Stops listening; returns (decoded PCMU samples, PCMU packets, packets of other types).
    pub fn finish_all(mut self) -> (Vec<i16>, usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let c = std::mem::take(&mut *self.state.lock().unwrap());
        (c.samples, c.packets, c.other)
    }
}

impl Drop for RtpCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------------
// kamailio: a carrier with proxy digest auth
// ---------------------------------------------------------------------------------------------

/// What the test carrier expects and where it sends calls.
#[derive(Clone, Debug)]
pub struct CarrierConfig {
    pub realm: String,
    pub username: String,
    pub password: String,
    /// Where answered INVITEs go, e.g. `Baresip::uri()`.
    pub ua_uri: String,
    /// Challenge REGISTER with 401/WWW-Authenticate instead of 407/Proxy-Authenticate.
    pub register_with_401: bool,
    /// Challenge with SHA-256 and qop=auth instead of MD5 without qop.
    pub sha256: bool,
}

/// kamailio running `tests/peers/kamailio.cfg` on 127.0.0.1 (UDP and TCP, same port).
pub struct Kamailio {
    peer: Peer,
    pub port: u16,
}

/// kamailio running the config `text` (placeholders filled in) on 127.0.0.1:`port` (UDP and
/// TCP) in `dir/kamailio-SEQ`, in the foreground, one worker; returns once it listens.
fn spawn_kamailio(dir: &Path, seq: u64, port: u16, text: &str, extra_args: &[String]) -> Peer {
    let kdir = dir.join(format!("kamailio-{seq}"));
    let run = kdir.join("run");
    fs::create_dir_all(&run).expect("kamailio dir");
    let cfg_path = kdir.join("kamailio.cfg");
    fs::write(&cfg_path, text).expect("write kamailio.cfg");
    let mut args: Vec<String> = [
        "-f",
        &cfg_path.to_string_lossy(),
        "-DD",
        "-E",
        "-n",
        "1",
        "-m",
        "64",
        "-M",
        "8",
        "-w",
        &kdir.to_string_lossy(),
        "-P",
        &kdir.join("kamailio.pid").to_string_lossy(),
        "-Y",
        &run.to_string_lossy(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra_args.iter().cloned());
    let mut peer = Peer::spawn(
        "kamailio",
        &kdir,
        "kamailio",
        &args,
        kdir.join("kamailio.log"),
    );
    peer.wait_bound(port, true, true, Duration::from_secs(20));
    peer
}

impl Kamailio {
    pub fn start(dir: &Path, cfg: &CarrierConfig) -> Kamailio {
        require_tool("kamailio");
        let seq = next_seq();
        let port = free_tcp_port();
        let template = fs::read_to_string(repo_file("tests/peers/kamailio.cfg"))
            .expect("read tests/peers/kamailio.cfg");
        for (name, v) in [
            ("realm", &cfg.realm),
            ("username", &cfg.username),
            ("password", &cfg.password),
        ] {
            assert!(
                !v.contains(['"', '\\', '@', '\n']),
                "carrier {name} must not contain quotes, backslashes, @ or newlines"
            );
        }
        let text = template
            .replace("@PORT@", &port.to_string())
            .replace("@REALM@", &cfg.realm)
            .replace("@USERNAME@", &cfg.username)
            .replace("@PASSWORD@", &cfg.password)
            .replace("@UA_URI@", &cfg.ua_uri);
        let mut extra = Vec::new();
        if cfg.register_with_401 {
            extra.extend(["-A".to_string(), "REG_WWW".to_string()]);
        }
        if cfg.sha256 {
            extra.extend(["-A".to_string(), "AUTH_SHA256".to_string()]);
        }
        let peer = spawn_kamailio(dir, seq, port, &text, &extra);
        Kamailio { peer, port }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Everything kamailio logged so far.
    pub fn log(&self) -> String {
        self.peer.log_text()
    }

    /// The `CARRIER …` decision lines (text after "CARRIER ").
    pub fn carrier_lines(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|l| l.split_once("CARRIER ").map(|(_, r)| r.to_string()))
            .collect()
    }

    /// How many `CARRIER` lines start with `prefix` (e.g. "INVITE from", "REGISTER accepted").
    pub fn count(&self, prefix: &str) -> usize {
        self.carrier_lines()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    }

    /// Waits up to `timeout` for a `CARRIER` line starting with `prefix`.
    pub fn wait_for(&self, prefix: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.count(prefix) > 0 {
                return true;
            }
            thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

// ---------------------------------------------------------------------------------------------
// kamailio over TLS, with certificates a test CA signed
// ---------------------------------------------------------------------------------------------

/// Certificates made by `openssl` for one test: a CA, a server certificate it signed for
/// 127.0.0.1, a client certificate it signed, and a second CA that signed nothing we meet.
pub struct TestPki {
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TestPki {
    pub fn make(dir: &Path) -> TestPki {
        require_tool("openssl");
        let pki = dir.join("pki");
        fs::create_dir_all(&pki).expect("pki dir");
        let openssl = |args: &[&str]| {
            let mut cmd = Command::new("openssl");
            cmd.current_dir(&pki).args(args);
            run_tool(&mut cmd, &format!("openssl {}", args.join(" ")));
        };
        for ca in ["ca", "other-ca"] {
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=outdial test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
            ]);
        }
        fs::write(
            pki.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:carrier.test\n",
        )
        .expect("server.ext");
        fs::write(pki.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("client.ext");
        for (name, cn) in [("server", "carrier.test"), ("client", "outdial client")] {
            openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.crt"),
            ]);
        }
        TestPki {
            ca: pki.join("ca.crt"),
            other_ca: pki.join("other-ca.crt"),
            server_cert: pki.join("server.crt"),
            server_key: pki.join("server.key"),
            client_cert: pki.join("client.crt"),
            client_key: pki.join("client.key"),
        }
    }
}

/// kamailio running `tests/peers/kamailio-tls.cfg`: TLS on 127.0.0.1:`tls_port` with the
/// test CA's server certificate, relaying INVITEs to `ua_uri`; with `client_cert`, it asks
/// for our client certificate and refuses a connection without one the CA signed.
pub struct KamailioTls {
    peer: Peer,
    pub tls_port: u16,
}

impl KamailioTls {
    pub fn start(dir: &Path, pki: &TestPki, ua_uri: &str, client_cert: bool) -> KamailioTls {
        require_tool("kamailio");
        let seq = next_seq();
        let port = free_tcp_port();
        let tls_port = free_tcp_port();
        let tls_cfg = dir.join(format!("kamailio-tls-{seq}.cfg"));
        let verify = if client_cert { "yes" } else { "no" };
        fs::write(
            &tls_cfg,
            format!(
                "[server:default]\nmethod = TLSv1.2+\nverify_certificate = {verify}\n\
                 require_certificate = {verify}\nprivate_key = {}\ncertificate = {}\n\
                 ca_list = {}\n\n[client:default]\nverify_certificate = no\n\
                 require_certificate = no\n",
                pki.server_key.display(),
                pki.server_cert.display(),
                pki.ca.display()
            ),
        )
        .expect("write tls.cfg");
        let template = fs::read_to_string(repo_file("tests/peers/kamailio-tls.cfg"))
            .expect("read tests/peers/kamailio-tls.cfg");
        let text = template
            .replace("@PORT@", &port.to_string())
            .replace("@TLS_PORT@", &tls_port.to_string())
            .replace("@TLS_CFG@", &tls_cfg.to_string_lossy())
            .replace("@UA_URI@", ua_uri);
        let peer = spawn_kamailio(dir, seq, port, &text, &[]);
        KamailioTls { peer, tls_port }
    }

    /// The `CARRIER …` decision lines (text after "CARRIER ").
    pub fn carrier_lines(&self) -> Vec<String> {
        self.peer
            .log_text()
            .lines()
            .filter_map(|l| l.split_once("CARRIER ").map(|(_, r)| r.to_string()))
            .collect()
    }

    pub fn log(&self) -> String {
        self.peer.log_text()
    }
}

// ---------------------------------------------------------------------------------------------
// kamailio: a registrar + proxy in front of agents
// ---------------------------------------------------------------------------------------------

/// kamailio running `tests/peers/kamailio-registrar.cfg` on 127.0.0.1 (UDP and TCP, same
/// port): agents REGISTER to it (no auth), INVITEs to `sip:USER@127.0.0.1:PORT` are relayed to
/// USER's registered contact, and it record-routes, so every in-dialog request passes it.
pub struct Registrar {
    peer: Peer,
    pub port: u16,
}

impl Registrar {
    pub fn start(dir: &Path) -> Registrar {
        require_tool("kamailio");
        let seq = next_seq();
        let port = free_tcp_port();
        let template = fs::read_to_string(repo_file("tests/peers/kamailio-registrar.cfg"))
            .expect("read tests/peers/kamailio-registrar.cfg");
        let text = template.replace("@PORT@", &port.to_string());
        let peer = spawn_kamailio(dir, seq, port, &text, &[]);
        Registrar { peer, port }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `sip:USER@127.0.0.1:PORT`: the AOR an agent registers, and where calls to it go.
    pub fn aor(&self, user: &str) -> String {
        format!("sip:{user}@{}", self.addr())
    }

    /// A baresip agent registering as `user` here, answering every call (see [`Baresip`]).
    pub fn agent(&self, dir: &Path, user: &str, source_wav: &Path, control: bool) -> Baresip {
        let agent = BaresipOptions {
            register: Some((user.to_string(), self.addr())),
            control,
            ..BaresipOptions::default()
        }
        .start(dir, source_wav);
        assert!(
            self.wait_for(
                &format!("REGISTER saved user={user} "),
                Duration::from_secs(10)
            ),
            "{user} did not register; registrar log:\n{}\nbaresip log:\n{}",
            tail(&self.log(), 40),
            tail(&agent.log(), 40)
        );
        agent
    }

    /// Everything kamailio logged so far.
    pub fn log(&self) -> String {
        self.peer.log_text()
    }

    /// The `REGISTRAR …` decision lines (text after "REGISTRAR ").
    pub fn lines(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|l| l.split_once("REGISTRAR ").map(|(_, r)| r.to_string()))
            .collect()
    }

    /// How many `REGISTRAR` lines start with `prefix` (e.g. "in-dialog BYE from").
    pub fn count(&self, prefix: &str) -> usize {
        self.lines()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    }

    /// Waits up to `timeout` for a `REGISTRAR` line starting with `prefix`.
    pub fn wait_for(&self, prefix: &str, timeout: Duration) -> bool {
        self.wait_count(prefix, 1, timeout)
    }

    /// Waits up to `timeout` until `times` `REGISTRAR` lines start with `prefix`.
    pub fn wait_count(&self, prefix: &str, times: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.count(prefix) >= times {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// baresip: a headless auto-answering phone
// ---------------------------------------------------------------------------------------------

fn baresip_module_path() -> PathBuf {
    let mut candidates = vec![
        PathBuf::from("/usr/lib/baresip/modules"),
        PathBuf::from("/usr/local/lib/baresip/modules"),
    ];
    if let Ok(entries) = fs::read_dir("/usr/lib") {
        for e in entries.flatten() {
            candidates.push(e.path().join("baresip/modules"));
        }
    }
    candidates
        .into_iter()
        .find(|p| p.join("g711.so").is_file() && p.join("aufile.so").is_file())
        .expect("baresip modules (g711.so, aufile.so) not found: run `make setup`")
}

/// How a [`Baresip`] is set up beyond its source WAV.
#[derive(Clone, Debug)]
pub struct BaresipOptions {
    /// Where it runs (default: 127.0.0.1 in our namespace).
    pub at: At,
    /// Codecs it offers and accepts, baresip's account syntax (default `pcmu,pcma`).
    /// baresip always adds telephone-event (RFC 4733).
    pub audio_codecs: String,
    /// `(user, registrar host:port)`: it REGISTERs as `sip:user@registrar` (every 60 s)
    /// and takes the calls routed to that AOR. Default: no registration.
    pub register: Option<(String, String)>,
    /// A command console ([`Baresip::command`]: hold, resume, hangup). Default: none.
    pub control: bool,
    /// Media encryption (its `srtp` module's account parameter `mediaenc`: `srtp` best
    /// effort, `srtp-mand` SDES-SRTP only on RTP/SAVP). Default: none (plain RTP).
    pub mediaenc: Option<String>,
}

impl Default for BaresipOptions {
    fn default() -> Self {
        BaresipOptions {
            at: At::loopback(),
            audio_codecs: "pcmu,pcma".into(),
            register: None,
            control: false,
            mediaenc: None,
        }
    }
}

impl BaresipOptions {
    pub fn start(&self, dir: &Path, source_wav: &Path) -> Baresip {
        Baresip::start_with(dir, source_wav, self)
    }
}

/// baresip answering every call at once, playing `source.wav` as its microphone (padded with
/// 20 s of silence; baresip hangs up when its source ends) and recording what it receives
/// into `rec/*-dec.wav` (sndfile).
pub struct Baresip {
    peer: Peer,
    /// The address it listens on.
    pub ip: String,
    pub port: u16,
    /// Its command console's UDP port ([`BaresipOptions::control`]).
    pub control_port: Option<u16>,
    pub dir: PathBuf,
    pub rec_dir: PathBuf,
    /// The exact audio baresip sends (8 kHz mono, padded; 16 kHz for G.722).
    pub source: PathBuf,
}

impl Baresip {
    pub fn start(dir: &Path, source_wav: &Path) -> Baresip {
        Self::start_at(dir, source_wav, &At::loopback())
    }

    /// Like [`Baresip::start`], at `at` (a network namespace and address).
    pub fn start_at(dir: &Path, source_wav: &Path, at: &At) -> Baresip {
        Self::start_with_codecs(dir, source_wav, at, "pcmu,pcma")
    }

    /// Like [`Baresip::start_at`], offering and accepting only `audio_codecs` (baresip's
    /// account syntax, comma-separated: `pcmu`, `pcma`, `G722/16000/1`).
    pub fn start_with_codecs(
        dir: &Path,
        source_wav: &Path,
        at: &At,
        audio_codecs: &str,
    ) -> Baresip {
        BaresipOptions {
            at: at.clone(),
            audio_codecs: audio_codecs.to_string(),
            ..BaresipOptions::default()
        }
        .start(dir, source_wav)
    }

    /// baresip as configured by `opts` (see [`BaresipOptions`]).
    pub fn start_with(dir: &Path, source_wav: &Path, opts: &BaresipOptions) -> Baresip {
        require_tool("baresip");
        let at = &opts.at;
        let audio_codecs = opts.audio_codecs.as_str();
        let seq = next_seq();
        let bdir = dir.join(format!("baresip-{seq}"));
        let rec_dir = bdir.join("rec");
        fs::create_dir_all(&rec_dir).expect("baresip dir");
        let source = bdir.join("source.wav");
        let g722 = audio_codecs.to_ascii_lowercase().contains("g722");
        if g722 {
            // baresip's aufile plays a source at the codec's own rate: 16 kHz for G.722.
            require_tool("sox");
            run_tool(
                Command::new("sox")
                    .arg(source_wav)
                    .args(["-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer"])
                    .arg(&source)
                    .args(["pad", "0", "20"]),
                "sox (to 16 kHz mono)",
            );
        } else {
            to_8k_mono_padded(source_wav, &source, 20.0);
        }
        // baresip listens on PORT (UDP, TCP) and PORT + 1 (TLS)
        let port = reserve_ports(2, true);
        let (rtp_lo, rtp_hi) = free_rtp_range(20);
        // The command console (cons: one command per UDP datagram, menu's commands).
        let control_port = opts.control.then(free_udp_port);
        let control = match control_port {
            Some(p) => format!(
                "module\t\t\tmenu.so\n\
                 module\t\t\tcons.so\n\
                 cons_listen\t\t{ip}:{p}\n",
                ip = at.ip
            ),
            None => String::new(),
        };
        let config = format!(
            "poll_method\t\tepoll\n\
             sip_listen\t\t{ip}:{port}\n\
             call_local_timeout\t120\n\
             call_max_calls\t\t4\n\
             audio_player\t\taubridge,nil\n\
             audio_source\t\taufile,{source}\n\
             audio_alert\t\taubridge,nil\n\
             audio_level\t\tno\n\
             audio_buffer\t\t20-160\n\
             rtp_ports\t\t{rtp_lo}-{rtp_hi}\n\
             rtcp_mux\t\tno\n\
             jitter_buffer_delay\t5-10\n\
             net_interface\t\t{ip}\n\
             module_path\t\t{modules}\n\
             module\t\t\tg711.so\n\
             {g722}\
             module\t\t\taufile.so\n\
             module\t\t\taubridge.so\n\
             module\t\t\tsndfile.so\n\
             {control}\
             {srtp}\
             module_tmp\t\taccount.so\n\
             snd_path\t\t{rec}\n",
            ip = at.ip,
            g722 = if g722 { "module\t\t\tg722.so\n" } else { "" },
            srtp = if opts.mediaenc.is_some() {
                "module\t\t\tsrtp.so\n"
            } else {
                ""
            },
            source = source.display(),
            modules = baresip_module_path().display(),
            rec = rec_dir.display(),
        );
        fs::write(bdir.join("config"), config).expect("write baresip config");
        // Registered: the AOR is USER at the registrar (REGISTER every `regint` s, the
        // registrar's address as the AOR's host). Otherwise: no registration.
        let account = match &opts.register {
            Some((user, registrar)) => format!("<sip:{user}@{registrar}>;regint=60"),
            None => format!("<sip:baresip@{}>;regint=0", at.ip),
        };
        fs::write(
            bdir.join("accounts"),
            format!(
                "{account};answermode=auto;audio_codecs={audio_codecs}{}\n",
                opts.mediaenc
                    .as_deref()
                    .map(|m| format!(";mediaenc={m}"))
                    .unwrap_or_default()
            ),
        )
        .expect("write baresip accounts");
        let args = vec!["-f".to_string(), bdir.to_string_lossy().into_owned()];
        let mut peer = Peer::spawn_in(
            at.netns.as_deref(),
            "baresip",
            &bdir,
            "baresip",
            &args,
            bdir.join("baresip.log"),
        );
        peer.wait_bound(port, true, true, Duration::from_secs(15));
        if let Some(p) = control_port {
            peer.wait_bound(p, true, false, Duration::from_secs(15));
        }
        Baresip {
            peer,
            ip: at.ip.clone(),
            port,
            control_port,
            dir: bdir,
            rec_dir,
            source,
        }
    }

    /// Sends one console command (menu's long form without the slash: `hold`, `resume`,
    /// `hangup`). Needs [`BaresipOptions::control`].
    pub fn command(&self, cmd: &str) {
        let port = self
            .control_port
            .expect("baresip was started without its command console (BaresipOptions::control)");
        let sock = UdpSocket::bind((self.ip.as_str(), 0)).expect("bind for a baresip command");
        sock.send_to(format!("/{cmd}\n").as_bytes(), (self.ip.as_str(), port))
            .expect("send a baresip command");
    }

    /// Waits up to `timeout` until its log holds `needle` at least `times` times.
    pub fn wait_log(&self, needle: &str, times: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().matches(needle).count() >= times {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `sip:baresip@127.0.0.1:PORT` (its address).
    pub fn uri(&self) -> String {
        format!("sip:baresip@{}:{}", self.ip, self.port)
    }

    pub fn log(&self) -> String {
        self.peer.log_text()
    }

    /// How many calls baresip has answered ("Call established").
    /// The digits baresip logged as ended RFC 4733 events ("received event: '5' (end=1)"),
    /// in order: each key press once.
    pub fn dtmf_heard(&self) -> String {
        self.log()
            .lines()
            .filter(|l| l.contains("(end=1)"))
            .filter_map(|l| l.split_once("received event: '"))
            .filter_map(|(_, rest)| rest.chars().next())
            .collect()
    }

    pub fn calls_established(&self) -> usize {
        self.log().matches("Call established").count()
    }

    /// Waits until a call has ended ("… terminated"), so its recording is complete.
    pub fn wait_call_ended(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let log = self.log();
            if log.contains("terminated (duration") || log.contains(": session closed") {
                // sndfile closes its files when the audio stream is torn down, just after
                thread::sleep(Duration::from_millis(300));
                return true;
            }
            thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The recording of what baresip received in its (first) call, once that call has ended.
    pub fn received_recording(&self, timeout: Duration) -> PathBuf {
        assert!(
            self.wait_call_ended(timeout),
            "baresip's call did not end within {timeout:?}; log:\n{}",
            tail(&self.log(), 60)
        );
        let mut decs: Vec<PathBuf> = fs::read_dir(&self.rec_dir)
            .expect("read baresip rec dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .collect();
        decs.sort();
        decs.into_iter().next().unwrap_or_else(|| {
            panic!(
                "baresip wrote no *-dec.wav; log:\n{}",
                tail(&self.log(), 60)
            )
        })
    }
}

/// Writes something to a file (small helper for tests).
pub fn write_file(path: &Path, text: &str) {
    let mut f = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(text.as_bytes()).expect("write file");
}

/// A voicemail greeting, 0.6 s of silence, a 1 kHz beep of 500 ms, silence. Returns the beep's
/// onset in ms from the start of the file.
pub fn voicemail_with_beep(dir: &Path, path: &Path) -> u64 {
    let greeting = dir.join("greeting.wav");
    speech_wav_padded(
        &greeting,
        "Hi, you have reached John Smith. I can't take your call right now. \
         Please leave a message after the tone and I will get back to you.",
        0.3,
        0.6,
    );
    let mut audio = read_wav_8k(&greeting);
    let beep_at = audio.len() as u64 / 8;
    audio.extend((0..4000).map(|i| {
        (9000.0 * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 8000.0).sin()) as i16
    }));
    audio.extend(std::iter::repeat_n(0i16, 8000 * 4));
    write_wav_8k(path, &audio);
    beep_at
}

/// `outdial` run from `dir` with `dir`'s own `outdial.toml` and `sip-profiles/` (the process
/// tests that run `outdial serve` write both), nothing taken from the parent's OUTDIAL_*.
pub fn outdial_in(dir: &Path) -> Command {
    let mut cmd = outdial_cmd_with_rtp(dir, "0-0");
    cmd.env_remove("OUTDIAL_RTP_PORTS")
        .env_remove("OUTDIAL_SIP_LISTEN")
        .env_remove("OUTDIAL_HTTP_LISTEN")
        .args(["--config", "outdial.toml", "--profiles", "sip-profiles"]);
    cmd
}

/// `outdial keys create --login LOGIN` in `dir` (see [`outdial_in`]): the new API key.
pub fn create_key(dir: &Path, login: &str) -> String {
    let out = outdial_in(dir)
        .args(["keys", "create", "--login", login])
        .output()
        .expect("outdial keys create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!key.is_empty(), "keys create printed no key");
    key
}

/// `outdial serve` as a child process (its log in `serve.log`), stopped (SIGTERM, then kill)
/// on drop.
pub struct ServeProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub api: String,
    pub log: PathBuf,
}

impl ServeProcess {
    /// Starts `outdial serve` in `dir` (see [`outdial_in`]) and waits until its admin API
    /// listens on `http_port`.
    pub fn start(dir: &Path, http_port: u16) -> ServeProcess {
        Self::start_with_env(dir, http_port, &[])
    }

    /// [`ServeProcess::start`] with extra environment variables (`OUTDIAL_LOG_FORMAT`, …).
    pub fn start_with_env(dir: &Path, http_port: u16, env: &[(&str, &str)]) -> ServeProcess {
        let log = dir.join("serve.log");
        let child = outdial_in(dir)
            .arg("serve")
            .env("RUST_LOG", "info,rsipstack=warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("serve.log"))
            .spawn()
            .expect("spawn outdial serve");
        let server = ServeProcess {
            child,
            api: format!("http://127.0.0.1:{http_port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !port_bound(http_port, true) {
            assert!(
                Instant::now() < deadline,
                "outdial serve did not listen on {http_port}: {}",
                fs::read_to_string(&server.log).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// `kill -9`: the process dies at once, nothing of it runs after.
    pub fn kill9(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&fs::read_to_string(&self.log).unwrap_or_default(), n)
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        // SIGTERM through the `kill` command (no unsafe code in tests).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls campaign `id` through the API at `api` until it is `finished`; fails after
/// `timeout` with the campaign and the tail of `serve`'s `log`.
pub async fn wait_campaign_finished(
    http: &reqwest::Client,
    auth: &str,
    api: &str,
    id: i64,
    log: &Path,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let (_, c) = api_request(
            http,
            auth,
            reqwest::Method::GET,
            format!("{api}/v1/campaigns/{id}"),
            None,
        )
        .await;
        if c["status"] == "finished" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "campaign {id} did not finish: {c}\n{}",
            tail(&fs::read_to_string(log).unwrap_or_default(), 40)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// One admin API request with a bearer key; the status and the JSON body.
pub async fn api_request(
    http: &reqwest::Client,
    auth: &str,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (reqwest::StatusCode, Value) {
    let mut req = http.request(method, &url).header("Authorization", auth);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = resp.status();
    let body = resp
        .json()
        .await
        .unwrap_or_else(|e| panic!("{url}: not JSON: {e}"));
    (status, body)
}
