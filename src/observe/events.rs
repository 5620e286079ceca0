//! Call events: what happens to each call as it happens (`initiated`, `ringing`, `answered`,
//! the AMD verdict, digits, bridges, `completed`…), written to the store's event log with the
//! call's account, campaign, contact and attempt, and told to whoever listens live.
//!
//! A call emits through its [`EventSink`] (the ids it was given, plus its Call-ID once dialed);
//! the one [`EventBus`] of a `serve` queues them (bounded), and its writer task stores them in
//! batches (one transaction per batch, in the order emitted, so a call's events keep their
//! order), keeps the [`LiveBoard`] of calls in progress from them, then tells each live
//! subscriber the stored events. A store that fails is retried
//! with the batch kept; while it is down, what does not fit the queue is dropped and counted.
//!
//! Must not: block a call (emitting never waits), or hold a call's events back from the store
//! longer than one batch (a crash loses at most the events of the last [`BATCH_WAIT`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{broadcast, mpsc};

use super::live::{LiveBoard, LiveCall};
use crate::campaign::model::Millis;
use crate::store::events::{Event, NewEvent};
use crate::store::Store;

/// Events the queue holds before new ones are dropped (the store down for a long time).
pub const QUEUE: usize = 65_536;
/// Events stored in one transaction at most.
pub const BATCH: usize = 512;
/// How long the writer waits for more events before storing what it has.
pub const BATCH_WAIT: Duration = Duration::from_millis(20);
/// Live subscribers' backlog: one that falls further behind misses events (and is told so).
const LIVE_BACKLOG: usize = 4096;

/// The kinds of call event, as stored and sent (`kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEventKind {
    /// The INVITE went out (or an inbound call was taken).
    Initiated,
    /// 180/181/182/183 from the far end.
    Ringing,
    /// The far end's early media started (a provisional response with SDP).
    EarlyMedia,
    Answered,
    /// The answering-machine verdict (person, machine, fax, none).
    Amd,
    /// A machine's greeting ended (beep, silence or otherwise).
    MachineEnd,
    /// The far end pressed a key.
    Dtmf,
    /// The person was connected to the target (agent, queue, AI agent).
    Bridged,
    /// The connection to the target ended while the call went on or ended.
    Unbridged,
    /// Something an AI agent's stream did (a mark, a clear).
    AgentEvent,
    /// A person no target took in time: the abandon message.
    Abandoned,
    /// The call is over: outcome, SIP code, durations, RTP figures.
    Completed,
}

impl CallEventKind {
    pub const ALL: [CallEventKind; 12] = [
        CallEventKind::Initiated,
        CallEventKind::Ringing,
        CallEventKind::EarlyMedia,
        CallEventKind::Answered,
        CallEventKind::Amd,
        CallEventKind::MachineEnd,
        CallEventKind::Dtmf,
        CallEventKind::Bridged,
        CallEventKind::Unbridged,
        CallEventKind::AgentEvent,
        CallEventKind::Abandoned,
        CallEventKind::Completed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallEventKind::Initiated => "initiated",
            CallEventKind::Ringing => "ringing",
            CallEventKind::EarlyMedia => "early_media",
            CallEventKind::Answered => "answered",
            CallEventKind::Amd => "amd",
            CallEventKind::MachineEnd => "machine_end",
            CallEventKind::Dtmf => "dtmf",
            CallEventKind::Bridged => "bridged",
            CallEventKind::Unbridged => "unbridged",
            CallEventKind::AgentEvent => "agent_event",
            CallEventKind::Abandoned => "abandoned",
            CallEventKind::Completed => "completed",
        }
    }

    pub fn parse(s: &str) -> Option<CallEventKind> {
        CallEventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Who a call's events belong to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallIds {
    pub account_id: Option<i64>,
    pub campaign_id: Option<i64>,
    pub contact_id: Option<i64>,
    /// The contact's attempt number.
    pub attempt: Option<i64>,
}

/// One call's way onto the bus.
#[derive(Debug, Clone)]
pub struct EventSink {
    bus: EventBus,
    ids: CallIds,
    call_id: Option<String>,
}

impl EventSink {
    /// The call's SIP Call-ID, once it is known (every event after carries it).
    pub fn set_call_id(&mut self, call_id: &str) {
        self.call_id = Some(call_id.to_string());
    }

    /// Emits one event now (never waits).
    pub fn emit(&self, kind: CallEventKind, detail: Value) {
        self.bus.emit(NewEvent {
            account_id: self.ids.account_id,
            campaign_id: self.ids.campaign_id,
            contact_id: self.ids.contact_id,
            attempt: self.ids.attempt,
            call_id: self.call_id.clone(),
            kind: kind.as_str().to_string(),
            detail,
            at: now_ms(),
        });
    }
}

/// The process's event queue and its live listeners; cheap to clone.
#[derive(Debug, Clone)]
pub struct EventBus {
    queue: mpsc::Sender<NewEvent>,
    live: broadcast::Sender<Arc<Event>>,
    dropped: Arc<AtomicU64>,
    /// The calls in progress, kept by the writer from what it stores.
    board: Arc<parking_lot::Mutex<LiveBoard>>,
}

