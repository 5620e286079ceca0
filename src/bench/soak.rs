//! `outdial bench soak`: the whole server for a long time — `outdial serve` (the binary, as
//! deployed: SQLite store, admin API, campaign engine, SIP, media, AMD) runs one campaign at
//! N concurrent calls against a sipp far end, and every few seconds its memory, open files,
//! threads, tokio tasks and live calls are read; at the end the first and last quarters of the
//! loaded window (after the ramp-up and a warm-up of a tenth of it, a minute at most, while
//! caches fill) are compared, and the idle server after the calls drained is compared with
//! the idle server before they began. A leak shows as growth.
//!
//! The far end is `tests/scenarios/uas_by_number.xml` (compiled in): numbers ending 0–3 are
//! people ("Hello? Yes, speaking." then a few words every couple of seconds), 4–5 voicemail
//! (a greeting, then its beep), 6–7 busy, 8 never answers (the campaign's ring timeout ends
//! it), 9 declines. AMD decides people from machines; people hear a `--call-secs` long message
//! and are hung up on; machines get a voicemail after the beep. So the load has every end a
//! campaign meets, not only answered calls. With `--answered` the campaign's numbers all end
//! 0–5 (every call is answered, by a person or a voicemail) and the voicemail message lasts
//! `--call-secs` too: the live calls are answered calls that stay up, the measure of how many
//! the server holds at once with AMD.
//!
//! Readings: `/proc/PID` of `serve` (resident memory, open files, threads, CPU) — the same
//! reader as `GET /v1/node` — and `GET /v1/node` for tasks and live calls. sipp's own memory and
//! CPU are read the same way, for scale.
//!
//! Linux only; needs `sipp`, `espeak-ng` and `sox` on PATH (`make setup`). Nothing here runs in
//! the server: it is a measuring tool.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use super::serve::{
    counter, cpu_percent, create_key, free_port_block, free_tcp_port, free_udp_port, histogram,
    log_levels, metrics_page, mib, run_tool, start_serve, wait_ready, write_config, Api, Process,
    ServeConfig,
};
use crate::observe::process::{resources, Pid};

/// The far end's scenario: numbers' last digits pick what happens (see the module header).
const FAR_END_SCENARIO: &str = include_str!("../../tests/scenarios/uas_by_number.xml");
/// The ring timeout of the campaign (numbers ending 8 ring until it).
const RING_TIMEOUT_SECS: u64 = 15;

/// What `outdial bench soak` was asked to do.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Concurrent calls (the campaign's `max_concurrent`).
    pub calls: usize,
    /// Length of the loaded window, minutes.
    pub minutes: f64,
    /// Seconds between two readings.
    pub sample_secs: f64,
    /// The campaign's AMD mode (`heuristic`, `auto`, …).
    pub amd: String,
    /// How long the message people hear lasts, seconds (sets how long their calls are).
    pub call_secs: f64,
    /// Only numbers that answer, and a voicemail message as long as people's (module header).
    pub answered: bool,
    /// The outdial binary to run as `serve` (normally `std::env::current_exe()`).
    pub exe: PathBuf,
    pub sipp_bin: PathBuf,
    /// Keep the work directory (store, logs) instead of removing it.
    pub keep: bool,
}

/// One reading.
#[derive(Debug, Clone, Serialize)]
pub struct SoakSample {
    /// Seconds since the campaign started.
    pub t_s: f64,
    pub live_calls: usize,
    pub tasks: usize,
    pub rss_mib: f64,
    pub open_files: u64,
    pub threads: u64,
    /// Attempts recorded so far.
    pub attempts: i64,
}

/// Growth of one figure between the first and the last quarter of the loaded window.
#[derive(Debug, Clone, Serialize)]
pub struct Drift {
    pub first_quarter: f64,
    pub last_quarter: f64,
    /// (last − first) / first, percent (0 when first is 0).
    pub change_pct: f64,
}

