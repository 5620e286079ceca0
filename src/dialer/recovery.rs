//! What keeps a campaign's attempts whole when things fail: this node's stable id, the
//! [`Recorder`] that writes an answered call's dialog facts to its row and an attempt's end
//! (each in a group commit with the others waiting at that moment; ends retried on transient store errors, kept in the
//! on-disk [`Journal`] while the store is unreachable, replayed in order when it is back), and
//! [`reconcile_node`], which ends and records the calls a dead node left in flight.
//!
//! Reconciling a node's calls: every answered call gets a BYE built from the dialog's facts
//! its row kept (all at once, waiting at most [`BYE_WAIT`] for the answers); a ringing call
//! gets nothing (see [`crate::sip::orphan`]) and is left alone until it cannot be ringing any
//! more — its campaign's ring timeout plus [`CANCEL_GRACE`] after it was placed — so that its
//! channel stays counted while the far end may still answer it (a node only frozen, `kill
//! -STOP`, also comes back to it). Then each call is recorded as one transaction:
//! an attempt record with outcome `interrupted`, the contact back to retry only while retries
//! remain (the retry rules, [`after_attempt`]), the event, the row deleted. Another node that
//! reconciles the same calls, or the dead node coming back, writes nothing a second time: the
//! row is the fence ([`Store::finish_attempt`]).
//!
//! What it must not do: decide retries itself (the retry rules do), or dial.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use super::journal::Journal;
use crate::call::core::CANCEL_GRACE;
use crate::campaign::retry::{after_attempt, AttemptResult};
use crate::campaign::Millis;
use crate::config::Config;
use crate::sip::orphan::DialogFacts;
use crate::sip::UserAgent;
use crate::store::attempts::AttemptRecord;
use crate::store::contacts::ContactTransition;
use crate::store::inflight::{AttemptEnd, CallAnswered, CallState, Ended, InFlight};
use crate::store::{Store, StoreError};

/// How long a reconcile waits for the far ends to answer its BYEs before recording.
pub const BYE_WAIT: Duration = Duration::from_secs(8);
/// Tries of one attempt's end against the store (on a transient error, e.g. a serialization
/// failure) before it goes to the journal.
const STORE_TRIES: u32 = 3;
/// How long one try may take before the store counts as unreachable (the pool would wait
/// for a connection longer than this).
pub const STORE_TRY: Duration = Duration::from_secs(5);

/// This node's id, kept in `data_dir/node-id`: random when first made, then the same for
/// every start from that directory (so a restart finds its own calls). Never `HOSTNAME-pid`,
/// which two containers can share.
pub fn node_id(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if !id.is_empty()
                && id.len() <= 64
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Ok(id.to_string());
            }
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{}: not a node id (1-64 letters, digits, - or _); remove the file to make a new one",
                    path.display()
                ),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(data_dir)?;
    let id = format!("node-{:016x}", rand::random::<u64>());
    let tmp = data_dir.join("node-id.tmp");
    std::fs::write(&tmp, format!("{id}\n"))?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

/// Writes attempts' ends: to the store, or, while it cannot be reached, to the journal.
/// Cheap to clone; shared by the engine (which replays) and the attempt tasks.
#[derive(Clone)]
pub struct Recorder {
    store: Store,
    journal: Arc<Mutex<Journal>>,
    /// The group committer's inbox, started with the first write.
    group: Arc<Mutex<Option<mpsc::UnboundedSender<GroupEntry>>>>,
    /// The answers' group committer's inbox, started with the first answer.
    answers: Arc<Mutex<Option<mpsc::UnboundedSender<AnswerEntry>>>>,
}

/// An answered call's facts waiting for their group commit, and who waits for the answer.
type AnswerEntry = (CallAnswered, oneshot::Sender<Result<bool, StoreError>>);

/// The most attempt ends one group commit writes.
const GROUP_MAX: usize = 256;

/// One end waiting for its group commit, who waits for the answer (`None`: none in time),
/// and until when.
type GroupEntry = (
    AttemptEnd,
    oneshot::Sender<Option<Result<Ended, StoreError>>>,
    tokio::time::Instant,
);

