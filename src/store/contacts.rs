//! Contacts of a campaign: admin CRUD, the import fast path and the scheduler's queries.
//!
//! A phone appears once per campaign (UNIQUE(campaign_id, phone)). Only `pending` contacts
//! may be removed. The scheduler reads [`Store::due_contacts`] and then takes each contact
//! with [`Store::claim_contact`], an `UPDATE … WHERE status IN (…)` that only one caller can
//! win, so two nodes never dial the same contact; the call's end is written with
//! [`Store::transition_contact`], again conditional on the status the engine left it in.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{
    get_json, get_word, in_list, is_e164, like_pattern, to_json, where_clause, Arg, Backend, Page,
    Paged, Result, Sql, Store, StoreError,
};
use crate::campaign::goals::GoalOutcome;
use crate::campaign::model::{Contact, ContactStatus, Millis};

/// Rows per INSERT statement in [`Store::bulk_insert_contacts`] (7 values each: well under
/// SQLite's 32,766 and PostgreSQL's 65,535 parameters).
const IMPORT_CHUNK: usize = 2000;

/// What an admin (or an import) gives for a contact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewContact {
    /// E.164 (`+` and digits); normalise before storing.
    pub phone: String,
    pub name: String,
    pub comments: String,
    pub tags: Vec<String>,
    pub timezone: Option<String>,
    /// Initial status (guide 1's dialog has one); not an in-call status.
    pub status: ContactStatus,
    /// Not before this time; `None`: as soon as the campaign runs.
    pub next_attempt_at: Option<Millis>,
}

impl Default for NewContact {
    fn default() -> Self {
        NewContact {
            phone: String::new(),
            name: String::new(),
            comments: String::new(),
            tags: Vec::new(),
            timezone: None,
            status: ContactStatus::Pending,
            next_attempt_at: None,
        }
    }
}

impl NewContact {
    pub fn new(phone: impl Into<String>) -> NewContact {
        NewContact {
            phone: phone.into(),
            ..NewContact::default()
        }
    }

    /// Checks the phone, the status and the time zone; names the field.
    pub fn validate(&self) -> Result<()> {
        if !is_e164(&self.phone) {
            return Err(StoreError::Invalid(format!(
                "phone: {:?} is not an E.164 number (+ and up to 15 digits)",
                self.phone
            )));
        }
        if !self.status.settable_by_admin() {
            return Err(StoreError::Invalid(format!(
                "status: {} is set by the dialer only",
                self.status
            )));
        }
        if let Some(tz) = &self.timezone {
            if tz.parse::<chrono_tz::Tz>().is_err() {
                return Err(StoreError::Invalid(format!(
                    "timezone: {tz:?} is not an IANA time zone"
                )));
            }
        }
        if self.name.chars().count() > 500 || self.comments.chars().count() > 4000 {
            return Err(StoreError::Invalid(
                "name or comments: too long (500 / 4000 characters)".into(),
            ));
        }
        Ok(())
    }
}

/// Which contacts a list shows; every field narrows it (empty/`None`: no narrowing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContactFilter {
    /// Any of these statuses.
    pub statuses: Vec<ContactStatus>,
    /// Carrying any of these tags (exact).
    pub tags: Vec<String>,
    pub min_retries: Option<i64>,
    pub max_retries: Option<i64>,
    /// Case-insensitive, in the name, the phone or the comments.
    pub search: Option<String>,
    /// Only these ids (an export of a selection).
    pub ids: Vec<i64>,
    /// With any of these primary-goal statuses (see [`super::goals`]; contacts never
    /// analysed have none).
    pub primary_goal_statuses: Vec<GoalOutcome>,
}

/// Where the engine moves a contact after (or instead of) a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactTransition {
    pub status: ContactStatus,
    /// Replaces the stored value (`None` clears it).
    pub next_attempt_at: Option<Millis>,
    /// Replaces the last outcome when `Some`.
    pub last_outcome: Option<String>,
}

pub(crate) const COLUMNS: &str = "id, campaign_id, phone, name, comments, tags, timezone, \
    status, attempts, retries, next_attempt_at, last_attempt_at, last_outcome, created_at, \
    updated_at";

