//! `outdial amd-eval` and `outdial amd-features`: a labeled corpus through the live AMD path.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use outdial::amd::eval::{
    check_files, dump_features, read_labels, run_file, summarize, FileReport,
};
use outdial::amd::{AmdConfig, AmdMode};

#[derive(clap::Args)]
pub struct EvalArgs {
    /// heuristic | text | ml | auto
    #[arg(long, value_parser = parse_mode)]
    mode: AmdMode,
    /// Directory with WAV files and labels.csv (file,label,beep_ms).
    #[arg(long, value_name = "DIR")]
    corpus: PathBuf,
    /// Write the JSON lines here instead of stdout (stdout then gets a short table).
    #[arg(long, value_name = "OUT")]
    json: Option<PathBuf>,
    /// Heuristic mode: speech and silence from the Silero VAD instead of the level.
    #[arg(long)]
    vad: bool,
    /// Fail (exit 1) when accuracy is below this fraction (for CI floors).
    #[arg(long, value_name = "FRACTION")]
    min_accuracy: Option<f64>,
    /// Fail (exit 1) when more than this fraction of humans are called machines.
    #[arg(long, value_name = "FRACTION")]
    max_false_machine: Option<f64>,
    /// Files evaluated at once (threads). Results and their order do not depend on it;
    /// transcription holds each result back by its own CPU time, not by the wall clock.
    #[arg(long, value_name = "N", default_value_t = 1)]
    jobs: usize,
}

#[derive(clap::Args)]
pub struct FeaturesArgs {
    /// Directory with WAV files and labels.csv.
    #[arg(long, value_name = "DIR")]
    corpus: PathBuf,
    /// CSV to write (one row per model step).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

fn parse_mode(s: &str) -> Result<AmdMode, String> {
    AmdMode::from_name(s).ok_or_else(|| format!("{s:?}: expected heuristic, text, ml or auto"))
}

pub fn eval(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let cfg = AmdConfig {
        heuristic_vad: args.vad,
        offline: true,
        ..AmdConfig::with_mode(args.mode)
    };
    // Fail on a missing runtime or model before reading any audio.
    outdial::amd::Amd::new(cfg).map_err(anyhow::Error::msg)?;
    let rows = read_labels(&args.corpus).map_err(anyhow::Error::msg)?;
    check_files(&args.corpus, &rows).map_err(anyhow::Error::msg)?;
    let mut out: Box<dyn Write> = match &args.json {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let jobs = args.jobs.clamp(1, 64);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<FileReport, String>>>> =
        rows.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(row) = rows.get(i) else { return };
                let r = run_file(cfg, &args.corpus, row);
                if let Ok(mut slot) = results[i].lock() {
                    *slot = Some(r);
                }
            });
        }
    });
    let mut reports = Vec::with_capacity(rows.len());
    for slot in results {
        let r = slot
            .into_inner()
            .ok()
            .flatten()
            .unwrap_or_else(|| Err("evaluation thread failed".to_string()))
            .map_err(anyhow::Error::msg)?;
        writeln!(out, "{}", serde_json::to_string(&r)?)?;
        reports.push(r);
    }
    let name = if args.vad && args.mode == AmdMode::Heuristic {
        "heuristic+vad".to_string()
    } else {
        args.mode.name().to_string()
    };
    let summary = summarize(&name, &reports);
    writeln!(out, "{}", serde_json::json!({ "summary": summary }))?;
    out.flush()?;
    drop(out);
    if args.json.is_some() {
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{:.1} %", x * 100.0));
        let ms = |v: Option<u64>| v.map_or("-".to_string(), |x| format!("{x} ms"));
        println!(
            "{name}: {} files, accuracy {}, humans called machines {}, machines called humans {}, \
             median decision after speech onset: human {}, machine {}; beep recall {} ({} beeps); \
             CPU {:.1} µs per audio second, {:.1} ms per call",
            summary.files,
            pct(summary.accuracy),
            pct(summary.false_machine_rate),
            pct(summary.false_human_rate),
            ms(summary.median_decision_after_onset_ms_human),
            ms(summary.median_decision_after_onset_ms_machine),
            pct(summary.beep_recall),
            summary.labeled_beeps,
            summary.cpu_us_per_audio_second.unwrap_or(0.0),
            summary.cpu_ms_per_call.unwrap_or(0.0),
        );
    }
    let mut ok = true;
    if let (Some(floor), Some(acc)) = (args.min_accuracy, summary.accuracy) {
        if acc < floor {
            eprintln!("outdial: {name} accuracy {acc:.4} is below the floor {floor}");
            ok = false;
        }
    }
    if let (Some(cap), Some(fm)) = (args.max_false_machine, summary.false_machine_rate) {
        if fm > cap {
            eprintln!("outdial: {name} calls {fm:.4} of humans machines, above the cap {cap}");
            ok = false;
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn features(args: FeaturesArgs) -> anyhow::Result<ExitCode> {
    let file = std::fs::File::create(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let n = dump_features(&args.corpus, &mut w).map_err(anyhow::Error::msg)?;
    w.flush()?;
    eprintln!("{n} feature rows written to {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct TranscribeArgs {
    /// WAV files (8 kHz µ-law/A-law/PCM or any rate of PCM; resampled to 16 kHz).
    #[arg(required = true, value_name = "WAV")]
    files: Vec<PathBuf>,
}

pub fn transcribe(args: TranscribeArgs) -> anyhow::Result<ExitCode> {
    let mut whisper = outdial::asr::whisper::Whisper::load().map_err(anyhow::Error::msg)?;
    let mut resampler = outdial::media::resample::Resampler::new(8000, 16_000)?;
    for path in &args.files {
        let audio = outdial::amd::eval::load_audio(path).map_err(anyhow::Error::msg)?;
        resampler.reset();
        let pcm: Vec<f32> = audio.iter().map(|&s| f32::from(s) / 32768.0).collect();
        let mut wide = Vec::with_capacity(pcm.len() * 2);
        resampler.process_f32(&pcm, &mut wide)?;
        let cpu = || outdial::bench::sys::cpu_time_us(true).unwrap_or(0);
        let t = cpu();
        let r = whisper.transcribe(&wide).map_err(anyhow::Error::msg)?;
        let cpu_ms = cpu().saturating_sub(t) as f64 / 1000.0;
        println!(
            "{}",
            serde_json::json!({
                "file": path.display().to_string(),
                "text": r.text,
                "tokens": r.tokens,
                "audio_s": audio.len() as f64 / 8000.0,
                "window_s": r.window_s,
                "cpu_ms": cpu_ms,
            })
        );
    }
    Ok(ExitCode::SUCCESS)
}