impl Recorder {
    pub fn new(store: Store, journal: Journal) -> Recorder {
        Recorder {
            store,
            journal: Arc::new(Mutex::new(journal)),
            group: Arc::new(Mutex::new(None)),
            answers: Arc::new(Mutex::new(None)),
        }
    }

    /// Keeps an answered call's dialog facts in its row, together with the other answers
    /// waiting at that moment (one transaction, [`Store::calls_answered`]); whether the row
    /// took them (`false`: it is not that node's attempt any more).
    pub async fn answered(&self, answer: CallAnswered) -> Result<bool, StoreError> {
        let (reply, replied) = oneshot::channel();
        let sent = post(
            &self.answers,
            || spawn_answer_writer(self.store.clone()),
            (answer.clone(), reply),
        );
        if sent {
            if let Ok(result) = replied.await {
                return result;
            }
        }
        let took = self
            .store
            .calls_answered(std::slice::from_ref(&answer))
            .await?;
        Ok(took.first().copied().unwrap_or(false))
    }

    /// Writes `end` to the store together with the other ends waiting at that moment (one
    /// transaction for the group, [`Store::finish_attempts`]); answers once it is committed,
    /// or `None` when no answer came within [`STORE_TRY`] (then the write was rolled back,
    /// or — its commit just through — a replay of it is fenced). A group that fails is
    /// written again one end at a time, so one end's error is only its own.
    async fn write(&self, end: &AttemptEnd) -> Option<Result<Ended, StoreError>> {
        let deadline = tokio::time::Instant::now() + STORE_TRY;
        let (answer, answered) = oneshot::channel();
        let sent = post(
            &self.group,
            || spawn_group_writer(self.store.clone()),
            (end.clone(), answer, deadline),
        );
        if sent {
            if let Ok(result) = answered.await {
                return result;
            }
        }
        tokio::time::timeout_at(deadline, self.store.finish_attempt(end))
            .await
            .ok()
    }

    /// Results waiting in the journal.
    pub fn waiting(&self) -> usize {
        self.journal.lock().len()
    }

    /// Records `end`: the store (up to 3 tries with backoff on a transient database error,
    /// each bounded by [`STORE_TRY`]), else the journal — at once when the store is
    /// unreachable (no connection, or no answer in time: the engine's next tick replays it).
    /// While the journal is full it keeps trying, never dropping the result.
    pub async fn record(&self, end: AttemptEnd) {
        let contact = end.record.contact_id;
        let mut tries = 0;
        let mut delay = Duration::from_millis(200);
        loop {
            // While results wait in the journal, new ones queue behind them.
            if self.journal.lock().is_empty() {
                let began = std::time::Instant::now();
                let written = self.write(&end).await.ok_or(());
                metrics::histogram!("outdial_store_seconds", "op" => "finish_attempt")
                    .record(began.elapsed().as_secs_f64());
                match written {
                    Ok(Ok(Ended::Written { status, .. })) => {
                        tracing::info!(
                            campaign = ?end.record.campaign_id,
                            contact = ?contact,
                            call_id = %end.record.call_id,
                            outcome = %end.record.outcome,
                            %status,
                            "attempt done"
                        );
                        return;
                    }
                    Ok(Ok(Ended::Fenced)) => {
                        tracing::warn!(
                            contact = ?contact,
                            call_id = %end.record.call_id,
                            "attempt not recorded: its call was reconciled by another node meanwhile"
                        );
                        return;
                    }
                    Ok(Err(StoreError::Db(e))) if !unreachable(&e) && tries + 1 < STORE_TRIES => {
                        tries += 1;
                        tracing::warn!(contact = ?contact, "storing the attempt: {e}; retrying");
                        tokio::time::sleep(delay).await;
                        delay *= 4;
                        continue;
                    }
                    Ok(Err(StoreError::Db(e))) => {
                        tracing::error!(contact = ?contact, "storing the attempt: {e}");
                    }
                    Ok(Err(e)) => {
                        tracing::error!(contact = ?contact, "attempt not recorded: {e}");
                        return;
                    }
                    // Rolled back, or (if its commit got through) the replay finds the
                    // call's row gone and writes nothing twice.
                    Err(_) => {
                        tracing::error!(
                            contact = ?contact,
                            "storing the attempt: no answer from the database in {STORE_TRY:?}"
                        );
                    }
                }
            }
            let pushed = self.journal.lock().push(&end);
            match pushed {
                Ok(()) => {
                    tracing::warn!(
                        contact = ?contact,
                        "store unreachable: the attempt waits in the journal; dialing stops until it is written"
                    );
                    return;
                }
                Err(e) => {
                    tracing::error!(contact = ?contact, "{e}; trying again in 5 s");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    tries = 0;
                }
            }
        }
    }

