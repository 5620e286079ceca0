//! The `outdial` command line: a thin shell over the library.
//!
//! Parses arguments, loads the configuration, and runs one command. Every
//! error a user can cause ends here as one line on stderr and a non-zero exit
//! code; nothing below prints to stdout except the command's own result.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

/// jemalloc rather than glibc's malloc: audio frames, rows and SIP messages are freed on other
/// threads than allocated them, which fragments glibc's per-thread arenas into a resident size
/// that creeps up for as long as calls run.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::{Parser, Subcommand};
use outdial::call::CallRequest;
use outdial::config::{Config, ConfigErrors};
use outdial::media::wav::{load_wav_8k_mono, CallRecorder, RecordMode};
use outdial::sip::{RegistrationState, UserAgent};

#[path = "cli/admin.rs"]
mod admin;
#[path = "cli/amd.rs"]
mod amd_cli;

/// Milliseconds since the Unix epoch (what the store counts in).
fn now_ms() -> i64 {
    outdial::dialer::engine::now_ms()
}

/// Opens (and migrates) the campaign store the configuration names.
async fn open_store(config: &Config) -> anyhow::Result<outdial::store::Store> {
    let url = &config.database.url;
    outdial::store::Store::open(url)
        .await
        .with_context(|| format!("database {}", outdial::store::redact_url(url)))
}

#[derive(Parser)]
#[command(
    name = "outdial",
    version,
    about = "Outbound dialer and SIP/RTP media server"
)]
struct Cli {
    /// Main configuration file (built-in defaults when the default path is absent).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Directory of trunk profiles (*.toml).
    #[arg(long, global = true, value_name = "DIR")]
    profiles: Option<PathBuf>,
    /// Log at the configured level (default for `call`: warnings only).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Place one call and report what became of it.
    Call(CallArgs),
    /// Validate outdial.toml and every trunk profile; one line per problem.
    CheckConfig,
    /// Run the SIP user agent: register trunks, answer OPTIONS, until Ctrl-C or SIGTERM.
    Serve,
    /// Measure outdial itself (and rtpengine alongside, for comparison).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// API keys: `keys create --login NAME` prints a new key once; `keys list`, `keys revoke ID`.
    #[command(subcommand)]
    Keys(admin::KeysCommand),
    /// Campaigns: create, list, show, start, pause, resume, stop, restart.
    #[command(subcommand)]
    Campaign(admin::CampaignCommand),
    /// Contacts: `contacts import FILE --campaign ID`.
    #[command(subcommand)]
    Contacts(admin::ContactsCommand),
    /// Answering-machine detection over a labeled corpus (WAVs + labels.csv), through the
    /// live code path: one JSON line per file, then a summary.
    AmdEval(amd_cli::EvalArgs),
    /// Write the ML detector's feature vectors of a labeled corpus as CSV (for training).
    AmdFeatures(amd_cli::FeaturesArgs),
    /// Transcribe WAV files with the in-process Whisper model text-mode AMD uses (one JSON
    /// line per file: text, seconds of audio, CPU ms).
    Transcribe(amd_cli::TranscribeArgs),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// RTP relay (receive → jitter buffer → decode → encode → send) at N concurrent streams on 127.0.0.1,
    /// next to rtpengine in userspace relaying the same traffic.
    Media(MediaBenchArgs),
    /// N bridged calls set up through SIP (callee leg + SIP bridge to an agent leg, sipp as
    /// the far end), RTP relayed between the linked legs, next to rtpengine relaying the same
    /// streams.
    Bridge(BridgeBenchArgs),
    /// A CSV file of N generated contacts uploaded to `outdial serve`'s import API (fresh
    /// SQLite store, or a fresh PostgreSQL database): rows/s and serve's peak memory.
    Import(ImportBenchArgs),
    /// Answering-machine detection at N concurrent calls, paced in real time, on a corpus's
    /// audio; plus the unpaced per-frame cost of the mode.
    Amd(AmdBenchArgs),
    /// Calls streamed to AI agents (Twilio Media Streams): dead air and barge-in over
    /// --latency-calls calls, then N concurrent calls bridged to a local echo agent (late
    /// 20 ms sends, lost frames, CPU, round trip).
    Agent(AgentBenchArgs),
    /// The whole server for a long time: `outdial serve` runs one campaign (AMD on) at N
    /// concurrent calls against sipp; its memory, open files, threads and tasks are read every
    /// few seconds and the first and last quarters compared (leaks show as growth).
    Soak(SoakBenchArgs),
    /// Call attempts per second through the whole server: `outdial serve` runs a campaign of N
    /// contacts (no AMD, no message) against sipp's UAS answering at once; attempts/s, CPU per
    /// attempt, INVITE → 200 p50/p99, store statements per attempt, and sipp's own UAC ceiling
    /// against the same far end in the same run.
    Cps(CpsBenchArgs),
    /// The traffic generator `bench media` runs as its child (control over stdin/stdout).
    #[command(hide = true)]
    MediaGen {
        #[arg(long)]
        streams: usize,
    },
    /// The echo agent `bench agent` runs as its child (control over stdin/stdout).
    #[command(hide = true)]
    AgentEcho,
}