impl Drift {
    fn of(samples: &[SoakSample], value: impl Fn(&SoakSample) -> f64) -> Drift {
        let quarter = (samples.len() / 4).max(1);
        let mean = |s: &[SoakSample]| {
            if s.is_empty() {
                0.0
            } else {
                s.iter().map(&value).sum::<f64>() / s.len() as f64
            }
        };
        let first = mean(&samples[..quarter.min(samples.len())]);
        let last = mean(&samples[samples.len().saturating_sub(quarter)..]);
        Drift {
            first_quarter: first,
            last_quarter: last,
            change_pct: if first > 0.0 {
                (last - first) / first * 100.0
            } else {
                0.0
            },
        }
    }
}

/// The idle server: before the campaign and after its calls drained.
#[derive(Debug, Clone, Serialize)]
pub struct Idle {
    pub tasks: usize,
    pub rss_mib: f64,
    pub open_files: u64,
    pub threads: u64,
}

/// What `outdial bench soak` found.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub calls: usize,
    pub minutes: f64,
    pub amd: String,
    pub call_secs: f64,
    /// Only numbers that answer (`--answered`).
    pub answering_only: bool,
    /// Readings while the calls settle after the ramp-up (a tenth of the window, a minute at
    /// most): memory grows there as caches fill, so they are not compared.
    pub warmup_samples: Vec<SoakSample>,
    /// Readings over the loaded window (after the ramp-up and the warm-up).
    pub samples: Vec<SoakSample>,
    /// Mean live calls over the loaded window.
    pub live_calls_mean: f64,
    pub live_calls_min: usize,
    pub rss: Drift,
    pub open_files: Drift,
    pub threads: Drift,
    pub tasks: Drift,
    /// Tasks per live call (tasks ÷ live calls), first vs last quarter.
    pub tasks_per_call: Drift,
    pub idle_before: Idle,
    pub idle_after: Idle,
    /// Attempts recorded during the run, answered ones, and those AMD called people.
    pub attempts: i64,
    pub answered: i64,
    pub human_answered: i64,
    /// `serve`'s CPU over the loaded window, % of one core; sipp's, for scale.
    pub serve_cpu_percent: f64,
    pub sipp_cpu_percent: f64,
    pub sipp_rss_mib: f64,
    /// Lines of `serve`'s log at WARN or ERROR level during the run.
    pub warnings: usize,
    pub errors: usize,
    /// The media path over the loaded window (from `serve`'s `/metrics`).
    pub media: MediaHealth,
}

/// Whether every call's audio kept time over the loaded window: what `serve`'s `/metrics`
/// counted between its start and its end. Late sends and dropped frames are the engine or a
/// call's consumer (AMD) falling behind; concealed frames also count packets the far end
/// lost or sent late.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MediaHealth {
    /// Media engine wake-ups per second.
    pub engine_wakeups_per_second: f64,
    /// Paced 20 ms packets sent a frame or more late (or skipped after a stall).
    pub late_sends: f64,
    /// Answered calls that ended in the window (the frame counts below are theirs).
    pub calls_ended: f64,
    /// Frames those calls' consumers (AMD, a recorder) were too slow to take.
    pub dropped_frames: f64,
    /// Frames those calls' jitter buffers made up.
    pub concealed_frames: f64,
    /// AMD verdicts in the window and their mean time from the answer, seconds.
    pub amd_verdicts: f64,
    pub amd_decision_mean_s: f64,
}

impl MediaHealth {
    /// The change between two `/metrics` pages `seconds` apart.
    fn between(before: &str, after: &str, seconds: f64) -> MediaHealth {
        let count = |page: &str, name: &str| counter(page, name);
        let hist = |page: &str, name: &str| histogram(page, name).remove("").unwrap_or((0.0, 0.0));
        let delta = |name: &str| count(after, name) - count(before, name);
        let (rtp_calls_after, concealed_after) = hist(after, "outdial_rtp_concealed_frames");
        let (rtp_calls_before, concealed_before) = hist(before, "outdial_rtp_concealed_frames");
        let (_, dropped_after) = hist(after, "outdial_rtp_dropped_frames");
        let (_, dropped_before) = hist(before, "outdial_rtp_dropped_frames");
        let (amd_after, amd_s_after) = hist(after, "outdial_amd_decision_seconds");
        let (amd_before, amd_s_before) = hist(before, "outdial_amd_decision_seconds");
        let amd_verdicts = amd_after - amd_before;
        MediaHealth {
            engine_wakeups_per_second: delta("outdial_media_wakeups_total") / seconds.max(1e-9),
            late_sends: delta("outdial_media_late_sends_total"),
            calls_ended: rtp_calls_after - rtp_calls_before,
            dropped_frames: dropped_after - dropped_before,
            concealed_frames: concealed_after - concealed_before,
            amd_verdicts,
            amd_decision_mean_s: if amd_verdicts > 0.0 {
                (amd_s_after - amd_s_before) / amd_verdicts
            } else {
                0.0
            },
        }
    }
}

