//! Answering-machine detection on a call's received audio, run beside the call: every frame
//! passes through (to a recorder or anyone else) and, from the answer on, into the [`Amd`].
//!
//! Frames are re-cut into 20 ms; audio time starts at 0 at the answer. When the audio ends
//! (the call is over) an undecided detection is closed as a hang-up. The AMD's beep/SIT/fax
//! detectors are the call's after the answer until it is done: the tones they hear go to the
//! call ([`ToneInput`]), shifted into the call's received-audio time (counted in the frames
//! that reach the tap), and the media session does not run its own on the same audio; once the
//! AMD is done, the media session's listen again. It must not act on the verdict: the runner does.

use tokio::sync::mpsc;

use crate::amd::{Amd, AmdEvent, AmdResult};
use crate::call::ToneInput;
use crate::media::session::AudioFrame;

pub struct AmdTap {
    answered: std::sync::Arc<std::sync::atomic::AtomicBool>,
    events: mpsc::UnboundedReceiver<AmdEvent>,
    task: tokio::task::JoinHandle<Option<AmdResult>>,
}

impl AmdTap {
    /// Starts the tap on `audio` (from [`Call::take_audio`](crate::call::Call::take_audio)),
    /// reporting the tones the AMD hears to `tones`
    /// ([`Call::hear_tones_beside`](crate::call::Call::hear_tones_beside)); returns the frames
    /// passed on.
    pub fn start(
        mut audio: mpsc::Receiver<AudioFrame>,
        mut amd: Amd,
        tones: ToneInput,
    ) -> (mpsc::Receiver<AudioFrame>, AmdTap) {
        use std::sync::atomic::Ordering;
        let (forward_tx, forward_rx) = mpsc::channel(64);
        let (events_tx, events) = mpsc::unbounded_channel();
        let answered = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = answered.clone();
        let task = tokio::spawn(async move {
            let mut pending: Vec<i16> = Vec::with_capacity(2 * crate::amd::FRAME_SAMPLES);
            let mut t_ms = 0u64;
            let mut started = false;
            let mut events_out = Vec::new();
            let mut forwarding = true;
            // Received-audio time of the call (ms since its first frame) and where the AMD's
            // audio time began in it.
            let (mut call_ms, mut amd_from_ms) = (0u64, 0u64);
            while let Some(frame) = audio.recv().await {
                let frame_ms =
                    (frame.samples.len() as u64 * 1000) / crate::media::SAMPLE_RATE as u64;
                if flag.load(Ordering::Acquire) && !amd.is_done() {
                    if !started {
                        amd_from_ms = call_ms;
                    }
                    started = true;
                    pending.extend_from_slice(&frame.samples);
                    let mut used = 0;
                    while pending.len() - used >= crate::amd::FRAME_SAMPLES {
                        let chunk = &pending[used..used + crate::amd::FRAME_SAMPLES];
                        amd.push(chunk, t_ms, &mut events_out);
                        used += crate::amd::FRAME_SAMPLES;
                        t_ms += crate::amd::FRAME_MS;
                    }
                    pending.drain(..used);
                    for tone in amd.take_tones() {
                        tones.heard(tone.later_by(amd_from_ms));
                    }
                    if amd.is_done() {
                        tones.done();
                    }
                    for ev in events_out.drain(..) {
                        let _ = events_tx.send(ev);
                    }
                } else if started {
                    t_ms += frame_ms;
                }
                call_ms += frame_ms;
                if forwarding && forward_tx.send(frame).await.is_err() {
                    forwarding = false;
                }
            }
            if !started {
                return None;
            }
            amd.finish(t_ms, true, &mut events_out);
            for ev in events_out.drain(..) {
                let _ = events_tx.send(ev);
            }
            Some(amd.result())
        });
        (
            forward_rx,
            AmdTap {
                answered,
                events,
                task,
            },
        )
    }

    /// The call was answered: detection starts with the next frame.
    pub fn answered(&self) {
        self.answered
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The next detection event; `None` once the audio has ended and every event was read.
    pub async fn next_event(&mut self) -> Option<AmdEvent> {
        self.events.recv().await
    }

    /// The final result, once the audio has ended (`None` when the call was never answered).
    pub async fn result(self) -> Option<AmdResult> {
        self.task.await.ok().flatten()
    }
}
