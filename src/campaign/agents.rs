//! SIP agents and the call queue, sans-IO: which agent takes a person who answered, and
//! when that person is given up on (abandoned).
//!
//! - [`AgentSpec`]: what an admin sets on an agent (name, target, trunk profile, state,
//!   wrap-up), validated with errors naming the field; [`ConnectTarget`]: what a campaign's
//!   `connect_to` names (a `sip:` URI, a number, or an agent pool).
//! - [`Pool`]: the agents of one pool with their states and last-call-end times.
//!   [`Pool::pick`] gives the longest-idle available agent (an agent in wrap-up — less
//!   than `wrap_up_secs` since its last call — is not available); [`Pool::ringing`],
//!   [`Pool::ended`] and [`Pool::not_connected`] move an agent through a call.
//! - [`CallerQueue`]: one person waiting for an agent. Inputs (`handle_input`) say what
//!   the agent leg did (answered, busy 486, rejected, no answer) or that the person hung
//!   up; `poll_output(now, pool)` says what to do next: ring an agent, cancel a ring that
//!   ran past `agent_ring_timeout`, connect, abandon (the queue wait is bounded by
//!   `queue_timeout`), or wait until a given time. An agent that was busy, rejected or did
//!   not answer is skipped for that caller.
//!
//! What it must not do: read a clock, sleep, touch the store or a socket. The driver (the
//! call flow) rings agents, takes them in the store atomically so two nodes never give one
//! agent two callers, and calls back with what happened:
//!
//! 1. `Pool::new(agents)` from `Store::campaign_pool` (`Agent::pool_agent` each), and
//!    `CallerQueue::new(greeting_at, queue_timeout_ms, agent_ring_timeout_ms)`;
//! 2. drain `poll_output(now, &mut pool)`: on `Ring(id)` take the agent with
//!    `Store::try_lease_agent(id, node, now)` — `None` (another node has it): feed
//!    `AgentBusy(id)` — and send the INVITE; on `CancelRing(id)` CANCEL it and
//!    `Store::release_agent(id, NotConnected)`; on `Connect` bridge; on `Abandon` play the
//!    abandon message; on `WaitUntil(t)` sleep until `t` or the next leg event;
//! 3. feed the agent leg's answer / 486 / 603 / timeout with `handle_input` (release a
//!    failed agent with `NotConnected`), and `CallerHungUp` when the person leaves;
//! 4. after the bridge, `Store::release_agent(id, Talked { ended_at, talk_ms })` (wrap-up
//!    starts) and `Store::update_attempt_bridge` (or `AttemptRecord::bridge`) with the
//!    leg's times, `queue_wait_ms`, `agent_idle_ms` (from the lease) and `abandoned`
//!    ([`counts_as_abandoned`]).
//!
//! `Store::lease_agent(campaign, node, skip, now)` does the pick and the lease in one call,
//! for a driver that does not keep a `Pool`.

use serde::{Deserialize, Serialize};

use super::model::{AgentState, Millis, ModelError};

/// An agent's id (the store's).
pub type AgentId = i64;

fn invalid(field: &'static str, reason: impl Into<String>) -> ModelError {
    ModelError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// The longest wrap-up an agent may have, seconds (one hour).
pub const MAX_WRAP_UP_SECS: i64 = 3600;

/// What a campaign's `connect_to` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectTarget {
    /// Nothing: answered people are not bridged.
    None,
    /// A SIP URI (`sip:` or `sips:`), dialed directly.
    Sip(String),
    /// A phone number, dialed through the campaign's trunk profile.
    Number(String),
    /// An agent pool by name (`sales`, or `pool:sales`).
    Pool(String),
}

impl ConnectTarget {
    /// Reads `connect_to`: a `sip:`/`sips:` URI, a number (digits with an optional `+`
    /// and the usual separators), `pool:NAME`, or else a pool name.
    pub fn parse(text: &str) -> ConnectTarget {
        let t = text.trim();
        let lower = t.to_ascii_lowercase();
        if t.is_empty() {
            ConnectTarget::None
        } else if lower.starts_with("sip:") || lower.starts_with("sips:") {
            ConnectTarget::Sip(t.to_string())
        } else if let Some(name) = lower.strip_prefix("pool:") {
            ConnectTarget::Pool(t[t.len() - name.len()..].trim().to_string())
        } else if is_number(t) {
            ConnectTarget::Number(t.to_string())
        } else {
            ConnectTarget::Pool(t.to_string())
        }
    }