    /// Writes the journal's results to the store, oldest first; an error when the store
    /// still cannot be reached (what is left stays for the next try).
    pub async fn replay(&self) -> Result<usize, StoreError> {
        let mut written = 0;
        loop {
            let Some(end) = self.journal.lock().front().cloned() else {
                if written > 0 {
                    tracing::info!("{written} attempts from the journal written to the store");
                }
                return Ok(written);
            };
            match self.store.finish_attempt(&end).await {
                Ok(Ended::Written { .. }) => written += 1,
                Ok(Ended::Fenced) => tracing::warn!(
                    contact = ?end.record.contact_id,
                    "journal: the call was reconciled by another node meanwhile; not recorded twice"
                ),
                Err(StoreError::Db(e)) => return Err(StoreError::Db(e)),
                Err(e) => tracing::error!(
                    contact = ?end.record.contact_id,
                    "journal entry not writable ({e}): {}",
                    crate::store::to_json(&end)
                ),
            }
            let popped = self.journal.lock().pop_front();
            if let Err(e) = popped {
                // Written (or fenced) but still on disk: replaying it again is fenced.
                return Err(StoreError::Invalid(e.to_string()));
            }
        }
    }
}

/// Hands `item` to a group committer's inbox, starting the committer (`start`) on first use;
/// `false` when its task is gone (the runtime shutting down: the inbox is forgotten).
fn post<T>(
    inbox: &Mutex<Option<mpsc::UnboundedSender<T>>>,
    start: impl FnOnce() -> mpsc::UnboundedSender<T>,
    item: T,
) -> bool {
    let mut inbox = inbox.lock();
    if inbox.get_or_insert_with(start).send(item).is_ok() {
        return true;
    }
    *inbox = None;
    false
}

/// The group committer: takes every end waiting, writes them in one transaction, answers
/// each; ends when every [`Recorder`] holding its inbox is gone. A write never outlives the
/// earliest deadline of its group (dropped: rolled back), so an end its waiter has given up
/// on (and journaled) is not written behind its back.
fn spawn_group_writer(store: Store) -> mpsc::UnboundedSender<GroupEntry> {
    let (inbox, mut waiting) = mpsc::unbounded_channel::<GroupEntry>();
    tokio::spawn(async move {
        let mut group: Vec<GroupEntry> = Vec::with_capacity(GROUP_MAX);
        while waiting.recv_many(&mut group, GROUP_MAX).await > 0 {
            let now = tokio::time::Instant::now();
            let (live, late): (Vec<_>, Vec<_>) = group
                .drain(..)
                .partition(|(_, answer, deadline)| *deadline > now && !answer.is_closed());
            for (_, answer, _) in late {
                let _ = answer.send(None);
            }
            let Some(deadline) = live.iter().map(|(_, _, d)| *d).min() else {
                continue;
            };
            let ends: Vec<AttemptEnd> = live.iter().map(|(end, _, _)| end.clone()).collect();
            metrics::histogram!("outdial_store_group_size").record(ends.len() as f64);
            match tokio::time::timeout_at(deadline, store.finish_attempts(&ends)).await {
                Ok(Ok(ended)) => {
                    for ((_, answer, _), ended) in live.into_iter().zip(ended) {
                        let _ = answer.send(Some(Ok(ended)));
                    }
                }
                Ok(Err(e)) if live.len() == 1 => {
                    if let Some((_, answer, _)) = live.into_iter().next() {
                        let _ = answer.send(Some(Err(e)));
                    }
                }
                Ok(Err(_)) => {
                    for (end, answer, deadline) in live {
                        let one = tokio::time::timeout_at(deadline, store.finish_attempt(&end));
                        let _ = answer.send(one.await.ok());
                    }
                }
                Err(_) => {
                    for (_, answer, _) in live {
                        let _ = answer.send(None);
                    }
                }
            }
        }
    });
    inbox
}

