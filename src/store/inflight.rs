//! Calls in flight and the nodes that place them: what makes a crash, a store outage or a
//! second node lose nothing and dial nothing twice.
//!
//! - [`Store::claim_call`] takes a contact for dialing and writes its `calls_in_flight` row in
//!   one transaction, after counting the trunk's channels and claims this second and the
//!   campaign's live calls across every node (on PostgreSQL the trunk's `trunk_claims` row and
//!   the campaign's row are locked first, so two nodes count one after the other; a SQLite
//!   write transaction is exclusive already). The contact id is the row's key: a contact has
//!   at most one live call.
//! - [`Store::calls_answered`] adds the dialogs' facts (what a BYE needs) at answer, for a group
//!   of calls at once ([`Store::call_answered`]: one).
//! - [`Store::finish_attempt`] deletes the row, writes the attempt record (CDR), moves the
//!   contact on and appends the event in one transaction, and only when the row is still the
//!   node's: a node whose call was reconciled by another node meanwhile writes nothing
//!   ([`Ended::Fenced`]). A row marked `reset_on_end` (a restart while the call was live) puts
//!   its contact back to pending with no attempts instead.
//! - `nodes`: heartbeats; [`Store::dead_nodes`] are those older than a lease period, or that
//!   left calls without ever saying they were alive.
//!
//! What it must not do: decide what an attempt's result means for the contact (the retry rules
//! do), send anything to the network, or read the clock (callers pass `now`).

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::contacts::ContactTransition;
use super::{get_flag, Arg, Backend, Result, Sql, Store, StoreError};
use crate::campaign::model::{Contact, ContactStatus, Millis};
use crate::store::attempts::AttemptRecord;

/// A call's state as its row says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// INVITE sent, no answer yet.
    Ringing,
    /// 200 OK; the row holds the dialog's facts.
    Answered,
}

impl CallState {
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Ringing => "ringing",
            CallState::Answered => "answered",
        }
    }

    fn parse(s: &str) -> Option<CallState> {
        match s {
            "ringing" => Some(CallState::Ringing),
            "answered" => Some(CallState::Answered),
            _ => None,
        }
    }
}

/// What a claim needs besides the contact: who dials it, through which trunk, and the caps.
#[derive(Debug, Clone)]
pub struct NewCall<'a> {
    pub campaign_id: i64,
    pub contact_id: i64,
    /// The statuses the contact may be taken from (normally pending and retry).
    pub expected: &'a [ContactStatus],
    pub node: &'a str,
    /// The trunk (SIP profile) name; empty for a call to a SIP URI without a trunk.
    pub trunk: &'a str,
    /// The trunk's `max_channels`, counted over every node.
    pub max_channels: Option<u32>,
    /// The trunk's `max_cps`, counted over every node.
    pub max_cps: Option<f64>,
    /// The campaign's `max_concurrent`, counted over every node.
    pub max_concurrent: i64,
    pub caller_id: &'a str,
    pub now: Millis,
}

/// What became of a claim.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The contact is `dialing` (its attempt counted) and its call row written.
    Claimed(Box<Contact>),
    /// Another node took it first, or its status moved on.
    Taken,
    /// The trunk has `max_channels` calls in flight across the nodes.
    TrunkFull,
    /// The trunk had `max_cps` claims in the current window.
    TrunkCps,
    /// The campaign has `max_concurrent` calls in flight across the nodes.
    CampaignFull,
}

/// One call in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct InFlight {
    pub contact_id: i64,
    pub campaign_id: i64,
    pub node: String,
    pub trunk: String,
    pub attempt_number: i64,
    pub destination: String,
    pub caller_id: String,
    pub started_at: Millis,
    pub state: CallState,
    pub answered_at: Option<Millis>,
    /// The dialog's facts (JSON, the SIP layer's), once answered.
    pub dialog: Option<String>,
    /// A restart came while the call was live: the contact is reset when it ends.
    pub reset_on_end: bool,
}