    /// The pool's name when the target is a pool.
    pub fn pool(&self) -> Option<&str> {
        match self {
            ConnectTarget::Pool(name) => Some(name),
            _ => None,
        }
    }
}

/// Digits (at least three) with an optional leading `+` and spaces, dashes, dots or
/// parentheses between them.
pub fn is_number(text: &str) -> bool {
    let t = text.trim();
    let body = t.strip_prefix('+').unwrap_or(t);
    let digits = body.chars().filter(char::is_ascii_digit).count();
    digits >= 3
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')'))
}

/// A pool's or an agent's name: 1–64 characters, a letter first, then letters, digits,
/// `_`, `-`, `.` or spaces (so that `connect_to` can name it without looking like a number
/// or a URI).
pub fn check_name(field: &'static str, name: &str) -> Result<(), ModelError> {
    let n = name.trim();
    if n.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if n.chars().count() > 64 {
        return Err(invalid(field, "longer than 64 characters"));
    }
    let mut chars = n.chars();
    let first_is_letter = chars.next().is_some_and(|c| c.is_alphabetic());
    if !first_is_letter
        || !n
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '))
    {
        return Err(invalid(
            field,
            format!(
                "{name:?} must start with a letter and hold only letters, digits, _ - . or spaces"
            ),
        ));
    }
    if n.to_ascii_lowercase().starts_with("sip:") || n.to_ascii_lowercase().starts_with("pool:") {
        return Err(invalid(
            field,
            format!("{name:?} must not start with sip: or pool:"),
        ));
    }
    Ok(())
}

/// What an admin sets on a SIP agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentSpec {
    pub name: String,
    /// A SIP URI (`sip:alice@pbx.example.com`) or a phone number.
    pub target: String,
    /// Trunk profile for a number (required then); empty for a SIP URI.
    pub profile: String,
    pub state: AgentState,
    /// Seconds after a call during which the agent takes no new call.
    pub wrap_up_secs: i64,
}

impl Default for AgentSpec {
    fn default() -> Self {
        AgentSpec {
            name: String::new(),
            target: String::new(),
            profile: String::new(),
            state: AgentState::Offline,
            wrap_up_secs: 0,
        }
    }
}

