//! The agent queue as a bridge: the person waits while agents of the pool are rung one at a
//! time — the longest-idle free one first — each through an ordinary SIP bridge; an agent
//! that is busy, rejects or does not answer within its ring timeout is released and skipped,
//! and the next free one is rung. When none is free, the person waits for one to become free.
//!
//! Leasing agents is the [`AgentSource`]'s business (the store's compare-and-set, so two
//! nodes never give one agent two callers). This must not decide how long the person may
//! wait (the flow's queue timeout stops it) nor touch the store itself.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::sip::SipBridge;
use super::{Bridge, BridgeContext, BridgeEvent, BridgeReport, EndedBy};
use crate::call::{Call, CallEvent};
use crate::config::Profile;
use crate::media::session::MediaSession;

/// An agent leased for one caller.
#[derive(Debug, Clone, Serialize)]
pub struct LeasedAgent {
    pub id: i64,
    pub name: String,
    /// A SIP URI or a number.
    pub target: String,
    /// The trunk profile a number goes through.
    #[serde(skip)]
    pub profile: Option<Profile>,
    /// How long it had been free before this lease, ms.
    pub idle_ms: i64,
}

/// Where agents come from, and where they go back.
#[async_trait]
pub trait AgentSource: Send + Sync {
    /// The longest-idle free agent not in `skip`, now marked busy; `None` when none is free.
    async fn lease(&self, skip: &[i64]) -> Option<LeasedAgent>;
    /// The agent is free again: after `talk_ms` of conversation (wrap-up starts), or without
    /// having talked (`None`).
    async fn release(&self, agent: i64, talk_ms: Option<u64>);
}

/// How often a waiting caller looks for a free agent again.
const RETRY: Duration = Duration::from_millis(200);

enum Command {
    Callee(Box<CallEvent>),
    Stop(EndedBy),
}

/// A caller in the queue. The queue runs on its own task, so that a lease taken from the
/// store is never lost to a cancelled future: the runner talks to it through channels.
pub struct PoolBridge {
    events: mpsc::UnboundedReceiver<BridgeEvent>,
    commands: mpsc::UnboundedSender<Command>,
    task: tokio::task::JoinHandle<BridgeReport>,
}

impl PoolBridge {
    pub fn start(
        name: &str,
        agents: Arc<dyn AgentSource>,
        ring_timeout: Duration,
        callee: &Call,
        ctx: BridgeContext,
    ) -> PoolBridge {
        let (events_tx, events) = mpsc::unbounded_channel();
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let queue = Queue {
            name: name.to_string(),
            agents,
            ring_timeout,
            callee_media: callee
                .media()
                .as_ref()
                .map_or_else(std::sync::Weak::new, Arc::downgrade),
            ctx,
            started_at_ms: chrono::Utc::now().timestamp_millis(),
            skipped: Vec::new(),
            pending_callee: Vec::new(),
            stopped: None,
        };
        let task = tokio::spawn(queue.run(events_tx, commands_rx));
        PoolBridge {
            events,
            commands,
            task,
        }
    }
}

#[async_trait]
impl Bridge for PoolBridge {
    async fn next_event(&mut self) -> Option<BridgeEvent> {
        self.events.recv().await
    }

    fn callee_event(&mut self, event: &CallEvent) {
        let _ = self.commands.send(Command::Callee(Box::new(event.clone())));
    }

    fn stop(&mut self, by: EndedBy) {
        let _ = self.commands.send(Command::Stop(by));
    }

    async fn finish(self: Box<Self>) -> BridgeReport {
        let _ = self.commands.send(Command::Stop(EndedBy::System));
        let started_at_ms = chrono::Utc::now().timestamp_millis();
        match self.task.await {
            Ok(report) => report,
            Err(e) => {
                warn!(error = %e, "agent queue task failed");
                not_connected(String::new(), started_at_ms, Vec::new())
            }
        }
    }
}

