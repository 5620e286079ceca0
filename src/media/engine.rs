//! The media engine: the one fast path every call's RTP goes through, on a small fixed set of
//! worker threads (1 or 2), for live calls, linked (bridged) calls and `outdial bench media`
//! alike.
//!
//! Each worker owns an epoll set holding its calls' RTP and RTCP sockets and a play-out clock
//! that ticks every [`EngineConfig::tick`] (10 ms by default). Between ticks it waits in
//! `epoll_wait` (the last millisecond before a tick is slept precisely): a socket that receives
//! is drained with `recvmmsg` at once (each datagram with the arrival time the kernel stamped
//! on it, so jitter estimates do not depend on when the worker woke), and what a linked leg
//! must forward leaves at once with one `sendmmsg` from the other leg — a relayed packet waits
//! for no tick. At each tick every call whose next job is due — a frame to play out, a packet
//! to send (20 ms pacing), an RTCP report — gets its turn
//! ([`Core::tick`](super::session::Core)); the worker keeps each call's next due time, so a
//! tick looks only at calls with something to do. No tasks, channels or allocation per packet;
//! the handle ([`MediaSession`](super::MediaSession)) talks to its call through one small
//! mutex and a flag, and adds/removes calls through a command queue read at each tick. At a
//! tick a worker never waits for a call's mutex: a call whose handle holds it (on a thread of
//! lower priority, perhaps preempted) gets its turn at the next tick, and the worker's other
//! calls theirs on time.
//!
//! An idle worker (no calls) sleeps on its command queue and costs nothing.
//! It must NOT block on anything but its sockets until the tick and, when idle, its queue;
//! nothing received from the network may make it panic.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self as std_mpsc, TryRecvError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::dtmf::DtmfDigit;
use super::link::InKind;
use super::session::{is_transient, Clock, Core};
use super::sys::{self, Epoll, RecvBatch, SendBatch};
use super::MediaError;

/// Datagrams one `recvmmsg` / `sendmmsg` moves at most.
pub const BATCH: usize = 32;
/// Largest datagram read whole (longer ones are cut, then counted invalid).
const SLOT_LEN: usize = 2048;
/// The default play-out tick.
pub const DEFAULT_TICK: Duration = Duration::from_millis(10);
/// Shortest and longest tick accepted; the longest is the jitter buffer's minimum delay.
pub const MIN_TICK: Duration = Duration::from_millis(1);
pub const MAX_TICK: Duration = Duration::from_millis(20);
/// Batches drained from one socket per tick at most (a flood cannot starve the others).
const MAX_BATCHES_PER_SOCKET: usize = 4;

/// How an engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Worker threads (1 or 2; more are allowed, 0 reads as 1).
    pub workers: usize,
    /// How often each worker wakes ([`MIN_TICK`]–[`MAX_TICK`]).
    pub tick: Duration,
    /// Ask for real-time scheduling for the workers ([`sys::realtime_for_media`]): granted
    /// when the process may (root, `CAP_SYS_NICE`, or an `RLIMIT_RTPRIO` that allows it),
    /// otherwise they keep the process's priority. Then no other process's busy thread (a
    /// load generator, a backup, the database) can hold a worker back from its tick.
    pub realtime: bool,
}

impl Default for EngineConfig {
    /// Two workers (one on a one-core machine); a 10 ms tick.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        EngineConfig {
            workers: if cores >= 2 { 2 } else { 1 },
            tick: DEFAULT_TICK,
            realtime: true,
        }
    }
}

/// Counters of one worker, published once per tick.
#[derive(Debug, Default)]
struct WorkerCounters {
    wakeups: AtomicU64,
    received: AtomicU64,
    sent: AtomicU64,
    relayed: AtomicU64,
    io_errors: AtomicU64,
    late_sends: AtomicU64,
}

/// The engine's counters summed over its workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineCounters {
    /// Worker wake-ups (ticks).
    pub wakeups: u64,
    /// Datagrams read.
    pub received: u64,
    /// Datagrams sent (paced packets, RTCP not included, and relayed packets).
    pub sent: u64,
    /// Of `sent`: packets relayed between linked legs.
    pub relayed: u64,
    pub io_errors: u64,
    /// Paced packets that missed their 20 ms slot: sent a whole frame (20 ms) or more after
    /// they were due, or skipped after a stall.
    pub late_sends: u64,
}

pub(crate) enum Command {
    Add(Arc<Core>),
    Remove(u64, Option<oneshot::Sender<()>>),
}

struct WorkerHandle {
    commands: Mutex<std_mpsc::Sender<Command>>,
    counters: Arc<WorkerCounters>,
}

