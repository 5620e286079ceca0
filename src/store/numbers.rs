//! Phone numbers (DIDs) as records: each belongs to one account, is stored in E.164 and is
//! unique across the whole store, with an optional label and the SIP profile it is reached
//! on. A campaign names one (`campaigns.number_id`, set at creation only) and calls from it.
//!
//! The rule "a number is held by at most one campaign that is scheduled, processing or
//! paused" ([`CampaignStatus::holds_number`]) is kept inside the transactions that put a
//! campaign into such a status (create, start, resume, restart, the engine's moves): they
//! call [`lock_number`] first, which takes the number row's write lock (a PostgreSQL row
//! lock; SQLite's one writer) and then looks for another holder, so two campaigns cannot
//! both take the number, whichever node runs them.
//!
//! [`Store::campaign_for_number`] answers the inbound side: which account and campaign own a
//! called number.
//!
//! Must not: show or change another account's numbers (every call names the account), or
//! move a campaign's status (the campaign store does; this file only checks and locks).

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{conflict_on_constraint, is_e164, Arg, Page, Paged, Result, Sql, Store, StoreError};
use crate::campaign::model::{CampaignStatus, Millis};

/// The statuses that hold a number, as an SQL list.
const HOLDING: &str = "('scheduled', 'processing', 'paused')";
/// Longest label, in characters.
const MAX_LABEL: usize = 200;
/// Longest SIP profile name, in bytes.
const MAX_PROFILE: usize = 100;

/// One of an account's phone numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneNumber {
    pub id: i64,
    pub account_id: i64,
    /// E.164.
    pub number: String,
    pub label: Option<String>,
    /// The SIP profile (trunk) the number is reached on.
    pub sip_profile: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// The scheduled, processing or paused campaign holding it (`None`: available).
    pub campaign_id: Option<i64>,
}

/// What a new number carries besides its account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewNumber {
    pub number: String,
    pub label: Option<String>,
    pub sip_profile: Option<String>,
}

/// A change to a number: `None` keeps a field, `Some(None)` clears it. The number itself
/// never changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NumberUpdate {
    pub label: Option<Option<String>>,
    pub sip_profile: Option<Option<String>>,
}

const COLUMNS: &str = "n.id, n.account_id, n.number, n.label, n.sip_profile, n.created_at, \
    n.updated_at, (SELECT MIN(c.id) FROM campaigns c WHERE c.number_id = n.id \
    AND c.status IN ('scheduled', 'processing', 'paused')) AS campaign_id";

fn number_from(row: &AnyRow) -> Result<PhoneNumber> {
    Ok(PhoneNumber {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        number: row.try_get("number")?,
        label: row.try_get("label")?,
        sip_profile: row.try_get("sip_profile")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        campaign_id: row.try_get("campaign_id")?,
    })
}

/// The number in E.164 (surrounding spaces dropped), or Invalid naming `number`.
pub fn valid_number(text: &str) -> Result<String> {
    let number = text.trim();
    if is_e164(number) {
        Ok(number.to_string())
    } else {
        Err(StoreError::Invalid(format!(
            "number: {text:?} is not an E.164 number (+, then up to 15 digits, the first not 0)"
        )))
    }
}

/// A label: trimmed, empty reads as none, at most 200 characters.
fn valid_label(label: Option<&str>) -> Result<Option<String>> {
    let Some(label) = label.map(str::trim).filter(|l| !l.is_empty()) else {
        return Ok(None);
    };
    if label.chars().count() > MAX_LABEL {
        return Err(StoreError::Invalid(format!(
            "label: longer than {MAX_LABEL} characters"
        )));
    }
    Ok(Some(label.to_string()))
}

/// A SIP profile name: trimmed, empty reads as none, else letters, digits, `.`, `_`, `-`.
fn valid_profile(name: Option<&str>) -> Result<Option<String>> {
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    let ok = name.len() <= MAX_PROFILE
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        return Err(StoreError::Invalid(format!(
            "sip_profile: {name:?} is not a profile name (letters, digits, '.', '_' and '-', \
             at most {MAX_PROFILE})"
        )));
    }
    Ok(Some(name.to_string()))
}

/// A number locked for the rest of a transaction (see [`lock_number`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LockedNumber {
    pub id: i64,
    pub account_id: i64,
    pub number: String,
    pub sip_profile: Option<String>,
}

fn locked_from(row: &AnyRow) -> Result<LockedNumber> {
    Ok(LockedNumber {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        number: row.try_get("number")?,
        sip_profile: row.try_get("sip_profile")?,
    })
}

