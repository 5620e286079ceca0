//! A campaign's goals and analysis questions, the reports AI agents post about attempts,
//! and what the dashboard and the reporting tab read from them.
//!
//! Goals and analyses share one table (`campaign_questions`, `kind` primary | secondary |
//! analysis). At most one primary goal per campaign is active and unarchived at a time: a
//! partial unique index holds that under races, and the writes here check it first to name
//! the goal in the way. A report (`attempt_analyses` + one `attempt_answers` row per
//! question) is checked against the campaign's questions
//! ([`check_result`](crate::campaign::goals::check_result)); a second report for the same
//! attempt replaces the first, in one transaction.
//!
//! A contact's primary-goal status is read, never stored: the outcome its latest analysed
//! attempt (by start time, then id) gives for the campaign's current primary goal, or
//! `unknown` when that report does not mention it or the campaign has none; no status
//! while no attempt of the contact was analysed. The contact filter uses the same rule in
//! SQL ([`primary_goal_condition`]).
//!
//! What it must not do: read the clock (callers pass `now`), or decide who may see a
//! campaign (the API checks the account before calling).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{
    conflict_on_constraint, flag, get_flag, get_word, in_list, Arg, Result, Sql, Store, StoreError,
};
use crate::campaign::goals::{
    check_result, ConversationResult, GoalOutcome, Question, QuestionKind, QuestionSpec,
    QuestionType,
};
use crate::campaign::model::Millis;

const COLUMNS: &str =
    "id, campaign_id, kind, name, question, type, active, archived, created_at, updated_at";

fn question_from(row: &AnyRow) -> Result<Question> {
    Ok(Question {
        id: row.try_get("id")?,
        campaign_id: row.try_get("campaign_id")?,
        spec: QuestionSpec {
            kind: get_word(row, "kind", QuestionKind::parse)?,
            name: row.try_get("name")?,
            question: row.try_get("question")?,
            question_type: get_word(row, "type", QuestionType::parse)?,
            active: get_flag(row, "active")?,
        },
        archived: get_flag(row, "archived")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// One answer of a stored report, with its question's name, kind and type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub question_id: i64,
    pub kind: QuestionKind,
    pub name: String,
    pub question_type: QuestionType,
    /// Goals only.
    pub outcome: Option<GoalOutcome>,
    pub value: Option<serde_json::Value>,
}

/// A stored report about one attempt's conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptAnalysis {
    pub attempt_id: i64,
    pub campaign_id: i64,
    pub contact_id: Option<i64>,
    /// When the attempt started.
    pub started_at: Millis,
    pub summary: String,
    /// Goal answers (primary first), then in question order.
    pub goals: Vec<Answer>,
    pub analyses: Vec<Answer>,
    /// When the first report came, and when it was last replaced.
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// Contacts per outcome of one goal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeCounts {
    pub achieved: i64,
    pub partially_achieved: i64,
    pub not_achieved: i64,
    pub unknown: i64,
}

impl OutcomeCounts {
    pub fn add(&mut self, outcome: GoalOutcome) {
        match outcome {
            GoalOutcome::Achieved => self.achieved += 1,
            GoalOutcome::PartiallyAchieved => self.partially_achieved += 1,
            GoalOutcome::NotAchieved => self.not_achieved += 1,
            GoalOutcome::Unknown => self.unknown += 1,
        }
    }

    pub fn total(&self) -> i64 {
        self.achieved + self.partially_achieved + self.not_achieved + self.unknown
    }
}

/// One question over the campaign's analysed contacts (each contact's latest report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionStats {
    pub question: Question,
    /// Goals: the outcomes (a report without this goal counts as unknown). Zero for
    /// analyses.
    pub outcomes: OutcomeCounts,
    /// Latest reports that gave a value.
    pub answered: i64,
    /// yes_no: values true and false.
    pub yes: i64,
    pub no: i64,
    /// rating: the mean value, when any.
    pub average_rating: Option<f64>,
}