/// The answers' group committer: takes every answer waiting, writes them in one transaction,
/// replies to each; a group that fails is written again one answer at a time, so one
/// answer's error is only its own. Ends when every [`Recorder`] holding its inbox is gone.
fn spawn_answer_writer(store: Store) -> mpsc::UnboundedSender<AnswerEntry> {
    let (inbox, mut waiting) = mpsc::unbounded_channel::<AnswerEntry>();
    tokio::spawn(async move {
        let mut group: Vec<AnswerEntry> = Vec::with_capacity(GROUP_MAX);
        while waiting.recv_many(&mut group, GROUP_MAX).await > 0 {
            let answers: Vec<CallAnswered> = group.iter().map(|(a, _)| a.clone()).collect();
            let started = std::time::Instant::now();
            let written = store.calls_answered(&answers).await;
            metrics::histogram!("outdial_store_seconds", "op" => "calls_answered")
                .record(started.elapsed().as_secs_f64());
            match written {
                Ok(took) => {
                    for ((_, reply), took) in group.drain(..).zip(took) {
                        let _ = reply.send(Ok(took));
                    }
                }
                Err(e) if group.len() == 1 => {
                    if let Some((_, reply)) = group.pop() {
                        let _ = reply.send(Err(e));
                    }
                }
                Err(_) => {
                    for (answer, reply) in group.drain(..) {
                        let one = store.calls_answered(std::slice::from_ref(&answer)).await;
                        let _ = reply.send(one.map(|took| took.first().copied().unwrap_or(false)));
                    }
                }
            }
        }
    });
    inbox
}