impl AgentSpec {
    /// Checks every field; the first problem names it.
    pub fn validate(&self) -> Result<(), ModelError> {
        check_name("name", &self.name)?;
        let target = self.target.trim();
        if target.is_empty() {
            return Err(invalid("target", "must not be empty"));
        }
        match ConnectTarget::parse(target) {
            ConnectTarget::Sip(uri) => {
                let rest = uri.split_once(':').map_or("", |(_, r)| r);
                if rest.is_empty() || rest.contains(char::is_whitespace) {
                    return Err(invalid("target", format!("{uri:?} is not a SIP URI")));
                }
            }
            ConnectTarget::Number(_) => {
                if self.profile.trim().is_empty() {
                    return Err(invalid(
                        "profile",
                        "is required for a phone number target (the trunk profile to call it through)",
                    ));
                }
            }
            _ => {
                return Err(invalid(
                    "target",
                    format!("{target:?} is neither a sip: URI nor a phone number"),
                ))
            }
        }
        if !(0..=MAX_WRAP_UP_SECS).contains(&self.wrap_up_secs) {
            return Err(invalid(
                "wrap_up_secs",
                format!(
                    "{} is not between 0 and {MAX_WRAP_UP_SECS}",
                    self.wrap_up_secs
                ),
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The pool.

/// One agent of a pool as the queue sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolAgent {
    pub id: AgentId,
    pub state: AgentState,
    pub wrap_up_ms: Millis,
    /// When its last call ended (`None`: none yet).
    pub last_call_end: Option<Millis>,
    /// When it last became free to take a call (set available, or its wrap-up ended);
    /// the longest idle is the earliest. `None`: counted as idle since forever.
    pub idle_since: Option<Millis>,
}

impl PoolAgent {
    /// Available, and its wrap-up after the last call is over.
    pub fn is_free(&self, now: Millis) -> bool {
        self.state == AgentState::Available && self.wrap_up_ends(now).is_none()
    }

    /// When its wrap-up ends, if it is still in it at `now`.
    pub fn wrap_up_ends(&self, now: Millis) -> Option<Millis> {
        let end = self.last_call_end?.saturating_add(self.wrap_up_ms);
        (end > now).then_some(end)
    }

    /// When it became free: the later of `idle_since` and the end of its wrap-up.
    fn free_since(&self) -> Millis {
        let wrap_end = self
            .last_call_end
            .map_or(Millis::MIN, |end| end.saturating_add(self.wrap_up_ms));
        self.idle_since.unwrap_or(Millis::MIN).max(wrap_end)
    }
}

/// Agents counted by what they can do now (the scheduler's view of a pool).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCounts {
    /// Available and out of wrap-up: can take a call now.
    pub free: u32,
    /// Available but still in wrap-up.
    pub wrap_up: u32,
    /// On a call (or being rung).
    pub busy: u32,
    /// Paused or offline.
    pub away: u32,
}

impl AgentCounts {
    /// Agents logged in (free, wrapping up or busy).
    pub fn logged_in(&self) -> u32 {
        self.free + self.wrap_up + self.busy
    }
}

/// The agents of one pool, in the pool's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pool {
    pub agents: Vec<PoolAgent>,
}

impl Pool {
    pub fn new(agents: Vec<PoolAgent>) -> Pool {
        Pool { agents }
    }

    /// The longest-idle free agent not in `skip` (ties: the pool's order).
    pub fn pick(&self, now: Millis, skip: &[AgentId]) -> Option<AgentId> {
        self.agents
            .iter()
            .filter(|a| a.is_free(now) && !skip.contains(&a.id))
            .min_by_key(|a| a.free_since())
            .map(|a| a.id)
    }

    pub fn counts(&self, now: Millis) -> AgentCounts {
        let mut counts = AgentCounts::default();
        for agent in &self.agents {
            match agent.state {
                AgentState::Available if agent.wrap_up_ends(now).is_some() => counts.wrap_up += 1,
                AgentState::Available => counts.free += 1,
                AgentState::Busy => counts.busy += 1,
                AgentState::Paused | AgentState::Offline => counts.away += 1,
            }
        }
        counts
    }

    /// The earliest end of a wrap-up after `now` (when an agent may become free).
    pub fn next_free_at(&self, now: Millis) -> Option<Millis> {
        self.agents
            .iter()
            .filter(|a| a.state == AgentState::Available)
            .filter_map(|a| a.wrap_up_ends(now))
            .min()
    }

    fn agent(&mut self, id: AgentId) -> Option<&mut PoolAgent> {
        self.agents.iter_mut().find(|a| a.id == id)
    }

    /// The agent is being rung for a caller: busy.
    pub fn ringing(&mut self, id: AgentId) {
        if let Some(a) = self.agent(id) {
            if a.state == AgentState::Available {
                a.state = AgentState::Busy;
            }
        }
    }

    /// Its call ended at `now`: available again after its wrap-up.
    pub fn ended(&mut self, id: AgentId, now: Millis) {
        if let Some(a) = self.agent(id) {
            if a.state == AgentState::Busy {
                a.state = AgentState::Available;
            }
            a.last_call_end = Some(now);
            a.idle_since = Some(now.saturating_add(a.wrap_up_ms));
        }
    }

    /// It was rung but never talked (busy, rejected, no answer, or the caller left):
    /// available again at once, keeping its place in the idle order.
    pub fn not_connected(&mut self, id: AgentId) {
        if let Some(a) = self.agent(id) {
            if a.state == AgentState::Busy {
                a.state = AgentState::Available;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// One caller in the queue.

/// What the agent leg or the caller did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueInput {
    /// The agent answered: connect.
    AgentAnswered(AgentId),
    /// The agent's line was busy (486, 600).
    AgentBusy(AgentId),
    /// The agent declined (603, other failures).
    AgentRejected(AgentId),
    /// The agent did not answer (our CANCEL after the ring timeout, or 408/480).
    AgentNoAnswer(AgentId),
    /// The person hung up while waiting.
    CallerHungUp,
}

/// What the driver does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueOutput {
    /// Ring this agent (the core marked it busy in the pool).
    Ring(AgentId),
    /// Stop ringing this agent (its ring timeout passed, or the caller is gone); a
    /// `AgentNoAnswer` is not needed afterwards.
    CancelRing(AgentId),
    /// Bridge the caller to this agent; the queue is done.
    Connect { agent: AgentId, waited_ms: Millis },
    /// Nobody took the caller within the queue timeout: play the abandon message and
    /// hang up. The queue is done.
    Abandon { waited_ms: Millis },
    /// The caller hung up while waiting. The queue is done.
    Left { waited_ms: Millis },
    /// Nothing to do before this time (or before an input).
    WaitUntil(Millis),
}

/// The TSR's limit: a person not connected to an agent within 2 s of the greeting is
/// abandoned, whatever the queue timeout.
pub const TSR_CONNECT_MS: Millis = 2000;

/// Whether a person who waited `waited_ms` for an agent (and maybe got one) counts as
/// abandoned.
pub fn counts_as_abandoned(connected: bool, waited_ms: Millis) -> bool {
    !connected || waited_ms > TSR_CONNECT_MS
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// No agent rung yet, or the last one failed: looking for one.
    Looking,
    /// This agent's phone rings since then.
    Ringing {
        agent: AgentId,
        since: Millis,
    },
    Connected(AgentId),
    Abandoned,
    Left,
    /// Done, and the final output was given.
    Over,
}

/// One person who answered and waits for an agent.
///
/// | stage | input / time | next | output |
/// |---|---|---|---|
/// | looking | a free agent | ringing | `Ring` |
/// | looking | none free | looking | `WaitUntil` (next wrap-up end or the queue timeout) |
/// | ringing | answered | connected → over | `Connect` |
/// | ringing | busy / rejected / no answer | looking (agent skipped) | |
/// | ringing | agent ring timeout | looking (agent skipped) | `CancelRing` |
/// | looking, ringing | queue timeout | abandoned → over | (`CancelRing`) `Abandon` |
/// | looking, ringing | caller hung up | left → over | (`CancelRing`) `Left` |
#[derive(Debug, Clone)]
pub struct CallerQueue {
    /// The person's greeting (the answer verdict): the abandon clock starts here.
    entered_at: Millis,
    queue_timeout_ms: Millis,
    ring_timeout_ms: Millis,
    /// Agents that were busy, rejected or did not answer for this caller.
    skipped: Vec<AgentId>,
    stage: Stage,
    /// A ring to cancel before anything else is said.
    cancel: Option<AgentId>,
}

impl CallerQueue {
    /// A caller who answered at `entered_at`.
    pub fn new(entered_at: Millis, queue_timeout_ms: Millis, ring_timeout_ms: Millis) -> Self {
        CallerQueue {
            entered_at,
            queue_timeout_ms: queue_timeout_ms.max(0),
            ring_timeout_ms: ring_timeout_ms.max(1),
            skipped: Vec::new(),
            stage: Stage::Looking,
            cancel: None,
        }
    }

    /// Agents skipped so far for this caller.
    pub fn skipped(&self) -> &[AgentId] {
        &self.skipped
    }

    /// The agent being rung, if any.
    pub fn ringing(&self) -> Option<AgentId> {
        match self.stage {
            Stage::Ringing { agent, .. } => Some(agent),
            _ => None,
        }
    }

    /// The queue is over (connected, abandoned or left, and said so).
    pub fn is_over(&self) -> bool {
        self.stage == Stage::Over && self.cancel.is_none()
    }

    fn deadline(&self) -> Millis {
        self.entered_at.saturating_add(self.queue_timeout_ms)
    }

    /// What happened; `pool` is updated for the agent concerned. Inputs about an agent
    /// that is not the one being rung are stale and ignored.
    pub fn handle_input(&mut self, input: QueueInput, pool: &mut Pool) {
        let ringing = self.ringing();
        match input {
            QueueInput::AgentAnswered(id) if ringing == Some(id) => {
                self.stage = Stage::Connected(id);
            }
            QueueInput::AgentBusy(id)
            | QueueInput::AgentRejected(id)
            | QueueInput::AgentNoAnswer(id)
                if ringing == Some(id) =>
            {
                pool.not_connected(id);
                self.skipped.push(id);
                self.stage = Stage::Looking;
            }
            QueueInput::CallerHungUp => match self.stage {
                Stage::Ringing { agent, .. } => {
                    pool.not_connected(agent);
                    self.cancel = Some(agent);
                    self.stage = Stage::Left;
                }
                Stage::Looking => self.stage = Stage::Left,
                _ => {}
            },
            _ => {}
        }
    }

    /// The next thing to do at `now`; `None` once the queue is over. Call it until it
    /// returns `WaitUntil` or `None`.
    pub fn poll_output(&mut self, now: Millis, pool: &mut Pool) -> Option<QueueOutput> {
        if let Some(agent) = self.cancel.take() {
            return Some(QueueOutput::CancelRing(agent));
        }
        let waited_ms = now.saturating_sub(self.entered_at).max(0);
        match self.stage {
            Stage::Over => return None,
            Stage::Connected(agent) => {
                self.stage = Stage::Over;
                return Some(QueueOutput::Connect { agent, waited_ms });
            }
            Stage::Left => {
                self.stage = Stage::Over;
                return Some(QueueOutput::Left { waited_ms });
            }
            Stage::Abandoned => {
                self.stage = Stage::Over;
                return Some(QueueOutput::Abandon { waited_ms });
            }
            Stage::Looking | Stage::Ringing { .. } => {}
        }
        let deadline = self.deadline();
        if now >= deadline {
            if let Stage::Ringing { agent, .. } = self.stage {
                pool.not_connected(agent);
                self.stage = Stage::Abandoned;
                return Some(QueueOutput::CancelRing(agent));
            }
            self.stage = Stage::Over;
            return Some(QueueOutput::Abandon { waited_ms });
        }
        if let Stage::Ringing { agent, since } = self.stage {
            let ring_end = since.saturating_add(self.ring_timeout_ms);
            if now >= ring_end {
                pool.not_connected(agent);
                self.skipped.push(agent);
                self.stage = Stage::Looking;
                return Some(QueueOutput::CancelRing(agent));
            }
            return Some(QueueOutput::WaitUntil(ring_end.min(deadline)));
        }
        match pool.pick(now, &self.skipped) {
            Some(agent) => {
                pool.ringing(agent);
                self.stage = Stage::Ringing { agent, since: now };
                Some(QueueOutput::Ring(agent))
            }
            None => {
                let wake = pool
                    .next_free_at(now)
                    .map_or(deadline, |at| at.min(deadline));
                Some(QueueOutput::WaitUntil(wake))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Millis = 1000;

    fn agent(id: AgentId, idle_since: Millis) -> PoolAgent {
        PoolAgent {
            id,
            state: AgentState::Available,
            wrap_up_ms: 10 * S,
            last_call_end: None,
            idle_since: Some(idle_since),
        }
    }

    fn drain(q: &mut CallerQueue, now: Millis, pool: &mut Pool) -> Vec<QueueOutput> {
        let mut out = Vec::new();
        while let Some(o) = q.poll_output(now, pool) {
            let stop = matches!(o, QueueOutput::WaitUntil(_));
            out.push(o);
            if stop {
                break;
            }
        }
        out
    }

    #[test]
    fn the_longest_idle_available_agent_takes_the_call() {
        let mut pool = Pool::new(vec![agent(1, 50 * S), agent(2, 10 * S), agent(3, 30 * S)]);
        assert_eq!(pool.pick(100 * S, &[]), Some(2));
        pool.agents[1].state = AgentState::Paused;
        assert_eq!(pool.pick(100 * S, &[]), Some(3));
        assert_eq!(pool.pick(100 * S, &[3]), Some(1));
        pool.agents[0].state = AgentState::Offline;
        pool.agents[2].state = AgentState::Busy;
        assert_eq!(pool.pick(100 * S, &[]), None);
    }

    #[test]
    fn an_agent_in_wrap_up_is_not_available_until_it_ends() {
        let mut pool = Pool::new(vec![agent(1, 0), agent(2, 5 * S)]);
        pool.ringing(1);
        assert_eq!(pool.agents[0].state, AgentState::Busy);
        pool.ended(1, 60 * S);
        // Agent 1 wraps up until 70 s; agent 2 is the only one free.
        assert_eq!(pool.pick(65 * S, &[]), Some(2));
        assert_eq!(
            pool.counts(65 * S),
            AgentCounts {
                free: 1,
                wrap_up: 1,
                busy: 0,
                away: 0
            }
        );
        assert_eq!(pool.pick(65 * S, &[2]), None);
        assert_eq!(pool.next_free_at(65 * S), Some(70 * S));
        // After its wrap-up it is free again, but agent 2 has been idle longer.
        assert_eq!(pool.pick(70 * S, &[]), Some(2));
        assert_eq!(pool.pick(70 * S, &[2]), Some(1));
    }

    #[test]
    fn a_free_agent_answers_and_the_caller_is_connected_without_waiting_long() {
        let mut pool = Pool::new(vec![agent(1, 0)]);
        let mut q = CallerQueue::new(100 * S, 2 * S, 15 * S);
        assert_eq!(
            drain(&mut q, 100 * S, &mut pool),
            vec![QueueOutput::Ring(1), QueueOutput::WaitUntil(102 * S)]
        );
        q.handle_input(QueueInput::AgentAnswered(1), &mut pool);
        assert_eq!(
            drain(&mut q, 100 * S + 800, &mut pool),
            vec![QueueOutput::Connect {
                agent: 1,
                waited_ms: 800
            }]
        );
        assert!(q.is_over());
        assert!(!counts_as_abandoned(true, 800));
        assert_eq!(pool.agents[0].state, AgentState::Busy);
    }

    #[test]
    fn a_busy_agent_is_skipped_to_the_next_for_that_caller() {
        let mut pool = Pool::new(vec![agent(1, 0), agent(2, 5 * S)]);
        let mut q = CallerQueue::new(100 * S, 10 * S, 15 * S);
        assert_eq!(drain(&mut q, 100 * S, &mut pool)[0], QueueOutput::Ring(1));
        q.handle_input(QueueInput::AgentBusy(1), &mut pool);
        assert_eq!(pool.agents[0].state, AgentState::Available);
        assert_eq!(
            drain(&mut q, 100 * S + 300, &mut pool)[0],
            QueueOutput::Ring(2)
        );
        q.handle_input(QueueInput::AgentRejected(2), &mut pool);
        assert_eq!(q.skipped(), &[1, 2]);
        // Both skipped: nobody is rung again for this caller; it waits for the deadline.
        assert_eq!(
            drain(&mut q, 100 * S + 600, &mut pool),
            vec![QueueOutput::WaitUntil(110 * S)]
        );
        // Another caller may still get agent 1.
        assert_eq!(pool.pick(100 * S + 600, &[]), Some(1));
    }

    #[test]
    fn an_agent_that_does_not_answer_in_its_ring_timeout_is_cancelled_and_skipped() {
        let mut pool = Pool::new(vec![agent(1, 0), agent(2, 5 * S)]);
        let mut q = CallerQueue::new(0, 60 * S, 15 * S);
        assert_eq!(
            drain(&mut q, 0, &mut pool),
            vec![QueueOutput::Ring(1), QueueOutput::WaitUntil(15 * S)]
        );
        assert_eq!(
            drain(&mut q, 15 * S, &mut pool),
            vec![
                QueueOutput::CancelRing(1),
                QueueOutput::Ring(2),
                QueueOutput::WaitUntil(30 * S)
            ]
        );
        q.handle_input(QueueInput::AgentAnswered(2), &mut pool);
        assert_eq!(
            drain(&mut q, 20 * S, &mut pool),
            vec![QueueOutput::Connect {
                agent: 2,
                waited_ms: 20 * S
            }]
        );
        // Connected, but after 2 s: it counts as abandoned under the TSR.
        assert!(counts_as_abandoned(true, 20 * S));
    }

    #[test]
    fn no_free_agent_within_the_queue_timeout_abandons_the_caller() {
        let mut pool = Pool::new(vec![agent(1, 0)]);
        pool.agents[0].state = AgentState::Busy;
        let mut q = CallerQueue::new(100 * S, 2 * S, 15 * S);
        assert_eq!(
            drain(&mut q, 100 * S, &mut pool),
            vec![QueueOutput::WaitUntil(102 * S)]
        );
        assert_eq!(
            drain(&mut q, 102 * S, &mut pool),
            vec![QueueOutput::Abandon { waited_ms: 2 * S }]
        );
        assert!(q.is_over());
        assert_eq!(q.poll_output(103 * S, &mut pool), None);
    }

    #[test]
    fn an_agent_leaving_wrap_up_inside_the_queue_timeout_takes_the_waiting_caller() {
        let mut pool = Pool::new(vec![agent(1, 0)]);
        pool.ringing(1);
        pool.ended(1, 91 * S); // wrap-up until 101 s
        let mut q = CallerQueue::new(100 * S, 2 * S, 15 * S);
        assert_eq!(
            drain(&mut q, 100 * S, &mut pool),
            vec![QueueOutput::WaitUntil(101 * S)]
        );
        assert_eq!(drain(&mut q, 101 * S, &mut pool)[0], QueueOutput::Ring(1));
    }

    #[test]
    fn the_queue_timeout_while_an_agent_rings_cancels_it_then_abandons() {
        let mut pool = Pool::new(vec![agent(1, 0)]);
        let mut q = CallerQueue::new(0, 2 * S, 15 * S);
        drain(&mut q, 0, &mut pool);
        assert_eq!(
            drain(&mut q, 2 * S, &mut pool),
            vec![
                QueueOutput::CancelRing(1),
                QueueOutput::Abandon { waited_ms: 2 * S }
            ]
        );
        assert_eq!(pool.agents[0].state, AgentState::Available);
    }

    #[test]
    fn the_caller_hanging_up_while_an_agent_rings_frees_the_agent() {
        let mut pool = Pool::new(vec![agent(1, 0)]);
        let mut q = CallerQueue::new(0, 2 * S, 15 * S);
        drain(&mut q, 0, &mut pool);
        q.handle_input(QueueInput::CallerHungUp, &mut pool);
        assert_eq!(
            drain(&mut q, 500, &mut pool),
            vec![
                QueueOutput::CancelRing(1),
                QueueOutput::Left { waited_ms: 500 }
            ]
        );
        assert_eq!(pool.agents[0].state, AgentState::Available);
        // A late answer from the cancelled agent changes nothing.
        q.handle_input(QueueInput::AgentAnswered(1), &mut pool);
        assert_eq!(q.poll_output(600, &mut pool), None);
    }

    #[test]
    fn connect_to_names_a_uri_a_number_or_a_pool() {
        assert_eq!(ConnectTarget::parse(""), ConnectTarget::None);
        assert_eq!(
            ConnectTarget::parse("sip:alice@pbx"),
            ConnectTarget::Sip("sip:alice@pbx".into())
        );
        assert_eq!(
            ConnectTarget::parse("+1 (202) 555-0101"),
            ConnectTarget::Number("+1 (202) 555-0101".into())
        );
        assert_eq!(
            ConnectTarget::parse("sales"),
            ConnectTarget::Pool("sales".into())
        );
        assert_eq!(
            ConnectTarget::parse("pool:Sales Team"),
            ConnectTarget::Pool("Sales Team".into())
        );
        assert_eq!(ConnectTarget::parse("pool:x").pool(), Some("x"));
    }

    #[test]
    fn agent_validation_names_the_field() {
        let good = AgentSpec {
            name: "alice".into(),
            target: "sip:alice@127.0.0.1:5070".into(),
            ..AgentSpec::default()
        };
        assert_eq!(good.validate(), Ok(()));
        let field = |s: AgentSpec| match s.validate() {
            Err(ModelError::Invalid { field, .. }) => field,
            other => panic!("expected an error, got {other:?}"),
        };
        assert_eq!(
            field(AgentSpec {
                name: " ".into(),
                ..good.clone()
            }),
            "name"
        );
        assert_eq!(
            field(AgentSpec {
                name: "9lives".into(),
                ..good.clone()
            }),
            "name"
        );
        assert_eq!(
            field(AgentSpec {
                target: "".into(),
                ..good.clone()
            }),
            "target"
        );
        assert_eq!(
            field(AgentSpec {
                target: "alice".into(),
                ..good.clone()
            }),
            "target"
        );
        assert_eq!(
            field(AgentSpec {
                target: "+12025550101".into(),
                ..good.clone()
            }),
            "profile"
        );
        assert_eq!(
            AgentSpec {
                target: "+12025550101".into(),
                profile: "acme".into(),
                ..good.clone()
            }
            .validate(),
            Ok(())
        );
        assert_eq!(
            field(AgentSpec {
                wrap_up_secs: -1,
                ..good.clone()
            }),
            "wrap_up_secs"
        );
    }
}
