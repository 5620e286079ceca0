//! The Do-Not-Call lists: numbers never to dial. Each account has its own list, and one
//! global list (managed by admins) applies to every account. The dialer asks
//! [`Store::dnc_contains`] — the one check, both lists at once — before each call (FTC
//! TSR: DNC checked before dialing). `outdial call`, which dials for no account, asks
//! [`Store::dnc_entries_for`] with [`dialed_number`]: every list, a number dialed without
//! its `+` matched by its digits.
//!
//! Must not: show or change one account's list through another account's calls (every
//! function takes the list it works on).

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{
    conflict_on_constraint, in_list, is_e164, like_pattern, where_clause, Arg, Page, Paged, Result,
    Sql, Store, StoreError,
};
use crate::campaign::model::Millis;

/// Which list: an account's own, or the global one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DncList {
    Account(i64),
    Global,
}

impl DncList {
    pub fn name(self) -> &'static str {
        match self {
            DncList::Account(_) => "account",
            DncList::Global => "global",
        }
    }

    /// `account_id = $n` or `account_id IS NULL`, binding into `sql`.
    fn condition(self, sql: &mut Sql) -> String {
        match self {
            DncList::Account(id) => format!("account_id = {}", sql.arg(Arg::I64(id))),
            DncList::Global => "account_id IS NULL".to_string(),
        }
    }
}

/// One number on a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DncEntry {
    pub id: i64,
    /// The account whose list holds it; `None`: the global list.
    pub account_id: Option<i64>,
    /// E.164.
    pub phone: String,
    pub reason: String,
    pub created_at: Millis,
}

impl DncEntry {
    pub fn list(&self) -> DncList {
        self.account_id.map_or(DncList::Global, DncList::Account)
    }
}

fn entry_from(row: &AnyRow) -> Result<DncEntry> {
    Ok(DncEntry {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        phone: row.try_get("phone")?,
        reason: row.try_get("reason")?,
        created_at: row.try_get("created_at")?,
    })
}

const COLUMNS: &str = "id, account_id, phone, reason, created_at";

/// The fewest digits a number dialed without `+` must have to be matched by its ending.
const MIN_SUFFIX_DIGITS: usize = 7;

/// A number as dialed, for the DNC lookup of a single call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialedNumber {
    /// Written with its `+` (or an international prefix `00` / `011`): E.164.
    E164(String),
    /// Digits without a country code (national form; leading `0`s dropped): matches every
    /// listed number that ends with them.
    Digits(String),
}

/// The number in a call's destination (`+12025550101`, `(202) 555-0101`,
/// `sip:+12025550101@host;…`): `None` when it holds no phone number (a SIP user name).
pub fn dialed_number(destination: &str) -> Option<DialedNumber> {
    let text = destination.trim();
    let user = match text
        .strip_prefix("sip:")
        .or_else(|| text.strip_prefix("sips:"))
        .or_else(|| text.strip_prefix("tel:"))
    {
        Some(rest) => {
            let user = rest.split_once('@').map_or(rest, |(user, _)| user);
            user.split(';').next().unwrap_or("")
        }
        None => text,
    };
    let plus = user.trim_start().starts_with('+');
    let mut digits = String::new();
    for c in user.chars() {
        match c {
            '0'..='9' => digits.push(c),
            '+' | ' ' | '-' | '.' | '(' | ')' | '/' => {}
            _ => return None,
        }
    }
    let international = if plus {
        Some(digits.as_str())
    } else {
        digits
            .strip_prefix("011")
            .or_else(|| digits.strip_prefix("00"))
    };
    if let Some(rest) = international {
        let e164 = format!("+{rest}");
        return is_e164(&e164).then_some(DialedNumber::E164(e164));
    }
    let national = digits.trim_start_matches('0');
    (national.len() >= MIN_SUFFIX_DIGITS && national.len() <= 15)
        .then(|| DialedNumber::Digits(national.to_string()))
}

impl Store {
    /// Adds a number to a list (E.164, else Invalid); one already on it is a Conflict.
    pub async fn add_dnc(
        &self,
        list: DncList,
        phone: &str,
        reason: &str,
        now: Millis,
    ) -> Result<DncEntry> {
        if !is_e164(phone) {
            return Err(StoreError::Invalid(format!(
                "phone: {phone:?} is not an E.164 number (+ and up to 15 digits)"
            )));
        }
        let account = match list {
            DncList::Account(id) => Some(id),
            DncList::Global => None,
        };
        let sql = format!(
            "INSERT INTO dnc_entries (account_id, phone, reason, created_at) \
             VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(phone.to_string())
            .bind(reason.to_string())
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| {
                conflict_on_constraint(e, || {
                    format!("{phone} is already on the {} DNC list", list.name())
                })
            })?;
        entry_from(&row)
    }