#[derive(clap::Args)]
struct AgentBenchArgs {
    /// Concurrent calls bridged to the echo agent (0: dead air only).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(0..=5000))]
    calls: u32,
    /// Length of the load window in seconds (after a 0.5 s warm-up).
    #[arg(long, default_value_t = 10.0, value_parser = positive_secs)]
    seconds: f64,
    /// Calls measured one by one (a new one every 100 ms) for dead air and barge-in (0: none).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=10000))]
    latency_calls: u32,
    /// INVITEs per second while setting the load calls up.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=5000))]
    cps: u32,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// sipp binary, the far end of every call.
    #[arg(long, value_name = "PATH", default_value = "sipp")]
    sipp: PathBuf,
    /// The generator's tick in µs: the packets due within one leave in one burst.
    #[arg(long, value_name = "US", default_value_t = 500, value_parser = clap::value_parser!(u64).range(20..=20000))]
    gen_tick_us: u64,
}

#[derive(clap::Args)]
struct SoakBenchArgs {
    /// Concurrent calls (the campaign's max_concurrent).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=5000))]
    calls: u32,
    /// Every number answers (people and voicemail only: no busy, declined or unanswered
    /// numbers) and machines' voicemail message lasts --call-secs as people's does, so the
    /// live calls are answered calls that stay up: how many the server holds with AMD.
    #[arg(long)]
    answered: bool,
    /// Length of the loaded window in minutes (after the ramp-up).
    #[arg(long, default_value_t = 60.0, value_parser = positive_secs)]
    minutes: f64,
    /// Seconds between two readings.
    #[arg(long, default_value_t = 10.0, value_parser = positive_secs)]
    sample_secs: f64,
    /// The campaign's AMD mode: heuristic | text | ml | auto (ml: the cheap mode that calls
    /// few people machines; text and auto transcribe, about 8 % of a core per greeting).
    #[arg(long, default_value = "ml")]
    amd: String,
    /// How long the message people hear lasts, seconds (sets their calls' length).
    #[arg(long, default_value_t = 20.0, value_parser = positive_secs)]
    call_secs: f64,
    /// Print exactly one JSON object on stdout (with every reading).
    #[arg(long)]
    json: bool,
    /// sipp binary, the far end of every call.
    #[arg(long, value_name = "PATH", default_value = "sipp")]
    sipp: PathBuf,
    /// Keep the work directory (store, serve.log) and print where it is.
    #[arg(long)]
    keep: bool,
}

#[derive(clap::Args)]
struct CpsBenchArgs {
    /// Contacts in the campaign (one attempt each).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    contacts: u32,
    /// The campaign's max_concurrent (and the trunk's max_channels).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    concurrent: u32,
    /// The campaign's pace, attempts per second (an offered load, as `sipp -r`); default: the
    /// highest pace accepted, so the server dials as fast as it can.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pace: Option<u32>,
    /// Store the campaign in a fresh database made on this PostgreSQL server (dropped
    /// afterwards), e.g. postgres://postgres@127.0.0.1:5432/test; default: a fresh SQLite file.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// sipp binary: the far end, and the anchor's UAC.
    #[arg(long, value_name = "PATH", default_value = "sipp")]
    sipp: PathBuf,
    /// Keep the work directory (store, serve.log) and print where it is.
    #[arg(long)]
    keep: bool,
}

#[derive(clap::Args)]
struct AmdBenchArgs {
    /// heuristic | text | ml | auto
    #[arg(long, value_parser = amd_mode)]
    mode: outdial::amd::AmdMode,
    /// Heuristic mode with the Silero VAD.
    #[arg(long)]
    vad: bool,
    /// Concurrent calls.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=20000))]
    streams: u32,
    /// Worker threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    workers: u32,
    /// Length of the paced run.
    #[arg(long, default_value_t = 10.0, value_parser = positive_secs)]
    seconds: f64,
    /// Corpus directory (WAVs + labels.csv) whose audio the calls carry.
    #[arg(long, value_name = "DIR")]
    corpus: PathBuf,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct BridgeBenchArgs {
    /// Bridged calls (two legs each; each relays 50 packets/s both ways).
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u32).range(1..=7000))]
    calls: u32,
    /// Length of the measured window in seconds (after a 0.5 s warm-up).
    #[arg(long, default_value_t = 10.0, value_parser = positive_secs)]
    seconds: f64,
    /// INVITEs per second while setting the calls up.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=5000))]
    cps: u32,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Measure outdial only.
    #[arg(long)]
    no_rtpengine: bool,
    /// rtpengine binary (default: `rtpengine` on PATH).
    #[arg(long, value_name = "PATH", env = "OUTDIAL_RTPENGINE")]
    rtpengine: Option<PathBuf>,
    /// sipp binary, the far end of every leg.
    #[arg(long, value_name = "PATH", default_value = "sipp")]
    sipp: PathBuf,
    /// The generator's tick in µs: the packets due within one leave in one burst.
    #[arg(long, value_name = "US", default_value_t = 500, value_parser = clap::value_parser!(u64).range(20..=20000))]
    gen_tick_us: u64,
}