/// What goals and analyses add to a campaign report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GoalReport {
    /// Contacts with at least one analysed attempt.
    pub analysed_contacts: i64,
    /// The current primary goal (active, unarchived), if any.
    pub primary_goal_id: Option<i64>,
    /// Analysed contacts per primary-goal status.
    pub primary: OutcomeCounts,
    /// Attempts that were conversations: an agent posted a report for it, or a person
    /// answered (AMD did not say machine, fax or unknown) and was bridged to an agent.
    pub conversations: i64,
    /// Their total duration (answer → end), ms.
    pub conversation_ms: i64,
    /// Every goal (primary first, then by id), then every analysis, archived included.
    pub questions: Vec<QuestionStats>,
}

/// The SQL condition "the contact's primary-goal status is one of `statuses`", for the
/// contacts table aliased `alias` (`""` for the bare table name, or `"c."`).
pub(crate) fn primary_goal_condition(
    sql: &mut Sql,
    alias: &str,
    statuses: &[GoalOutcome],
) -> String {
    let contact = if alias.is_empty() { "contacts." } else { alias };
    let list = in_list(
        sql,
        statuses.iter().map(|s| Arg::Text(s.as_str().to_string())),
    );
    format!(
        "(SELECT COALESCE(pg_ans.outcome, 'unknown') FROM call_attempts pg_a \
         JOIN attempt_analyses pg_aa ON pg_aa.attempt_id = pg_a.id \
         LEFT JOIN attempt_answers pg_ans ON pg_ans.attempt_id = pg_a.id \
           AND pg_ans.question_id = (SELECT pg_q.id FROM campaign_questions pg_q \
             WHERE pg_q.campaign_id = {contact}campaign_id AND pg_q.kind = 'primary' \
             AND pg_q.active = 1 AND pg_q.archived = 0) \
         WHERE pg_a.contact_id = {contact}id \
         ORDER BY pg_a.started_at DESC, pg_a.id DESC LIMIT 1) IN ({list})"
    )
}

fn value_from(text: Option<String>) -> Result<Option<serde_json::Value>> {
    text.map(|t| serde_json::from_str(&t).map_err(|_| StoreError::Db(super::corrupt("value", &t))))
        .transpose()
}

impl Store {
    // -----------------------------------------------------------------------------------
    // Questions.

