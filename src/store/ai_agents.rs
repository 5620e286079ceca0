//! AI voice agents, per account, and the campaign → agent lookup the call flow uses.
//!
//! A row holds what the admin sets ([`AiAgentSpec`]): kind, URL, custom parameters (JSON),
//! the auth header's name and the name of the environment variable holding its value,
//! the L16 rate, what happens when the agent closes and the hand-off target. A campaign
//! names an agent of its own account by `ai_agent_id`; an agent a campaign names is not
//! deleted (a Conflict naming the campaigns).
//!
//! What it must not do: store, read or log an auth header's value (only the variable's
//! name is stored), or show one account's agents to another (every call is scoped by
//! account).

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{
    conflict_on_constraint, corrupt, get_json, get_word, to_json, where_clause, Arg, Page, Paged,
    Result, Sql, Store, StoreError,
};
use crate::campaign::ai::{AiAgentKind, AiAgentSpec, OnAgentClose};
use crate::campaign::model::{CampaignSettings, Millis};

/// A stored AI agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AiAgent {
    pub id: i64,
    pub account_id: Option<i64>,
    #[serde(flatten)]
    pub spec: AiAgentSpec,
    pub created_at: Millis,
    pub updated_at: Millis,
}

const COLUMNS: &str = "id, account_id, name, kind, url, custom_parameters, auth_header_name, \
    auth_header_env, sample_rate, on_agent_close, handoff_target, created_at, updated_at";

