//! Streaming transcription of one call's greeting with Whisper, as a
//! [`Transcriber`](crate::asr::Transcriber) for text-mode AMD.
//!
//! Whisper is not a streaming model, so the greeting is re-transcribed as it grows: audio is
//! kept (resampled to 16 kHz) from 300 ms before the first speech (speech as the text
//! detector's level detector calls it, passed in with each frame); a run is started when an
//! utterance ends (300 ms of silence after new speech) or, while speech goes on, every
//! [`INTERIM_MS`], once [`MIN_SPEECH_MS`] of speech have been heard. Each result is the whole greeting so far, delivered as an interim
//! transcript that replaces the previous one. One run at a time per call; nothing is
//! transcribed before speech or after [`MAX_GREETING_MS`].
//!
//! Where the run happens is the [`Exec`]: `Inline` runs it on the caller's thread and holds the
//! result back until as much audio time has passed as the run took CPU time (so `amd-eval`
//! reports the decision times a live call on an unloaded core would see); `Background` hands it to the
//! process's ASR worker threads and returns it when they are done (live calls).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};

use super::whisper::{Recognized, WhisperPool};
use crate::asr::{Transcriber, Transcript};
use crate::bench::sys::cpu_time_us;
use crate::media::resample::Resampler;
use crate::media::FRAME_MS;

/// While speech goes on, a new run this often (audio time since the last one started).
pub const INTERIM_MS: u64 = 500;
/// Silence that ends an utterance (and starts a run).
pub const UTTERANCE_END_MS: u64 = 300;
/// Audio kept before the first speech frame.
pub const PREROLL_MS: u64 = 300;
/// Speech needed before the first run (Whisper invents words for a fraction of a second).
pub const MIN_SPEECH_MS: u64 = 400;
/// Nothing after this much greeting is transcribed (text mode has decided by then).
pub const MAX_GREETING_MS: u64 = 20_000;
const RATE: usize = 16_000;
/// ASR worker threads by default at most (memory: one model each).
pub const DEFAULT_MAX_THREADS: usize = 8;