/// Whether `e` says the database cannot be reached (no connection, the server shutting
/// down), rather than that one transaction failed: trying again at once is pointless, the
/// result goes to the journal.
fn unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE class 08 (connection exception), 57P01-03 (admin/crash shutdown, cannot
        // connect now).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

/// Ends and records every call `node` left in flight (see the module header); `by` is the
/// node doing it. Returns how many calls were recorded.
pub async fn reconcile_node(
    store: &Store,
    ua: &Arc<UserAgent>,
    config: &Config,
    node: &str,
    by: &str,
    now: Millis,
) -> Result<usize, StoreError> {
    let mut calls = Vec::new();
    for call in store.calls_of_node(node).await? {
        if call.state == CallState::Ringing {
            let ring_ms = match store.get_campaign(call.campaign_id).await {
                Ok(c) => c.settings.ring_timeout_secs.max(0) * 1000,
                Err(StoreError::NotFound(_)) => 0,
                Err(e) => return Err(e),
            };
            let grace = Millis::try_from(CANCEL_GRACE.as_millis()).unwrap_or(Millis::MAX);
            if now
                < call
                    .started_at
                    .saturating_add(ring_ms)
                    .saturating_add(grace)
            {
                continue;
            }
        }
        calls.push(call);
    }
    if calls.is_empty() {
        return Ok(0);
    }
    tracing::warn!(
        node,
        by,
        calls = calls.len(),
        "reconciling the calls a stopped node left in flight"
    );
    // BYE every answered call at once; wait a bounded time for the answers.
    let mut byes = tokio::task::JoinSet::new();
    for call in &calls {
        let Some(facts) = dialog_facts(call) else {
            continue;
        };
        let ua = ua.clone();
        let proxy = config.profile(&call.trunk).ok().and_then(|p| {
            let trunk = facts
                .trunk
                .as_ref()
                .and_then(|name| p.trunks.iter().find(|t| &t.name == name))
                .unwrap_or_else(|| p.primary());
            trunk.outbound_proxy.clone()
        });
        let contact = call.contact_id;
        byes.spawn(async move {
            match crate::sip::orphan::bye(&ua, &facts, proxy.as_ref()).await {
                Ok(code) => tracing::info!(contact, call_id = %facts.call_id, code, "BYE for a stopped node's call answered"),
                Err(e) => tracing::warn!(contact, call_id = %facts.call_id, "BYE for a stopped node's call: {e}"),
            }
        });
    }
    let _ = tokio::time::timeout(BYE_WAIT, async {
        while byes.join_next().await.is_some() {}
    })
    .await;
    // Unanswered BYEs keep retransmitting until Timer F on their own tasks.
    byes.detach_all();
    let mut recorded = 0;
    for call in &calls {
        let end = interrupted_end(store, call, by, now).await?;
        match store.finish_attempt(&end).await? {
            Ended::Written { status, .. } => {
                recorded += 1;
                tracing::info!(
                    campaign = call.campaign_id,
                    contact = call.contact_id,
                    node,
                    %status,
                    "interrupted attempt recorded"
                );
            }
            Ended::Fenced => {}
        }
    }
    Ok(recorded)
}

fn dialog_facts(call: &InFlight) -> Option<DialogFacts> {
    if call.state != CallState::Answered {
        return None;
    }
    let text = call.dialog.as_deref()?;
    match serde_json::from_str(text) {
        Ok(facts) => Some(facts),
        Err(e) => {
            tracing::error!(
                contact = call.contact_id,
                "stored dialog unreadable, no BYE sent: {e}"
            );
            None
        }
    }
}

/// The `interrupted` end of a call its node left: the retry rules decide the contact.
async fn interrupted_end(
    store: &Store,
    call: &InFlight,
    by: &str,
    now: Millis,
) -> Result<AttemptEnd, StoreError> {
    let contact = store.get_contact(call.contact_id).await?;
    let settings = store.get_campaign(call.campaign_id).await?.settings;
    // The claim counted this attempt; the rules count it themselves.
    let mut before = contact.clone();
    before.attempts = before.attempts.saturating_sub(1).max(0);
    let update = after_attempt(&settings, &before, AttemptResult::Interrupted, now);
    let facts = dialog_facts(call);
    let record = AttemptRecord {
        campaign_id: Some(call.campaign_id),
        contact_id: Some(call.contact_id),
        attempt_number: call.attempt_number,
        call_id: facts
            .as_ref()
            .map(|f| f.call_id.clone())
            .unwrap_or_default(),
        sip_profile: call.trunk.clone(),
        caller_id: call.caller_id.clone(),
        billable_account: settings.billable_account.clone(),
        destination: call.destination.clone(),
        started_at: call.started_at,
        ended_at: Some(now),
        answer_ms: call.answered_at.map(|a| (a - call.started_at).max(0)),
        duration_ms: call.answered_at.map_or(0, |a| (now - a).max(0)),
        outcome: AttemptResult::Interrupted.as_str().to_string(),
        reason: format!(
            "node {} stopped with the call {}; ended by node {by}",
            call.node,
            call.state.as_str()
        ),
        amd_mode: Some(settings.amd_mode.as_str().to_string()),
        ..AttemptRecord::default()
    };
    Ok(AttemptEnd {
        node: call.node.clone(),
        event: serde_json::json!({
            "attempt": record.attempt_number,
            "outcome": record.outcome,
            "sip_code": null,
            "interrupted_node": call.node,
            "by": by,
        }),
        record,
        contact: ContactTransition {
            status: update.status,
            next_attempt_at: update.next_attempt_at,
            last_outcome: update.last_outcome,
        },
        counters: None,
        at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = node_id(dir.path()).unwrap();
        assert!(first.starts_with("node-"), "{first}");
        assert_eq!(node_id(dir.path()).unwrap(), first);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(node_id(other.path()).unwrap(), first);
        std::fs::write(dir.path().join("node-id"), "bad id!\n").unwrap();
        assert!(node_id(dir.path()).is_err());
    }

    #[test]
    fn a_lost_connection_sends_results_to_the_journal_and_a_failed_query_is_retried() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(unreachable(&sqlx::Error::Io(refused)));
        assert!(unreachable(&sqlx::Error::PoolTimedOut));
        assert!(!unreachable(&sqlx::Error::RowNotFound));
        assert!(!unreachable(&sqlx::Error::Protocol("bad row".into())));
    }
}
