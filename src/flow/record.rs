//! The call's recording: received frames and (for outbound and stereo) sent frames written
//! into a [`CallRecorder`], paired slot by slot; and the callee's reply to a message plan's
//! `record` step ([`ReplyRequest`]), written to its own file until its time limit or until it
//! has been silent long enough.
//!
//! It must not block the call: it drains both channels whether or not it has a recorder.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::media::wav::RecordMode;

use crate::call::FrameGate;
use crate::media::session::AudioFrame;
use crate::media::wav::CallRecorder;
use crate::media::MediaError;

/// A reply to record: received audio from now on into `path`, for at most `max`, ending early
/// after `silence_end` without speech. `done` gets the recorded length in ms (or why not).
#[derive(Debug)]
pub struct ReplyRequest {
    pub path: PathBuf,
    pub max: Duration,
    pub silence_end: Duration,
    pub done: oneshot::Sender<Result<u64, MediaError>>,
}

/// Received frames a bridge's listener could not take (its channel full), process-wide.
static LISTENER_DROPPED: AtomicU64 = AtomicU64::new(0);

/// Received frames dropped so far, in this process, because a bridge's listener (an AI
/// agent's stream) had a full channel.
pub fn listener_dropped_frames() -> u64 {
    LISTENER_DROPPED.load(Ordering::Relaxed)
}

/// A frame quieter than this (RMS of 16-bit samples, about −45 dBFS) counts as silence.
const SILENCE_RMS: f64 = 180.0;

/// A reply being written.
struct Reply {
    writer: CallRecorder,
    frames: u64,
    max_frames: u64,
    silent_frames: u64,
    silence_end_frames: u64,
    done: oneshot::Sender<Result<u64, MediaError>>,
}

impl Reply {
    fn start(req: ReplyRequest) -> Option<Reply> {
        let frame = Duration::from_millis(crate::media::FRAME_MS);
        match CallRecorder::create(&req.path, RecordMode::Inbound) {
            Ok(writer) => Some(Reply {
                writer,
                frames: 0,
                max_frames: (req.max.as_millis() / frame.as_millis()).max(1) as u64,
                silent_frames: 0,
                silence_end_frames: (req.silence_end.as_millis() / frame.as_millis()).max(1) as u64,
                done: req.done,
            }),
            Err(e) => {
                let _ = req.done.send(Err(e));
                None
            }
        }
    }

    /// Writes one frame; `true` when the reply is over.
    fn push(&mut self, samples: &[i16]) -> Result<bool, MediaError> {
        self.writer.write_slot(Some(samples), None)?;
        self.frames += 1;
        let energy: f64 = samples.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        let rms = (energy / samples.len().max(1) as f64).sqrt();
        if rms < SILENCE_RMS {
            self.silent_frames += 1;
        } else {
            self.silent_frames = 0;
        }
        Ok(self.frames >= self.max_frames || self.silent_frames >= self.silence_end_frames)
    }

    fn finish(self) {
        let ms = self.frames * crate::media::FRAME_MS;
        let result = self.writer.finish().map(|()| ms);
        let _ = self.done.send(result);
    }
}

/// Writes the call's audio into the recorder: received frames and (for outbound and stereo)
/// sent frames, paired slot by slot; a side that runs ahead alone (the other not started, or
/// silent) is written with silence on the other. Drains both channels even without a recorder.
/// Each received frame goes first to the call's answering-machine detection when it has one
/// (`amd`, dropped, and so closed, when the received audio ends), then is offered to `listener`
/// when a bridge has put a sender there (a full channel drops the frame and counts it:
/// [`listener_dropped_frames`]).
///
/// With a `gate`, the call's frames are asked for only while something takes them — the AMD
/// until it is done, the recorder, a reply being recorded, a bridge in `listener` — and the
/// media engine does not hand over the rest (a person hearing a message costs no frame
/// deliveries). Without one, every frame comes (a caller that will want them later, without
/// a hop's delay: an AI agent's stream).
pub async fn record_call(
    mut received: mpsc::Receiver<AudioFrame>,
    mut sent: mpsc::Receiver<Vec<i16>>,
    mut recorder: Option<CallRecorder>,
    mut replies: mpsc::UnboundedReceiver<ReplyRequest>,
    listener: crate::bridge::CalleeAudio,
    mut amd: Option<super::tap::AmdFeed>,
    mut gate: Option<FrameGate>,
) -> Result<(), MediaError> {
    use std::collections::VecDeque;
    const AHEAD: usize = 3;
    let (mut rx, mut tx): (VecDeque<Vec<i16>>, VecDeque<Vec<i16>>) = Default::default();
    let (mut rx_open, mut tx_open) = (true, true);
    let mut result = Ok(());
    let mut reply: Option<Reply> = None;
    let mut replies_open = true;
    while rx_open || tx_open {
        if let Some(g) = gate.as_mut() {
            g.set(
                amd.as_ref().is_some_and(|a| !a.is_done())
                    || recorder.is_some()
                    || reply.is_some()
                    || listener.is_set(),
            );
        }
        tokio::select! {
            _ = listener.changed(), if gate.is_some() => {}
            req = replies.recv(), if replies_open => match req {
                Some(req) => {
                    if let Some(old) = reply.take() {
                        old.finish();
                    }
                    reply = Reply::start(req);
                }
                None => replies_open = false,
            },
            f = received.recv(), if rx_open => match f {
                Some(f) => {
                    if let Some(feed) = amd.as_mut() {
                        feed.push(&f);
                    }
                    if !listener.offer(&f) {
                        LISTENER_DROPPED.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Some(r) = reply.as_mut() {
                        match r.push(&f.samples) {
                            Ok(false) => {}
                            Ok(true) => {
                                if let Some(r) = reply.take() {
                                    r.finish();
                                }
                            }
                            Err(e) => {
                                if let Some(r) = reply.take() {
                                    let _ = r.done.send(Err(e));
                                }
                            }
                        }
                    }
                    rx.push_back(f.samples)
                }
                None => {
                    rx_open = false;
                    amd = None;
                }
            },
            f = sent.recv(), if tx_open => match f {
                Some(f) => tx.push_back(f),
                None => tx_open = false,
            },
        }
        let done = !rx_open && !tx_open;
        while let Some(r) = recorder.as_mut().filter(|_| result.is_ok()) {
            let slot = match (rx.front(), tx.front()) {
                (Some(_), Some(_)) => (rx.pop_front(), tx.pop_front()),
                (Some(_), None) if rx.len() > AHEAD || done => (rx.pop_front(), None),
                (None, Some(_)) if tx.len() > AHEAD || done => (None, tx.pop_front()),
                _ => break,
            };
            result = r.write_slot(slot.0.as_deref(), slot.1.as_deref());
        }
        if recorder.is_none() {
            rx.clear();
            tx.clear();
        }
    }
    if let Some(r) = reply.take() {
        r.finish();
    }
    match recorder {
        Some(r) if result.is_ok() => r.finish(),
        _ => result,
    }
}