impl EventBus {
    /// A bus whose writer stores into `store`; the writer ends once every clone of the bus is
    /// dropped and the queue is drained (await the handle to know everything was written).
    pub fn start(store: Store) -> (EventBus, tokio::task::JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let (live, _) = broadcast::channel(LIVE_BACKLOG);
        let board = Arc::new(parking_lot::Mutex::new(LiveBoard::default()));
        let writer = tokio::spawn(write(store, rx, live.clone(), board.clone()));
        (
            EventBus {
                queue,
                live,
                dropped: Arc::new(AtomicU64::new(0)),
                board,
            },
            writer,
        )
    }

    /// A sink for one call's events.
    pub fn sink(&self, ids: CallIds) -> EventSink {
        EventSink {
            bus: self.clone(),
            ids,
            call_id: None,
        }
    }

    /// Queues an event; a full queue (the store down for long) drops it and counts it.
    pub fn emit(&self, event: NewEvent) {
        if self.queue.try_send(event).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() {
                tracing::warn!(dropped = n + 1, "event queue full: events dropped");
            }
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Every event from now on, as stored.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.live.subscribe()
    }

    /// Calls in progress (every account) by state.
    pub fn calls_by_state(&self) -> Vec<(&'static str, usize)> {
        self.board.lock().counts_by_state()
    }

    /// An account's calls in progress, as their stored events tell.
    pub fn calls(&self, account_id: i64) -> Vec<LiveCall> {
        self.board.lock().calls(account_id)
    }
}

async fn write(
    store: Store,
    mut rx: mpsc::Receiver<NewEvent>,
    live: broadcast::Sender<Arc<Event>>,
    board: Arc<parking_lot::Mutex<LiveBoard>>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let until = tokio::time::Instant::now() + BATCH_WAIT;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(e)) => batch.push(e),
                Ok(None) | Err(_) => break,
            }
        }
        let mut wait = Duration::from_millis(100);
        let stored = loop {
            let started = std::time::Instant::now();
            let appended = store.append_events(&batch).await;
            metrics::histogram!("outdial_store_seconds", "op" => "append_events")
                .record(started.elapsed().as_secs_f64());
            match appended {
                Ok(stored) => break stored,
                Err(e) => {
                    tracing::warn!(events = batch.len(), error = %e, "events not stored yet: retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        };
        batch.clear();
        {
            let mut board = board.lock();
            for e in &stored {
                board.apply(e);
            }
            board.sweep(now_ms());
        }
        for e in &stored {
            super::metrics::record_event(e);
        }
        for e in stored {
            // Nobody listening is fine.
            let _ = live.send(Arc::new(e));
        }
    }
}

fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::events::EventFilter;

    #[test]
    fn kinds_round_trip_by_name() {
        for k in CallEventKind::ALL {
            assert_eq!(CallEventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(CallEventKind::parse("hung_up"), None);
    }

    #[tokio::test]
    async fn events_are_stored_in_order_with_their_ids_and_told_live() {
        let store = Store::open("sqlite::memory:").await.expect("store");
        let (bus, writer) = EventBus::start(store.clone());
        let mut live = bus.subscribe();
        let mut sink = bus.sink(CallIds {
            account_id: Some(7),
            campaign_id: Some(3),
            contact_id: Some(11),
            attempt: Some(2),
        });
        sink.emit(
            CallEventKind::Initiated,
            serde_json::json!({"to": "+15551234567"}),
        );
        sink.set_call_id("abc@outdial");
        for i in 0..1200 {
            sink.emit(CallEventKind::Dtmf, serde_json::json!({"digit": i % 10}));
        }
        sink.emit(
            CallEventKind::Completed,
            serde_json::json!({"outcome": "answered"}),
        );
        drop(sink);
        drop(bus);
        writer.await.expect("writer ends once the bus is gone");
        let events = store
            .list_events(&EventFilter {
                account_id: Some(7),
                limit: 2000,
                ..EventFilter::default()
            })
            .await
            .expect("list");
        assert_eq!(events.len(), 1202);
        assert_eq!(events[0].kind, "initiated");
        assert_eq!(events[0].call_id, None, "the Call-ID came after it");
        assert_eq!(events[1].call_id.as_deref(), Some("abc@outdial"));
        assert_eq!(events[1201].kind, "completed");
        assert!(events.windows(2).all(|w| w[0].id < w[1].id));
        assert!(events
            .iter()
            .all(|e| (e.campaign_id, e.contact_id, e.attempt) == (Some(3), Some(11), Some(2))));
        let first = live.recv().await.expect("told live");
        assert_eq!(first.id, events[0].id);
        let other = store
            .list_events(&EventFilter {
                account_id: Some(8),
                ..EventFilter::default()
            })
            .await
            .expect("list");
        assert!(other.is_empty(), "another account sees none");
    }
}