#[derive(clap::Args)]
struct ImportBenchArgs {
    /// Contacts to import (1 in 1,000 repeats the previous phone and is refused).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=8_000_000))]
    rows: u64,
    /// A PostgreSQL server (`postgres://…`) to make a fresh database on (dropped
    /// afterwards); default: a fresh SQLite file.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Keep the work directory (store, serve's log).
    #[arg(long)]
    keep: bool,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct MediaBenchArgs {
    /// Concurrent streams (each 50 packets/s in and out).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=30000))]
    streams: u32,
    /// Length of the measured window in seconds (after a 0.5 s warm-up).
    #[arg(long, default_value_t = 10.0, value_parser = positive_secs)]
    seconds: f64,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Measure outdial only.
    #[arg(long)]
    no_rtpengine: bool,
    /// Media engine worker threads, 1 or 2 [default: 1 up to 2,500 streams, else 2]: one
    /// wakes up less often (cheaper per packet), two keep latency down near one core's load.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=2))]
    workers: Option<u32>,
    /// The media engine's tick in µs (the server runs 10,000): at each tick a worker plays out
    /// and sends what is due (at most 20 ms, the jitter buffer's minimum delay); between ticks
    /// it takes packets in, and relays linked legs' packets, as they arrive.
    #[arg(long, value_name = "US", default_value_t = 10000, value_parser = clap::value_parser!(u64).range(1000..=20000))]
    tick_us: u64,
    /// The generator's tick in µs: the packets due within one leave in one burst.
    #[arg(long, value_name = "US", default_value_t = 500, value_parser = clap::value_parser!(u64).range(20..=20000))]
    gen_tick_us: u64,
    /// Also run the generator straight into its own sinks: the measurement's own floor.
    #[arg(long)]
    baseline: bool,
    /// rtpengine binary (default: `rtpengine` on PATH).
    #[arg(long, value_name = "PATH", env = "OUTDIAL_RTPENGINE")]
    rtpengine: Option<PathBuf>,
}

#[derive(clap::Args)]
struct CallArgs {
    /// A phone number (sent through the trunk) or a sip: URI (dialed directly).
    destination: String,
    /// Trunk profile to use (by name); optional when exactly one is configured.
    #[arg(long)]
    profile: Option<String>,
    /// Caller ID presented in From.
    #[arg(long = "from", value_name = "CALLER_ID")]
    from: Option<String>,
    /// WAV file to play once answered (any rate/channels); hang up when it ends.
    #[arg(long, value_name = "FILE.wav")]
    play: Option<PathBuf>,
    /// Record the call's audio (8 kHz WAV, flushed every second), early media included.
    #[arg(long, value_name = "FILE.wav")]
    record: Option<PathBuf>,
    /// What --record holds: inbound (what we hear), outbound (what we send) or stereo
    /// (inbound left, outbound right).
    #[arg(long, value_name = "MODE", default_value = "inbound", value_parser = record_mode)]
    record_mode: RecordMode,
    /// Seconds to let it ring before CANCEL.
    #[arg(long, value_name = "SECS", default_value_t = 30.0, value_parser = positive_secs)]
    ring_timeout: f64,
    /// Longest answered call in seconds; then we hang up.
    #[arg(long, value_name = "SECS", default_value_t = 3600.0, value_parser = positive_secs)]
    max_duration: f64,
    /// Digits to send once answered (RFC 4733 when negotiated, else in-band), before --play.
    #[arg(long, value_name = "DIGITS", value_parser = dtmf_digits)]
    dtmf: Option<String>,
    /// Answering-machine detection on the answered call: heuristic, text, ml or auto.
    /// With --play, the file plays once a person is detected, or after a machine's greeting
    /// (beep or silence); without --play the call hangs up once detection is done.
    #[arg(long, value_name = "MODE", value_parser = amd_mode)]
    amd: Option<outdial::amd::AmdMode>,
    /// Connect whoever answers (a person, with --amd) to TARGET: a phone number (through the
    /// trunk profile) or a sip: URI (both legs' audio relayed; a hang-up on either side ends
    /// both), an AI agent's ws:// or wss:// URL (a Twilio Media Streams socket, or L16 with
    /// --agent-format l16; opened while the call rings, streamed from the verdict on), or a
    /// WebRTC agent's http:// or https:// offer endpoint (pipecat SmallWebRTC, or WHIP with
    /// --agent-format whip; the offer is made while the call rings and sent at the verdict).
    /// The JSON gains a "bridge" object.
    #[arg(long, value_name = "TARGET")]
    connect_to: Option<String>,
    /// With an AI agent: for ws:// and wss:// URLs twilio (Media Streams JSON, µ-law 8 kHz,
    /// the default) or l16 (jambonz listen style: binary 16-bit PCM at --agent-rate); for
    /// http:// and https:// URLs smallwebrtc (pipecat's JSON offer/answer, the default) or
    /// whip (RFC 9725).
    #[arg(long, value_name = "FORMAT", value_parser = ["twilio", "l16", "smallwebrtc", "whip"])]
    agent_format: Option<String>,
    /// With --agent-format l16: the stream's sample rate.
    #[arg(long, value_name = "HZ", default_value_t = 8000, value_parser = l16_rate)]
    agent_rate: u32,
    /// With an AI agent: a request header for the agent's auth, as NAME=ENV_VAR (the value is
    /// read from that environment variable, so it never shows in the process list). Repeatable.
    #[arg(long, value_name = "NAME=ENV_VAR")]
    agent_header: Vec<String>,
    /// With an AI agent: a custom parameter sent in `start` (customParameters; WebRTC:
    /// request_data), KEY=VALUE. Repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    agent_param: Vec<String>,
    /// With an AI agent: when the agent closes its socket, hand the person to TARGET (a
    /// number or sip: URI) instead of hanging up.
    #[arg(long, value_name = "TARGET")]
    handoff_to: Option<String>,
    /// Serve Twilio-compatible call control for this call on ADDR (e.g. 127.0.0.1:8089):
    /// POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json with Status=completed hangs
    /// up; Basic auth with the AccountSid from `start` and the key in OUTDIAL_CONTROL_KEY.
    #[arg(long, value_name = "ADDR")]
    control_listen: Option<std::net::SocketAddr>,
    /// How --connect-to joins: bridge (a second leg, media relayed by us) or refer (blind
    /// transfer: the callee is asked to call TARGET itself; our leg ends once it answered).
    #[arg(long, value_name = "HOW", default_value = "bridge", value_parser = ["bridge", "refer"])]
    transfer: String,
    /// With --connect-to: the longest a person waits for TARGET to answer [default: the ring
    /// timeout]; then the person is abandoned (hears --abandon-message, then is hung up on).
    #[arg(long, value_name = "SECS", value_parser = positive_secs)]
    queue_timeout: Option<f64>,
    /// With --connect-to: WAV played to a person TARGET did not take in time (busy, no
    /// answer, queue timeout), e.g. the seller's name and a callback number.
    #[arg(long, value_name = "FILE.wav")]
    abandon_message: Option<PathBuf>,
    /// Print exactly one JSON object describing the call on stdout.
    #[arg(long)]
    json: bool,
    /// Dial even a number on a Do-Not-Call list (tests, your own numbers). Without it, a
    /// destination on the global list or any account's list (in the configured database,
    /// when that exists; a number without + matches listed numbers ending in its digits) is
    /// refused before anything is dialed: one line on stderr, exit code 3.
    #[arg(long)]
    ignore_dnc: bool,
}

/// Exit code of `outdial call` for a destination on a Do-Not-Call list.
const EXIT_DNC: u8 = 3;

fn amd_mode(s: &str) -> Result<outdial::amd::AmdMode, String> {
    outdial::amd::AmdMode::from_name(s)
        .ok_or_else(|| format!("{s:?} is not one of heuristic, text, ml, auto"))
}

fn l16_rate(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(r) if outdial::bridge::agent::l16::RATES.contains(&r) => Ok(r),
        _ => Err(format!("{s:?} is not one of 8000, 16000, 24000")),
    }
}