struct Inner {
    workers: Vec<WorkerHandle>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    next: AtomicUsize,
    config: EngineConfig,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queues ends the workers (after they let go of their calls).
        for w in &mut self.workers {
            let (dead, _) = std_mpsc::channel();
            *w.commands.get_mut().unwrap_or_else(|p| p.into_inner()) = dead;
        }
        let threads = std::mem::take(self.threads.get_mut().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// A running media engine; cheap to clone (all clones are the same engine). It stops when the
/// last clone and the last session on it are gone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

static GLOBAL: OnceLock<Result<Engine, String>> = OnceLock::new();

impl Engine {
    /// Starts the worker threads.
    pub fn start(config: EngineConfig) -> io::Result<Engine> {
        let config = EngineConfig {
            workers: config.workers.max(1),
            tick: config.tick.clamp(MIN_TICK, MAX_TICK),
            realtime: config.realtime,
        };
        let mut workers = Vec::with_capacity(config.workers);
        let mut threads = Vec::with_capacity(config.workers);
        for i in 0..config.workers {
            let (tx, rx) = std_mpsc::channel();
            let counters = Arc::new(WorkerCounters::default());
            let worker_counters = Arc::clone(&counters);
            let tick = config.tick;
            let realtime = config.realtime;
            let thread = std::thread::Builder::new()
                .name(format!("media-{i}"))
                .spawn(move || {
                    if realtime {
                        match sys::realtime_for_media() {
                            Ok(()) => tracing::debug!("media worker runs with real-time priority"),
                            Err(e) => tracing::debug!(
                                error = %e,
                                "media worker keeps the process's priority (real-time not permitted)"
                            ),
                        }
                    }
                    match Worker::new(rx, tick, worker_counters) {
                        Ok(mut w) => w.run(),
                        Err(e) => tracing::error!(error = %e, "media worker cannot start"),
                    }
                })?;
            workers.push(WorkerHandle {
                commands: Mutex::new(tx),
                counters,
            });
            threads.push(thread);
        }
        Ok(Engine {
            inner: Arc::new(Inner {
                workers,
                threads: Mutex::new(threads),
                next: AtomicUsize::new(0),
                config,
            }),
        })
    }

    /// The process-wide engine every call uses, started on first use with
    /// [`EngineConfig::default`].
    pub fn global() -> Result<Engine, MediaError> {
        GLOBAL
            .get_or_init(|| {
                Engine::start(EngineConfig::default())
                    .map_err(|e| format!("cannot start the media engine: {e}"))
            })
            .clone()
            .map_err(|e| MediaError::Io(io::Error::other(e)))
    }

    /// The process-wide engine if something started it (never starts it).
    pub fn running() -> Option<Engine> {
        GLOBAL.get().and_then(|e| e.as_ref().ok()).cloned()
    }

    pub fn config(&self) -> EngineConfig {
        self.inner.config
    }

    /// Counters summed over the workers.
    pub fn counters(&self) -> EngineCounters {
        let mut c = EngineCounters::default();
        for w in &self.inner.workers {
            let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
            c.wakeups += get(&w.counters.wakeups);
            c.received += get(&w.counters.received);
            c.sent += get(&w.counters.sent);
            c.relayed += get(&w.counters.relayed);
            c.io_errors += get(&w.counters.io_errors);
            c.late_sends += get(&w.counters.late_sends);
        }
        c
    }

    fn send(&self, worker: usize, command: Command) -> Result<(), MediaError> {
        let w = self
            .inner
            .workers
            .get(worker)
            .ok_or_else(|| MediaError::Io(io::Error::other("no such media worker")))?;
        let tx = w.commands.lock().unwrap_or_else(|p| p.into_inner());
        tx.send(command)
            .map_err(|_| MediaError::Io(io::Error::other("the media engine has stopped")))
    }

    /// Hands a call to a worker (round robin); returns which.
    pub(crate) fn add(&self, core: Arc<Core>) -> Result<usize, MediaError> {
        let worker = self.inner.next.fetch_add(1, Ordering::Relaxed) % self.inner.workers.len();
        self.send(worker, Command::Add(core))?;
        Ok(worker)
    }

    /// Takes a call off its worker; `done` fires once the worker has let go of it.
    pub(crate) fn remove(&self, worker: usize, id: u64, done: Option<oneshot::Sender<()>>) {
        if self.send(worker, Command::Remove(id, done)).is_err() {
            tracing::debug!("media engine gone before a session was removed");
        }
    }
}

/// A worker's reusable buffers, lent to the calls it drives.
pub(crate) struct Scratch {
    /// Packets of the batch being read that a linked leg forwards: (index, kind).
    pub forward: Vec<(usize, InKind)>,
    /// The batch's packets as SRTP opened them (by index), when the leg reading it uses SRTP;
    /// `opened` says whether `forward` refers to these or to the batch.
    pub plain: Vec<Vec<u8>>,
    pub opened: bool,
    /// Digits heard in-band during a play-out (for a linked leg).
    pub digits: Vec<DtmfDigit>,
    pub out: SendBatch,
}

/// One call on a worker.
struct Slot {
    core: Arc<Core>,
    /// When it next has something to do (`None`: only on a packet or a poke).
    due: Option<Instant>,
}

struct Worker {
    commands: std_mpsc::Receiver<Command>,
    tick: Duration,
    epoll: Epoll,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    by_id: HashMap<u64, usize>,
    live: usize,
    rx: RecvBatch,
    scratch: Scratch,
    counters: Arc<WorkerCounters>,
}

/// Per-tick tallies, published once at its end.
#[derive(Default)]
struct Tally {
    received: u64,
    sent: u64,
    relayed: u64,
    io_errors: u64,
    late_sends: u64,
}

impl Worker {
    fn new(
        commands: std_mpsc::Receiver<Command>,
        tick: Duration,
        counters: Arc<WorkerCounters>,
    ) -> io::Result<Worker> {
        Ok(Worker {
            commands,
            tick,
            epoll: Epoll::new(1024)?,
            slots: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            live: 0,
            rx: RecvBatch::new(BATCH, SLOT_LEN, true),
            scratch: Scratch {
                forward: Vec::with_capacity(BATCH),
                plain: Vec::new(),
                opened: false,
                digits: Vec::new(),
                out: SendBatch::new(BATCH, SLOT_LEN),
            },
            counters,
        })
    }

    /// Returns false when the engine is gone.
    fn command(&mut self, command: Command) {
        match command {
            Command::Add(core) => {
                let slot = match self.free.pop() {
                    Some(s) => s,
                    None => {
                        self.slots.push(None);
                        self.slots.len() - 1
                    }
                };
                let (rtp, rtcp) = core.fds();
                let token = (slot as u64) << 1;
                let added = self
                    .epoll
                    .add_readable(rtp, token)
                    .and_then(|()| match rtcp {
                        Some(fd) => self.epoll.add_readable(fd, token | 1),
                        None => Ok(()),
                    });
                if let Err(e) = added {
                    tracing::error!(error = %e, "media worker cannot watch a call's sockets");
                }
                self.by_id.insert(core.id(), slot);
                self.slots[slot] = Some(Slot { core, due: None });
                self.live += 1;
            }
            Command::Remove(id, done) => {
                if let Some(slot) = self.by_id.remove(&id) {
                    if let Some(s) = self.slots.get_mut(slot).and_then(Option::take) {
                        let (rtp, rtcp) = s.core.fds();
                        for fd in std::iter::once(rtp).chain(rtcp) {
                            if let Err(e) = self.epoll.remove(fd) {
                                tracing::debug!(error = %e, "epoll remove failed");
                            }
                        }
                        s.core.finish();
                        self.free.push(slot);
                        self.live -= 1;
                    }
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
        }
    }

    fn run(&mut self) {
        let mut next_tick = sys::monotonic_ns();
        let tick_ns = self.tick.as_nanos() as u64;
        loop {
            if self.live == 0 {
                match self.commands.recv() {
                    Ok(c) => self.command(c),
                    Err(_) => return,
                }
                next_tick = sys::monotonic_ns();
            }
            loop {
                match self.commands.try_recv() {
                    Ok(c) => self.command(c),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.finish_all();
                        return;
                    }
                }
            }
            self.tick_once();
            next_tick += tick_ns;
            let now = sys::monotonic_ns();
            if next_tick <= now {
                // Fell behind (a long tick, or the machine was busy): no bursts of ticks.
                next_tick = now + tick_ns;
            }
            self.relay_until(next_tick);
        }
    }

    /// Until the next tick: sockets that receive are drained as soon as they do, so a linked
    /// leg's packet leaves at once instead of at the tick (the calls' turns still wait for it).
    /// The last millisecond is slept precisely (epoll counts whole milliseconds).
    fn relay_until(&mut self, next_tick: u64) {
        let mut t = Tally::default();
        loop {
            let now = sys::monotonic_ns();
            let left = next_tick.saturating_sub(now);
            if left < 1_000_000 {
                if left > 0 {
                    sys::sleep_until_monotonic(next_tick);
                }
                break;
            }
            let ready = match self.epoll.wait(Some(Duration::from_nanos(left))) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "epoll_wait failed");
                    t.io_errors += 1;
                    sys::sleep_until_monotonic(next_tick);
                    break;
                }
            };
            if ready == 0 {
                continue;
            }
            let clock = Clock {
                now: Instant::now(),
                real_ns: sys::realtime_ns(),
            };
            self.drain_ready(ready, clock, &mut t);
        }
        self.publish(&t, false);
    }