impl SoakReport {
    /// A human-readable summary.
    pub fn table(&self) -> String {
        let d = |name: &str, d: &Drift, unit: &str| {
            format!(
                "{name:<16} {:>10.1} {unit:<4} → {:>10.1} {unit:<4} ({:+.1} %)\n",
                d.first_quarter, d.last_quarter, d.change_pct
            )
        };
        let mut s = format!(
            "bench soak: {} concurrent calls for {} min, AMD {}, people's calls {} s{}\n\
             live calls: mean {:.1}, min {} over {} readings\n\
             attempts {}, answered {}, people {} (AMD)\n\
             first quarter → last quarter of the loaded window:\n",
            self.calls,
            self.minutes,
            self.amd,
            self.call_secs,
            if self.answering_only {
                ", every number answers"
            } else {
                ""
            },
            self.live_calls_mean,
            self.live_calls_min,
            self.samples.len(),
            self.attempts,
            self.answered,
            self.human_answered,
        );
        let m = &self.media;
        s.push_str(&format!(
            "media over the window: {:.0} late sends, {:.0} frames dropped and {:.0} concealed in \
             {:.0} calls that ended; engine {:.0} wake-ups/s; {:.0} AMD verdicts, {:.2} s mean\n",
            m.late_sends,
            m.dropped_frames,
            m.concealed_frames,
            m.calls_ended,
            m.engine_wakeups_per_second,
            m.amd_verdicts,
            m.amd_decision_mean_s
        ));
        s.push_str(&d("resident memory", &self.rss, "MiB"));
        s.push_str(&d("open files", &self.open_files, ""));
        s.push_str(&d("threads", &self.threads, ""));
        s.push_str(&d("tasks", &self.tasks, ""));
        s.push_str(&d("tasks per call", &self.tasks_per_call, ""));
        s.push_str(&format!(
            "idle before: {} tasks, {:.1} MiB, {} files, {} threads\n\
             idle after:  {} tasks, {:.1} MiB, {} files, {} threads\n\
             CPU: serve {:.1} %, sipp {:.1} % (sipp {:.1} MiB)\n\
             serve log: {} warnings, {} errors\n",
            self.idle_before.tasks,
            self.idle_before.rss_mib,
            self.idle_before.open_files,
            self.idle_before.threads,
            self.idle_after.tasks,
            self.idle_after.rss_mib,
            self.idle_after.open_files,
            self.idle_after.threads,
            self.serve_cpu_percent,
            self.sipp_cpu_percent,
            self.sipp_rss_mib,
            self.warnings,
            self.errors,
        ));
        s
    }
}

/// `text` spoken by espeak-ng into `out` (8 kHz mono 16-bit WAV), padded with silence.
fn speech(dir: &Path, text: &str, out: &str, lead_s: f64, tail_s: f64) -> Result<(), String> {
    let raw = dir.join(format!("{out}.espeak.wav"));
    run_tool(
        Command::new("espeak-ng")
            .args(["-v", "en-us", "-s", "150", "-w"])
            .arg(&raw)
            .arg(text),
        "espeak-ng",
    )?;
    run_tool(
        Command::new("sox")
            .arg(&raw)
            .args(["-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer"])
            .arg(dir.join(out))
            .args(["pad", &lead_s.to_string(), &tail_s.to_string()]),
        "sox",
    )?;
    let _ = std::fs::remove_file(raw);
    Ok(())
}