fn dtmf_digits(s: &str) -> Result<String, String> {
    let digits = s.to_ascii_uppercase();
    match digits
        .chars()
        .find(|c| outdial::media::dtmf::event_code(*c).is_none())
    {
        Some(bad) => Err(format!("{bad:?} is not a DTMF digit (0-9, *, #, A-D)")),
        None if digits.is_empty() => Err("no digits".into()),
        None => Ok(digits),
    }
}

fn record_mode(s: &str) -> Result<RecordMode, String> {
    RecordMode::from_name(s).ok_or_else(|| format!("{s:?} is not one of inbound, outbound, stereo"))
}

fn positive_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of seconds between 0 and 86400"
        )),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = run(cli);
    // Transcriptions still running would be cut inside ONNX Runtime by the exit.
    outdial::asr::stream::Workers::wait_idle(std::time::Duration::from_secs(5));
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line: the context chain joined.
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("outdial: {msg}");
            ExitCode::from(2)
        }
    }
}

fn load_config(cli: &Cli) -> Result<Config, ConfigErrors> {
    let (config, explicit) = match &cli.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from("outdial.toml"), false),
    };
    let (profiles, profiles_explicit) = match &cli.profiles {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from("sip-profiles"), false),
    };
    Config::load(&config, explicit, &profiles, profiles_explicit)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let cli = match cli.command {
        Command::Bench(b) => return bench(b),
        Command::AmdEval(args) => return amd_cli::eval(args),
        Command::AmdFeatures(args) => return amd_cli::features(args),
        Command::Transcribe(args) => return amd_cli::transcribe(args),
        _ => cli,
    };
    if let Command::CheckConfig = cli.command {
        let (config, explicit) = match &cli.config {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from("outdial.toml"), false),
        };
        let (profiles, profiles_explicit) = match &cli.profiles {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from("sip-profiles"), false),
        };
        return Ok(
            match outdial::config::check(&config, explicit, &profiles, profiles_explicit) {
                Ok(summary) => {
                    println!("{summary}");
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    for e in &errors.0 {
                        eprintln!("{e}");
                    }
                    ExitCode::from(1)
                }
            },
        );
    }
    let config = match load_config(&cli) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("outdial: {e}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    let quiet = matches!(
        cli.command,
        Command::Call(_) | Command::Keys(_) | Command::Campaign(_) | Command::Contacts(_)
    ) && !cli.verbose;
    init_logs(&config.log, quiet);
    if matches!(cli.command, Command::Serve | Command::Call(_)) {
        // The media engine's workers start here, at the process's priority (real-time where
        // the process may: `EngineConfig::realtime`), before the runtime's threads take a
        // lower one (below): under full load the calls' audio runs first. A failure here is reported again by the first call that needs the engine.
        let _ = outdial::media::engine::Engine::global();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(|| {
            if let Err(e) = outdial::media::sys::yield_to_media() {
                tracing::debug!(error = %e, "runtime thread keeps its priority");
            }
        })
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Call(args) => runtime.block_on(call(config, args)),
        Command::Serve => runtime.block_on(serve(config)),
        Command::Keys(cmd) => runtime.block_on(async {
            admin::keys(open_store(&config).await?, cmd).await?;
            Ok(ExitCode::SUCCESS)
        }),
        Command::Campaign(cmd) => runtime.block_on(async {
            admin::campaign(open_store(&config).await?, cmd).await?;
            Ok(ExitCode::SUCCESS)
        }),
        Command::Contacts(cmd) => runtime.block_on(async {
            admin::contacts(open_store(&config).await?, cmd).await?;
            Ok(ExitCode::SUCCESS)
        }),
        Command::CheckConfig
        | Command::Bench(_)
        | Command::AmdEval(_)
        | Command::AmdFeatures(_)
        | Command::Transcribe(_) => unreachable!("handled above"),
    }
}

