//! SIP agents and agent pools, per account, and the agent lease a call flow takes to bridge
//! a person to an agent.
//!
//! An agent row carries what the admin sets ([`AgentSpec`]) and what calls do to it: when
//! its state last changed, when it last became free (`idle_since`: set available, or its
//! wrap-up after a call ended), the end of its last call, the node holding it busy, and
//! its calls and talk time. A pool is a name and an ordered list of agents.
//!
//! [`Store::lease_agent`] picks the longest-idle free agent of a campaign's pool with the
//! sans-IO queue core ([`Pool::pick`]) and marks it busy with a compare-and-set
//! (`UPDATE … WHERE state = 'available' AND wrap-up over`), so two nodes never give one
//! agent two callers; [`Store::release_agent`] gives it back (with its wrap-up when it
//! talked).
//!
//! What it must not do: decide who takes a call beyond that pick, read the clock (callers
//! pass `now`), or show one account's agents to another (every call is scoped by account).

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{
    conflict_on_constraint, get_word, in_list, Arg, Page, Paged, Result, Sql, Store, StoreError,
};
use crate::campaign::agents::{check_name, AgentId, AgentSpec, ConnectTarget, Pool, PoolAgent};
use crate::campaign::model::{AgentState, Millis};

/// A stored agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub id: AgentId,
    pub account_id: Option<i64>,
    #[serde(flatten)]
    pub spec: AgentSpec,
    /// When the state last changed.
    pub state_since: Millis,
    /// When it last became free to take a call.
    pub idle_since: Option<Millis>,
    pub last_call_end_at: Option<Millis>,
    /// The node holding it busy for a call, and since when.
    pub lease_node: Option<String>,
    pub leased_at: Option<Millis>,
    /// Calls it talked on, and their talk time.
    pub calls: i64,
    pub talk_ms: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl Agent {
    /// The agent as the queue core sees it.
    pub fn pool_agent(&self) -> PoolAgent {
        PoolAgent {
            id: self.id,
            state: self.spec.state,
            wrap_up_ms: self.spec.wrap_up_secs.saturating_mul(1000),
            last_call_end: self.last_call_end_at,
            idle_since: self.idle_since,
        }
    }
}

/// A stored pool: a name and its agents in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentPool {
    pub id: i64,
    pub account_id: Option<i64>,
    pub name: String,
    pub agent_ids: Vec<AgentId>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// An agent held busy for one caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentLease {
    pub agent: Agent,
    /// How long it had been free before this lease (for occupancy: the attempt's
    /// `agent_idle_ms`).
    pub idle_ms: Millis,
}

/// How an agent's call ended, for [`Store::release_agent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentRelease {
    /// It talked: `talk_ms` added, wrap-up starts at `ended_at`.
    Talked { ended_at: Millis, talk_ms: i64 },
    /// It was rung but never talked (busy, rejected, no answer, caller gone): free at
    /// once, its idle time kept.
    NotConnected { at: Millis },
}

const COLUMNS: &str = "id, account_id, name, target, profile, state, wrap_up_secs, state_since, \
    idle_since, last_call_end_at, lease_node, leased_at, calls, talk_ms, created_at, updated_at";