/// Where transcription runs.
#[derive(Clone)]
pub enum Exec {
    /// On the calling thread; results held back by the run's CPU time (offline evaluation).
    Inline(Arc<WhisperPool>),
    /// On the ASR worker threads (live calls).
    Background(&'static Workers),
}

/// A job for the worker threads.
struct Job {
    audio: Vec<f32>,
    reply: Sender<Result<Recognized, String>>,
}

/// The process's ASR worker threads, one per loaded model.
pub struct Workers {
    jobs: Mutex<Sender<Job>>,
    pub pool: Arc<WhisperPool>,
    /// Jobs waiting for a worker now, and the most there have been.
    queued: Arc<AtomicUsize>,
    max_queued: AtomicUsize,
    /// Jobs submitted and not yet answered.
    pending: Arc<AtomicUsize>,
}

static WORKERS: OnceLock<Result<Workers, String>> = OnceLock::new();

impl Workers {
    /// The shared workers, started (and their models loaded) on first use: one per core, at
    /// most [`DEFAULT_MAX_THREADS`] (each holds its own ≈ 150 MB model), unless
    /// `OUTDIAL_ASR_THREADS` says otherwise.
    pub fn shared() -> Result<&'static Workers, String> {
        WORKERS
            .get_or_init(|| {
                let n = std::env::var("OUTDIAL_ASR_THREADS")
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| {
                        std::thread::available_parallelism()
                            .map_or(1, |n| n.get())
                            .min(DEFAULT_MAX_THREADS)
                    });
                let pool = Arc::new(WhisperPool::load(n)?);
                let (tx, rx) = mpsc::channel::<Job>();
                let rx = Arc::new(Mutex::new(rx));
                let queued = Arc::new(AtomicUsize::new(0));
                let pending = Arc::new(AtomicUsize::new(0));
                for i in 0..pool.size() {
                    let rx = Arc::clone(&rx);
                    let pool = Arc::clone(&pool);
                    let queued = Arc::clone(&queued);
                    let pending = Arc::clone(&pending);
                    std::thread::Builder::new()
                        .name(format!("asr-{i}"))
                        .spawn(move || loop {
                            let job = match rx.lock() {
                                Ok(rx) => rx.recv(),
                                Err(_) => return,
                            };
                            let Ok(job) = job else { return };
                            queued.fetch_sub(1, Ordering::Relaxed);
                            let _ = job.reply.send(pool.transcribe(&job.audio));
                            pending.fetch_sub(1, Ordering::Release);
                        })
                        .map_err(|e| format!("cannot start ASR worker: {e}"))?;
                }
                Ok(Workers {
                    jobs: Mutex::new(tx),
                    pool,
                    queued,
                    max_queued: AtomicUsize::new(0),
                    pending,
                })
            })
            .as_ref()
            .map_err(|e| e.clone())
    }

    fn submit(&self, audio: Vec<f32>) -> Receiver<Result<Recognized, String>> {
        let (reply, rx) = mpsc::channel();
        if let Ok(jobs) = self.jobs.lock() {
            let now = self.queued.fetch_add(1, Ordering::Relaxed) + 1;
            self.max_queued.fetch_max(now, Ordering::Relaxed);
            self.pending.fetch_add(1, Ordering::Acquire);
            if jobs.send(Job { audio, reply }).is_err() {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                self.pending.fetch_sub(1, Ordering::Release);
            }
        }
        rx
    }

    /// Waits (up to `limit`) until no transcription is queued or running, so that a process
    /// can exit without cutting a run short inside ONNX Runtime. A no-op when the workers were
    /// never started.
    pub fn wait_idle(limit: std::time::Duration) {
        let Some(Ok(w)) = WORKERS.get() else { return };
        let until = std::time::Instant::now() + limit;
        while w.pending.load(Ordering::Acquire) > 0 && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Jobs waiting for a worker now; `None` when the workers were never started.
    pub fn queued_now() -> Option<usize> {
        match WORKERS.get() {
            Some(Ok(w)) => Some(w.queued.load(Ordering::Relaxed)),
            _ => None,
        }
    }

    /// The longest the job queue has been (jobs waiting for a free worker): above zero for
    /// long, transcription is not keeping up and text verdicts come late.
    pub fn max_queued(&self) -> usize {
        self.max_queued.load(Ordering::Relaxed)
    }
}

enum InFlight {
    /// Inline: the result, due at this audio time.
    Due(u64, Result<Recognized, String>),
    Waiting(Receiver<Result<Recognized, String>>),
}

struct Run {
    started_ms: u64,
    end_ms: u64,
    state: InFlight,
}

/// One call's streaming Whisper transcriber.
pub struct WhisperStream {
    exec: Exec,
    resampler: Option<Resampler>,
    /// 16 kHz audio from `kept_from_ms`.
    audio: Vec<f32>,
    kept_from_ms: u64,
    /// One frame as floats, before and after resampling (reused).
    frame8: Vec<f32>,
    frame16: Vec<f32>,
    now_ms: u64,
    onset_ms: Option<u64>,
    silence_run_ms: u64,
    speech_ms: u64,
    /// Speech heard since the last run started.
    fresh_speech: bool,
    last_run_ms: u64,
    run: Option<Run>,
    ready: Vec<Transcript>,
}

impl WhisperStream {
    pub fn new(exec: Exec) -> Self {
        WhisperStream {
            exec,
            resampler: Resampler::new(8000, RATE as u32).ok(),
            audio: Vec::new(),
            kept_from_ms: 0,
            frame8: Vec::with_capacity(RATE / 100),
            frame16: Vec::with_capacity(RATE / 50),
            now_ms: 0,
            onset_ms: None,
            silence_run_ms: 0,
            speech_ms: 0,
            fresh_speech: false,
            last_run_ms: 0,
            run: None,
            ready: Vec::new(),
        }
    }

