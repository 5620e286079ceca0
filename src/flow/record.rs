//! The call's recording: received frames and (for outbound and stereo) sent frames written
//! into a [`CallRecorder`], paired slot by slot.
//!
//! It must not block the call: it drains both channels whether or not it has a recorder.

use tokio::sync::mpsc;

use crate::media::session::AudioFrame;
use crate::media::wav::CallRecorder;
use crate::media::MediaError;

/// Writes the call's audio into the recorder: received frames and (for outbound and stereo)
/// sent frames, paired slot by slot; a side that runs ahead alone (the other not started, or
/// silent) is written with silence on the other. Drains both channels even without a recorder.
pub async fn record_call(
    mut received: mpsc::Receiver<AudioFrame>,
    mut sent: mpsc::Receiver<Vec<i16>>,
    mut recorder: Option<CallRecorder>,
) -> Result<(), MediaError> {
    use std::collections::VecDeque;
    const AHEAD: usize = 3;
    let (mut rx, mut tx): (VecDeque<Vec<i16>>, VecDeque<Vec<i16>>) = Default::default();
    let (mut rx_open, mut tx_open) = (true, true);
    let mut result = Ok(());
    while rx_open || tx_open {
        tokio::select! {
            f = received.recv(), if rx_open => match f {
                Some(f) => rx.push_back(f.samples),
                None => rx_open = false,
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
    match recorder {
        Some(r) if result.is_ok() => r.finish(),
        _ => result,
    }
}