/// Logs to stderr: text (coloured only on a terminal) or one JSON object per line, each with
/// the spans it was written in (an attempt's campaign, contact and call ids).
fn init_logs(log: &outdial::config::LogSettings, quiet: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let level = log.level.as_str();
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::new(v),
        // rsipstack logs whole messages (digest responses included) at info:
        // keep it at warn unless asked for explicitly through RUST_LOG. The WebRTC stack (rtc*)
        // logs every state change at info and warns of each DTLS extension it skips: our own
        // WebRTC agent leg logs what matters.
        _ if quiet => EnvFilter::new("warn,rsipstack=error,rtc_dtls=error"),
        _ => EnvFilter::new(format!(
            "{level},rsipstack=warn,rtc=warn,rtc_ice=warn,rtc_dtls=error"
        )),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match log.format {
        outdial::config::LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        outdial::config::LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .try_init(),
    };
}

/// Why `destination` must not be dialed: the DNC lists (global and every account's) of the
/// configured store hold it. A store that does not exist is not created (no lists, no
/// refusal); one that cannot be opened is an error (the check cannot be made).
async fn dnc_refusal(config: &Config, destination: &str) -> anyhow::Result<Option<String>> {
    let Some(dialed) = outdial::store::dialed_number(destination) else {
        return Ok(None);
    };
    let url = &config.database.url;
    let store = outdial::store::Store::open_existing(url)
        .await
        .with_context(|| {
            format!(
                "database {} (to check the DNC lists; --ignore-dnc skips the check)",
                outdial::store::redact_url(url)
            )
        })?;
    let Some(store) = store else {
        return Ok(None);
    };
    let entries = store.dnc_entries_for(&dialed).await;
    store.close().await;
    let Some(entry) = entries?.into_iter().next() else {
        return Ok(None);
    };
    let list = match entry.account_id {
        None => "the global DNC list".to_string(),
        Some(account) => format!("the DNC list of account {account}"),
    };
    Ok(Some(format!(
        "{destination} is not dialed: {} is on {list} (--ignore-dnc dials it anyway)",
        entry.phone
    )))
}

