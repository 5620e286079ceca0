//! Answering-machine detection on a call's received audio, run beside the call: the call's
//! recorder task ([`record_call`](super::record_call)) hands every received frame to the
//! [`AmdFeed`] before anything else, so detection costs no task or channel hop of its own;
//! from the answer on the frames go into the [`Amd`].
//!
//! Frames are re-cut into 20 ms; audio time starts at 0 at the answer. When the audio ends
//! (the call is over, the feed is dropped) an undecided detection is closed as a hang-up. The
//! AMD's beep/SIT/fax detectors are the call's after the answer until it is done: the tones
//! they hear go to the call ([`ToneInput`]), shifted into the call's received-audio time
//! (counted in the frames that reach the feed), and the media session does not run its own on
//! the same audio, nor after the AMD is done (it heard the beep, SIT or fax tone a call acts
//! on). It must not act on the verdict: the runner does ([`AmdTap`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::amd::{Amd, AmdEvent, AmdResult};
use crate::call::ToneInput;
use crate::media::session::AudioFrame;

/// The runner's side: tells the detection the call was answered, reads its events and result.
pub struct AmdTap {
    answered: Arc<AtomicBool>,
    events: mpsc::UnboundedReceiver<AmdEvent>,
    result: oneshot::Receiver<Option<AmdResult>>,
}

/// The audio side: the detection itself, fed each received frame in the recorder's task.
pub struct AmdFeed {
    amd: Amd,
    tones: ToneInput,
    answered: Arc<AtomicBool>,
    events_tx: mpsc::UnboundedSender<AmdEvent>,
    result_tx: Option<oneshot::Sender<Option<AmdResult>>>,
    pending: Vec<i16>,
    events_out: Vec<AmdEvent>,
    /// AMD audio time (ms since the answer).
    t_ms: u64,
    started: bool,
    /// Received-audio time of the call (ms since its first frame) and where the AMD's audio
    /// time began in it.
    call_ms: u64,
    amd_from_ms: u64,
}

impl AmdTap {
    /// Sets up detection with `amd`, reporting the tones it hears to `tones`
    /// ([`Call::hear_tones_beside`](crate::call::Call::hear_tones_beside)); the feed goes to
    /// the task that reads the call's audio.
    pub fn start(amd: Amd, tones: ToneInput) -> (AmdFeed, AmdTap) {
        let (events_tx, events) = mpsc::unbounded_channel();
        let (result_tx, result) = oneshot::channel();
        let answered = Arc::new(AtomicBool::new(false));
        let feed = AmdFeed {
            amd,
            tones,
            answered: answered.clone(),
            events_tx,
            result_tx: Some(result_tx),
            pending: Vec::with_capacity(2 * crate::amd::FRAME_SAMPLES),
            events_out: Vec::new(),
            t_ms: 0,
            started: false,
            call_ms: 0,
            amd_from_ms: 0,
        };
        (
            feed,
            AmdTap {
                answered,
                events,
                result,
            },
        )
    }

    /// The call was answered: detection starts with the next frame.
    pub fn answered(&self) {
        self.answered.store(true, Ordering::Release);
    }

    /// The next detection event; `None` once the audio has ended and every event was read.
    pub async fn next_event(&mut self) -> Option<AmdEvent> {
        self.events.recv().await
    }

    /// The final result, once the audio has ended (`None` when the call was never answered).
    pub async fn result(self) -> Option<AmdResult> {
        self.result.await.ok().flatten()
    }
}

impl AmdFeed {
    /// The detection is over (it needs no more frames).
    pub fn is_done(&self) -> bool {
        self.amd.is_done()
    }

    /// One received frame of the call.
    pub fn push(&mut self, frame: &AudioFrame) {
        let frame_ms = (frame.samples.len() as u64 * 1000) / crate::media::SAMPLE_RATE as u64;
        if self.answered.load(Ordering::Acquire) && !self.amd.is_done() {
            if !self.started {
                self.amd_from_ms = self.call_ms;
            }
            self.started = true;
            self.pending.extend_from_slice(&frame.samples);
            let mut used = 0;
            while self.pending.len() - used >= crate::amd::FRAME_SAMPLES {
                let chunk = &self.pending[used..used + crate::amd::FRAME_SAMPLES];
                self.amd.push(chunk, self.t_ms, &mut self.events_out);
                used += crate::amd::FRAME_SAMPLES;
                self.t_ms += crate::amd::FRAME_MS;
            }
            self.pending.drain(..used);
            for tone in self.amd.take_tones() {
                self.tones.heard(tone.later_by(self.amd_from_ms));
            }
            self.send_events();
        } else if self.started {
            self.t_ms += frame_ms;
        }
        self.call_ms += frame_ms;
    }

    fn send_events(&mut self) {
        for ev in self.events_out.drain(..) {
            let _ = self.events_tx.send(ev);
        }
    }
}

impl Drop for AmdFeed {
    /// The audio ended: an undecided detection is closed as a hang-up and the result sent.
    fn drop(&mut self) {
        let result = if self.started {
            self.amd.finish(self.t_ms, true, &mut self.events_out);
            self.send_events();
            Some(self.amd.result())
        } else {
            None
        };
        if let Some(tx) = self.result_tx.take() {
            let _ = tx.send(result);
        }
    }
}