fn ai_agent_from(row: &AnyRow) -> Result<AiAgent> {
    let sample_rate: Option<i64> = row.try_get("sample_rate")?;
    let sample_rate = sample_rate
        .map(|r| {
            u32::try_from(r).map_err(|_| StoreError::Db(corrupt("sample_rate", &r.to_string())))
        })
        .transpose()?;
    Ok(AiAgent {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        spec: AiAgentSpec {
            name: row.try_get("name")?,
            kind: get_word(row, "kind", AiAgentKind::parse)?,
            url: row.try_get("url")?,
            custom_parameters: get_json(row, "custom_parameters")?,
            auth_header_name: row.try_get("auth_header_name")?,
            auth_header_env: row.try_get("auth_header_env")?,
            sample_rate,
            on_agent_close: get_word(row, "on_agent_close", OnAgentClose::parse)?,
            handoff_target: row.try_get("handoff_target")?,
        },
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

/// The spec as stored: names, URL and targets trimmed, empty optional texts as none.
fn normalized(spec: &AiAgentSpec) -> AiAgentSpec {
    let text = |t: &Option<String>| {
        t.as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    };
    AiAgentSpec {
        name: spec.name.trim().to_string(),
        url: spec.url.trim().to_string(),
        auth_header_name: text(&spec.auth_header_name),
        auth_header_env: text(&spec.auth_header_env),
        handoff_target: text(&spec.handoff_target),
        ..spec.clone()
    }
}

fn spec_args(spec: &AiAgentSpec) -> Vec<Arg> {
    vec![
        Arg::Text(spec.name.clone()),
        Arg::Text(spec.kind.as_str().into()),
        Arg::Text(spec.url.clone()),
        Arg::Text(to_json(&spec.custom_parameters)),
        Arg::OptText(spec.auth_header_name.clone()),
        Arg::OptText(spec.auth_header_env.clone()),
        Arg::OptI64(spec.sample_rate.map(i64::from)),
        Arg::Text(spec.on_agent_close.as_str().into()),
        Arg::OptText(spec.handoff_target.clone()),
    ]
}

const SPEC_COLUMNS: [&str; 9] = [
    "name",
    "kind",
    "url",
    "custom_parameters",
    "auth_header_name",
    "auth_header_env",
    "sample_rate",
    "on_agent_close",
    "handoff_target",
];

fn duplicate(name: &str) -> String {
    format!("name: an AI agent named {name:?} exists")
}

impl Store {
    /// Stores a new AI agent of `account_id` (validated first; a duplicate name is a
    /// Conflict).
    pub async fn create_ai_agent(
        &self,
        account_id: Option<i64>,
        spec: &AiAgentSpec,
        now: Millis,
    ) -> Result<AiAgent> {
        let spec = normalized(spec);
        spec.validate()?;
        let mut sql = Sql::default();
        let mut values: Vec<String> = spec_args(&spec).into_iter().map(|a| sql.arg(a)).collect();
        values.push(sql.arg(Arg::OptI64(account_id)));
        let now_arg = sql.arg(Arg::I64(now));
        values.push(now_arg.clone());
        values.push(now_arg);
        sql.text = format!(
            "INSERT INTO ai_agents ({}, account_id, created_at, updated_at) VALUES ({}) \
             RETURNING {COLUMNS}",
            SPEC_COLUMNS.join(", "),
            values.join(", ")
        );
        let row = sql
            .query(self.backend)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| conflict_on_constraint(e, || duplicate(&spec.name)))?;
        ai_agent_from(&row)
    }

    /// One AI agent of `account_id` (NotFound for another account's).
    pub async fn get_ai_agent(&self, account_id: Option<i64>, id: i64) -> Result<AiAgent> {
        let mut sql = Sql::default();
        let id_arg = sql.arg(Arg::I64(id));
        let cond = account_cond(&mut sql, "account_id", account_id);
        sql.text = format!("SELECT {COLUMNS} FROM ai_agents WHERE id = {id_arg} AND {cond}");
        let row = sql
            .query(self.backend)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("AI agent {id}")))?;
        ai_agent_from(&row)
    }

    /// A page of an account's AI agents by name.
    pub async fn list_ai_agents(
        &self,
        account_id: Option<i64>,
        page: Page,
    ) -> Result<Paged<AiAgent>> {
        let page = page.clamped();
        let mut sql = Sql::default();
        let conds = vec![account_cond(&mut sql, "account_id", account_id)];
        let wc = where_clause(&conds);
        let count = Sql {
            text: format!("SELECT COUNT(*) AS n FROM ai_agents{wc}"),
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
            "SELECT {COLUMNS} FROM ai_agents{wc} ORDER BY name, id LIMIT {limit} OFFSET {offset}"
        );
        let rows = sql.query(self.backend).fetch_all(&self.pool).await?;
        let items = rows.iter().map(ai_agent_from).collect::<Result<Vec<_>>>()?;
        Ok(Paged { items, total })
    }

    /// Replaces an AI agent's settings (validated first).
    pub async fn update_ai_agent(
        &self,
        account_id: Option<i64>,
        id: i64,
        spec: &AiAgentSpec,
        now: Millis,
    ) -> Result<AiAgent> {
        let spec = normalized(spec);
        spec.validate()?;
        self.get_ai_agent(account_id, id).await?;
        let mut sql = Sql::default();
        let mut sets: Vec<String> = SPEC_COLUMNS
            .iter()
            .zip(spec_args(&spec))
            .map(|(c, a)| format!("{c} = {}", sql.arg(a)))
            .collect();
        sets.push(format!("updated_at = {}", sql.arg(Arg::I64(now))));
        let id_arg = sql.arg(Arg::I64(id));
        sql.text = format!(
            "UPDATE ai_agents SET {} WHERE id = {id_arg} RETURNING {COLUMNS}",
            sets.join(", ")
        );
        let row = sql
            .query(self.backend)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| conflict_on_constraint(e, || duplicate(&spec.name)))?
            .ok_or_else(|| StoreError::NotFound(format!("AI agent {id}")))?;
        ai_agent_from(&row)
    }

    /// The campaigns (id, name) that name AI agent `id`, by id.
    pub async fn campaigns_using_ai_agent(&self, id: i64) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query("SELECT id, name FROM campaigns WHERE ai_agent_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("name")?)))
            .collect()
    }

    /// Deletes an AI agent no campaign names (else a Conflict naming the campaigns; the
    /// check and the delete are one statement, so a campaign set meanwhile wins).
    pub async fn delete_ai_agent(&self, account_id: Option<i64>, id: i64) -> Result<()> {
        self.get_ai_agent(account_id, id).await?;
        let done = sqlx::query(
            "DELETE FROM ai_agents WHERE id = $1 \
             AND NOT EXISTS (SELECT 1 FROM campaigns WHERE ai_agent_id = $1)",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        let users = self.campaigns_using_ai_agent(id).await?;
        let names: Vec<String> = users
            .iter()
            .map(|(cid, name)| format!("{cid} ({name:?})"))
            .collect();
        Err(StoreError::Conflict(format!(
            "AI agent {id} is used by campaign{} {}: point them at another agent first",
            if names.len() == 1 { "" } else { "s" },
            names.join(", ")
        )))
    }

    /// A campaign's `ai_agent_id` must name an AI agent of the campaign's account
    /// (Invalid naming the field otherwise).
    pub(crate) async fn check_ai_agent_of(
        &self,
        account_id: Option<i64>,
        settings: &CampaignSettings,
    ) -> Result<()> {
        let Some(id) = settings.ai_agent_id else {
            return Ok(());
        };
        match self.get_ai_agent(account_id, id).await {
            Ok(_) => Ok(()),
            Err(StoreError::NotFound(_)) => Err(StoreError::Invalid(format!(
                "ai_agent_id: AI agent {id} does not exist (create it with POST /v1/agents/ai)"
            ))),
            Err(e) => Err(e),
        }
    }

    /// The AI agent a campaign's answered people are bridged to: its `ai_agent_id` record
    /// (of the campaign's account), or the `twilio_ws` agent its `ai_agent_url` stands for;
    /// `None` when it has neither. The call flow resolves it with
    /// [`AiAgentSpec::resolve_env`] at call time.
    pub async fn campaign_ai_agent(&self, campaign_id: i64) -> Result<Option<AiAgentSpec>> {
        let campaign = self.get_campaign(campaign_id).await?;
        if let Some(id) = campaign.settings.ai_agent_id {
            let owner = self.campaign_owner(campaign_id).await?;
            return Ok(Some(self.get_ai_agent(owner, id).await?.spec));
        }
        Ok(campaign
            .settings
            .ai_agent_url
            .as_deref()
            .map(AiAgentSpec::from_url))
    }
}