    fn keep(&mut self, frame: &[i16], at_ms: u64) {
        self.frame8.clear();
        self.frame8
            .extend(frame.iter().map(|&s| f32::from(s) / 32768.0));
        self.frame16.clear();
        match self.resampler.as_mut() {
            Some(r) => {
                let _ = r.process_f32(&self.frame8, &mut self.frame16);
            }
            None => self
                .frame16
                .extend(self.frame8.iter().flat_map(|&x| [x, x])),
        }
        if self.onset_ms.is_none() {
            // Before speech keep only the pre-roll.
            let keep = (PREROLL_MS as usize * RATE / 1000).saturating_sub(self.frame16.len());
            if self.audio.len() > keep {
                let drop = self.audio.len() - keep;
                self.audio.drain(..drop);
            }
            self.kept_from_ms = (at_ms + FRAME_MS)
                .saturating_sub(((self.audio.len() + self.frame16.len()) * 1000 / RATE) as u64);
        }
        self.audio.extend_from_slice(&self.frame16);
    }

    fn start_run(&mut self) {
        self.fresh_speech = false;
        self.last_run_ms = self.now_ms;
        let audio = self.audio.clone();
        let state = match &self.exec {
            Exec::Inline(pool) => {
                let cpu = || cpu_time_us(true).unwrap_or(0);
                let t = cpu();
                let r = pool.transcribe(&audio);
                let took_ms = cpu().saturating_sub(t).div_ceil(1000);
                InFlight::Due(self.now_ms + took_ms, r)
            }
            Exec::Background(workers) => InFlight::Waiting(workers.submit(audio)),
        };
        self.run = Some(Run {
            started_ms: self.kept_from_ms,
            end_ms: self.now_ms,
            state,
        });
    }

    fn collect(&mut self) {
        let Some(run) = self.run.take() else { return };
        let result = match run.state {
            InFlight::Due(due, r) if due <= self.now_ms => r,
            InFlight::Due(..) => {
                self.run = Some(run);
                return;
            }
            InFlight::Waiting(ref rx) => match rx.try_recv() {
                Ok(r) => r,
                Err(mpsc::TryRecvError::Empty) => {
                    self.run = Some(run);
                    return;
                }
                Err(mpsc::TryRecvError::Disconnected) => Err("ASR worker gone".to_string()),
            },
        };
        match result {
            Ok(r) => self.ready.push(Transcript {
                text: r.text,
                start_ms: run.started_ms,
                end_ms: run.end_ms,
                is_final: false,
            }),
            Err(e) => tracing::warn!("transcription failed: {e}"),
        }
    }
}

impl Transcriber for WhisperStream {
    fn push(&mut self, frame: &[i16], at_ms: u64, speech: bool) {
        self.now_ms = at_ms + FRAME_MS;
        self.keep(frame, at_ms);
        if speech {
            self.onset_ms.get_or_insert(at_ms);
            self.silence_run_ms = 0;
            self.speech_ms += FRAME_MS;
            self.fresh_speech = true;
        } else {
            self.silence_run_ms += FRAME_MS;
        }
        self.collect();
        let Some(onset) = self.onset_ms else { return };
        if self.run.is_some()
            || !self.fresh_speech
            || self.speech_ms < MIN_SPEECH_MS
            || self.now_ms - onset > MAX_GREETING_MS
        {
            return;
        }
        let utterance_ended = self.silence_run_ms >= UTTERANCE_END_MS;
        let interim_due = self.silence_run_ms == 0 && self.now_ms - self.last_run_ms >= INTERIM_MS;
        if utterance_ended || interim_due {
            self.start_run();
        }
    }

    fn poll(&mut self) -> Option<Transcript> {
        if self.ready.is_empty() {
            None
        } else {
            Some(self.ready.remove(0))
        }
    }
}