/// The end of one attempt, as [`Store::finish_attempt`] writes it in one transaction.
/// Serializable: while the store is unreachable, the engine keeps these in its journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptEnd {
    /// The node whose call row this is (the fence).
    pub node: String,
    /// The CDR; its `contact_id` and `campaign_id` name the call.
    pub record: AttemptRecord,
    /// Where the contact goes.
    pub contact: ContactTransition,
    /// Counters written back (attempts, retries) for an attempt that does not count (a ringing
    /// call cancelled by a shutdown); `None` keeps what the claim counted.
    pub counters: Option<(i64, i64)>,
    /// The `attempt` event's detail (the contact's final status is added).
    pub event: serde_json::Value,
    /// When the attempt ended.
    pub at: Millis,
}

/// What [`Store::finish_attempt`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    /// Recorded: the attempt's id and the contact's new status.
    Written {
        attempt_id: i64,
        status: ContactStatus,
    },
    /// The call row was no longer this node's (reconciled elsewhere): nothing was written.
    Fenced,
}

const CALL_COLUMNS: &str = "contact_id, campaign_id, node, trunk, attempt_number, destination, \
    caller_id, started_at, state, answered_at, dialog, reset_on_end";

fn call_from(row: &AnyRow) -> Result<InFlight> {
    Ok(InFlight {
        contact_id: row.try_get("contact_id")?,
        campaign_id: row.try_get("campaign_id")?,
        node: row.try_get("node")?,
        trunk: row.try_get("trunk")?,
        attempt_number: row.try_get("attempt_number")?,
        destination: row.try_get("destination")?,
        caller_id: row.try_get("caller_id")?,
        started_at: row.try_get("started_at")?,
        state: super::get_word(row, "state", CallState::parse)?,
        answered_at: row.try_get("answered_at")?,
        dialog: row.try_get("dialog")?,
        reset_on_end: get_flag(row, "reset_on_end")?,
    })
}

/// The claim window for `max_cps` (ms) and the claims it allows: a second and `max_cps`
/// claims, or for less than one call a second, one claim per `1/max_cps` seconds.
pub fn cps_window(max_cps: f64) -> (Millis, i64) {
    if !max_cps.is_finite() || max_cps <= 0.0 {
        return (1000, i64::MAX);
    }
    if max_cps >= 1.0 {
        (1000, max_cps.floor() as i64)
    } else {
        ((1000.0 / max_cps).ceil() as Millis, 1)
    }
}

impl Store {
    /// Takes `call.contact_id` for dialing and writes its call row, all or nothing; see the
    /// module header for the counting.
    pub async fn claim_call(&self, call: &NewCall<'_>) -> Result<Claim> {
        let mut claims = self.claim_calls(std::slice::from_ref(call)).await?;
        Ok(claims.pop().unwrap_or(Claim::Taken))
    }

