//! The audio a call has queued to send: shared prompts and live frames, in order, taken one
//! 20 ms frame at a time.
//!
//! A prompt (a message, a voicemail drop, an abandon message) is queued as the `Arc` the plan
//! already holds, with a read position: thousands of calls playing the same 30 s message
//! share one copy of its samples instead of each holding its own. Live audio (a bridge's
//! frames, in-band digits) is appended to an owned tail. Frames are copied out slice by
//! slice. It must not allocate per frame taken, nor copy a shared prompt.

use std::collections::VecDeque;
use std::sync::Arc;

/// One stretch of queued audio and how much of it has been sent.
#[derive(Debug)]
enum Chunk {
    Shared { samples: Arc<Vec<i16>>, at: usize },
    Owned { samples: VecDeque<i16> },
}

impl Chunk {
    fn len(&self) -> usize {
        match self {
            Chunk::Shared { samples, at } => samples.len().saturating_sub(*at),
            Chunk::Owned { samples } => samples.len(),
        }
    }

    /// Copies up to `out.len()` samples into `out` and drops them from the chunk; returns how
    /// many.
    fn take_into(&mut self, out: &mut [i16]) -> usize {
        match self {
            Chunk::Shared { samples, at } => {
                let rest = samples.get(*at..).unwrap_or(&[]);
                let n = rest.len().min(out.len());
                out[..n].copy_from_slice(&rest[..n]);
                *at += n;
                n
            }
            Chunk::Owned { samples } => {
                let n = samples.len().min(out.len());
                let (a, b) = samples.as_slices();
                let from_a = a.len().min(n);
                out[..from_a].copy_from_slice(&a[..from_a]);
                out[from_a..n].copy_from_slice(&b[..n - from_a]);
                samples.drain(..n);
                n
            }
        }
    }
}

/// Queued audio, oldest first.
#[derive(Debug, Default)]
pub struct PlaybackQueue {
    chunks: VecDeque<Chunk>,
    len: usize,
}

impl PlaybackQueue {
    /// Queues a shared prompt after what is queued (its samples are not copied).
    pub fn push_shared(&mut self, samples: Arc<Vec<i16>>) {
        if samples.is_empty() {
            return;
        }
        self.len += samples.len();
        self.chunks.push_back(Chunk::Shared { samples, at: 0 });
    }

    /// Appends samples (live audio) after what is queued.
    pub fn extend(&mut self, samples: impl IntoIterator<Item = i16>) {
        if !matches!(self.chunks.back(), Some(Chunk::Owned { .. })) {
            self.chunks.push_back(Chunk::Owned {
                samples: VecDeque::new(),
            });
        }
        if let Some(Chunk::Owned { samples: tail }) = self.chunks.back_mut() {
            let before = tail.len();
            tail.extend(samples);
            self.len += tail.len() - before;
        }
    }

    /// Fills `frame` from the front of the queue; what the queue lacks is silence (0). Returns
    /// how many queued samples went into it.
    pub fn take_frame(&mut self, frame: &mut [i16]) -> usize {
        let mut filled = 0;
        while filled < frame.len() {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            filled += front.take_into(&mut frame[filled..]);
            if front.len() == 0 {
                self.chunks.pop_front();
            }
        }
        frame[filled..].fill(0);
        self.len -= filled;
        filled
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
    }

    /// Samples queued and not taken yet.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take_all(q: &mut PlaybackQueue, frame_len: usize) -> Vec<i16> {
        let mut out = Vec::new();
        let mut frame = vec![7i16; frame_len];
        while !q.is_empty() {
            let n = q.take_frame(&mut frame);
            out.extend_from_slice(&frame[..n]);
            assert!(frame[n..].iter().all(|&s| s == 0), "the rest is silence");
        }
        out
    }

    #[test]
    fn shared_prompts_and_live_audio_come_out_in_order_across_frame_edges() {
        let prompt: Arc<Vec<i16>> = Arc::new((1..=250).collect());
        let mut q = PlaybackQueue::default();
        q.push_shared(prompt.clone());
        q.extend(1000..1070);
        q.extend(2000..2010);
        q.push_shared(prompt.clone());
        assert_eq!(q.len(), 250 + 70 + 10 + 250);
        let out = take_all(&mut q, 160);
        let want: Vec<i16> = (1..=250)
            .chain(1000..1070)
            .chain(2000..2010)
            .chain(1..=250)
            .collect();
        assert_eq!(out, want);
        assert_eq!(q.len(), 0);
        // The prompt was never copied into the queue: only the plan's Arc and ours existed.
        assert_eq!(Arc::strong_count(&prompt), 1);
    }

    #[test]
    fn an_owned_tail_that_wrapped_around_is_read_whole() {
        let mut q = PlaybackQueue::default();
        let mut frame = [0i16; 160];
        let mut next = 0i16;
        let mut expected = 0i16;
        // Push and take at different sizes so the ring wraps many times.
        for round in 0..50 {
            let n = 100 + (round * 37) % 120;
            q.extend((0..n).map(|i| next.wrapping_add(i as i16)));
            next = next.wrapping_add(n as i16);
            let got = q.take_frame(&mut frame);
            for &s in &frame[..got] {
                assert_eq!(s, expected);
                expected = expected.wrapping_add(1);
            }
        }
        for s in take_all(&mut q, 160) {
            assert_eq!(s, expected);
            expected = expected.wrapping_add(1);
        }
        assert_eq!(expected, next);
    }

    #[test]
    fn clearing_drops_everything_and_an_empty_queue_gives_silence() {
        let mut q = PlaybackQueue::default();
        q.push_shared(Arc::new(vec![5; 400]));
        q.extend([1, 2, 3]);
        q.push_shared(Arc::new(Vec::new()));
        assert_eq!(q.len(), 403);
        q.clear();
        assert!(q.is_empty());
        let mut frame = [9i16; 160];
        assert_eq!(q.take_frame(&mut frame), 0);
        assert!(frame.iter().all(|&s| s == 0));
    }
}