pub(crate) fn contact_from(row: &AnyRow) -> Result<Contact> {
    Ok(Contact {
        id: row.try_get("id")?,
        campaign_id: row.try_get("campaign_id")?,
        phone: row.try_get("phone")?,
        name: row.try_get("name")?,
        comments: row.try_get("comments")?,
        tags: get_json(row, "tags")?,
        timezone: row.try_get("timezone")?,
        status: get_word(row, "status", ContactStatus::parse)?,
        attempts: row.try_get("attempts")?,
        retries: row.try_get("retries")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_attempt_at: row.try_get("last_attempt_at")?,
        last_outcome: row.try_get("last_outcome")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// A LIKE pattern for one tag inside the stored JSON array (`…"tag"…`), case kept.
fn tag_pattern(tag: &str) -> String {
    let json = to_json(&tag);
    let mut p = String::with_capacity(json.len() + 2);
    p.push('%');
    for c in json.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

fn status_list(sql: &mut Sql, statuses: &[ContactStatus]) -> String {
    in_list(sql, statuses.iter().map(|s| Arg::Text(s.as_str().into())))
}

/// Adds `filter`'s conditions on the contacts table (aliased `alias.`) to `conds`.
pub(crate) fn filter_conditions(
    sql: &mut Sql,
    conds: &mut Vec<String>,
    alias: &str,
    filter: &ContactFilter,
) {
    if !filter.statuses.is_empty() {
        let list = status_list(sql, &filter.statuses);
        conds.push(format!("{alias}status IN ({list})"));
    }
    if !filter.tags.is_empty() {
        let any: Vec<String> = filter
            .tags
            .iter()
            .map(|t| {
                let p = sql.arg(Arg::Text(tag_pattern(t)));
                format!("{alias}tags LIKE {p} ESCAPE '\\'")
            })
            .collect();
        conds.push(format!("({})", any.join(" OR ")));
    }
    if let Some(n) = filter.min_retries {
        conds.push(format!("{alias}retries >= {}", sql.arg(Arg::I64(n))));
    }
    if let Some(n) = filter.max_retries {
        conds.push(format!("{alias}retries <= {}", sql.arg(Arg::I64(n))));
    }
    if let Some(text) = filter.search.as_deref().filter(|t| !t.trim().is_empty()) {
        let p = sql.arg(Arg::Text(like_pattern(text.trim())));
        conds.push(format!(
            "(LOWER({alias}name) LIKE {p} ESCAPE '\\' OR {alias}phone LIKE {p} ESCAPE '\\' \
             OR LOWER({alias}comments) LIKE {p} ESCAPE '\\')"
        ));
    }
    if !filter.ids.is_empty() {
        let list = in_list(sql, filter.ids.iter().map(|i| Arg::I64(*i)));
        conds.push(format!("{alias}id IN ({list})"));
    }
    if !filter.primary_goal_statuses.is_empty() {
        conds.push(super::goals::primary_goal_condition(
            sql,
            alias,
            &filter.primary_goal_statuses,
        ));
    }
}

fn final_list() -> String {
    quoted_statuses(true)
}

/// The statuses that are (`final_ = true`) or are not final, quoted for an SQL `IN (…)`.
fn quoted_statuses(final_: bool) -> String {
    ContactStatus::ALL
        .iter()
        .filter(|s| s.is_final() == final_)
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// [`Store::claim_contact`] through `ex` (the pool, or the transaction that also writes the
/// call's row).
pub(crate) async fn claim_on<'e, E>(
    ex: E,
    backend: super::Backend,
    id: i64,
    expected: &[ContactStatus],
    now: Millis,
) -> Result<Option<Contact>>
where
    E: 'e + sqlx::Executor<'e, Database = sqlx::Any>,
{
    if expected.is_empty() {
        return Ok(None);
    }
    let mut sql = Sql::default();
    let id_arg = sql.arg(Arg::I64(id));
    let now_arg = sql.arg(Arg::I64(now));
    let list = status_list(&mut sql, expected);
    sql.text = format!(
        "UPDATE contacts SET status = 'dialing', attempts = attempts + 1, retries = attempts, \
         last_attempt_at = {now_arg}, updated_at = {now_arg} \
         WHERE id = {id_arg} AND status IN ({list}) RETURNING {COLUMNS}"
    );
    let row = sql.query(backend).fetch_optional(ex).await?;
    row.as_ref().map(contact_from).transpose()
}

/// [`claim_on`] for a group of contacts in one statement: those still in an `expected`
/// status are `dialing` now, by id (the others were taken or moved meanwhile).
pub(crate) async fn claim_many_on<'e, E>(
    ex: E,
    backend: super::Backend,
    ids: &[i64],
    expected: &[ContactStatus],
    now: Millis,
) -> Result<std::collections::HashMap<i64, Contact>>
where
    E: 'e + sqlx::Executor<'e, Database = sqlx::Any>,
{
    if expected.is_empty() || ids.is_empty() {
        return Ok(Default::default());
    }
    let mut sql = Sql::default();
    let now_arg = sql.arg(Arg::I64(now));
    let list = status_list(&mut sql, expected);
    let id_list = super::in_list(&mut sql, ids.iter().map(|id| Arg::I64(*id)));
    sql.text = format!(
        "UPDATE contacts SET status = 'dialing', attempts = attempts + 1, retries = attempts, \
         last_attempt_at = {now_arg}, updated_at = {now_arg} \
         WHERE id IN ({id_list}) AND status IN ({list}) RETURNING {COLUMNS}"
    );
    let rows = sql.query(backend).fetch_all(ex).await?;
    rows.iter()
        .map(|row| contact_from(row).map(|c| (c.id, c)))
        .collect()
}

impl Store {
    pub(crate) async fn ensure_campaign(&self, campaign_id: i64) -> Result<()> {
        let found = sqlx::query("SELECT id FROM campaigns WHERE id = $1")
            .bind(campaign_id)
            .fetch_optional(&self.pool)
            .await?;
        match found {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound(format!("campaign {campaign_id}"))),
        }
    }

    /// Adds one contact; a phone already in the campaign is a Conflict.
    pub async fn create_contact(
        &self,
        campaign_id: i64,
        contact: &NewContact,
        now: Millis,
    ) -> Result<Contact> {
        contact.validate()?;
        self.ensure_campaign(campaign_id).await?;
        let sql = format!(
            "INSERT INTO contacts (campaign_id, phone, name, comments, tags, timezone, status, \
             next_attempt_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING {COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(campaign_id)
            .bind(contact.phone.clone())
            .bind(contact.name.clone())
            .bind(contact.comments.clone())
            .bind(to_json(&contact.tags))
            .bind(contact.timezone.clone())
            .bind(contact.status.as_str())
            .bind(contact.next_attempt_at)
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| {
                super::conflict_on_constraint(e, || {
                    format!("{} is already in campaign {campaign_id}", contact.phone)
                })
            })?;
        contact_from(&row)
    }

    /// Imports contacts in one transaction, in multi-row INSERTs of [`IMPORT_CHUNK`] rows;
    /// phones already in the campaign (or twice in `contacts`) are skipped. Returns how
    /// many were inserted. Every row is validated first: one bad row rejects the batch
    /// (Invalid names its index and field).
    pub async fn bulk_insert_contacts(
        &self,
        campaign_id: i64,
        contacts: &[NewContact],
        now: Millis,
    ) -> Result<u64> {
        for (i, c) in contacts.iter().enumerate() {
            c.validate()
                .map_err(|e| StoreError::Invalid(format!("row {}: {e}", i + 1)))?;
        }
        self.ensure_campaign(campaign_id).await?;
        if contacts.is_empty() {
            return Ok(0);
        }
        let full_chunk_sql = import_sql(self.backend, IMPORT_CHUNK, campaign_id, now);
        let mut inserted = 0;
        let mut tx = self.pool.begin().await?;
        for chunk in contacts.chunks(IMPORT_CHUNK) {
            let text = if chunk.len() == IMPORT_CHUNK {
                full_chunk_sql.clone()
            } else {
                import_sql(self.backend, chunk.len(), campaign_id, now)
            };
            let mut q = sqlx::query(sqlx::AssertSqlSafe(text));
            for c in chunk {
                q = q
                    .bind(c.phone.clone())
                    .bind(c.name.clone())
                    .bind(c.comments.clone())
                    .bind(if c.tags.is_empty() {
                        "[]".to_string()
                    } else {
                        to_json(&c.tags)
                    })
                    .bind(c.timezone.clone())
                    .bind(c.status.as_str())
                    .bind(c.next_attempt_at);
            }
            inserted += q.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(inserted)
    }

    pub async fn get_contact(&self, id: i64) -> Result<Contact> {
        let sql = format!("SELECT {COLUMNS} FROM contacts WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("contact {id}")))?;
        contact_from(&row)
    }

    /// The contact of a campaign with this phone, if any.
    pub async fn contact_by_phone(&self, campaign_id: i64, phone: &str) -> Result<Option<Contact>> {
        let sql = format!("SELECT {COLUMNS} FROM contacts WHERE campaign_id = $1 AND phone = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(campaign_id)
            .bind(phone.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(contact_from).transpose()
    }

    /// A page of a campaign's contacts (by id) matching `filter`, with the filtered total.
    pub async fn list_contacts(
        &self,
        campaign_id: i64,
        filter: &ContactFilter,
        page: Page,
    ) -> Result<Paged<Contact>> {
        let page = page.clamped();
        let mut sql = Sql::default();
        let mut conds = vec![format!("campaign_id = {}", sql.arg(Arg::I64(campaign_id)))];
        filter_conditions(&mut sql, &mut conds, "", filter);
        let wc = where_clause(&conds);
        let count = Sql {
            text: format!("SELECT COUNT(*) AS n FROM contacts{wc}"),
            args: sql.args.clone(),
        };
        let total: i64 = count
            .query(self.backend)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let limit = sql.arg(Arg::I64(page.limit));
        let offset = sql.arg(Arg::I64(page.offset));
        sql.text =
            format!("SELECT {COLUMNS} FROM contacts{wc} ORDER BY id LIMIT {limit} OFFSET {offset}");
        let rows = sql.query(self.backend).fetch_all(&self.pool).await?;
        let items = rows.iter().map(contact_from).collect::<Result<Vec<_>>>()?;
        Ok(Paged { items, total })
    }

    /// Replaces a contact's admin fields. The status may not change while a call is live
    /// (Conflict); a phone already in the campaign is a Conflict.
    pub async fn update_contact(
        &self,
        id: i64,
        contact: &NewContact,
        now: Millis,
    ) -> Result<Contact> {
        contact.validate()?;
        let sql = format!(
            "UPDATE contacts SET phone = $2, name = $3, comments = $4, tags = $5, timezone = $6, \
             status = $7, next_attempt_at = $8, updated_at = $9 \
             WHERE id = $1 AND (status = $7 OR status NOT IN ('dialing', 'on_hold')) \
             RETURNING {COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(contact.phone.clone())
            .bind(contact.name.clone())
            .bind(contact.comments.clone())
            .bind(to_json(&contact.tags))
            .bind(contact.timezone.clone())
            .bind(contact.status.as_str())
            .bind(contact.next_attempt_at)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| {
                super::conflict_on_constraint(e, || {
                    format!("{} is already in this campaign", contact.phone)
                })
            })?;
        match row {
            Some(row) => contact_from(&row),
            None => {
                let current = self.get_contact(id).await?;
                Err(StoreError::Conflict(format!(
                    "contact {id} is {}: its status cannot change during a call",
                    current.status
                )))
            }
        }
    }

    /// Removes a contact nobody dialed yet; any other status is a Conflict.
    pub async fn delete_contact(&self, id: i64) -> Result<()> {
        let done = sqlx::query("DELETE FROM contacts WHERE id = $1 AND status = 'pending'")
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            let current = self.get_contact(id).await?;
            return Err(StoreError::Conflict(format!(
                "contact {id} is {}: only pending contacts can be removed",
                current.status
            )));
        }
        Ok(())
    }

    /// Removes the pending ones among `ids` (of this campaign); returns how many.
    pub async fn delete_pending_contacts(&self, campaign_id: i64, ids: &[i64]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut sql = Sql::default();
        let c = sql.arg(Arg::I64(campaign_id));
        let list = in_list(&mut sql, ids.iter().map(|i| Arg::I64(*i)));
        sql.text = format!(
            "DELETE FROM contacts WHERE campaign_id = {c} AND status = 'pending' AND id IN ({list})"
        );
        Ok(sql
            .query(self.backend)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Contacts the campaign may dial now: `pending` or `retry` with `next_attempt_at`
    /// unset or ≤ `now`; unset first, then by time, then by id; at most `limit`.
    pub async fn due_contacts(
        &self,
        campaign_id: i64,
        now: Millis,
        limit: i64,
    ) -> Result<Vec<Contact>> {
        let limit = limit.clamp(0, super::MAX_PAGE);
        if limit == 0 {
            return Ok(Vec::new());
        }
        // One indexed walk per status (each already in order), merged here: an
        // `IN (pending, retry)` would make the engines sort every due row.
        let sql = format!(
            "SELECT {COLUMNS} FROM contacts \
             WHERE campaign_id = $1 AND status = $2 \
               AND (next_attempt_at IS NULL OR next_attempt_at <= $3) \
             ORDER BY next_attempt_at NULLS FIRST, id LIMIT $4"
        );
        let mut all = Vec::new();
        for status in [ContactStatus::Pending, ContactStatus::Retry] {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(campaign_id)
                .bind(status.as_str())
                .bind(now)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
            for row in &rows {
                all.push(contact_from(row)?);
            }
        }
        all.sort_by_key(|c| (c.next_attempt_at.is_some(), c.next_attempt_at, c.id));
        all.truncate(limit as usize);
        Ok(all)
    }

    /// Takes a contact for dialing: `dialing`, one more attempt, `last_attempt_at = now`,
    /// only if its status is one of `expected` (normally pending and retry). `None` when
    /// another caller took it first or its status moved on. Exactly one of any number of
    /// concurrent callers wins.
    pub async fn claim_contact(
        &self,
        id: i64,
        expected: &[ContactStatus],
        now: Millis,
    ) -> Result<Option<Contact>> {
        claim_on(&self.pool, self.backend, id, expected, now).await
    }

    /// Moves a contact to `to.status` if its status is one of `expected` (empty: any).
    /// `None` when the status had moved on; NotFound when there is no such contact.
    pub async fn transition_contact(
        &self,
        id: i64,
        expected: &[ContactStatus],
        to: &ContactTransition,
        now: Millis,
    ) -> Result<Option<Contact>> {
        let mut sql = Sql::default();
        let id_arg = sql.arg(Arg::I64(id));
        let status = sql.arg(Arg::Text(to.status.as_str().into()));
        let next = sql.arg(Arg::OptI64(to.next_attempt_at));
        let outcome = sql.arg(Arg::OptText(to.last_outcome.clone()));
        let now_arg = sql.arg(Arg::I64(now));
        let mut conds = vec![format!("id = {id_arg}")];
        if !expected.is_empty() {
            let list = status_list(&mut sql, expected);
            conds.push(format!("status IN ({list})"));
        }
        sql.text = format!(
            "UPDATE contacts SET status = {status}, next_attempt_at = {next}, \
             last_outcome = COALESCE({outcome}, last_outcome), updated_at = {now_arg}{} \
             RETURNING {COLUMNS}",
            where_clause(&conds)
        );
        let row = sql.query(self.backend).fetch_optional(&self.pool).await?;
        match row {
            Some(row) => Ok(Some(contact_from(&row)?)),
            None => {
                self.get_contact(id).await?;
                Ok(None)
            }
        }
    }

    /// Contacts of the campaign not in a final status (the campaign is finished at 0).
    pub async fn count_non_final(&self, campaign_id: i64) -> Result<i64> {
        let sql = format!(
            "SELECT COUNT(*) AS n FROM contacts WHERE campaign_id = $1 AND status NOT IN ({})",
            final_list()
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(campaign_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Whether the campaign has a contact not in a final status (the engine's "is anything
    /// left?" on every tick): stops at the first such row, where a count would read them all.
    /// It names the statuses that are not final (one index seek each on `contacts_due`); a
    /// `NOT IN` the final ones would walk every finished contact before reaching one.
    pub async fn has_non_final(&self, campaign_id: i64) -> Result<bool> {
        let sql = format!(
            "SELECT id FROM contacts WHERE campaign_id = $1 AND status IN ({}) LIMIT 1",
            quoted_statuses(false)
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(campaign_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Contacts of the campaign in `status` (the pacer counts `on_hold`: people waiting
    /// for an agent).
    pub async fn count_in_status(&self, campaign_id: i64, status: ContactStatus) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM contacts WHERE campaign_id = $1 AND status = $2",
        )
        .bind(campaign_id)
        .bind(status.as_str().to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }

    /// Manual retry (guide 2's "retry selected"): contacts among `ids` that are not queued
    /// already (`pending`) nor in a call go to `retry`, due `now`. Returns how many.
    pub async fn manual_retry(&self, ids: &[i64], now: Millis) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut sql = Sql::default();
        let now_arg = sql.arg(Arg::I64(now));
        let list = in_list(&mut sql, ids.iter().map(|i| Arg::I64(*i)));
        sql.text = format!(
            "UPDATE contacts SET status = 'retry', next_attempt_at = {now_arg}, \
             updated_at = {now_arg} \
             WHERE id IN ({list}) AND status NOT IN ('pending', 'retry', 'dialing', 'on_hold')"
        );
        Ok(sql
            .query(self.backend)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Contacts `called` since before `older_than` become `completed` (the campaign's
    /// completion timeout). Returns how many.
    pub async fn complete_called_contacts(
        &self,
        campaign_id: i64,
        older_than: Millis,
        now: Millis,
    ) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE contacts SET status = 'completed', updated_at = $3 \
             WHERE campaign_id = $1 AND status = 'called' AND updated_at <= $2",
        )
        .bind(campaign_id)
        .bind(older_than)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

/// `INSERT … VALUES (…), (…) … ON CONFLICT DO NOTHING` for `rows` rows of 7 values each;
/// the campaign id and the time are integer literals. SQLite gets anonymous `?`
/// placeholders: with numbered ones (`$n`) it finds each parameter by name with a linear
/// walk, and binding 14,000 of them costs O(n²) (≈ 0.3 s per statement).
fn import_sql(backend: Backend, rows: usize, campaign_id: i64, now: Millis) -> String {
    values_sql(
        backend,
        "INSERT INTO contacts (campaign_id, phone, name, comments, tags, timezone, status, \
         next_attempt_at, created_at, updated_at) VALUES ",
        rows,
        &format!("{campaign_id}, "),
        &format!("{now}, {now}"),
        " ON CONFLICT (campaign_id, phone) DO NOTHING",
    )
}

/// `head` then `rows` rows of `(lead` + 7 placeholders + `tail)`, then `end`: `?` on SQLite
/// (see [`import_sql`] for why), `$n` on PostgreSQL. `lead` and `tail` are literals the caller
/// made (integers, ids it generated).
pub(super) fn values_sql(
    backend: Backend,
    head: &str,
    rows: usize,
    lead: &str,
    tail: &str,
    end: &str,
) -> String {
    let mut text = String::with_capacity(head.len() + end.len() + rows * 70);
    text.push_str(head);
    for r in 0..rows {
        if r > 0 {
            text.push_str(", ");
        }
        text.push('(');
        text.push_str(lead);
        for v in 0..7 {
            match backend {
                Backend::Sqlite => text.push('?'),
                Backend::Postgres => text.push_str(&format!("${}", r * 7 + v + 1)),
            }
            text.push_str(", ");
        }
        text.push_str(tail);
        text.push(')');
    }
    text.push_str(end);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_sql_numbers_each_row() {
        assert_eq!(
            import_sql(Backend::Postgres, 2, 7, 99).split(" VALUES ").nth(1).unwrap(),
            "(7, $1, $2, $3, $4, $5, $6, $7, 99, 99), (7, $8, $9, $10, $11, $12, $13, $14, 99, 99) \
             ON CONFLICT (campaign_id, phone) DO NOTHING"
        );
        assert_eq!(
            import_sql(Backend::Sqlite, 1, 7, 99)
                .split(" VALUES ")
                .nth(1)
                .unwrap(),
            "(7, ?, ?, ?, ?, ?, ?, ?, 99, 99) ON CONFLICT (campaign_id, phone) DO NOTHING"
        );
    }

    #[test]
    fn tag_patterns_match_the_json_element() {
        assert_eq!(tag_pattern("vip"), "%\"vip\"%");
        assert_eq!(tag_pattern("50%"), "%\"50\\%\"%");
    }

    #[test]
    fn contacts_are_validated() {
        assert!(NewContact::new("+12025550101").validate().is_ok());
        assert!(NewContact::new("12025550101").validate().is_err());
        let dialing = NewContact {
            status: ContactStatus::Dialing,
            ..NewContact::new("+12025550101")
        };
        assert!(dialing.validate().is_err());
    }
}