    /// Takes a group of contacts of one campaign for dialing through one trunk, in order, in
    /// one transaction: the caps are counted once, each contact is claimed with its call row
    /// while room is left, and once a cap is reached the rest get that cap's answer untouched.
    /// One [`Claim`] per call, in order. Every call must name the same campaign, trunk, node
    /// and caps as the first (else [`StoreError::Invalid`], nothing written).
    pub async fn claim_calls(&self, calls: &[NewCall<'_>]) -> Result<Vec<Claim>> {
        let Some(first) = calls.first() else {
            return Ok(Vec::new());
        };
        if calls.iter().any(|c| {
            c.campaign_id != first.campaign_id
                || c.trunk != first.trunk
                || c.node != first.node
                || c.max_channels != first.max_channels
                || c.max_cps != first.max_cps
                || c.max_concurrent != first.max_concurrent
        }) {
            return Err(StoreError::Invalid(
                "a claim group mixes campaigns, trunks, nodes or caps".into(),
            ));
        }
        let _turn = self.write_turn("claim_calls").await;
        let mut tx = self.pool.begin().await?;
        // A write first: SQLite takes its write lock here, so the counts below cannot change
        // under us; PostgreSQL then locks the trunk's row and the campaign's.
        let (window, allowed) = first.max_cps.map_or((1000, i64::MAX), cps_window);
        let window_start = first.now - first.now.rem_euclid(window);
        sqlx::query(
            "INSERT INTO trunk_claims (trunk, window_start, claims) VALUES ($1, $2, 0) \
             ON CONFLICT (trunk) DO NOTHING",
        )
        .bind(first.trunk.to_string())
        .bind(window_start)
        .execute(&mut *tx)
        .await?;
        let lock = if self.backend == Backend::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT window_start, claims FROM trunk_claims WHERE trunk = $1{lock}"
        )))
        .bind(first.trunk.to_string())
        .fetch_one(&mut *tx)
        .await?;
        let (stored_start, claims): (i64, i64) =
            (row.try_get("window_start")?, row.try_get("claims")?);
        let claims_now = if stored_start == window_start {
            claims
        } else {
            0
        };
        let cps_room = match first.max_cps {
            Some(_) => allowed.saturating_sub(claims_now).max(0),
            None => i64::MAX,
        };
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT id FROM campaigns WHERE id = $1 FOR UPDATE")
                .bind(first.campaign_id)
                .fetch_optional(&mut *tx)
                .await?;
        }
        let trunk_room = match first.max_channels.filter(|_| !first.trunk.is_empty()) {
            Some(max) => {
                let n: i64 =
                    sqlx::query("SELECT COUNT(*) AS n FROM calls_in_flight WHERE trunk = $1")
                        .bind(first.trunk.to_string())
                        .fetch_one(&mut *tx)
                        .await?
                        .try_get("n")?;
                (i64::from(max) - n).max(0)
            }
            None => i64::MAX,
        };
        let n: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM calls_in_flight WHERE campaign_id = $1")
                .bind(first.campaign_id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
        let campaign_room = (first.max_concurrent.max(0) - n).max(0);
        // The contacts that fit under every cap, in order; the first cap that stops the rest
        // is their answer.
        let room = usize::try_from(cps_room.min(trunk_room).min(campaign_room)).unwrap_or(0);
        let cap = if cps_room as usize == room {
            Claim::TrunkCps
        } else if trunk_room as usize == room {
            Claim::TrunkFull
        } else {
            Claim::CampaignFull
        };
        let tried = &calls[..room.min(calls.len())];
        let mut taken = std::collections::HashMap::new();
        for chunk in tried.chunks(ROWS_PER_STATEMENT) {
            let ids: Vec<i64> = chunk.iter().map(|c| c.contact_id).collect();
            taken.extend(
                super::contacts::claim_many_on(
                    &mut *tx,
                    self.backend,
                    &ids,
                    first.expected,
                    first.now,
                )
                .await?,
            );
        }
        let mut claimed = 0i64;
        for chunk in tried.chunks(ROWS_PER_STATEMENT) {
            claimed += insert_calls_on(&mut tx, chunk, &taken).await?;
        }
        let mut out = Vec::with_capacity(calls.len());
        for (i, call) in calls.iter().enumerate() {
            out.push(if i >= tried.len() {
                cap.clone()
            } else {
                match taken.remove(&call.contact_id) {
                    Some(contact) => Claim::Claimed(Box::new(contact)),
                    None => Claim::Taken,
                }
            });
        }
        if claimed == 0 {
            tx.rollback().await?;
            return Ok(out);
        }
        sqlx::query(
            "UPDATE trunk_claims SET claims = CASE WHEN window_start = $2 THEN claims + $3 \
             ELSE $3 END, window_start = $2 WHERE trunk = $1",
        )
        .bind(first.trunk.to_string())
        .bind(window_start)
        .bind(claimed)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(out)
    }

    /// The call was answered: its row keeps the dialog's facts (`dialog`, JSON). `false` when
    /// the row is not `node`'s attempt `attempt_number` any more (a late write of an earlier
    /// attempt never lands on a later call of the contact).
    pub async fn call_answered(
        &self,
        contact_id: i64,
        node: &str,
        attempt_number: i64,
        dialog: &str,
        now: Millis,
    ) -> Result<bool> {
        let answer = CallAnswered {
            contact_id,
            node: node.to_string(),
            attempt_number,
            dialog: dialog.to_string(),
            at: now,
        };
        let took = self.calls_answered(std::slice::from_ref(&answer)).await?;
        Ok(took.first().copied().unwrap_or(false))
    }

    /// [`Store::call_answered`] for a group of calls in one statement (one write to the disk
    /// for many answers); for each, in order, whether its row took the facts.
    pub async fn calls_answered(&self, answers: &[CallAnswered]) -> Result<Vec<bool>> {
        let _turn = self.write_turn("calls_answered").await;
        let mut tx = self.pool.begin().await?;
        let mut took = std::collections::HashSet::new();
        for chunk in answers.chunks(ROWS_PER_STATEMENT) {
            let mut sql = Sql::default();
            let rows: Vec<String> = chunk
                .iter()
                .map(|a| {
                    row_of(
                        &mut sql,
                        [
                            Arg::I64(a.contact_id),
                            Arg::Text(a.node.clone()),
                            Arg::I64(a.attempt_number),
                            Arg::Text(a.dialog.clone()),
                            Arg::I64(a.at),
                        ],
                    )
                })
                .collect();
            let ids = super::in_list(&mut sql, chunk.iter().map(|a| Arg::I64(a.contact_id)));
            sql.text = format!(
                "UPDATE calls_in_flight SET state = 'answered', answered_at = v.column5, \
                 dialog = v.column4 FROM (VALUES {}) AS v \
                 WHERE calls_in_flight.contact_id = v.column1 AND calls_in_flight.node = v.column2 \
                 AND calls_in_flight.attempt_number = v.column3 \
                 AND calls_in_flight.contact_id IN ({ids}) \
                 RETURNING calls_in_flight.contact_id, calls_in_flight.attempt_number",
                rows.join(", ")
            );
            for row in sql
                .query(super::Backend::of(&tx))
                .fetch_all(&mut *tx)
                .await?
            {
                took.insert((
                    row.try_get::<i64, _>("contact_id")?,
                    row.try_get::<i64, _>("attempt_number")?,
                ));
            }
        }
        tx.commit().await?;
        Ok(answers
            .iter()
            .map(|a| took.contains(&(a.contact_id, a.attempt_number)))
            .collect())
    }

    /// Writes the end of an attempt in one transaction (see the module header); nothing at
    /// all when the call row is not `end.node`'s any more.
    pub async fn finish_attempt(&self, end: &AttemptEnd) -> Result<Ended> {
        let mut ended = self.finish_attempts(std::slice::from_ref(end)).await?;
        ended
            .pop()
            .ok_or_else(|| StoreError::Invalid("attempt end: nothing written".into()))
    }

    /// Writes a group of attempt ends in one transaction (a group commit: one write to the
    /// disk for many calls), each as [`Store::finish_attempt`] would; one [`Ended`] per end,
    /// in order. All or nothing: on an error none is written.
    pub async fn finish_attempts(&self, ends: &[AttemptEnd]) -> Result<Vec<Ended>> {
        for end in ends {
            if end.record.contact_id.is_none() {
                return Err(StoreError::Invalid(
                    "attempt end: the record names no contact".into(),
                ));
            }
        }
        let _turn = self.write_turn("finish_attempts").await;
        let mut tx = self.pool.begin().await?;
        let mut contacts = std::collections::HashSet::new();
        let out = if ends.len() > 1
            && ends
                .iter()
                .all(|e| contacts.insert(e.record.contact_id.unwrap_or(0)))
        {
            let mut out = Vec::with_capacity(ends.len());
            for chunk in ends.chunks(ROWS_PER_STATEMENT) {
                out.extend(finish_group_on(&mut tx, chunk).await?);
            }
            out
        } else {
            let mut out = Vec::with_capacity(ends.len());
            for end in ends {
                out.push(finish_on(&mut tx, end).await?);
            }
            out
        };
        tx.commit().await?;
        Ok(out)
    }

    /// Says `node` is alive at `now` (a new node row when there is none).
    pub async fn heartbeat(&self, node: &str, now: Millis) -> Result<()> {
        sqlx::query(
            "INSERT INTO nodes (id, started_at, heartbeat_at) VALUES ($1, $2, $2) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        )
        .bind(node.to_string())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// `node` (re)starts at `now`: its row says so.
    pub async fn node_started(&self, node: &str, now: Millis) -> Result<()> {
        sqlx::query(
            "INSERT INTO nodes (id, started_at, heartbeat_at) VALUES ($1, $2, $2) \
             ON CONFLICT (id) DO UPDATE SET started_at = excluded.started_at, \
             heartbeat_at = excluded.heartbeat_at",
        )
        .bind(node.to_string())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A node that stops cleanly leaves the table (its calls are all recorded).
    pub async fn node_stopped(&self, node: &str) -> Result<()> {
        sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(node.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Nodes with calls in flight whose heartbeat is older than `before`, or that have no
    /// node row at all.
    pub async fn dead_nodes(&self, before: Millis) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT c.node AS node FROM calls_in_flight c \
             LEFT JOIN nodes n ON n.id = c.node \
             WHERE n.id IS NULL OR n.heartbeat_at < $1 ORDER BY c.node",
        )
        .bind(before)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("node").map_err(StoreError::from))
            .collect()
    }

    /// Removes node rows whose heartbeat is older than `before` and that have no call left.
    pub async fn forget_dead_nodes(&self, before: Millis) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM nodes WHERE heartbeat_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM calls_in_flight c WHERE c.node = nodes.id)",
        )
        .bind(before)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The calls `node` has in flight, oldest first.
    pub async fn calls_of_node(&self, node: &str) -> Result<Vec<InFlight>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CALL_COLUMNS} FROM calls_in_flight WHERE node = $1 ORDER BY started_at, contact_id"
        )))
        .bind(node.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(call_from).collect()
    }

    /// Every call in flight (all nodes), oldest first.
    pub async fn calls_in_flight(&self) -> Result<Vec<InFlight>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CALL_COLUMNS} FROM calls_in_flight ORDER BY started_at, contact_id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(call_from).collect()
    }

    /// Calls in flight on `trunk`, all nodes together.
    pub async fn trunk_calls(&self, trunk: &str) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM calls_in_flight WHERE trunk = $1")
            .bind(trunk.to_string())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Calls in flight of a campaign, all nodes together.
    pub async fn campaign_calls(&self, campaign_id: i64) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM calls_in_flight WHERE campaign_id = $1")
            .bind(campaign_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// A campaign restart as one transaction: the status moves from `expected` to `to` only
    /// if it is still `expected` (else Conflict) and no other campaign holds its phone number
    /// (else Conflict naming that campaign), every contact without a live call goes back
    /// to pending with no attempts, and the calls still live are marked so that their contact
    /// is reset when they end. Returns the campaign, how many contacts were reset and how many
    /// wait for their call to end.
    pub async fn restart_campaign(
        &self,
        id: i64,
        expected: crate::campaign::CampaignStatus,
        to: crate::campaign::CampaignStatus,
        now: Millis,
    ) -> Result<(crate::campaign::Campaign, u64, u64)> {
        let mut tx = self.pool.begin().await?;
        // First (it locks the number): no other scheduled/processing/paused campaign may
        // hold this campaign's number.
        super::numbers::check_campaign_may_hold(&mut tx, id, to).await?;
        let row = super::campaigns::set_status_on(&mut *tx, id, expected, to, now).await?;
        if row.is_none() {
            tx.rollback().await?;
            // Conflict (or NotFound) naming the status it has.
            self.status_set(id, expected, None).await?;
            return Err(StoreError::Conflict(format!(
                "campaign {id} changed meanwhile"
            )));
        }
        let reset = sqlx::query(
            "UPDATE contacts SET status = 'pending', attempts = 0, retries = 0, \
             next_attempt_at = NULL, updated_at = $2 WHERE campaign_id = $1 \
             AND NOT EXISTS (SELECT 1 FROM calls_in_flight c WHERE c.contact_id = contacts.id)",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let deferred =
            sqlx::query("UPDATE calls_in_flight SET reset_on_end = 1 WHERE campaign_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        let campaign = self.status_set(id, expected, row).await?;
        Ok((campaign, reset, deferred))
    }
}

/// An answered call's dialog facts for its row ([`Store::calls_answered`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CallAnswered {
    pub contact_id: i64,
    /// The node whose call it is...
    pub node: String,
    /// ...and the contact's attempt it is: a late write never lands on a later call.
    pub attempt_number: i64,
    /// The dialog's facts (JSON).
    pub dialog: String,
    pub at: Millis,
}

/// Rows per multi-row statement (at most ten placeholders each; on SQLite they go anonymous,
/// [`Sql::query`], so a statement's cost grows with its rows only). Each statement is a round
/// trip to the store while the write turn is held: the fewer, the longer SQLite's one writer
/// can work for the calls.
const ROWS_PER_STATEMENT: usize = 128;

/// The call rows of the claimed contacts among `calls` (`taken`), in one statement; how many.
async fn insert_calls_on(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    calls: &[NewCall<'_>],
    taken: &std::collections::HashMap<i64, Contact>,
) -> Result<i64> {
    let mut sql = Sql::default();
    let mut rows = Vec::with_capacity(calls.len());
    for call in calls {
        let Some(contact) = taken.get(&call.contact_id) else {
            continue;
        };
        let values = row_of(
            &mut sql,
            [
                Arg::I64(contact.id),
                Arg::I64(call.campaign_id),
                Arg::Text(call.node.to_string()),
                Arg::Text(call.trunk.to_string()),
                Arg::I64(contact.attempts),
                Arg::Text(contact.phone.clone()),
                Arg::Text(call.caller_id.to_string()),
                Arg::I64(call.now),
            ],
        );
        rows.push(format!("{}, 'ringing', 0)", values.trim_end_matches(')')));
    }
    if rows.is_empty() {
        return Ok(0);
    }
    sql.text = format!(
        "INSERT INTO calls_in_flight (contact_id, campaign_id, node, trunk, attempt_number, \
         destination, caller_id, started_at, state, reset_on_end) VALUES {}",
        rows.join(", ")
    );
    sql.query(super::Backend::of(tx)).execute(&mut **tx).await?;
    Ok(rows.len() as i64)
}

/// Placeholders `($a, $b, …)` for `args`, added to `sql`.
fn row_of(sql: &mut Sql, args: impl IntoIterator<Item = Arg>) -> String {
    let list: Vec<String> = args.into_iter().map(|a| sql.arg(a)).collect();
    format!("({})", list.join(", "))
}

/// The ends of a group of attempts (one contact each) inside `tx`, as [`finish_on`] would
/// write them one by one, in one statement per table: the call rows deleted (the fence), the
/// attempt records inserted, the contacts moved on, the events and their webhook deliveries
/// inserted.
async fn finish_group_on(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    ends: &[AttemptEnd],
) -> Result<Vec<Ended>> {
    use std::collections::HashMap;
    let contact_of = |end: &AttemptEnd| end.record.contact_id.unwrap_or(0);
    // The fence: only ends whose call row is still their node's are written.
    let mut sql = Sql::default();
    let pairs: Vec<String> = ends
        .iter()
        .map(|end| {
            let c = sql.arg(Arg::I64(contact_of(end)));
            let n = sql.arg(Arg::Text(end.node.clone()));
            format!("(contact_id = {c} AND node = {n})")
        })
        .collect();
    sql.text = format!(
        "DELETE FROM calls_in_flight WHERE {} RETURNING contact_id, reset_on_end",
        pairs.join(" OR ")
    );
    let mut reset: HashMap<i64, bool> = HashMap::new();
    for row in sql
        .query(super::Backend::of(tx))
        .fetch_all(&mut **tx)
        .await?
    {
        reset.insert(row.try_get("contact_id")?, get_flag(&row, "reset_on_end")?);
    }
    let written: Vec<&AttemptEnd> = ends
        .iter()
        .filter(|e| reset.contains_key(&contact_of(e)))
        .collect();
    if written.is_empty() {
        return Ok(ends.iter().map(|_| Ended::Fenced).collect());
    }
    // The attempt records, a few to a statement (a record has some sixty columns).
    let records: Vec<&super::attempts::AttemptRecord> =
        written.iter().map(|end| &end.record).collect();
    let ids = super::attempts::insert_attempts_on(tx, &records).await?;
    let attempt_ids: HashMap<i64, i64> = written
        .iter()
        .zip(ids)
        .map(|(end, id)| (contact_of(end), id))
        .collect();
    // The contacts moved on; one that someone moved during its call keeps their status.
    let mut sql = Sql::default();
    let rows: Vec<String> = written
        .iter()
        .map(|end| {
            let (counted, attempts, retries) = match end.counters {
                Some((a, r)) => (1, Some(a), Some(r)),
                None => (0, None, None),
            };
            row_of(
                &mut sql,
                [
                    Arg::I64(contact_of(end)),
                    Arg::I64(i64::from(reset[&contact_of(end)])),
                    Arg::Text(end.contact.status.as_str().into()),
                    Arg::OptI64(end.contact.next_attempt_at),
                    Arg::I64(counted),
                    Arg::OptI64(attempts),
                    Arg::OptI64(retries),
                    Arg::OptText(end.contact.last_outcome.clone()),
                    Arg::I64(end.at),
                ],
            )
        })
        .collect();
    // The ids again, so the planner walks the group by key instead of the whole table.
    let ids = super::in_list(&mut sql, written.iter().map(|e| Arg::I64(contact_of(e))));
    sql.text = format!(
        "UPDATE contacts SET \
         status = CASE WHEN v.column2 = 1 THEN 'pending' ELSE v.column3 END, \
         next_attempt_at = CASE WHEN v.column2 = 1 THEN NULL ELSE v.column4 END, \
         attempts = CASE WHEN v.column2 = 1 THEN 0 WHEN v.column5 = 1 THEN v.column6 \
         ELSE contacts.attempts END, \
         retries = CASE WHEN v.column2 = 1 THEN 0 WHEN v.column5 = 1 THEN v.column7 \
         ELSE contacts.retries END, \
         last_outcome = COALESCE(v.column8, contacts.last_outcome), updated_at = v.column9 \
         FROM (VALUES {}) AS v WHERE contacts.id = v.column1 AND contacts.id IN ({}) \
         AND contacts.status IN ('dialing', 'on_hold') RETURNING contacts.id, contacts.status",
        rows.join(", "),
        ids
    );
    let mut status: HashMap<i64, ContactStatus> = HashMap::new();
    for row in sql
        .query(super::Backend::of(tx))
        .fetch_all(&mut **tx)
        .await?
    {
        status.insert(
            row.try_get("id")?,
            super::get_word(&row, "status", ContactStatus::parse)?,
        );
    }
    let moved: Vec<i64> = written
        .iter()
        .map(|e| contact_of(e))
        .filter(|c| !status.contains_key(c))
        .collect();
    if !moved.is_empty() {
        let mut sql = Sql::default();
        let list = super::in_list(&mut sql, moved.iter().map(|c| Arg::I64(*c)));
        sql.text = format!("SELECT id, status FROM contacts WHERE id IN ({list})");
        for row in sql
            .query(super::Backend::of(tx))
            .fetch_all(&mut **tx)
            .await?
        {
            status.insert(
                row.try_get("id")?,
                super::get_word(&row, "status", ContactStatus::parse)?,
            );
        }
    }
    // The events (each with the contact's final status), then their webhook deliveries.
    let mut sql = Sql::default();
    let mut details = HashMap::new();
    let rows: Vec<String> = written
        .iter()
        .map(|end| {
            let contact = contact_of(end);
            let mut detail = end.event.clone();
            if let (Some(map), Some(st)) = (detail.as_object_mut(), status.get(&contact)) {
                map.insert("status".into(), serde_json::json!(st));
            }
            // The campaign twice, its own placeholder each (a reused one would be bound
            // twice anyway on SQLite: [`Sql::query`]).
            let account_of = sql.arg(Arg::OptI64(end.record.campaign_id));
            let campaign = sql.arg(Arg::OptI64(end.record.campaign_id));
            let rest = [
                Arg::I64(contact),
                Arg::Text("attempt".into()),
                Arg::Text(super::to_json(&detail)),
                Arg::I64(end.at),
            ]
            .into_iter()
            .map(|a| sql.arg(a))
            .collect::<Vec<_>>()
            .join(", ");
            details.insert(contact, detail);
            format!(
                "((SELECT account_id FROM campaigns WHERE id = {account_of}), {campaign}, {rest})"
            )
        })
        .collect();
    sql.text = format!(
        "INSERT INTO events (account_id, campaign_id, contact_id, kind, detail, created_at) \
         VALUES {} RETURNING id, account_id, contact_id",
        rows.join(", ")
    );
    let mut events = Vec::with_capacity(written.len());
    let by_contact: HashMap<i64, &AttemptEnd> =
        written.iter().map(|e| (contact_of(e), *e)).collect();
    for row in sql
        .query(super::Backend::of(tx))
        .fetch_all(&mut **tx)
        .await?
    {
        let contact: i64 = row.try_get("contact_id")?;
        let Some(end) = by_contact.get(&contact) else {
            continue;
        };
        events.push(super::events::Event {
            id: row.try_get("id")?,
            account_id: row.try_get("account_id")?,
            campaign_id: end.record.campaign_id,
            contact_id: Some(contact),
            attempt: None,
            call_id: None,
            kind: "attempt".into(),
            detail: details.remove(&contact).unwrap_or_default(),
            at: end.at,
        });
    }
    events.sort_by_key(|e| e.id);
    super::webhooks::queue_deliveries_many(tx, &events).await?;
    ends.iter()
        .map(|end| {
            let contact = contact_of(end);
            if !reset.contains_key(&contact) {
                return Ok(Ended::Fenced);
            }
            match (attempt_ids.get(&contact), status.get(&contact)) {
                (Some(&attempt_id), Some(&status)) => Ok(Ended::Written { attempt_id, status }),
                _ => Err(StoreError::Invalid(format!(
                    "attempt end of contact {contact}: its record or status was not returned"
                ))),
            }
        })
        .collect()
}

/// One attempt's end inside `tx` (see [`Store::finish_attempt`]).
async fn finish_on(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    end: &AttemptEnd,
) -> Result<Ended> {
    let contact_id = end
        .record
        .contact_id
        .ok_or_else(|| StoreError::Invalid("attempt end: the record names no contact".into()))?;
    let fence = sqlx::query(
        "DELETE FROM calls_in_flight WHERE contact_id = $1 AND node = $2 \
             RETURNING reset_on_end",
    )
    .bind(contact_id)
    .bind(end.node.clone())
    .fetch_optional(&mut **tx)
    .await?;
    let Some(fence) = fence else {
        return Ok(Ended::Fenced);
    };
    let reset = get_flag(&fence, "reset_on_end")?;
    let backend = super::Backend::of(tx);
    let attempt_id = super::attempts::insert_attempt_on(&mut **tx, backend, &end.record).await?;
    let mut sql = Sql::default();
    let id_arg = sql.arg(Arg::I64(contact_id));
    let outcome = sql.arg(Arg::OptText(end.contact.last_outcome.clone()));
    let now_arg = sql.arg(Arg::I64(end.at));
    let set = if reset {
        // A restart came during the call: pending again, counters reset.
        "status = 'pending', attempts = 0, retries = 0, next_attempt_at = NULL".to_string()
    } else {
        let status = sql.arg(Arg::Text(end.contact.status.as_str().into()));
        let next = sql.arg(Arg::OptI64(end.contact.next_attempt_at));
        let mut set = format!("status = {status}, next_attempt_at = {next}");
        if let Some((attempts, retries)) = end.counters {
            let a = sql.arg(Arg::I64(attempts));
            let r = sql.arg(Arg::I64(retries));
            set.push_str(&format!(", attempts = {a}, retries = {r}"));
        }
        set
    };
    sql.text = format!(
        "UPDATE contacts SET {set}, last_outcome = COALESCE({outcome}, last_outcome), \
             updated_at = {now_arg} WHERE id = {id_arg} AND status IN ('dialing', 'on_hold') \
             RETURNING status"
    );
    let moved = sql
        .query(super::Backend::of(tx))
        .fetch_optional(&mut **tx)
        .await?;
    let status = match moved {
        Some(row) => super::get_word(&row, "status", ContactStatus::parse)?,
        None => {
            // Someone moved the contact during the call: its status stays theirs.
            let row = sqlx::query("SELECT status FROM contacts WHERE id = $1")
                .bind(contact_id)
                .fetch_one(&mut **tx)
                .await?;
            super::get_word(&row, "status", ContactStatus::parse)?
        }
    };
    let mut detail = end.event.clone();
    if let Some(map) = detail.as_object_mut() {
        map.insert("status".into(), serde_json::json!(status));
    }
    super::events::append_event_on(
        tx,
        end.record.campaign_id,
        Some(contact_id),
        "attempt",
        &detail,
        end.at,
    )
    .await?;
    Ok(Ended::Written { attempt_id, status })
}