    /// Drains the `ready` sockets the last `epoll_wait` reported.
    fn drain_ready(&mut self, ready: usize, clock: Clock, t: &mut Tally) {
        for e in 0..ready {
            let Some(token) = self.epoll.token(e) else {
                continue;
            };
            let (slot, rtcp) = ((token >> 1) as usize, token & 1 == 1);
            let Some(Some(s)) = self.slots.get(slot) else {
                continue;
            };
            let core = Arc::clone(&s.core);
            let due = self.drain(&core, rtcp, clock, t);
            // The packets may have made a frame due sooner.
            if let (Some(Some(s)), Some(due)) = (self.slots.get_mut(slot), due) {
                s.due = Some(s.due.map_or(due, |d| d.min(due)));
            }
        }
    }

    /// Adds a tally to the published counters (`tick`: it ended a tick).
    fn publish(&self, t: &Tally, tick: bool) {
        let c = &self.counters;
        if tick {
            c.wakeups.fetch_add(1, Ordering::Relaxed);
        }
        for (a, v) in [
            (&c.received, t.received),
            (&c.sent, t.sent),
            (&c.relayed, t.relayed),
            (&c.io_errors, t.io_errors),
            (&c.late_sends, t.late_sends),
        ] {
            if v > 0 {
                a.fetch_add(v, Ordering::Relaxed);
            }
        }
    }