    /// A page of one list by phone; `search` matches part of the phone or the reason.
    pub async fn list_dnc(
        &self,
        list: DncList,
        search: Option<&str>,
        page: Page,
    ) -> Result<Paged<DncEntry>> {
        let page = page.clamped();
        let mut sql = Sql::default();
        let mut conds = vec![list.condition(&mut sql)];
        if let Some(text) = search.filter(|t| !t.trim().is_empty()) {
            let p = sql.arg(Arg::Text(like_pattern(text.trim())));
            conds.push(format!(
                "(phone LIKE {p} ESCAPE '\\' OR LOWER(reason) LIKE {p} ESCAPE '\\')"
            ));
        }
        let wc = where_clause(&conds);
        let count = Sql {
            text: format!("SELECT COUNT(*) AS n FROM dnc_entries{wc}"),
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
            "SELECT {COLUMNS} FROM dnc_entries{wc} ORDER BY phone LIMIT {limit} OFFSET {offset}"
        );
        let rows = sql.query(self.backend).fetch_all(&self.pool).await?;
        let items = rows.iter().map(entry_from).collect::<Result<Vec<_>>>()?;
        Ok(Paged { items, total })
    }

    /// The number's entry on one list; NotFound when it is not on it.
    pub async fn get_dnc(&self, list: DncList, phone: &str) -> Result<DncEntry> {
        let mut sql = Sql::default();
        let cond = list.condition(&mut sql);
        let p = sql.arg(Arg::Text(phone.to_string()));
        sql.text = format!("SELECT {COLUMNS} FROM dnc_entries WHERE {cond} AND phone = {p}");
        let row = sql
            .query(self.backend)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| {
                StoreError::NotFound(format!("{phone} on the {} DNC list", list.name()))
            })?;
        entry_from(&row)
    }

    /// Takes a number off one list; NotFound when it was not on it.
    pub async fn delete_dnc(&self, list: DncList, phone: &str) -> Result<()> {
        let mut sql = Sql::default();
        let cond = list.condition(&mut sql);
        let p = sql.arg(Arg::Text(phone.to_string()));
        sql.text = format!("DELETE FROM dnc_entries WHERE {cond} AND phone = {p}");
        let done = sql.query(self.backend).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "{phone} on the {} DNC list",
                list.name()
            )));
        }
        Ok(())
    }

    /// Every list's entries for a dialed number (any account's list and the global one):
    /// an E.164 number exactly, digits without a country code by the listed numbers'
    /// endings. At most 20, global list first.
    pub async fn dnc_entries_for(&self, dialed: &DialedNumber) -> Result<Vec<DncEntry>> {
        let (condition, value) = match dialed {
            DialedNumber::E164(phone) => ("phone = $1", phone.clone()),
            // Digits only: no LIKE wildcard can be in it.
            DialedNumber::Digits(digits) => ("phone LIKE $1", format!("%{digits}")),
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM dnc_entries WHERE {condition} \
             ORDER BY CASE WHEN account_id IS NULL THEN 0 ELSE 1 END, account_id, phone LIMIT 20"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(value)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(entry_from).collect()
    }

    /// True when the number must not be dialed for a campaign of `account`: it is on the
    /// global list or on that account's list (`None`: a campaign of no account, the
    /// global list only).
    pub async fn dnc_contains(&self, account: Option<i64>, phone: &str) -> Result<bool> {
        Ok(!self.dnc_matching(account, &[phone]).await?.is_empty())
    }

    /// Which of `phones` are on the global list or `account`'s: one statement for a group.
    pub async fn dnc_matching(
        &self,
        account: Option<i64>,
        phones: &[&str],
    ) -> Result<std::collections::HashSet<String>> {
        if phones.is_empty() {
            return Ok(Default::default());
        }
        let mut sql = Sql::default();
        let account_arg = sql.arg(Arg::OptI64(account));
        let list = in_list(&mut sql, phones.iter().map(|p| Arg::Text(p.to_string())));
        sql.text = format!(
            "SELECT DISTINCT phone FROM dnc_entries WHERE phone IN ({list}) \
             AND (account_id IS NULL OR account_id = {account_arg})"
        );
        let rows = sql.query(self.backend).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("phone").map_err(StoreError::from))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialed_numbers_are_read_from_numbers_and_uris() {
        let e164 = |s: &str| Some(DialedNumber::E164(s.into()));
        assert_eq!(dialed_number("+12025550177"), e164("+12025550177"));
        assert_eq!(dialed_number("+1 (202) 555-0177"), e164("+12025550177"));
        assert_eq!(
            dialed_number("sip:+12025550177@127.0.0.1:5060;transport=udp"),
            e164("+12025550177")
        );
        assert_eq!(
            dialed_number("sip:+12025550177;user=phone@host"),
            e164("+12025550177")
        );
        assert_eq!(dialed_number("011 44 7700 900123"), e164("+447700900123"));
        assert_eq!(dialed_number("0044 7700 900123"), e164("+447700900123"));
        assert_eq!(
            dialed_number("07700 900123"),
            Some(DialedNumber::Digits("7700900123".into()))
        );
        assert_eq!(
            dialed_number("(202) 555-0177"),
            Some(DialedNumber::Digits("2025550177".into()))
        );
        assert_eq!(dialed_number("sip:alice@pbx.example"), None);
        assert_eq!(dialed_number("sip:101@pbx.example"), None);
        assert_eq!(dialed_number("+0123"), None);
    }
}