async fn call(config: Config, args: CallArgs) -> anyhow::Result<ExitCode> {
    // Before anything else: nothing is dialed for a listed number.
    if !args.ignore_dnc {
        if let Some(why) = dnc_refusal(&config, &args.destination).await? {
            eprintln!("outdial: {why}");
            return Ok(ExitCode::from(EXIT_DNC));
        }
    }
    let is_uri = args.destination.starts_with("sip:") || args.destination.starts_with("sips:");
    let profile = match &args.profile {
        Some(name) => Some(config.profile(name)?.clone()),
        None if !is_uri && config.profiles.len() == 1 => config.profiles.first().cloned(),
        None => None,
    };
    let playback = match &args.play {
        Some(path) => Some(load_wav_8k_mono(path)?),
        None => None,
    };
    let recorder = match &args.record {
        Some(path) => Some(CallRecorder::create(path, args.record_mode)?),
        None => None,
    };
    // Built before dialing: a missing runtime or model fails here, in one line.
    let amd = match args.amd {
        Some(mode) => Some(
            outdial::amd::Amd::new(outdial::amd::AmdConfig::with_mode(mode))
                .map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };

    let connect = match &args.connect_to {
        Some(target) => Some(outdial::flow::Connect {
            target: match agent_target(&config, &args, target, profile.as_ref())? {
                Some(agent) => agent,
                None => {
                    connect_target(&config, target, profile.as_ref(), args.transfer == "refer")?
                }
            },
            queue_timeout: Duration::from_secs_f64(args.queue_timeout.unwrap_or(args.ring_timeout)),
            ring_timeout: Duration::from_secs_f64(args.ring_timeout),
            campaign_id: None,
            contact_id: None,
            custom: Default::default(),
        }),
        None => None,
    };
    let live = outdial::flow::control::LiveCalls::new();
    let call_sid = outdial::bridge::agent::twilio::random_sid("CA");
    let resolve: outdial::flow::control::Resolver = {
        let config = config.clone();
        let profile = profile.clone();
        Arc::new(move |t: &str| {
            connect_target(&config, t, profile.as_ref(), false).map_err(|e| format!("{e:#}"))
        })
    };
    let registration = live.register(
        &call_sid,
        None,
        args.from.as_deref().unwrap_or(""),
        &args.destination,
        resolve,
    );
    if let Some(addr) = args.control_listen {
        let key = std::env::var("OUTDIAL_CONTROL_KEY")
            .ok()
            .filter(|k| !k.is_empty())
            .context(
                "--control-listen needs the key agents authenticate with in OUTDIAL_CONTROL_KEY",
            )?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--control-listen {addr}"))?;
        let app = outdial::api::twilio::router(outdial::api::twilio::ControlState {
            live: live.clone(),
            keys: outdial::api::twilio::ControlKeys::Fixed(key),
        });
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "call control server stopped");
            }
        });
    }
    let stream = outdial::bridge::agent::StreamInfo {
        ids: outdial::bridge::agent::twilio::StreamIds {
            account_sid: outdial::bridge::agent::twilio::account_sid(0),
            call_sid: call_sid.clone(),
            stream_sid: outdial::bridge::agent::twilio::random_sid("MZ"),
        },
        from: args.from.clone().unwrap_or_default(),
        to: args.destination.clone(),
    };

    let ua = UserAgent::start(&config).await?;
    if let Some(p) = profile.as_ref().filter(|p| p.register) {
        ua.start_trunks(std::slice::from_ref(p));
        match ua.wait_registration(&p.name, Duration::from_secs(10)).await {
            RegistrationState::Registered { expires } => {
                tracing::info!(trunk = %p.name, expires, "trunk registered")
            }
            other => {
                tracing::warn!(trunk = %p.name, state = ?other, "trunk not registered; calling anyway")
            }
        }
    }

    let mut request = CallRequest::new(
        args.destination.clone(),
        Duration::from_secs_f64(args.ring_timeout),
        Duration::from_secs_f64(args.max_duration),
    );
    request.profile = profile.clone();
    request.caller_id = args.from.clone();
    request.tap_sent = recorder.is_some() && args.record_mode != RecordMode::Inbound;
    let playback = playback.map(Arc::new);
    let abandon_message = match &args.abandon_message {
        Some(path) => Some(Arc::new(load_wav_8k_mono(path)?)),
        None => None,
    };
    // --play is a one-step plan for a person (the file, then hang up) unless the person is
    // connected; it is the voicemail message either way.
    let (steps, prompts) = match playback.as_ref().filter(|_| connect.is_none()) {
        Some(samples) => (
            vec![outdial::flow::steps::Step::Play(
                outdial::flow::steps::Play {
                    file: "play".into(),
                },
            )],
            std::collections::HashMap::from([("play".to_string(), samples.clone())]),
        ),
        None => (Vec::new(), std::collections::HashMap::new()),
    };
    let plan = outdial::flow::FlowPlan {
        send_dtmf: args.dtmf.clone(),
        hang_up_when_idle: playback.is_some() || amd.is_some() || connect.is_some(),
        amd,
        steps,
        prompts,
        reply_to: None,
        voicemail: playback,
        abandon_message,
        // With AMD, the file plays after a machine's greeting too.
        machine_action: outdial::campaign::model::MachineAction::LeaveMessage,
        recorder,
        connect,
        stream: Some(stream),
        registration: Some(registration),
        events: None,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        stop_signal().await;
        let _ = stop_tx.send(true);
    });
    let report = outdial::flow::run(ua.clone(), request, plan, stop_rx).await;
    ua.shutdown().await;
    let report = report?;
    if let Some(e) = &report.recording_error {
        eprintln!("outdial: recording incomplete: {e}");
    }
    print_summary(&report, args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// `--connect-to ws://…|wss://…|http://…|https://…`: an AI agent (`None` for any other
/// target).
fn agent_target(
    config: &Config,
    args: &CallArgs,
    target: &str,
    profile: Option<&outdial::config::Profile>,
) -> anyhow::Result<Option<outdial::bridge::BridgeTarget>> {
    use outdial::bridge::agent::{AgentKind, AgentTarget, OnAgentClose};
    let target = target.trim();
    let websocket = target.starts_with("ws://") || target.starts_with("wss://");
    let http = target.starts_with("http://") || target.starts_with("https://");
    if !(websocket || http) {
        return Ok(None);
    }
    let kind = match (args.agent_format.as_deref(), websocket) {
        (None | Some("twilio"), true) => AgentKind::TwilioWs,
        (Some("l16"), true) => AgentKind::L16Ws,
        (None | Some("smallwebrtc"), false) => AgentKind::WebrtcSmallWebrtc,
        (Some("whip"), false) => AgentKind::WebrtcWhip,
        (Some(format), _) => anyhow::bail!(
            "--agent-format {format} does not go with {target:?}: ws:// and wss:// agents take \
             twilio or l16, http:// and https:// (WebRTC) agents smallwebrtc or whip"
        ),
    };
    let mut headers = Vec::new();
    for h in &args.agent_header {
        let (name, var) = h
            .split_once('=')
            .with_context(|| format!("--agent-header {h:?} is not NAME=ENV_VAR"))?;
        let value = std::env::var(var.trim()).with_context(|| {
            format!("--agent-header {name}: the environment variable {var} is not set")
        })?;
        headers.push((name.trim().to_string(), value));
    }
    let mut custom = std::collections::BTreeMap::new();
    for p in &args.agent_param {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("--agent-param {p:?} is not KEY=VALUE"))?;
        custom.insert(k.trim().to_string(), v.to_string());
    }
    let on_close = match &args.handoff_to {
        Some(t) => OnAgentClose::Connect(Box::new(connect_target(config, t, profile, false)?)),
        None => OnAgentClose::Hangup,
    };
    Ok(Some(outdial::bridge::BridgeTarget::Agent(Box::new(
        AgentTarget {
            kind,
            url: target.to_string(),
            headers,
            custom_parameters: custom,
            sample_rate: args.agent_rate,
            on_close,
        },
    ))))
}

/// `--connect-to`: a phone number (through the call's trunk profile) or a `sip:` URI.
fn connect_target(
    config: &Config,
    target: &str,
    profile: Option<&outdial::config::Profile>,
    refer: bool,
) -> anyhow::Result<outdial::bridge::BridgeTarget> {
    let target = target.trim();
    let is_uri = target.starts_with("sip:") || target.starts_with("sips:");
    if !is_uri && !outdial::call::is_phone_number(target) {
        anyhow::bail!("--connect-to {target:?} is neither a phone number nor a sip: URI");
    }
    let profile = match profile {
        Some(p) => Some(p.clone()),
        None if !is_uri && config.profiles.len() == 1 => config.profiles.first().cloned(),
        None if !is_uri => anyhow::bail!(
            "--connect-to {target:?} is a number: name the trunk to send it through (--profile)"
        ),
        None => None,
    };
    if refer {
        let uri = match &profile {
            Some(p) if !is_uri => {
                outdial::sip::ua::trunk_uri(p.primary(), Some(target))?.to_string()
            }
            _ => target.to_string(),
        };
        return Ok(outdial::bridge::BridgeTarget::Refer { uri });
    }
    Ok(outdial::bridge::BridgeTarget::Sip {
        destination: target.to_string(),
        profile: profile.map(Box::new),
    })
}