    fn finish_all(&mut self) {
        for s in self.slots.iter_mut().filter_map(Option::take) {
            s.core.finish();
        }
        self.live = 0;
    }

    /// One tick: every ready socket drained, then every call whose turn has come.
    fn tick_once(&mut self) {
        let mut t = Tally::default();
        let clock = Clock {
            now: Instant::now(),
            real_ns: sys::realtime_ns(),
        };
        let rounds = self.slots.len() / self.epoll.capacity() + 2;
        for _ in 0..rounds {
            let ready = match self.epoll.wait(Some(Duration::ZERO)) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "epoll_wait failed");
                    t.io_errors += 1;
                    0
                }
            };
            self.drain_ready(ready, clock, &mut t);
            if ready < self.epoll.capacity() {
                break;
            }
        }
        let now = Instant::now();
        for s in self.slots.iter_mut().flatten() {
            let poked = s.core.poked();
            if poked || s.due.is_some_and(|d| d <= now + Duration::from_millis(2)) {
                let (due, sent, late) = s.core.tick(now, &mut self.scratch);
                s.due = due;
                t.sent += sent as u64;
                t.late_sends += late;
            }
        }
        self.publish(&t, true);
    }

    /// Reads what `core`'s socket holds; returns when the call next has something due.
    fn drain(
        &mut self,
        core: &Arc<Core>,
        rtcp: bool,
        clock: Clock,
        t: &mut Tally,
    ) -> Option<Instant> {
        let socket = core.socket(rtcp)?;
        let mut due = None;
        for _ in 0..MAX_BATCHES_PER_SOCKET {
            let got = match self.rx.recv(socket) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if is_transient(&e) => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "RTP receive failed");
                    t.io_errors += 1;
                    break;
                }
            };
            t.received += got as u64;
            let (relayed, next) = core.receive(&self.rx, got, rtcp, clock, &mut self.scratch);
            t.sent += relayed as u64;
            t.relayed += relayed as u64;
            due = next;
            if got < self.rx.capacity() {
                break;
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_run_real_time_when_the_process_may_and_at_its_priority_otherwise() {
        let permitted = std::thread::spawn(sys::realtime_for_media)
            .join()
            .expect("probe thread")
            .is_ok();
        for realtime in [true, false] {
            let engine = Engine::start(EngineConfig {
                workers: 2,
                tick: DEFAULT_TICK,
                realtime,
            })
            .expect("engine starts");
            // The worker sets its policy first thing: give it the moment it needs.
            std::thread::sleep(Duration::from_millis(100));
            let threads = engine.inner.threads.lock().expect("threads");
            assert_eq!(threads.len(), 2);
            for t in threads.iter() {
                assert_eq!(
                    sys::is_realtime(t).expect("policy readable"),
                    realtime && permitted,
                    "realtime asked: {realtime}, permitted: {permitted}"
                );
            }
        }
    }
}