fn agent_from(row: &AnyRow) -> Result<Agent> {
    Ok(Agent {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        spec: AgentSpec {
            name: row.try_get("name")?,
            target: row.try_get("target")?,
            profile: row.try_get("profile")?,
            state: get_word(row, "state", AgentState::parse)?,
            wrap_up_secs: row.try_get("wrap_up_secs")?,
        },
        state_since: row.try_get("state_since")?,
        idle_since: row.try_get("idle_since")?,
        last_call_end_at: row.try_get("last_call_end_at")?,
        lease_node: row.try_get("lease_node")?,
        leased_at: row.try_get("leased_at")?,
        calls: row.try_get("calls")?,
        talk_ms: row.try_get("talk_ms")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// `account_id = $n` or `account_id IS NULL`.
fn account_cond(sql: &mut Sql, column: &str, account_id: Option<i64>) -> String {
    match account_id {
        Some(a) => format!("{column} = {}", sql.arg(Arg::I64(a))),
        None => format!("{column} IS NULL"),
    }
}

fn trimmed(spec: &AgentSpec) -> AgentSpec {
    AgentSpec {
        name: spec.name.trim().to_string(),
        target: spec.target.trim().to_string(),
        profile: spec.profile.trim().to_string(),
        ..spec.clone()
    }
}

impl Store {
    /// Stores a new agent of `account_id` (validated first; a duplicate name is a Conflict).
    pub async fn create_agent(
        &self,
        account_id: Option<i64>,
        spec: &AgentSpec,
        now: Millis,
    ) -> Result<Agent> {
        spec.validate()?;
        let spec = trimmed(spec);
        let idle_since = (spec.state == AgentState::Available).then_some(now);
        let sql = format!(
            "INSERT INTO sip_agents (account_id, name, target, profile, state, wrap_up_secs, \
             state_since, idle_since, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7, $7) RETURNING {COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .bind(spec.name.clone())
            .bind(spec.target.clone())
            .bind(spec.profile.clone())
            .bind(spec.state.as_str().to_string())
            .bind(spec.wrap_up_secs)
            .bind(now)
            .bind(idle_since)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| {
                conflict_on_constraint(e, || format!("name: an agent named {:?} exists", spec.name))
            })?;
        agent_from(&row)
    }

    /// One agent of `account_id` (NotFound for another account's).
    pub async fn get_agent(&self, account_id: Option<i64>, id: AgentId) -> Result<Agent> {
        let mut sql = Sql::default();
        let id_arg = sql.arg(Arg::I64(id));
        let cond = account_cond(&mut sql, "account_id", account_id);
        sql.text = format!("SELECT {COLUMNS} FROM sip_agents WHERE id = {id_arg} AND {cond}");
        let row = sql
            .query(self.backend)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("agent {id}")))?;
        agent_from(&row)
    }

    /// A page of an account's agents by name, optionally in one state.
    pub async fn list_agents(
        &self,
        account_id: Option<i64>,
        state: Option<AgentState>,
        page: Page,
    ) -> Result<Paged<Agent>> {
        let page = page.clamped();
        let mut sql = Sql::default();
        let mut conds = vec![account_cond(&mut sql, "account_id", account_id)];
        if let Some(s) = state {
            conds.push(format!("state = {}", sql.arg(Arg::Text(s.as_str().into()))));
        }
        let wc = super::where_clause(&conds);
        let count = Sql {
            text: format!("SELECT COUNT(*) AS n FROM sip_agents{wc}"),
            args: sql.args.clone(),
        };
        let total: i64 = count
            .query(self.backend)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let limit = sql.arg(Arg::I64(page.limit));
        let offset = sql.arg(Arg::I64(page.offset));
        sql.text = format!(
            "SELECT {COLUMNS} FROM sip_agents{wc} ORDER BY name, id LIMIT {limit} OFFSET {offset}"
        );
        let rows = sql.query(self.backend).fetch_all(&self.pool).await?;
        let items = rows.iter().map(agent_from).collect::<Result<Vec<_>>>()?;
        Ok(Paged { items, total })
    }

    /// Replaces an agent's settings (validated). A state change moves `state_since`; an
    /// agent set available starts its idle time now.
    pub async fn update_agent(
        &self,
        account_id: Option<i64>,
        id: AgentId,
        spec: &AgentSpec,
        now: Millis,
    ) -> Result<Agent> {
        spec.validate()?;
        let spec = trimmed(spec);
        let before = self.get_agent(account_id, id).await?;
        let changed = before.spec.state != spec.state;
        let state_since = if changed { now } else { before.state_since };
        let idle_since = match (changed, spec.state) {
            (true, AgentState::Available) => Some(now),
            (true, _) => None,
            (false, _) => before.idle_since,
        };
        // Leaving busy by hand drops the lease (the call flow's release then changes nothing).
        let keep_lease = spec.state == AgentState::Busy;
        let sql = format!(
            "UPDATE sip_agents SET name = $1, target = $2, profile = $3, state = $4, \
             wrap_up_secs = $5, state_since = $6, idle_since = $7, updated_at = $8, \
             lease_node = CASE WHEN $9 = 1 THEN lease_node ELSE NULL END, \
             leased_at = CASE WHEN $9 = 1 THEN leased_at ELSE NULL END \
             WHERE id = $10 RETURNING {COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(spec.name.clone())
            .bind(spec.target.clone())
            .bind(spec.profile.clone())
            .bind(spec.state.as_str().to_string())
            .bind(spec.wrap_up_secs)
            .bind(state_since)
            .bind(idle_since)
            .bind(now)
            .bind(i64::from(keep_lease))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| {
                conflict_on_constraint(e, || format!("name: an agent named {:?} exists", spec.name))
            })?
            .ok_or_else(|| StoreError::NotFound(format!("agent {id}")))?;
        agent_from(&row)
    }

    /// Sets an agent's state (the API's `POST …/state`).
    pub async fn set_agent_state(
        &self,
        account_id: Option<i64>,
        id: AgentId,
        state: AgentState,
        now: Millis,
    ) -> Result<Agent> {
        let mut spec = self.get_agent(account_id, id).await?.spec;
        spec.state = state;
        self.update_agent(account_id, id, &spec, now).await
    }

    /// Deletes an agent (it leaves every pool).
    pub async fn delete_agent(&self, account_id: Option<i64>, id: AgentId) -> Result<()> {
        self.get_agent(account_id, id).await?;
        sqlx::query("DELETE FROM sip_agents WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // Pools.

    /// Every id must be one of the account's agents, once.
    async fn check_members(&self, account_id: Option<i64>, ids: &[AgentId]) -> Result<()> {
        for (i, id) in ids.iter().enumerate() {
            if ids[..i].contains(id) {
                return Err(StoreError::Invalid(format!(
                    "agent_ids: agent {id} is listed twice"
                )));
            }
        }
        if ids.is_empty() {
            return Ok(());
        }
        let mut sql = Sql::default();
        let list = in_list(&mut sql, ids.iter().map(|&id| Arg::I64(id)));
        let cond = account_cond(&mut sql, "account_id", account_id);
        sql.text = format!("SELECT id FROM sip_agents WHERE id IN ({list}) AND {cond}");
        let rows = sql.query(self.backend).fetch_all(&self.pool).await?;
        let found: Vec<i64> = rows
            .iter()
            .map(|r| r.try_get::<i64, _>("id"))
            .collect::<std::result::Result<_, _>>()?;
        if let Some(missing) = ids.iter().find(|id| !found.contains(id)) {
            return Err(StoreError::Invalid(format!(
                "agent_ids: agent {missing} does not exist"
            )));
        }
        Ok(())
    }

    async fn pool_members(&self, pool_id: i64) -> Result<Vec<AgentId>> {
        let rows = sqlx::query(
            "SELECT agent_id FROM agent_pool_members WHERE pool_id = $1 ORDER BY position",
        )
        .bind(pool_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get::<i64, _>("agent_id"))
            .collect::<std::result::Result<_, _>>()?)
    }

    async fn pool_from(&self, row: &AnyRow) -> Result<AgentPool> {
        let id: i64 = row.try_get("id")?;
        Ok(AgentPool {
            id,
            account_id: row.try_get("account_id")?,
            name: row.try_get("name")?,
            agent_ids: self.pool_members(id).await?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }

    async fn set_members(&self, pool_id: i64, ids: &[AgentId]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM agent_pool_members WHERE pool_id = $1")
            .bind(pool_id)
            .execute(&mut *tx)
            .await?;
        for (position, id) in ids.iter().enumerate() {
            sqlx::query(
                "INSERT INTO agent_pool_members (pool_id, agent_id, position) VALUES ($1, $2, $3)",
            )
            .bind(pool_id)
            .bind(*id)
            .bind(position as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stores a pool of the account's agents (a duplicate name is a Conflict).
    pub async fn create_pool(
        &self,
        account_id: Option<i64>,
        name: &str,
        agent_ids: &[AgentId],
        now: Millis,
    ) -> Result<AgentPool> {
        check_name("name", name)?;
        self.check_members(account_id, agent_ids).await?;
        let name = name.trim().to_string();
        let row = sqlx::query(
            "INSERT INTO agent_pools (account_id, name, created_at, updated_at) \
             VALUES ($1, $2, $3, $3) RETURNING id",
        )
        .bind(account_id)
        .bind(name.clone())
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| conflict_on_constraint(e, || format!("name: a pool named {name:?} exists")))?;
        let id: i64 = row.try_get("id")?;
        self.set_members(id, agent_ids).await?;
        self.get_pool(account_id, id).await
    }

    pub async fn get_pool(&self, account_id: Option<i64>, id: i64) -> Result<AgentPool> {
        let mut sql = Sql::default();
        let id_arg = sql.arg(Arg::I64(id));
        let cond = account_cond(&mut sql, "account_id", account_id);
        sql.text = format!(
            "SELECT id, account_id, name, created_at, updated_at FROM agent_pools \
             WHERE id = {id_arg} AND {cond}"
        );
        let row = sql
            .query(self.backend)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("pool {id}")))?;
        self.pool_from(&row).await
    }

    /// The account's pool named `name` (case-sensitive, trimmed), if any.
    pub async fn pool_by_name(
        &self,
        account_id: Option<i64>,
        name: &str,
    ) -> Result<Option<AgentPool>> {
        let mut sql = Sql::default();
        let name_arg = sql.arg(Arg::Text(name.trim().to_string()));
        let cond = account_cond(&mut sql, "account_id", account_id);
        sql.text = format!(
            "SELECT id, account_id, name, created_at, updated_at FROM agent_pools \
             WHERE name = {name_arg} AND {cond}"
        );
        match sql.query(self.backend).fetch_optional(&self.pool).await? {
            Some(row) => Ok(Some(self.pool_from(&row).await?)),
            None => Ok(None),
        }
    }

    /// The account's pools by name.
    pub async fn list_pools(&self, account_id: Option<i64>) -> Result<Vec<AgentPool>> {
        let mut sql = Sql::default();
        let cond = account_cond(&mut sql, "account_id", account_id);
        sql.text = format!(
            "SELECT id, account_id, name, created_at, updated_at FROM agent_pools \
             WHERE {cond} ORDER BY name, id"
        );
        let rows = sql.query(self.backend).fetch_all(&self.pool).await?;
        let mut pools = Vec::with_capacity(rows.len());
        for row in &rows {
            pools.push(self.pool_from(row).await?);
        }
        Ok(pools)
    }

    /// Renames a pool and/or replaces its agents.
    pub async fn update_pool(
        &self,
        account_id: Option<i64>,
        id: i64,
        name: Option<&str>,
        agent_ids: Option<&[AgentId]>,
        now: Millis,
    ) -> Result<AgentPool> {
        let pool = self.get_pool(account_id, id).await?;
        if let Some(name) = name {
            check_name("name", name)?;
        }
        if let Some(ids) = agent_ids {
            self.check_members(account_id, ids).await?;
        }
        let name = name.map_or(pool.name.clone(), |n| n.trim().to_string());
        sqlx::query("UPDATE agent_pools SET name = $1, updated_at = $2 WHERE id = $3")
            .bind(name.clone())
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| {
                conflict_on_constraint(e, || format!("name: a pool named {name:?} exists"))
            })?;
        if let Some(ids) = agent_ids {
            self.set_members(id, ids).await?;
        }
        self.get_pool(account_id, id).await
    }

    pub async fn delete_pool(&self, account_id: Option<i64>, id: i64) -> Result<()> {
        self.get_pool(account_id, id).await?;
        sqlx::query("DELETE FROM agent_pools WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // What calls do to agents.

    /// The pool a campaign's `connect_to` names (in the campaign owner's account) with its
    /// agents in the pool's order; `None` when `connect_to` is not a pool name or no such
    /// pool exists.
    pub async fn campaign_pool(&self, campaign_id: i64) -> Result<Option<(AgentPool, Vec<Agent>)>> {
        let campaign = self.get_campaign(campaign_id).await?;
        let ConnectTarget::Pool(name) = ConnectTarget::parse(&campaign.settings.connect_to) else {
            return Ok(None);
        };
        let owner = self.campaign_owner(campaign_id).await?;
        let Some(pool) = self.pool_by_name(owner, &name).await? else {
            return Ok(None);
        };
        let agents = self.pool_agents(&pool).await?;
        Ok(Some((pool, agents)))
    }

    async fn pool_agents(&self, pool: &AgentPool) -> Result<Vec<Agent>> {
        let sql = format!(
            "SELECT {} FROM sip_agents a JOIN agent_pool_members m ON m.agent_id = a.id \
             WHERE m.pool_id = $1 ORDER BY m.position",
            COLUMNS
                .split(", ")
                .map(|c| format!("a.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(pool.id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(agent_from).collect()
    }

    /// Takes the longest-idle free agent of the campaign's pool for one caller (skipping
    /// `skip`, the agents that already failed this caller) and marks it busy for `node`.
    /// The mark is a compare-and-set: if another node took the agent first, the next one
    /// is tried. `None`: no agent is free (or the campaign has no pool).
    pub async fn lease_agent(
        &self,
        campaign_id: i64,
        node: &str,
        skip: &[AgentId],
        now: Millis,
    ) -> Result<Option<AgentLease>> {
        let Some((_, agents)) = self.campaign_pool(campaign_id).await? else {
            return Ok(None);
        };
        let pool = Pool::new(agents.iter().map(Agent::pool_agent).collect());
        let mut tried: Vec<AgentId> = skip.to_vec();
        while let Some(id) = pool.pick(now, &tried) {
            tried.push(id);
            if let Some(lease) = self.try_lease_agent(id, node, now).await? {
                return Ok(Some(lease));
            }
        }
        Ok(None)
    }

    /// Marks this agent busy for `node` if it is available and out of its wrap-up at
    /// `now` (a compare-and-set); `None` when it is not (another node took it, an admin
    /// paused it, it is wrapping up). For a driver of
    /// [`CallerQueue`](crate::campaign::agents::CallerQueue): on `Ring(id)` lease `id`; on
    /// `None` feed `AgentBusy(id)`.
    pub async fn try_lease_agent(
        &self,
        agent_id: AgentId,
        node: &str,
        now: Millis,
    ) -> Result<Option<AgentLease>> {
        let before = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM sip_agents WHERE id = $1"
        )))
        .bind(agent_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(before) = before.as_ref().map(agent_from).transpose()? else {
            return Ok(None);
        };
        let done = sqlx::query(
            "UPDATE sip_agents SET state = 'busy', state_since = $2, lease_node = $3, \
             leased_at = $2, updated_at = $2 \
             WHERE id = $1 AND state = 'available' \
             AND (last_call_end_at IS NULL OR last_call_end_at + wrap_up_secs * 1000 <= $2)",
        )
        .bind(agent_id)
        .bind(now)
        .bind(node.to_string())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        let wrap_end = before.last_call_end_at.map_or(Millis::MIN, |end| {
            end.saturating_add(before.spec.wrap_up_secs * 1000)
        });
        let free_since = before.idle_since.unwrap_or(now).max(wrap_end);
        let agent = self.get_agent(before.account_id, agent_id).await?;
        Ok(Some(AgentLease {
            agent,
            idle_ms: now.saturating_sub(free_since).max(0),
        }))
    }

    /// Gives a leased agent back. It becomes available again only if it is still busy
    /// (an admin who paused it meanwhile wins); after a talk its wrap-up starts at the
    /// end of the call and the call and talk time are counted.
    pub async fn release_agent(&self, agent_id: AgentId, release: AgentRelease) -> Result<()> {
        let done = match release {
            AgentRelease::Talked { ended_at, talk_ms } => {
                sqlx::query(
                    "UPDATE sip_agents SET \
                     state = CASE WHEN state = 'busy' THEN 'available' ELSE state END, \
                     state_since = CASE WHEN state = 'busy' THEN $2 ELSE state_since END, \
                     idle_since = $2 + wrap_up_secs * 1000, last_call_end_at = $2, \
                     lease_node = NULL, leased_at = NULL, calls = calls + 1, \
                     talk_ms = talk_ms + $3, updated_at = $2 WHERE id = $1",
                )
                .bind(agent_id)
                .bind(ended_at)
                .bind(talk_ms.max(0))
                .execute(&self.pool)
                .await?
            }
            AgentRelease::NotConnected { at } => {
                sqlx::query(
                    "UPDATE sip_agents SET \
                     state = CASE WHEN state = 'busy' THEN 'available' ELSE state END, \
                     state_since = CASE WHEN state = 'busy' THEN $2 ELSE state_since END, \
                     lease_node = NULL, leased_at = NULL, updated_at = $2 WHERE id = $1",
                )
                .bind(agent_id)
                .bind(at)
                .execute(&self.pool)
                .await?
            }
        };
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("agent {agent_id}")));
        }
        Ok(())
    }

    /// Agents held busy since before `leased_before` (longer than any call lasts: their
    /// node died mid-call) become available again. Returns how many.
    pub async fn release_stale_agents(&self, leased_before: Millis, now: Millis) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE sip_agents SET state = 'available', state_since = $2, idle_since = $2, \
             lease_node = NULL, leased_at = NULL, updated_at = $2 \
             WHERE state = 'busy' AND leased_at IS NOT NULL AND leased_at < $1",
        )
        .bind(leased_before)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Agents still held busy by `node` (after a crash of that node: release them).
    pub async fn release_node_agents(&self, node: &str, now: Millis) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE sip_agents SET state = 'available', state_since = $2, idle_since = $2, \
             lease_node = NULL, leased_at = NULL, updated_at = $2 \
             WHERE lease_node = $1 AND state = 'busy'",
        )
        .bind(node.to_string())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
