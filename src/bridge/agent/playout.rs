//! The agent's audio on its way to the callee, sans-IO: how much was queued, how much has left
//! on the wire, and when each of the agent's marks is due back.
//!
//! An agent sends audio faster than real time and puts marks between chunks; a mark is echoed
//! once every sample queued before it has been sent to the callee, in order. A `clear` drops
//! the queued audio and echoes every pending mark at once. Positions count 8 kHz samples since
//! the bridge started; the driver tells [`Playout::due_marks`] how many samples are still
//! queued in the callee's media session (what has been sent is the rest).
//!
//! It must not touch a socket, a clock or the media session: the driver does.

use std::collections::VecDeque;

/// Marks waiting for their audio to be sent, and the running total of queued audio.
#[derive(Debug, Default)]
pub struct Playout {
    /// Samples ever queued toward the callee.
    queued_total: u64,
    /// (position, name): due once `position` samples have been sent.
    marks: VecDeque<(u64, String)>,
    /// Counters for the attempt record.
    pub marks_seen: u64,
    pub clears: u64,
    pub samples_queued: u64,
}

impl Playout {
    pub fn new() -> Playout {
        Playout::default()
    }

    /// `samples` more samples were queued toward the callee.
    pub fn audio(&mut self, samples: usize) {
        self.queued_total += samples as u64;
        self.samples_queued += samples as u64;
    }

    /// The agent placed a mark after everything queued so far.
    pub fn mark(&mut self, name: String) {
        self.marks_seen += 1;
        self.marks.push_back((self.queued_total, name));
    }

    /// The queued audio was dropped (the driver cleared the media session's queue): every
    /// pending mark is due now, in order.
    pub fn clear(&mut self) -> Vec<String> {
        self.clears += 1;
        self.marks.drain(..).map(|(_, name)| name).collect()
    }

    /// Marks whose audio has been sent, given the samples still queued in the media session;
    /// removed from the pending list, in order.
    pub fn due_marks(&mut self, still_queued: usize) -> Vec<String> {
        let sent = self.queued_total.saturating_sub(still_queued as u64);
        let mut due = Vec::new();
        while let Some((pos, _)) = self.marks.front() {
            if *pos > sent {
                break;
            }
            if let Some((_, name)) = self.marks.pop_front() {
                due.push(name);
            }
        }
        due
    }

    /// Samples still to be sent before the next pending mark is due (`None`: no mark pending).
    pub fn samples_to_next_mark(&self, still_queued: usize) -> Option<u64> {
        let sent = self.queued_total.saturating_sub(still_queued as u64);
        self.marks.front().map(|(pos, _)| pos.saturating_sub(sent))
    }

    pub fn has_pending_marks(&self) -> bool {
        !self.marks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_with_nothing_queued_is_due_at_once() {
        let mut p = Playout::new();
        p.mark("a".into());
        assert_eq!(p.due_marks(0), vec!["a".to_string()]);
        assert!(!p.has_pending_marks());
    }

    #[test]
    fn marks_come_back_in_order_as_their_audio_is_sent() {
        let mut p = Playout::new();
        p.audio(1600); // 200 ms
        p.mark("one".into());
        p.audio(800);
        p.mark("two".into());
        // 2400 queued; nothing sent yet.
        assert!(p.due_marks(2400).is_empty());
        assert_eq!(p.samples_to_next_mark(2400), Some(1600));
        // 1000 sent: still none.
        assert!(p.due_marks(1400).is_empty());
        // 1600 sent: the first.
        assert_eq!(p.due_marks(800), vec!["one".to_string()]);
        assert_eq!(p.samples_to_next_mark(800), Some(800));
        assert_eq!(p.due_marks(0), vec!["two".to_string()]);
        assert_eq!(p.samples_to_next_mark(0), None);
    }

    #[test]
    fn clear_echoes_every_pending_mark_in_order() {
        let mut p = Playout::new();
        p.audio(8000);
        p.mark("a".into());
        p.audio(8000);
        p.mark("b".into());
        assert_eq!(p.clear(), vec!["a".to_string(), "b".to_string()]);
        // After a clear the queue is empty: new audio and marks count from there.
        p.audio(160);
        p.mark("c".into());
        assert!(p.due_marks(160).is_empty());
        assert_eq!(p.due_marks(0), vec!["c".to_string()]);
        assert_eq!(p.clears, 1);
        assert_eq!(p.marks_seen, 3);
    }

    #[test]
    fn more_queued_than_counted_never_underflows() {
        let mut p = Playout::new();
        p.mark("x".into());
        // The session holds audio this playout did not queue (a prompt): nothing is "negative".
        assert_eq!(p.due_marks(10_000), vec!["x".to_string()]);
    }
}