/// The far end's streams (raw µ-law, sipp reads them from its directory) and the campaign's
/// two messages (in `media/`).
fn make_audio(dir: &Path, call_secs: f64, answered: bool) -> Result<(), String> {
    speech(dir, "Hello? Yes, speaking.", "hello.wav", 0.1, 3.0)?;
    speech(dir, "Yes, I am still here.", "still.wav", 0.0, 1.5)?;
    let mut person = Command::new("sox");
    person.arg(dir.join("hello.wav"));
    for _ in 0..12 {
        person.arg(dir.join("still.wav"));
    }
    run_tool(
        person.args(["-t", "ul"]).arg(dir.join("stream.ulaw")),
        "sox (person stream)",
    )?;
    speech(
        dir,
        "Hi, you have reached Mary. I can't take your call right now. \
         Please leave a message after the tone.",
        "greeting.wav",
        0.3,
        0.6,
    )?;
    run_tool(
        Command::new("sox")
            .args([
                "-n",
                "-r",
                "8000",
                "-c",
                "1",
                "-b",
                "16",
                "-e",
                "signed-integer",
            ])
            .arg(dir.join("beep.wav"))
            .args([
                "synth", "0.5", "sine", "1000", "vol", "0.3", "pad", "0", "10",
            ]),
        "sox (beep)",
    )?;
    run_tool(
        Command::new("sox")
            .arg(dir.join("greeting.wav"))
            .arg(dir.join("beep.wav"))
            .args(["-t", "ul"])
            .arg(dir.join("voicemail.ulaw")),
        "sox (voicemail stream)",
    )?;
    let media = dir.join("media");
    std::fs::create_dir_all(&media).map_err(|e| format!("cannot create media/: {e}"))?;
    speech(
        &media,
        "Hello, this is a reminder from the outdial soak test. Thank you, goodbye.",
        "message.wav",
        0.1,
        0.1,
    )?;
    pad_to(&media, "message.wav", "message-long.wav", call_secs)?;
    speech(
        &media,
        "Please call us back. Goodbye.",
        "voicemail.wav",
        0.1,
        0.2,
    )?;
    if answered {
        pad_to(&media, "voicemail.wav", "voicemail-long.wav", call_secs)?;
    }
    Ok(())
}

/// `from` padded with silence (or cut) to `secs` seconds, as `to`, both in `media`.
fn pad_to(media: &Path, from: &str, to: &str, secs: f64) -> Result<(), String> {
    run_tool(
        Command::new("sox")
            .arg(media.join(from))
            .arg(media.join(to))
            .args([
                "pad",
                "0",
                &secs.to_string(),
                "trim",
                "0",
                &secs.to_string(),
            ]),
        "sox (message length)",
    )
}

/// The index of contact `i`'s number when every number must answer: last digits 0–5 only
/// (people and voicemail), no index twice.
fn answering_number(i: usize) -> usize {
    i / 6 * 10 + i % 6
}

async fn idle(api: &Api, serve: u32) -> Result<Idle, String> {
    let (tasks, _) = api.node().await?;
    let r = resources(Pid::Other(serve));
    Ok(Idle {
        tasks,
        rss_mib: mib(r.rss_bytes),
        open_files: r.open_files.unwrap_or(0),
        threads: r.threads.unwrap_or(0),
    })
}

