//! Per-trunk limits: concurrent channels (`max_channels`) and call attempts
//! per second (`max_cps`).
//!
//! A channel is a permit held for the whole life of a call; asking for one
//! when all are taken is an immediate error (the campaign engine re-queues),
//! never a wait. Attempts per second are paced: each dial waits for its slot,
//! slots spaced 1/max_cps apart. Nothing here does I/O.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

#[derive(Debug)]
pub struct TrunkLimit {
    name: String,
    max_channels: Option<u32>,
    channels: Option<Arc<Semaphore>>,
    interval: Option<Duration>,
    next_slot: parking_lot::Mutex<Option<Instant>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("trunk {trunk} is at its max_channels limit ({max} calls in progress)")]
pub struct TrunkFull {
    pub trunk: String,
    pub max: u32,
}

impl TrunkLimit {
    pub fn new(name: &str, max_channels: Option<u32>, max_cps: Option<f64>) -> TrunkLimit {
        TrunkLimit {
            name: name.to_string(),
            max_channels,
            channels: max_channels.map(|n| Arc::new(Semaphore::new(n as usize))),
            interval: max_cps
                .filter(|c| c.is_finite() && *c > 0.0)
                .map(|c| Duration::from_secs_f64(1.0 / c)),
            next_slot: parking_lot::Mutex::new(None),
        }
    }

    /// Channels free right now; `None` when the trunk has no channel limit.
    pub fn free_channels(&self) -> Option<u32> {
        self.channels
            .as_ref()
            .map(|sem| u32::try_from(sem.available_permits()).unwrap_or(u32::MAX))
    }

    /// Takes a channel (error when none is free), then waits for the next
    /// attempt slot. The permit frees the channel when dropped.
    pub async fn admit(&self) -> Result<Option<OwnedSemaphorePermit>, TrunkFull> {
        let permit = match &self.channels {
            Some(sem) => Some(sem.clone().try_acquire_owned().map_err(|_| TrunkFull {
                trunk: self.name.clone(),
                max: self.max_channels.unwrap_or(0),
            })?),
            None => None,
        };
        if let Some(slot) = self.reserve_slot(Instant::now()) {
            tokio::time::sleep_until(slot).await;
        }
        Ok(permit)
    }

    /// The instant this attempt may go out, reserving it; `None` = now.
    fn reserve_slot(&self, now: Instant) -> Option<Instant> {
        let interval = self.interval?;
        let mut next = self.next_slot.lock();
        let slot = next.map_or(now, |n| n.max(now));
        *next = Some(slot + interval);
        (slot > now).then_some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn attempts_are_spaced_by_max_cps() {
        let limit = TrunkLimit::new("acme", None, Some(4.0));
        let start = Instant::now();
        for _ in 0..5 {
            limit.admit().await.unwrap();
        }
        // Five attempts at 4/s: the fifth goes out 1 s after the first.
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_trunk_does_not_bank_slots() {
        let limit = TrunkLimit::new("acme", None, Some(1.0));
        limit.admit().await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let start = Instant::now();
        limit.admit().await.unwrap();
        limit.admit().await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn channels_are_limited_and_freed() {
        let limit = TrunkLimit::new("acme", Some(2), None);
        assert_eq!(limit.free_channels(), Some(2));
        let a = limit.admit().await.unwrap();
        let _b = limit.admit().await.unwrap();
        assert_eq!(limit.free_channels(), Some(0));
        let err = limit.admit().await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "trunk acme is at its max_channels limit (2 calls in progress)"
        );
        drop(a);
        assert_eq!(limit.free_channels(), Some(1));
        assert!(limit.admit().await.is_ok());
        assert_eq!(TrunkLimit::new("open", None, None).free_channels(), None);
    }
}