/// Takes the write lock of number `id` for the rest of the transaction `conn` is in: the
/// first statement of that transaction should be this one (SQLite then waits for the one
/// writer instead of failing on a stale snapshot). `None` when there is no such number.
pub(crate) async fn lock_number(conn: &mut AnyConnection, id: i64) -> Result<Option<LockedNumber>> {
    let row = sqlx::query(
        "UPDATE numbers SET updated_at = updated_at WHERE id = $1 \
         RETURNING id, account_id, number, sip_profile",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(locked_from).transpose()
}

/// [`lock_number`] for the number campaign `campaign_id` names (`None`: it names none, or
/// the campaign does not exist).
pub(crate) async fn lock_number_of_campaign(
    conn: &mut AnyConnection,
    campaign_id: i64,
) -> Result<Option<LockedNumber>> {
    let row = sqlx::query(
        "UPDATE numbers SET updated_at = updated_at \
         WHERE id = (SELECT number_id FROM campaigns WHERE id = $1) \
         RETURNING id, account_id, number, sip_profile",
    )
    .bind(campaign_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(locked_from).transpose()
}

/// Conflict naming the campaign when a campaign other than `campaign_id` (0: a campaign
/// not stored yet) holds the locked number.
pub(crate) async fn check_not_held(
    conn: &mut AnyConnection,
    number: &LockedNumber,
    campaign_id: i64,
) -> Result<()> {
    let sql = format!(
        "SELECT id, name, status FROM campaigns WHERE number_id = $1 AND id <> $2 \
         AND status IN {HOLDING} ORDER BY id LIMIT 1"
    );
    let holder = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(number.id)
        .bind(campaign_id)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = holder {
        let id: i64 = row.try_get("id")?;
        let name: String = row.try_get("name")?;
        let status: String = row.try_get("status")?;
        return Err(StoreError::Conflict(format!(
            "number {} is held by campaign {id} {name:?} ({status}): a number belongs to one \
             scheduled, processing or paused campaign at a time",
            number.number
        )));
    }
    Ok(())
}

/// Before campaign `campaign_id` moves to `to` inside `conn`'s transaction: when `to` holds
/// a number and the campaign names one, locks it and fails with Conflict if another
/// campaign holds it. Run it first in the transaction (it starts with a write).
pub(crate) async fn check_campaign_may_hold(
    conn: &mut AnyConnection,
    campaign_id: i64,
    to: CampaignStatus,
) -> Result<()> {
    if !to.holds_number() {
        return Ok(());
    }
    if let Some(number) = lock_number_of_campaign(conn, campaign_id).await? {
        check_not_held(conn, &number, campaign_id).await?;
    }
    Ok(())
}

impl Store {
    /// Adds a number to an account: E.164 (Invalid naming `number`); a number already in
    /// the store (any account's) is a Conflict.
    pub async fn create_number(
        &self,
        account_id: i64,
        new: &NewNumber,
        now: Millis,
    ) -> Result<PhoneNumber> {
        let number = valid_number(&new.number)?;
        let label = valid_label(new.label.as_deref())?;
        let profile = valid_profile(new.sip_profile.as_deref())?;
        let row = sqlx::query(
            "INSERT INTO numbers (account_id, number, label, sip_profile, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
        )
        .bind(account_id)
        .bind(number.clone())
        .bind(label)
        .bind(profile)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            conflict_on_constraint(e, || format!("number {number} is already registered"))
        })?;
        self.get_number(account_id, row.try_get("id")?).await
    }

    /// A page of the account's numbers by number; `available_only`: those no scheduled,
    /// processing or paused campaign holds (what a new campaign may take).
    pub async fn list_numbers(
        &self,
        account_id: i64,
        available_only: bool,
        page: Page,
    ) -> Result<Paged<PhoneNumber>> {
        let page = page.clamped();
        let mut sql = Sql::default();
        let account = sql.arg(Arg::I64(account_id));
        let mut wc = format!(" WHERE n.account_id = {account}");
        if available_only {
            wc.push_str(&format!(
                " AND NOT EXISTS (SELECT 1 FROM campaigns c WHERE c.number_id = n.id \
                 AND c.status IN {HOLDING})"
            ));
        }
        let count = Sql {
            text: format!("SELECT COUNT(*) AS n FROM numbers n{wc}"),
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
            "SELECT {COLUMNS} FROM numbers n{wc} ORDER BY n.number LIMIT {limit} OFFSET {offset}"
        );
        let rows = sql.query(self.backend).fetch_all(&self.pool).await?;
        let items = rows.iter().map(number_from).collect::<Result<Vec<_>>>()?;
        Ok(Paged { items, total })
    }

    /// One of the account's numbers; another account's reads as NotFound.
    pub async fn get_number(&self, account_id: i64, id: i64) -> Result<PhoneNumber> {
        let sql = format!("SELECT {COLUMNS} FROM numbers n WHERE n.id = $1 AND n.account_id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(account_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("number {id}")))?;
        number_from(&row)
    }

    /// Changes a number's label or SIP profile (the number itself never changes).
    pub async fn update_number(
        &self,
        account_id: i64,
        id: i64,
        update: &NumberUpdate,
        now: Millis,
    ) -> Result<PhoneNumber> {
        let mut sql = Sql::default();
        let mut sets = vec![format!("updated_at = {}", sql.arg(Arg::I64(now)))];
        if let Some(label) = &update.label {
            let label = valid_label(label.as_deref())?;
            sets.push(format!("label = {}", sql.arg(Arg::OptText(label))));
        }
        if let Some(profile) = &update.sip_profile {
            let profile = valid_profile(profile.as_deref())?;
            sets.push(format!("sip_profile = {}", sql.arg(Arg::OptText(profile))));
        }
        let id_arg = sql.arg(Arg::I64(id));
        let account = sql.arg(Arg::I64(account_id));
        sql.text = format!(
            "UPDATE numbers SET {} WHERE id = {id_arg} AND account_id = {account}",
            sets.join(", ")
        );
        if sql
            .query(self.backend)
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 0
        {
            return Err(StoreError::NotFound(format!("number {id}")));
        }
        self.get_number(account_id, id).await
    }

    /// Deletes one of the account's numbers, unless a scheduled, processing or paused
    /// campaign holds it (Conflict naming the campaign). Campaigns that named it keep their
    /// caller ID and name no number any more.
    pub async fn delete_number(&self, account_id: i64, id: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let locked = lock_number(&mut tx, id)
            .await?
            .filter(|n| n.account_id == account_id)
            .ok_or_else(|| StoreError::NotFound(format!("number {id}")))?;
        check_not_held(&mut tx, &locked, 0).await?;
        sqlx::query("DELETE FROM numbers WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The account's number record for an E.164 number, if it has one.
    pub async fn number_by_value(
        &self,
        account_id: i64,
        number: &str,
    ) -> Result<Option<PhoneNumber>> {
        let sql =
            format!("SELECT {COLUMNS} FROM numbers n WHERE n.number = $1 AND n.account_id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(number.trim().to_string())
            .bind(account_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(number_from).transpose()
    }

    /// For an inbound call to `number` (E.164): the account and campaign that own it — the
    /// scheduled, processing or paused campaign holding it, else the campaign naming it that
    /// was updated last; `None` when no campaign names it (or it is no number of ours).
    pub async fn campaign_for_number(&self, number: &str) -> Result<Option<(i64, i64)>> {
        let sql = format!(
            "SELECT n.account_id, c.id FROM numbers n JOIN campaigns c ON c.number_id = n.id \
             WHERE n.number = $1 \
             ORDER BY CASE WHEN c.status IN {HOLDING} THEN 0 ELSE 1 END, c.updated_at DESC, \
             c.id DESC LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(number.trim().to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get("account_id")?, r.try_get("id")?)))
            .transpose()
    }

    /// For a callback from `caller` to `called` (both E.164): the campaign and contact of the
    /// most recent outbound call to `caller` from `called` (our caller ID then) started at or
    /// after `since`, within `account` when the called number is an account's. The link a
    /// callback carries when its caller is not a contact of the campaign owning the number.
    pub async fn last_call_to(
        &self,
        caller: &str,
        called: &str,
        account: Option<i64>,
        since: Millis,
    ) -> Result<Option<(i64, i64)>> {
        let bare = called.trim_start_matches('+');
        let mut sql = String::from(
            "SELECT a.campaign_id, a.contact_id FROM call_attempts a \
             JOIN campaigns c ON c.id = a.campaign_id \
             WHERE a.destination IN ($1, $2) AND a.caller_id IN ($3, $4) \
             AND a.direction = 'outbound' AND a.started_at >= $5 AND a.contact_id IS NOT NULL",
        );
        if account.is_some() {
            sql.push_str(" AND c.account_id = $6");
        }
        sql.push_str(" ORDER BY a.started_at DESC, a.id DESC LIMIT 1");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(caller.to_string())
            .bind(caller.trim_start_matches('+').to_string())
            .bind(called.to_string())
            .bind(bare.to_string())
            .bind(since);
        if let Some(a) = account {
            q = q.bind(a);
        }
        let row = q.fetch_optional(&self.pool).await?;
        row.map(|r| Ok((r.try_get("campaign_id")?, r.try_get("contact_id")?)))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_e164() {
        assert_eq!(valid_number(" +12025550100 ").unwrap(), "+12025550100");
        for bad in ["12025550100", "+0123", "+1 202 555 0100", "", "+"] {
            match valid_number(bad) {
                Err(StoreError::Invalid(m)) => assert!(m.starts_with("number: "), "{m}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn labels_and_profiles_are_checked() {
        assert_eq!(valid_label(Some("  ")).unwrap(), None);
        assert_eq!(
            valid_label(Some(" Sales ")).unwrap().as_deref(),
            Some("Sales")
        );
        assert!(valid_label(Some(&"x".repeat(201))).is_err());
        assert_eq!(
            valid_profile(Some("acme-1.eu")).unwrap().as_deref(),
            Some("acme-1.eu")
        );
        assert_eq!(valid_profile(None).unwrap(), None);
        match valid_profile(Some("a b")) {
            Err(StoreError::Invalid(m)) => assert!(m.starts_with("sip_profile: "), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
