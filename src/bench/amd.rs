//! `outdial bench amd`: answering-machine detection at N concurrent calls, in real time.
//!
//! N streams are spread over `workers` threads. Every 20 ms each worker gives each of its
//! streams the next frame of its audio (files of a corpus, each stream starting at a different
//! file and moving on to the next one when its detection is done or the file ends: calls come
//! and go as on a dialer). The figure that matters is whether each 20 ms turn's work fits in the
//! 20 ms: `late_ticks` counts turns that overran, and CPU is the process's own over the run.
//! A per-frame cost is measured too, single-threaded and unpaced, for each detector.
//! Text and auto hand transcription to the ASR worker threads as live calls do; the process
//! CPU counts them, and `asr_max_queued` shows whether they kept up.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::sys::cpu_time_us;
use crate::amd::eval::{load_audio, read_labels};
use crate::amd::{Amd, AmdConfig, AmdMode, FRAME_MS, FRAME_SAMPLES};

#[derive(Debug, Clone, Serialize)]
pub struct AmdBenchReport {
    pub mode: String,
    pub streams: usize,
    pub workers: usize,
    pub seconds: f64,
    /// Process CPU over the paced run, % of one core.
    pub cpu_percent: f64,
    /// CPU per stream-frame in the paced run, µs.
    pub cpu_us_per_frame: f64,
    /// Turns (one per worker per 20 ms) whose work did not finish within 20 ms.
    pub late_ticks: u64,
    pub ticks: u64,
    /// Detections completed during the run (calls that reached a verdict).
    pub detections: u64,
    /// Unpaced, one thread: µs per 20 ms frame through one detection (mode's full path).
    pub frame_cost_us: f64,
    /// Text and auto: the longest the transcription queue got (0 = a worker was always free).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asr_max_queued: Option<usize>,
}

/// Loads up to `max_files` corpus files (whole, 8 kHz).
pub fn load_corpus(dir: &Path, max_files: usize) -> Result<Vec<Vec<i16>>, String> {
    let rows = read_labels(dir)?;
    let mut out = Vec::new();
    for row in rows.iter().take(max_files) {
        let audio = load_audio(&dir.join(&row.file))?;
        // At least a second of audio per file.
        if audio.len() >= 50 * FRAME_SAMPLES {
            out.push(audio);
        }
    }
    if out.is_empty() {
        return Err("the corpus has no audio".into());
    }
    Ok(out)
}

struct Stream {
    amd: Amd,
    file: usize,
    pos: usize,
}

/// Unpaced per-frame cost of one mode: all files through fresh detections, one thread.
pub fn frame_cost_us(cfg: AmdConfig, audio: &[Vec<i16>]) -> Result<f64, String> {
    let start = cpu_time_us(true).map_err(|e| e.to_string())?;
    let mut frames = 0u64;
    let mut events = Vec::new();
    for a in audio {
        let mut amd = Amd::new(cfg)?;
        for (i, f) in a.chunks_exact(FRAME_SAMPLES).enumerate() {
            amd.push(f, i as u64 * FRAME_MS, &mut events);
            frames += 1;
        }
        events.clear();
    }
    let used = cpu_time_us(true).map_err(|e| e.to_string())? - start;
    Ok(used as f64 / frames.max(1) as f64)
}

pub fn run(
    mode: AmdMode,
    vad: bool,
    streams: usize,
    workers: usize,
    seconds: f64,
    audio: Vec<Vec<i16>>,
) -> Result<AmdBenchReport, String> {
    // The unpaced cost runs transcription inline (its CPU counted on this thread); the paced
    // run hands it to the ASR worker threads as a live call does, and the process's CPU time
    // counts them.
    let unpaced = AmdConfig {
        heuristic_vad: vad,
        offline: true,
        ..AmdConfig::with_mode(mode)
    };
    let cfg = AmdConfig {
        offline: false,
        ..unpaced
    };
    Amd::new(cfg)?;
    let frame_cost = frame_cost_us(unpaced, &audio[..audio.len().min(20)])?;
    let workers = workers.clamp(1, 16).min(streams.max(1));
    let audio = std::sync::Arc::new(audio);
    let ticks_total = (seconds * 1000.0 / FRAME_MS as f64).ceil() as u64;
    let cpu0 = cpu_time_us(false).map_err(|e| e.to_string())?;
    let wall0 = Instant::now();
    let start_at = wall0 + Duration::from_millis(50);
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let audio = audio.clone();
            let mine = streams / workers + usize::from(w < streams % workers);
            std::thread::spawn(move || -> Result<(u64, u64), String> {
                let mut list: Vec<Stream> = (0..mine)
                    .map(|i| {
                        let file = (i * workers + w) % audio.len();
                        let len = audio[file].len() / FRAME_SAMPLES;
                        Ok(Stream {
                            amd: Amd::new(cfg)?,
                            file,
                            // Spread the streams over their files' timelines.
                            pos: (i * 7) % len.max(1),
                        })
                    })
                    .collect::<Result<_, String>>()?;
                let mut events = Vec::new();
                let (mut late, mut done) = (0u64, 0u64);
                for tick in 0..ticks_total {
                    let due = start_at + Duration::from_millis(tick * FRAME_MS);
                    let now = Instant::now();
                    if now < due {
                        std::thread::sleep(due - now);
                    }
                    for s in list.iter_mut() {
                        let a = &audio[s.file];
                        let frame = &a[s.pos * FRAME_SAMPLES..(s.pos + 1) * FRAME_SAMPLES];
                        s.amd.push(frame, s.pos as u64 * FRAME_MS, &mut events);
                        events.clear();
                        s.pos += 1;
                        if s.amd.is_done() || (s.pos + 1) * FRAME_SAMPLES > a.len() {
                            if s.amd.is_done() {
                                done += 1;
                            }
                            s.file = (s.file + workers) % audio.len();
                            s.pos = 0;
                            s.amd = Amd::new(cfg)?;
                        }
                    }
                    if Instant::now() > due + Duration::from_millis(FRAME_MS) {
                        late += 1;
                    }
                }
                Ok((late, done))
            })
        })
        .collect();
    let mut late_ticks = 0;
    let mut detections = 0;
    for h in handles {
        let (l, d) = h
            .join()
            .map_err(|_| "a bench worker panicked".to_string())??;
        late_ticks += l;
        detections += d;
    }
    let wall = wall0.elapsed().as_secs_f64();
    let cpu = (cpu_time_us(false).map_err(|e| e.to_string())? - cpu0) as f64;
    let frames = (streams as u64 * ticks_total).max(1) as f64;
    Ok(AmdBenchReport {
        mode: if vad && mode == AmdMode::Heuristic {
            "heuristic+vad".to_string()
        } else {
            mode.name().to_string()
        },
        streams,
        workers,
        seconds,
        cpu_percent: (cpu / (wall * 1e6) * 1000.0).round() / 10.0,
        cpu_us_per_frame: (cpu / frames * 100.0).round() / 100.0,
        late_ticks,
        ticks: ticks_total * workers as u64,
        detections,
        frame_cost_us: (frame_cost * 100.0).round() / 100.0,
        asr_max_queued: matches!(mode, AmdMode::Text | AmdMode::Auto)
            .then(|| {
                crate::asr::stream::Workers::shared()
                    .map(|w| w.max_queued())
                    .ok()
            })
            .flatten(),
    })
}