fn print_summary(report: &outdial::flow::FlowReport, json: bool) -> anyhow::Result<()> {
    let s = &report.summary;
    let amd = report.amd.as_ref();
    if json {
        let mut value = serde_json::to_value(s)?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("ended_by".into(), serde_json::to_value(report.ended_by)?);
            if let Some(r) = amd {
                obj.insert("amd".into(), serde_json::to_value(r)?);
            }
            if let Some(b) = &report.bridge {
                let mut b = serde_json::to_value(b)?;
                if let Some(b) = b.as_object_mut() {
                    b.insert("abandoned".into(), report.flow.abandoned.into());
                    b.insert("queue_wait_ms".into(), report.flow.queue_wait_ms.into());
                }
                obj.insert("bridge".into(), b);
            }
            if let Some(t) = &report.transfer {
                obj.insert("transfer".into(), serde_json::to_value(t)?);
            }
        }
        println!("{value}");
    } else {
        if let Some(b) = &report.bridge {
            println!(
                "bridge to {}: {} (SIP {}), bridged after {} ms, talk {} ms, ended by {}",
                b.target,
                if b.answered {
                    "answered"
                } else {
                    "not answered"
                },
                b.sip_code.map_or("-".to_string(), |c| c.to_string()),
                b.bridge_ms.map_or("-".to_string(), |v| v.to_string()),
                b.talk_ms,
                b.ended_by.map_or("-", |e| e.as_str()),
            );
        }
        if let Some(r) = amd {
            println!(
                "amd {}: {} (answered_by {}, {} {}, confidence {:.2}) at {} ms{}",
                r.mode,
                r.verdict.name(),
                r.answered_by.name(),
                r.status.name(),
                r.cause.name(),
                r.confidence,
                r.decision_ms.map_or("-".to_string(), |v| v.to_string()),
                r.beep_ms
                    .map_or(String::new(), |b| format!(", beep at {b} ms")),
            );
        }
        println!(
            "{} (SIP {} {}) call-id {} ring {} ms, answer {} ms, duration {} ms, rtp sent {} received {}, codec {}",
            s.outcome,
            s.sip_code.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
            s.reason,
            s.call_id,
            s.ring_ms.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
            s.answer_ms.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
            s.duration_ms,
            s.rtp.sent,
            s.rtp.received,
            s.codec.unwrap_or("-"),
        );
    }
    Ok(())
}