    /// The campaign's live primary goal other than `except`, if any.
    async fn live_primary(&self, campaign_id: i64, except: Option<i64>) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT id FROM campaign_questions WHERE campaign_id = $1 AND kind = 'primary' \
             AND active = 1 AND archived = 0 AND id <> $2",
        )
        .bind(campaign_id)
        .bind(except.unwrap_or(-1))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("id")).transpose()?)
    }

    fn second_primary(campaign_id: i64, existing: Option<i64>) -> StoreError {
        StoreError::Conflict(match existing {
            Some(id) => format!(
                "campaign {campaign_id} already has an active primary goal (goal {id}): \
                 archive or deactivate it first"
            ),
            None => format!("campaign {campaign_id} already has an active primary goal"),
        })
    }

    /// Stores a new goal or analysis question of a campaign (validated first). A second
    /// active, unarchived primary goal is a Conflict naming the first.
    pub async fn create_question(
        &self,
        campaign_id: i64,
        spec: &QuestionSpec,
        now: Millis,
    ) -> Result<Question> {
        spec.validate()?;
        self.get_campaign(campaign_id).await?;
        if spec.kind == QuestionKind::Primary && spec.active {
            if let Some(existing) = self.live_primary(campaign_id, None).await? {
                return Err(Self::second_primary(campaign_id, Some(existing)));
            }
        }
        let sql = format!(
            "INSERT INTO campaign_questions (campaign_id, kind, name, question, type, active, \
             archived, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7) \
             RETURNING {COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(campaign_id)
            .bind(spec.kind.as_str())
            .bind(spec.name.trim().to_string())
            .bind(spec.question.clone())
            .bind(spec.question_type.as_str())
            .bind(flag(spec.active))
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| {
                conflict_on_constraint(e, || Self::second_primary(campaign_id, None).to_string())
            })?;
        question_from(&row)
    }

    /// One question of the campaign (NotFound when it is another campaign's).
    pub async fn get_question(&self, campaign_id: i64, id: i64) -> Result<Question> {
        let sql =
            format!("SELECT {COLUMNS} FROM campaign_questions WHERE id = $1 AND campaign_id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(campaign_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| {
                StoreError::NotFound(format!("question {id} of campaign {campaign_id}"))
            })?;
        question_from(&row)
    }

    /// The campaign's questions of these kinds (primary first, then secondary, then
    /// analyses; by id within a kind); `archived`: only archived (`Some(true)`), only not
    /// archived (`Some(false)`) or both.
    pub async fn list_questions(
        &self,
        campaign_id: i64,
        kinds: &[QuestionKind],
        archived: Option<bool>,
    ) -> Result<Vec<Question>> {
        let mut sql = Sql::default();
        let campaign = sql.arg(Arg::I64(campaign_id));
        let mut conds = vec![format!("campaign_id = {campaign}")];
        if !kinds.is_empty() {
            let list = in_list(&mut sql, kinds.iter().map(|k| Arg::Text(k.as_str().into())));
            conds.push(format!("kind IN ({list})"));
        }
        if let Some(a) = archived {
            conds.push(format!("archived = {}", sql.arg(Arg::I64(flag(a)))));
        }
        sql.text = format!(
            "SELECT {COLUMNS} FROM campaign_questions WHERE {} \
             ORDER BY CASE kind WHEN 'primary' THEN 0 WHEN 'secondary' THEN 1 ELSE 2 END, id",
            conds.join(" AND ")
        );
        let rows = sql.query(self.backend).fetch_all(&self.pool).await?;
        rows.iter().map(question_from).collect()
    }

    /// Replaces a question's settings and archived flag (validated first). Making a
    /// primary goal live while another is: Conflict naming it. A goal stays a goal and an
    /// analysis an analysis.
    pub async fn update_question(
        &self,
        campaign_id: i64,
        id: i64,
        spec: &QuestionSpec,
        archived: bool,
        now: Millis,
    ) -> Result<Question> {
        spec.validate()?;
        let before = self.get_question(campaign_id, id).await?;
        if before.spec.kind.is_goal() != spec.kind.is_goal() {
            return Err(StoreError::Invalid(format!(
                "kind: question {id} is {} and cannot become {}",
                before.spec.kind, spec.kind
            )));
        }
        if spec.kind == QuestionKind::Primary && spec.active && !archived {
            if let Some(existing) = self.live_primary(campaign_id, Some(id)).await? {
                return Err(Self::second_primary(campaign_id, Some(existing)));
            }
        }
        let sql = format!(
            "UPDATE campaign_questions SET kind = $1, name = $2, question = $3, type = $4, \
             active = $5, archived = $6, updated_at = $7 WHERE id = $8 AND campaign_id = $9 \
             RETURNING {COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(spec.kind.as_str())
            .bind(spec.name.trim().to_string())
            .bind(spec.question.clone())
            .bind(spec.question_type.as_str())
            .bind(flag(spec.active))
            .bind(flag(archived))
            .bind(now)
            .bind(id)
            .bind(campaign_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| {
                conflict_on_constraint(e, || Self::second_primary(campaign_id, None).to_string())
            })?
            .ok_or_else(|| {
                StoreError::NotFound(format!("question {id} of campaign {campaign_id}"))
            })?;
        question_from(&row)
    }

    // -----------------------------------------------------------------------------------
    // Reports about attempts.

    /// Stores an agent's report about attempt `attempt_id`, replacing an earlier one. The
    /// attempt must belong to a campaign; the report is checked against the campaign's
    /// questions (Invalid naming the index and field: `goals[1].value: …`).
    pub async fn save_attempt_analysis(
        &self,
        attempt_id: i64,
        result: &ConversationResult,
        now: Millis,
    ) -> Result<AttemptAnalysis> {
        let attempt = self.get_attempt(attempt_id).await?;
        let Some(campaign_id) = attempt.record.campaign_id else {
            return Err(StoreError::Conflict(format!(
                "attempt {attempt_id} belongs to no campaign: it has no goals or analyses"
            )));
        };
        let questions = self.list_questions(campaign_id, &[], None).await?;
        check_result(result, &questions).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO attempt_analyses (attempt_id, summary, created_at, updated_at) \
             VALUES ($1, $2, $3, $3) ON CONFLICT (attempt_id) \
             DO UPDATE SET summary = excluded.summary, updated_at = excluded.updated_at",
        )
        .bind(attempt_id)
        .bind(result.summary.clone())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM attempt_answers WHERE attempt_id = $1")
            .bind(attempt_id)
            .execute(&mut *tx)
            .await?;
        let goals = result.goals.iter().map(|g| {
            (
                g.goal_id,
                Some(g.outcome.as_str()),
                g.value.as_ref().filter(|v| !v.is_null()),
            )
        });
        let analyses = result
            .analyses
            .iter()
            .map(|a| (a.analysis_id, None, Some(&a.value)));
        for (question_id, outcome, value) in goals.chain(analyses) {
            sqlx::query(
                "INSERT INTO attempt_answers (attempt_id, question_id, outcome, value) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(attempt_id)
            .bind(question_id)
            .bind(outcome.map(str::to_string))
            .bind(value.map(super::to_json))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.get_attempt_analysis(attempt_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("analysis of attempt {attempt_id}")))
    }

    /// The report about one attempt, if an agent posted one.
    pub async fn get_attempt_analysis(&self, attempt_id: i64) -> Result<Option<AttemptAnalysis>> {
        let mut found = self
            .analyses_where("aa.attempt_id = $1", attempt_id)
            .await?;
        Ok(found.pop())
    }

    /// Every report about a contact's attempts, latest attempt first (the contact's
    /// analytics across all its conversations).
    pub async fn contact_analyses(&self, contact_id: i64) -> Result<Vec<AttemptAnalysis>> {
        self.analyses_where("a.contact_id = $1", contact_id).await
    }

    async fn analyses_where(&self, cond: &str, id: i64) -> Result<Vec<AttemptAnalysis>> {
        let sql = format!(
            "SELECT aa.attempt_id, a.campaign_id, a.contact_id, a.started_at, aa.summary, \
             aa.created_at, aa.updated_at FROM attempt_analyses aa \
             JOIN call_attempts a ON a.id = aa.attempt_id WHERE {cond} \
             ORDER BY a.started_at DESC, a.id DESC"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let attempt_id: i64 = row.try_get("attempt_id")?;
            let campaign_id: Option<i64> = row.try_get("campaign_id")?;
            let (goals, analyses) = self.answers_of(attempt_id).await?;
            out.push(AttemptAnalysis {
                attempt_id,
                campaign_id: campaign_id.unwrap_or_default(),
                contact_id: row.try_get("contact_id")?,
                started_at: row.try_get("started_at")?,
                summary: row.try_get("summary")?,
                goals,
                analyses,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
            });
        }
        Ok(out)
    }

    /// A report's answers: (goals, analyses), each in question order (primary first).
    async fn answers_of(&self, attempt_id: i64) -> Result<(Vec<Answer>, Vec<Answer>)> {
        let rows = sqlx::query(
            "SELECT q.id, q.kind, q.name, q.type, ans.outcome, ans.value \
             FROM attempt_answers ans JOIN campaign_questions q ON q.id = ans.question_id \
             WHERE ans.attempt_id = $1 \
             ORDER BY CASE q.kind WHEN 'primary' THEN 0 WHEN 'secondary' THEN 1 ELSE 2 END, q.id",
        )
        .bind(attempt_id)
        .fetch_all(&self.pool)
        .await?;
        let mut goals = Vec::new();
        let mut analyses = Vec::new();
        for row in &rows {
            let outcome: Option<String> = row.try_get("outcome")?;
            let answer = Answer {
                question_id: row.try_get("id")?,
                kind: get_word(row, "kind", QuestionKind::parse)?,
                name: row.try_get("name")?,
                question_type: get_word(row, "type", QuestionType::parse)?,
                outcome: outcome
                    .map(|o| {
                        GoalOutcome::parse(&o)
                            .ok_or_else(|| StoreError::Db(super::corrupt("outcome", &o)))
                    })
                    .transpose()?,
                value: value_from(row.try_get("value")?)?,
            };
            if answer.kind.is_goal() {
                goals.push(answer);
            } else {
                analyses.push(answer);
            }
        }
        Ok((goals, analyses))
    }

    // -----------------------------------------------------------------------------------
    // What reports read.

    /// Each analysed contact's latest analysed attempt of a campaign: contact id →
    /// attempt id (attempts whose contact was deleted are left out).
    async fn latest_analysed(
        &self,
        campaign_id: i64,
        contact_ids: Option<&[i64]>,
    ) -> Result<HashMap<i64, i64>> {
        let mut sql = Sql::default();
        let campaign = sql.arg(Arg::I64(campaign_id));
        let mut cond = format!("a.campaign_id = {campaign} AND a.contact_id IS NOT NULL");
        if let Some(ids) = contact_ids {
            if ids.is_empty() {
                return Ok(HashMap::new());
            }
            let list = in_list(&mut sql, ids.iter().map(|i| Arg::I64(*i)));
            cond.push_str(&format!(" AND a.contact_id IN ({list})"));
        }
        sql.text = format!(
            "SELECT a.id, a.contact_id, a.started_at FROM call_attempts a \
             JOIN attempt_analyses aa ON aa.attempt_id = a.id WHERE {cond}"
        );
        let mut latest: HashMap<i64, (Millis, i64)> = HashMap::new();
        for row in sql.query(self.backend).fetch_all(&self.pool).await? {
            let id: i64 = row.try_get("id")?;
            let contact: i64 = row.try_get("contact_id")?;
            let started: Millis = row.try_get("started_at")?;
            let slot = latest.entry(contact).or_insert((started, id));
            if (started, id) > *slot {
                *slot = (started, id);
            }
        }
        Ok(latest.into_iter().map(|(c, (_, a))| (c, a)).collect())
    }

    /// The answers of these attempts: (attempt id, question id) → (outcome, value).
    #[allow(clippy::type_complexity)]
    async fn answers_of_attempts(
        &self,
        attempt_ids: &[i64],
    ) -> Result<HashMap<(i64, i64), (Option<GoalOutcome>, Option<serde_json::Value>)>> {
        let mut out = HashMap::new();
        for chunk in attempt_ids.chunks(1000) {
            let mut sql = Sql::default();
            let list = in_list(&mut sql, chunk.iter().map(|i| Arg::I64(*i)));
            sql.text = format!(
                "SELECT attempt_id, question_id, outcome, value FROM attempt_answers \
                 WHERE attempt_id IN ({list})"
            );
            for row in sql.query(self.backend).fetch_all(&self.pool).await? {
                let outcome: Option<String> = row.try_get("outcome")?;
                out.insert(
                    (row.try_get("attempt_id")?, row.try_get("question_id")?),
                    (
                        outcome.as_deref().and_then(GoalOutcome::parse),
                        value_from(row.try_get("value")?)?,
                    ),
                );
            }
        }
        Ok(out)
    }

    /// The primary-goal status of each of these contacts of a campaign that has one
    /// (contacts never analysed are absent).
    pub async fn primary_goal_statuses(
        &self,
        campaign_id: i64,
        contact_ids: &[i64],
    ) -> Result<HashMap<i64, GoalOutcome>> {
        let latest = self.latest_analysed(campaign_id, Some(contact_ids)).await?;
        if latest.is_empty() {
            return Ok(HashMap::new());
        }
        let primary = self.live_primary(campaign_id, None).await?;
        let attempts: Vec<i64> = latest.values().copied().collect();
        let answers = match primary {
            Some(_) => self.answers_of_attempts(&attempts).await?,
            None => HashMap::new(),
        };
        Ok(latest
            .into_iter()
            .map(|(contact, attempt)| {
                let outcome = primary
                    .and_then(|goal| answers.get(&(attempt, goal)))
                    .and_then(|(outcome, _)| *outcome)
                    .unwrap_or(GoalOutcome::Unknown);
                (contact, outcome)
            })
            .collect())
    }

    /// The goals part of a campaign report: analysed contacts, the primary goal's
    /// outcomes, conversations and their duration, and every question's breakdown over
    /// each analysed contact's latest report.
    pub async fn goal_report(&self, campaign_id: i64) -> Result<GoalReport> {
        let questions = self.list_questions(campaign_id, &[], None).await?;
        let primary_goal_id = self.live_primary(campaign_id, None).await?;
        let latest = self.latest_analysed(campaign_id, None).await?;
        let attempts: Vec<i64> = latest.values().copied().collect();
        let answers = self.answers_of_attempts(&attempts).await?;
        let mut stats = Vec::with_capacity(questions.len());
        let mut primary = OutcomeCounts::default();
        for question in questions {
            let mut s = QuestionStats {
                question,
                outcomes: OutcomeCounts::default(),
                answered: 0,
                yes: 0,
                no: 0,
                average_rating: None,
            };
            let mut rating_sum = 0i64;
            for attempt in &attempts {
                let answer = answers.get(&(*attempt, s.question.id));
                if s.question.spec.kind.is_goal() {
                    let outcome = answer.and_then(|(o, _)| *o).unwrap_or(GoalOutcome::Unknown);
                    s.outcomes.add(outcome);
                    if Some(s.question.id) == primary_goal_id {
                        primary.add(outcome);
                    }
                }
                if let Some(value) = answer.and_then(|(_, v)| v.as_ref()) {
                    s.answered += 1;
                    match value {
                        serde_json::Value::Bool(true) => s.yes += 1,
                        serde_json::Value::Bool(false) => s.no += 1,
                        serde_json::Value::Number(n) => rating_sum += n.as_i64().unwrap_or(0),
                        _ => {}
                    }
                }
            }
            if s.question.spec.question_type == QuestionType::Rating && s.answered > 0 {
                s.average_rating = Some(rating_sum as f64 / s.answered as f64);
            }
            stats.push(s);
        }
        if primary_goal_id.is_none() {
            primary.unknown = attempts.len() as i64;
        }
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(a.duration_ms), 0) AS BIGINT) AS ms \
             FROM call_attempts a WHERE a.campaign_id = $1 AND ( \
               EXISTS (SELECT 1 FROM attempt_analyses aa WHERE aa.attempt_id = a.id) \
               OR (a.outcome = 'answered' AND (a.answered_by IS NULL OR a.answered_by = 'human') \
                   AND a.bridge_start_at IS NOT NULL))",
        )
        .bind(campaign_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(GoalReport {
            analysed_contacts: attempts.len() as i64,
            primary_goal_id,
            primary,
            conversations: row.try_get("n")?,
            conversation_ms: row.try_get("ms")?,
            questions: stats,
        })
    }
}