/// The queue's own task state.
struct Queue {
    name: String,
    agents: Arc<dyn AgentSource>,
    ring_timeout: Duration,
    callee_media: std::sync::Weak<MediaSession>,
    ctx: BridgeContext,
    started_at_ms: i64,
    skipped: Vec<i64>,
    /// The callee's events to pass on once an agent is rung (hold, INFO digits).
    pending_callee: Vec<CallEvent>,
    stopped: Option<EndedBy>,
}

impl Queue {
    async fn run(
        mut self,
        events: mpsc::UnboundedSender<BridgeEvent>,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) -> BridgeReport {
        let mut commands_open = true;
        while self.stopped.is_none() {
            let Some(agent) = self.agents.lease(&self.skipped).await else {
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => {}
                    cmd = commands.recv(), if commands_open => match cmd {
                        Some(cmd) => self.command(cmd, None),
                        None => commands_open = false,
                    },
                }
                continue;
            };
            let mut ctx = self.ctx.clone();
            ctx.ring_timeout = self.ring_timeout;
            info!(pool = %self.name, agent = %agent.name, "ringing agent");
            let mut bridge = match SipBridge::start_with_media(
                &agent.target,
                agent.profile.clone(),
                self.callee_media.clone(),
                ctx,
            )
            .await
            {
                Ok(bridge) => bridge,
                Err(e) => {
                    warn!(agent = %agent.name, error = %e, "agent not dialed");
                    self.agents.release(agent.id, None).await;
                    self.skipped.push(agent.id);
                    continue;
                }
            };
            for ev in self.pending_callee.drain(..) {
                bridge.callee_event(&ev);
            }
            if let Some(by) = self.stopped {
                bridge.stop(by);
            }
            let mut answered = false;
            loop {
                tokio::select! {
                    ev = bridge.next_event() => match ev {
                        Some(BridgeEvent::Connected) => {
                            answered = true;
                            let _ = events.send(BridgeEvent::Connected);
                        }
                        Some(BridgeEvent::Failed) | Some(BridgeEvent::Ended) | None => break,
                        Some(other) => {
                            let _ = events.send(other);
                        }
                    },
                    cmd = commands.recv(), if commands_open => match cmd {
                        Some(cmd) => self.command(cmd, Some(&mut bridge)),
                        None => commands_open = false,
                    },
                }
            }
            let report = Box::new(bridge).finish().await;
            if answered {
                self.agents.release(agent.id, Some(report.talk_ms)).await;
                let _ = events.send(BridgeEvent::Ended);
                let after_ms = (report.started_at_ms - self.started_at_ms).max(0) as u64;
                return BridgeReport {
                    target: format!("pool:{}", self.name),
                    ring_ms: report.ring_ms.map(|r| r + after_ms),
                    bridge_ms: report.bridge_ms.map(|b| b + after_ms),
                    started_at_ms: self.started_at_ms,
                    agent: Some(agent),
                    agents_skipped: self.skipped.clone(),
                    ..report
                };
            }
            info!(agent = %agent.name, code = ?report.sip_code, "agent did not take the call");
            self.agents.release(agent.id, None).await;
            self.skipped.push(agent.id);
        }
        not_connected(
            format!("pool:{}", self.name),
            self.started_at_ms,
            self.skipped.clone(),
        )
    }

    fn command(&mut self, cmd: Command, bridge: Option<&mut SipBridge>) {
        match (cmd, bridge) {
            (Command::Callee(ev), Some(b)) => b.callee_event(&ev),
            (Command::Callee(ev), None) => self.pending_callee.push(*ev),
            (Command::Stop(by), b) => {
                self.stopped.get_or_insert(by);
                if let Some(b) = b {
                    b.stop(by);
                }
            }
        }
    }
}

/// The record of a caller no agent took.
fn not_connected(target: String, started_at_ms: i64, agents_skipped: Vec<i64>) -> BridgeReport {
    BridgeReport {
        target,
        kind: "sip",
        answered: false,
        sip_code: None,
        call_id: None,
        ring_ms: None,
        bridge_ms: None,
        talk_ms: 0,
        ended_by: None,
        started_at_ms,
        agent: None,
        agents_skipped,
        stream: None,
    }
}