/// Runs the soak: see the module header.
pub fn run(opts: &SoakOptions) -> Result<SoakReport, String> {
    if opts.calls == 0 || opts.minutes <= 0.0 || opts.sample_secs <= 0.0 || opts.call_secs < 1.0 {
        return Err(
            "bench soak needs --calls ≥ 1, --minutes > 0, --sample-secs > 0 and --call-secs ≥ 1"
                .into(),
        );
    }
    let dir = std::env::temp_dir().join(format!("outdial-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let result = run_in(opts, &dir);
    super::serve::keep_or_remove("soak", &dir, opts.keep);
    result
}

fn run_in(opts: &SoakOptions, dir: &Path) -> Result<SoakReport, String> {
    make_audio(dir, opts.call_secs, opts.answered)?;
    std::fs::write(dir.join("uas_by_number.xml"), FAR_END_SCENARIO)
        .map_err(|e| format!("cannot write the far end's scenario: {e}"))?;
    let sip_port = free_udp_port()?;
    let sipp_media = free_port_block(8)?;
    let mut sipp = Process {
        child: Command::new(&opts.sipp_bin)
            .current_dir(dir)
            .args(["-sf", "uas_by_number.xml", "-t", "u1"])
            .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args([
                "-p",
                &sip_port.to_string(),
                "-mp",
                &sipp_media.0.to_string(),
            ])
            .args(["-cp", &free_udp_port()?.to_string()])
            .args([
                "-buff_size",
                "4194304",
                "-max_recv_loops",
                "10000",
                "-nostdin",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", opts.sipp_bin.display()))?,
        name: "sipp",
    };
    std::thread::sleep(Duration::from_millis(300));
    if let Some(why) = sipp.exited() {
        return Err(why);
    }
    let http_port = free_tcp_port()?;
    // Two ports per call (RTP, RTCP), with room for the calls still ending.
    let rtp_len = u16::try_from(opts.calls * 4 + 40).map_err(|_| "too many calls".to_string())?;
    let rtp = free_port_block(rtp_len)?;
    write_config(
        dir,
        &ServeConfig {
            sip_port,
            http_port,
            rtp,
            database_url: format!("sqlite://{}", dir.join("outdial.db").display()),
            max_channels: opts.calls + opts.calls / 10 + 5,
            log_level: "warn",
        },
    )?;
    let key = create_key(&opts.exe, dir, "soak")?;
    let log = dir.join("serve.log");
    let mut serve = start_serve(&opts.exe, dir, &log)?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let api = Api {
        http: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{http_port}"),
        auth: format!("Bearer {key}"),
    };
    runtime.block_on(async {
        wait_ready(&api, &mut serve, &log).await?;
        soak(opts, &api, &mut serve, &mut sipp, &log).await
    })
}

async fn soak(
    opts: &SoakOptions,
    api: &Api,
    serve: &mut Process,
    sipp: &mut Process,
    log: &Path,
) -> Result<SoakReport, String> {
    use reqwest::Method;
    // Calls per minute the campaign may start: enough to refill every slot of calls that end
    // after 3 s (busy and declined numbers end at once, people after call_secs).
    let pace = (opts.calls as f64 * 20.0).min(60_000.0);
    let created = api
        .call(
            Method::POST,
            "/v1/campaigns",
            Some(json!({
                "name": "soak", "pace": pace, "max_concurrent": opts.calls,
                "ring_timeout_secs": RING_TIMEOUT_SECS, "max_retries": 0,
                "amd_mode": opts.amd, "machine_action": "leave_message",
                "voicemail_message": if opts.answered { "voicemail-long.wav" } else { "voicemail.wav" },
                "play_message": "message-long.wav",
                "sip_profile": "far-end", "caller_id": "+12025550100"
            })),
        )
        .await?;
    let id = created["id"]
        .as_i64()
        .ok_or_else(|| format!("POST /v1/campaigns: no id in {created}"))?;
    // Enough contacts for the whole window even if every call ended at once (busy numbers
    // do): the pace's worth, plus the ramp.
    let contacts = (pace * (opts.minutes + 1.0)).ceil() as usize + opts.calls;
    // The last digit picks the far end's behaviour.
    if opts.answered {
        api.import_numbered(id, contacts, "Soak", answering_number)
            .await?;
    } else {
        api.import_contacts(id, contacts, "Soak").await?;
    }
    let idle_before = idle(api, serve.pid()).await?;
    api.call(Method::POST, &format!("/v1/campaigns/{id}/start"), None)
        .await?;
    let started = Instant::now();

    // Ramp: until most calls are up (or a minute passed).
    let ramp_deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, live) = api.node().await?;
        if live >= (opts.calls * 3 / 4).max(1) || Instant::now() > ramp_deadline {
            break;
        }
        if let Some(why) = serve.exited() {
            return Err(format!("{why}; see {}", log.display()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let window = Duration::from_secs_f64(opts.minutes * 60.0);
    let warmup = Duration::from_secs_f64((opts.minutes * 6.0).min(60.0));
    let warmup_start = Instant::now();
    let mut warmup_samples = Vec::new();
    let mut window_start = warmup_start + warmup;
    let mut serve_cpu_before = resources(Pid::Other(serve.pid()));
    let mut sipp_cpu_before = resources(Pid::Other(sipp.pid()));
    let mut samples = Vec::new();
    let mut next = warmup_start;
    let mut warm = false;
    let mut metrics_before = String::new();
    while Instant::now() < window_start || window_start.elapsed() < window {
        if !warm && Instant::now() >= window_start {
            warm = true;
            window_start = Instant::now();
            serve_cpu_before = resources(Pid::Other(serve.pid()));
            sipp_cpu_before = resources(Pid::Other(sipp.pid()));
            metrics_before = metrics_page(api).await?;
        }
        if let Some(why) = serve.exited() {
            return Err(format!("{why} during the soak; see {}", log.display()));
        }
        if let Some(why) = sipp.exited() {
            return Err(format!("{why} during the soak"));
        }
        let (tasks, live_calls) = api.node().await?;
        let r = resources(Pid::Other(serve.pid()));
        let report = api
            .call(Method::GET, &format!("/v1/campaigns/{id}/report"), None)
            .await?;
        let readings = if warm {
            &mut samples
        } else {
            &mut warmup_samples
        };
        readings.push(SoakSample {
            t_s: started.elapsed().as_secs_f64(),
            live_calls,
            tasks,
            rss_mib: mib(r.rss_bytes),
            open_files: r.open_files.unwrap_or(0),
            threads: r.threads.unwrap_or(0),
            attempts: report["calls"]["total"].as_i64().unwrap_or(0),
        });
        if report["status"] == "finished" {
            return Err(format!(
                "the campaign ran out of its {contacts} contacts after {:.0} s: raise the \
                 contacts (a bug: they are sized for the whole window)",
                started.elapsed().as_secs_f64()
            ));
        }
        next += Duration::from_secs_f64(opts.sample_secs);
        let now = Instant::now();
        if next > now {
            tokio::time::sleep(next - now).await;
        }
    }
    let seconds = window_start.elapsed().as_secs_f64();
    let media = MediaHealth::between(&metrics_before, &metrics_page(api).await?, seconds);
    let serve_cpu_after = resources(Pid::Other(serve.pid()));
    let sipp_after = resources(Pid::Other(sipp.pid()));

    // Stop the campaign (its live calls are hung up) and wait for the server to go idle.
    api.call(Method::POST, &format!("/v1/campaigns/{id}/stop"), None)
        .await?;
    let drain_deadline = Instant::now() + Duration::from_secs(60 + RING_TIMEOUT_SECS);
    loop {
        let (_, live) = api.node().await?;
        if live == 0 {
            break;
        }
        if Instant::now() > drain_deadline {
            return Err(format!(
                "{live} calls still live 75 s after the campaign stopped"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The calls' last tasks (records, SIP transactions lingering up to 32 s for
    // retransmissions) end on their own: read the idle server once they have, or after 45 s.
    let settle_deadline = Instant::now() + Duration::from_secs(45);
    let mut idle_after = idle(api, serve.pid()).await?;
    while idle_after.tasks > idle_before.tasks && Instant::now() < settle_deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        idle_after = idle(api, serve.pid()).await?;
    }
    let report = api
        .call(Method::GET, &format!("/v1/campaigns/{id}/report"), None)
        .await?;
    let (warnings, errors) = log_levels(log);

    let live_calls_mean = if samples.is_empty() {
        0.0
    } else {
        samples.iter().map(|s| s.live_calls as f64).sum::<f64>() / samples.len() as f64
    };
    Ok(SoakReport {
        calls: opts.calls,
        minutes: opts.minutes,
        amd: opts.amd.clone(),
        call_secs: opts.call_secs,
        answering_only: opts.answered,
        live_calls_mean,
        live_calls_min: samples.iter().map(|s| s.live_calls).min().unwrap_or(0),
        rss: Drift::of(&samples, |s| s.rss_mib),
        open_files: Drift::of(&samples, |s| s.open_files as f64),
        threads: Drift::of(&samples, |s| s.threads as f64),
        tasks: Drift::of(&samples, |s| s.tasks as f64),
        tasks_per_call: Drift::of(&samples, |s| s.tasks as f64 / (s.live_calls.max(1)) as f64),
        warmup_samples,
        samples,
        idle_before,
        idle_after,
        attempts: report["calls"]["total"].as_i64().unwrap_or(0),
        answered: report["calls"]["answered"].as_i64().unwrap_or(0),
        human_answered: report["human_answered"].as_i64().unwrap_or(0),
        serve_cpu_percent: cpu_percent(&serve_cpu_before, &serve_cpu_after, seconds),
        sipp_cpu_percent: cpu_percent(&sipp_cpu_before, &sipp_after, seconds),
        sipp_rss_mib: mib(sipp_after.rss_bytes),
        warnings,
        errors,
        media,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answering_numbers_all_end_in_a_person_or_a_voicemail_and_differ() {
        let numbers: Vec<String> = (0..30_000)
            .map(|i| super::super::serve::bench_phone(answering_number(i)))
            .collect();
        assert!(numbers
            .iter()
            .all(|n| n.len() == 11 && matches!(n.as_bytes()[10], b'0'..=b'5')));
        let distinct: std::collections::HashSet<&String> = numbers.iter().collect();
        assert_eq!(distinct.len(), 30_000);
    }

    fn sample(rss: f64, tasks: usize) -> SoakSample {
        SoakSample {
            t_s: 0.0,
            live_calls: 10,
            tasks,
            rss_mib: rss,
            open_files: 0,
            threads: 0,
            attempts: 0,
        }
    }

    #[test]
    fn drift_compares_the_first_and_last_quarters() {
        let samples: Vec<_> = [100.0, 100.0, 110.0, 120.0, 130.0, 140.0, 150.0, 150.0]
            .iter()
            .map(|r| sample(*r, 5))
            .collect();
        let d = Drift::of(&samples, |s| s.rss_mib);
        assert_eq!(d.first_quarter, 100.0);
        assert_eq!(d.last_quarter, 150.0);
        assert!((d.change_pct - 50.0).abs() < 1e-9);
        let flat = Drift::of(&samples, |s| s.tasks as f64);
        assert_eq!(flat.change_pct, 0.0);
    }

    #[test]
    fn media_health_is_the_change_between_two_pages() {
        let before = "outdial_media_wakeups_total 1000\n\
                      outdial_media_late_sends_total 2\n\
                      outdial_rtp_concealed_frames_sum 10\n\
                      outdial_rtp_concealed_frames_count 4\n\
                      outdial_rtp_dropped_frames_sum 0\n\
                      outdial_amd_decision_seconds_sum 3\n\
                      outdial_amd_decision_seconds_count 2\n";
        let after = "outdial_media_wakeups_total 3000\n\
                     outdial_media_late_sends_total 2\n\
                     outdial_rtp_concealed_frames_sum 16\n\
                     outdial_rtp_concealed_frames_count 10\n\
                     outdial_rtp_dropped_frames_sum 5\n\
                     outdial_amd_decision_seconds_sum 9\n\
                     outdial_amd_decision_seconds_count 6\n";
        let m = MediaHealth::between(before, after, 20.0);
        assert_eq!(m.engine_wakeups_per_second, 100.0);
        assert_eq!(m.late_sends, 0.0);
        assert_eq!(
            (m.calls_ended, m.concealed_frames, m.dropped_frames),
            (6.0, 6.0, 5.0)
        );
        assert_eq!((m.amd_verdicts, m.amd_decision_mean_s), (4.0, 1.5));
    }

    #[test]
    fn drift_of_one_sample_or_none_is_zero() {
        assert_eq!(Drift::of(&[sample(5.0, 1)], |s| s.rss_mib).change_pct, 0.0);
        assert_eq!(Drift::of(&[], |s| s.rss_mib).change_pct, 0.0);
    }
}