/// `outdial bench …`: needs no configuration; results on stdout, notes on stderr.
fn bench(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::MediaGen { streams } => {
            outdial::bench::gen::main(streams).context("bench media-gen")?;
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::AgentEcho => {
            outdial::bench::echo::main().context("bench agent-echo")?;
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Agent(args) => {
            let opts = outdial::bench::agent::AgentBenchOptions {
                calls: args.calls as usize,
                seconds: args.seconds,
                latency_calls: args.latency_calls as usize,
                cps: f64::from(args.cps),
                exe: std::env::current_exe().context("cannot find the outdial binary")?,
                sipp_bin: args.sipp,
                gen_tick_us: args.gen_tick_us,
            };
            let report = outdial::bench::agent::run(&opts).map_err(anyhow::Error::msg)?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", report.table());
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Soak(args) => {
            let opts = outdial::bench::soak::SoakOptions {
                calls: args.calls as usize,
                minutes: args.minutes,
                sample_secs: args.sample_secs,
                amd: args.amd,
                call_secs: args.call_secs,
                answered: args.answered,
                exe: std::env::current_exe().context("cannot find the outdial binary")?,
                sipp_bin: args.sipp,
                keep: args.keep,
            };
            let report = outdial::bench::soak::run(&opts).map_err(anyhow::Error::msg)?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", report.table());
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Cps(args) => {
            let opts = outdial::bench::cps::CpsOptions {
                contacts: args.contacts as usize,
                concurrent: args.concurrent as usize,
                pace: args.pace.map(f64::from),
                postgres: args.postgres,
                exe: std::env::current_exe().context("cannot find the outdial binary")?,
                sipp_bin: args.sipp,
                keep: args.keep,
            };
            let report = outdial::bench::cps::run(&opts).map_err(anyhow::Error::msg)?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", report.table());
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Amd(args) => {
            let audio =
                outdial::bench::amd::load_corpus(&args.corpus, 200).map_err(anyhow::Error::msg)?;
            let r = outdial::bench::amd::run(
                args.mode,
                args.vad,
                args.streams as usize,
                args.workers as usize,
                args.seconds,
                audio,
            )
            .map_err(anyhow::Error::msg)?;
            if args.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "bench amd {}: {} streams on {} workers for {} s: CPU {:.1} % ({:.2} µs per \
                     stream-frame), {} of {} turns late, {} detections; unpaced {:.2} µs per frame",
                    r.mode,
                    r.streams,
                    r.workers,
                    r.seconds,
                    r.cpu_percent,
                    r.cpu_us_per_frame,
                    r.late_ticks,
                    r.ticks,
                    r.detections,
                    r.frame_cost_us
                );
                if let Some(q) = r.asr_max_queued {
                    println!("  transcription queue: at most {q} waiting");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Import(args) => {
            let opts = outdial::bench::import::ImportOptions {
                rows: args.rows as usize,
                postgres: args.postgres,
                exe: std::env::current_exe().context("cannot find the outdial binary")?,
                keep: args.keep,
            };
            let report = outdial::bench::import::run(&opts).map_err(anyhow::Error::msg)?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", report.line());
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Bridge(args) => {
            let opts = outdial::bench::bridge::BridgeBenchOptions {
                calls: args.calls as usize,
                seconds: args.seconds,
                cps: f64::from(args.cps),
                rtpengine: !args.no_rtpengine,
                rtpengine_bin: args.rtpengine,
                exe: std::env::current_exe().context("cannot find the outdial binary")?,
                sipp_bin: args.sipp,
                gen_tick_us: args.gen_tick_us,
            };
            let report = outdial::bench::bridge::run(&opts).map_err(anyhow::Error::msg)?;
            if let Some(why) = report
                .rtpengine_skipped
                .as_deref()
                .filter(|_| !args.no_rtpengine)
            {
                eprintln!("outdial: bench: rtpengine not measured: {why}");
            }
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", report.table());
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Media(args) => {
            let opts = outdial::bench::MediaBenchOptions {
                streams: args.streams as usize,
                seconds: args.seconds,
                workers: args.workers.map_or(0, |w| w as usize),
                tick_us: args.tick_us,
                rtpengine: !args.no_rtpengine,
                rtpengine_bin: args.rtpengine,
                exe: std::env::current_exe().context("cannot find the outdial binary")?,
                baseline: args.baseline,
                gen_tick_us: args.gen_tick_us,
            };
            let report = outdial::bench::run_media(&opts).map_err(anyhow::Error::msg)?;
            if let Some(why) = report
                .rtpengine_skipped
                .as_deref()
                .filter(|_| !args.no_rtpengine)
            {
                eprintln!("outdial: bench: rtpengine not measured: {why}");
            }
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", report.table());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let store = open_store(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen for the admin API on {}", config.http.listen))?;
    let ua: Arc<UserAgent> = UserAgent::start(&config).await?;
    ua.start_trunks(&config.profiles);
    let config = Arc::new(config);
    let wake = Arc::new(tokio::sync::Notify::new());
    let data_dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    // Random once, then kept in the data directory: a restart finds its own calls.
    let node = outdial::dialer::recovery::node_id(&data_dir)
        .with_context(|| format!("node id in {}", data_dir.display()))?;
    let journal = outdial::dialer::journal::Journal::open(
        &data_dir.join("attempt-journal.jsonl"),
        usize::try_from(config.engine.journal_max).unwrap_or(usize::MAX),
    )?;
    let recorder = outdial::dialer::recovery::Recorder::new(store.clone(), journal);
    let live = outdial::flow::control::LiveCalls::new();
    // Prometheus: the recorder is in place before the first call counts, and its samples are
    // folded into buckets whether or not anyone scrapes.
    let _metrics_upkeep = outdial::observe::metrics::spawn_upkeep();
    // Calls' events: stored in batches by their own writer, told to live listeners.
    let (events, events_writer) = outdial::observe::events::EventBus::start(store.clone());
    tracing::info!(%node, "node id");
    let engine_options = outdial::dialer::engine::EngineOptions {
        node: node.clone(),
        recordings_dir: data_dir.join("recordings"),
        media_dir: config.media.dir.clone(),
        live: live.clone(),
        events: Some(events.clone()),
    };
    let (engine, engine_task) = outdial::dialer::engine::spawn(
        store.clone(),
        ua.clone(),
        config.clone(),
        engine_options.clone(),
        recorder,
        wake.clone(),
    );
    // Callbacks: matched to their campaign and contact, put through like answered calls.
    let inbound_stop = tokio_util::sync::CancellationToken::new();
    let inbound_task = outdial::dialer::inbound::spawn(
        store.clone(),
        ua.clone(),
        config.clone(),
        engine_options,
        inbound_stop.clone(),
    );
    let state = outdial::api::AppState::new(store.clone(), wake, data_dir.join("exports"))
        .with_media_dir(config.media.dir.clone())
        .with_live_calls(live)
        .with_events(events.clone())
        .with_metrics_token(
            std::env::var("OUTDIAL_METRICS_TOKEN")
                .ok()
                .filter(|t| !t.trim().is_empty())
                .map(outdial::config::Secret::new),
        )
        .with_node(node.clone())
        .with_trunks(config.profiles.clone(), ua.clone())
        .with_limits(outdial::api::ApiLimits::from_settings(&config.http));
    let stop = tokio_util::sync::CancellationToken::new();
    // Webhooks: the outbox's deliveries, sent until the server stops (what is left is sent by
    // the next start, or by another node).
    let webhooks =
        outdial::observe::webhooks::spawn(store.clone(), events.clone(), node, stop.clone());
    let api_stop = stop.clone();
    let api = tokio::spawn(outdial::api::serve(listener, state, async move {
        api_stop.cancelled().await
    }));
    tracing::info!(
        profiles = config.profiles.len(),
        http = %config.http.listen,
        database = %outdial::store::redact_url(&config.database.url),
        "outdial serving; Ctrl-C to stop"
    );
    stop_signal().await;
    tracing::info!("stopping: hanging up live calls, unregistering trunks");
    stop.cancel();
    engine.shutdown();
    inbound_stop.cancel();
    let _ = engine_task.await;
    if let Some(task) = inbound_task {
        let _ = task.await;
    }
    match api.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("admin API: {e}"),
        Err(e) => tracing::warn!("admin API task: {e}"),
    }
    let _ = webhooks.await;
    // Every call is over: the events still queued are stored before the store closes.
    drop(events);
    if tokio::time::timeout(Duration::from_secs(10), events_writer)
        .await
        .is_err()
    {
        tracing::warn!("call events still queued at exit were not all stored");
    }
    ua.shutdown().await;
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM (what `docker stop` and systemd send).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
