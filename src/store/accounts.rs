//! Accounts, their logins, API keys and login sessions.
//!
//! An account owns campaigns, contacts, schedules, DNC entries, agents and media; people
//! reach it through its logins. A login has a [`Role`]: `admin` (manages the account's
//! logins and keys) or `operator`. Every account starts with one admin login named like
//! the account.
//!
//! An API key belongs to a login and is `odk_` + 64 hex digits (32 random bytes). Only its
//! SHA-256 and a short public prefix (the first 8 hex digits, to find the row and to show
//! the key in a list) are stored; the key itself is returned once, by
//! [`Store::create_login_key`], and never logged. [`Store::verify_api_key`] compares hashes
//! in constant time (`subtle`). Session tokens (`ods_` + 64 hex digits) are kept the same
//! way, with an expiry and the key that opened them: revoking a key ends its sessions in
//! the same transaction, and [`Store::purge_sessions`] removes expired ones.
//!
//! Must not: return or log a secret other than at its creation, or let a key or session
//! reach another account's login.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use subtle::ConstantTimeEq;

use super::{conflict_on_constraint, get_word, hex, sha256_hex, Result, Store, StoreError};
use crate::campaign::model::Millis;

const KEY_TAG: &str = "odk_";
const SESSION_TAG: &str = "ods_";
/// Hex digits of the key shown and stored in clear.
pub const KEY_PREFIX_LEN: usize = 8;

/// What a login may do in its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything an operator does, plus managing the account's logins and API keys and
    /// the global DNC list.
    Admin,
    /// Campaigns, contacts, reports, agents, the account's DNC list; its own keys only.
    Operator,
}

impl Role {
    pub const ALL: &'static [Role] = &[Role::Admin, Role::Operator];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text.trim().to_ascii_lowercase().as_str() {
            "admin" => Some(Role::Admin),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Someone who owns campaigns (a customer of the server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: i64,
    /// The account's first login's name.
    pub login: String,
    pub name: String,
    pub created_at: Millis,
}

/// A login of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    pub id: i64,
    pub account_id: i64,
    pub login: String,
    pub role: Role,
    pub created_at: Millis,
}

/// An API key as stored (no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: i64,
    pub account_id: i64,
    /// The login it belongs to.
    pub login_id: Option<i64>,
    pub login: Option<String>,
    /// The key's first hex digits after `odk_`, e.g. `odk_1a2b3c4d…`.
    pub prefix: String,
    pub label: String,
    pub created_at: Millis,
    pub last_used_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
}

/// A key just made: `secret` is the whole key, shown to the user once.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub key: ApiKey,
    pub secret: String,
}

/// Who a request is from, once its key or session checked out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Authenticated {
    pub account: Account,
    pub login: Login,
    /// The API key used, directly or through the session it opened.
    pub key_id: Option<i64>,
}

/// A login session (the token itself is only returned on creation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: i64,
    pub account_id: i64,
    pub created_at: Millis,
    pub expires_at: Millis,
}

fn account_from(row: &AnyRow) -> Result<Account> {
    Ok(Account {
        id: row.try_get("id")?,
        login: row.try_get("login")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

fn login_from(row: &AnyRow) -> Result<Login> {
    Ok(Login {
        id: row.try_get("login_id")?,
        account_id: row.try_get("login_account_id")?,
        login: row.try_get("login_name")?,
        role: get_word(row, "login_role", Role::parse)?,
        created_at: row.try_get("login_created_at")?,
    })
}

fn key_from(row: &AnyRow) -> Result<ApiKey> {
    Ok(ApiKey {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        login_id: row.try_get("login_id")?,
        login: row.try_get("login_name")?,
        prefix: row.try_get("prefix")?,
        label: row.try_get("label")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn random_secret(tag: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{tag}{}", hex(&bytes))
}

/// `odk_<64 hex>` → its public prefix.
fn key_prefix(key: &str) -> Option<&str> {
    let body = key.strip_prefix(KEY_TAG)?;
    if body.len() != 64 || !body.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(&body[..KEY_PREFIX_LEN])
}

fn check_login_name(login: &str) -> Result<&str> {
    let login = login.trim();
    if login.is_empty() || login.len() > 200 {
        return Err(StoreError::Invalid(
            "login: must be 1 to 200 characters".into(),
        ));
    }
    Ok(login)
}

const ACCOUNT_COLUMNS: &str = "id, login, name, created_at";
/// A login's columns under the names [`login_from`] reads (from `logins l`).
const LOGIN_COLUMNS: &str = "l.id AS login_id, l.account_id AS login_account_id, \
    l.login AS login_name, l.role AS login_role, l.created_at AS login_created_at";
/// A key's columns (from `api_keys k LEFT JOIN logins l`).
const KEY_COLUMNS: &str = "k.id, k.account_id, k.login_id, l.login AS login_name, k.prefix, \
    k.label, k.created_at, k.last_used_at, k.revoked_at";

impl Store {
    /// Creates an account with its admin login of the same name; `login` must be unique
    /// (Conflict) and not empty (Invalid).
    pub async fn create_account(&self, login: &str, name: &str, now: Millis) -> Result<Account> {
        let login = check_login_name(login)?;
        let taken = || format!("login {login:?} is taken");
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "INSERT INTO accounts (login, name, created_at) VALUES ($1, $2, $3) \
             RETURNING id, login, name, created_at",
        )
        .bind(login.to_string())
        .bind(name.to_string())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict_on_constraint(e, taken))?;
        let account = account_from(&row)?;
        sqlx::query(
            "INSERT INTO logins (account_id, login, role, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(account.id)
        .bind(login.to_string())
        .bind(Role::Admin.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_on_constraint(e, taken))?;
        tx.commit().await?;
        Ok(account)
    }

    pub async fn get_account(&self, id: i64) -> Result<Account> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("account {id}")))?;
        account_from(&row)
    }

    pub async fn account_by_login(&self, login: &str) -> Result<Option<Account>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE login = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(login.trim().to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(account_from).transpose()
    }

    pub async fn list_accounts(&self) -> Result<Vec<Account>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(account_from).collect()
    }

    /// Deletes an account with its logins, keys and sessions; its campaigns lose their
    /// owner.
    pub async fn delete_account(&self, id: i64) -> Result<()> {
        let done = sqlx::query("DELETE FROM accounts WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("account {id}")));
        }
        Ok(())
    }

    /// Adds a login to an account; the name is unique over every account (Conflict).
    pub async fn create_login(
        &self,
        account_id: i64,
        login: &str,
        role: Role,
        now: Millis,
    ) -> Result<Login> {
        let login = check_login_name(login)?;
        let sql = format!(
            "INSERT INTO logins (account_id, login, role, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING {}",
            LOGIN_COLUMNS.replace("l.", "")
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .bind(login.to_string())
            .bind(role.as_str())
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| conflict_on_constraint(e, || format!("login {login:?} is taken")))?;
        login_from(&row)
    }

    /// The account's logins by name.
    pub async fn list_logins(&self, account_id: i64) -> Result<Vec<Login>> {
        let sql = format!(
            "SELECT {LOGIN_COLUMNS} FROM logins l WHERE l.account_id = $1 ORDER BY l.login"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(login_from).collect()
    }

    /// A login of the account (another account's reads as none: NotFound).
    pub async fn get_login(&self, account_id: i64, id: i64) -> Result<Login> {
        let sql =
            format!("SELECT {LOGIN_COLUMNS} FROM logins l WHERE l.id = $1 AND l.account_id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(account_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("login {id}")))?;
        login_from(&row)
    }

    /// The login of that name, of any account.
    pub async fn login_by_name(&self, login: &str) -> Result<Option<Login>> {
        let sql = format!("SELECT {LOGIN_COLUMNS} FROM logins l WHERE l.login = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(login.trim().to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(login_from).transpose()
    }

    /// Deletes a login of the account with its keys and sessions. The account's last
    /// admin login stays (Conflict).
    pub async fn delete_login(&self, account_id: i64, id: i64) -> Result<()> {
        let login = self.get_login(account_id, id).await?;
        let mut tx = self.pool.begin().await?;
        if login.role == Role::Admin {
            let admins: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM logins WHERE account_id = $1 AND role = 'admin'",
            )
            .bind(account_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
            if admins <= 1 {
                return Err(StoreError::Conflict(format!(
                    "login {:?} is the account's last admin",
                    login.login
                )));
            }
        }
        sqlx::query("DELETE FROM sessions WHERE login_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM api_keys WHERE login_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM logins WHERE id = $1 AND account_id = $2")
            .bind(id)
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Makes a new API key for the account's first admin login (the one named like the
    /// account when it still exists); the returned `secret` is the only copy.
    pub async fn create_api_key(
        &self,
        account_id: i64,
        label: &str,
        now: Millis,
    ) -> Result<NewApiKey> {
        let row = sqlx::query(
            "SELECT l.id FROM logins l JOIN accounts a ON a.id = l.account_id \
             WHERE l.account_id = $1 AND l.role = 'admin' \
             ORDER BY CASE WHEN l.login = a.login THEN 0 ELSE 1 END, l.id LIMIT 1",
        )
        .bind(account_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("an admin login of account {account_id}")))?;
        let login_id: i64 = row.try_get("id")?;
        self.create_login_key(login_id, label, now).await
    }

    /// Makes a new API key for a login; the returned `secret` is the only copy.
    pub async fn create_login_key(
        &self,
        login_id: i64,
        label: &str,
        now: Millis,
    ) -> Result<NewApiKey> {
        let secret = random_secret(KEY_TAG);
        let Some(prefix) = key_prefix(&secret).map(str::to_string) else {
            return Err(StoreError::Invalid("a generated key is malformed".into()));
        };
        let row = sqlx::query(
            "INSERT INTO api_keys (account_id, login_id, prefix, hash, label, created_at) \
             SELECT l.account_id, l.id, $2, $3, $4, $5 FROM logins l WHERE l.id = $1 \
             RETURNING id",
        )
        .bind(login_id)
        .bind(prefix)
        .bind(sha256_hex(secret.as_bytes()))
        .bind(label.to_string())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("login {login_id}")))?;
        let id: i64 = row.try_get("id")?;
        Ok(NewApiKey {
            key: self.get_api_key(id).await?,
            secret,
        })
    }

    /// One key (any account: callers check it is their account's).
    pub async fn get_api_key(&self, id: i64) -> Result<ApiKey> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys k LEFT JOIN logins l ON l.id = k.login_id \
             WHERE k.id = $1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("api key {id}")))?;
        key_from(&row)
    }

    /// Every key of the account (revoked ones too), oldest first.
    pub async fn list_api_keys(&self, account_id: i64) -> Result<Vec<ApiKey>> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys k LEFT JOIN logins l ON l.id = k.login_id \
             WHERE k.account_id = $1 ORDER BY k.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(key_from).collect()
    }

    /// Revokes a key (kept for the record) and ends the sessions it opened, in one
    /// transaction; revoking twice keeps the first time.
    pub async fn revoke_api_key(&self, key_id: i64, now: Millis) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1")
                .bind(key_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("api key {key_id}")));
        }
        sqlx::query("DELETE FROM sessions WHERE key_id = $1")
            .bind(key_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Checks an API key: `Some` with its account and login when it exists and is not
    /// revoked (and, when `login` is given, belongs to that login). Records `last_used_at`.
    /// Wrong, malformed, revoked: `None` — the caller answers 401 without saying which.
    pub async fn verify_api_key(
        &self,
        login: Option<&str>,
        key: &str,
        now: Millis,
    ) -> Result<Option<Authenticated>> {
        let Some(prefix) = key_prefix(key) else {
            return Ok(None);
        };
        let hash = sha256_hex(key.as_bytes());
        let sql = format!(
            "SELECT k.id AS key_id, k.hash, k.revoked_at, \
                    a.id, a.login, a.name, a.created_at, {LOGIN_COLUMNS} \
             FROM api_keys k JOIN logins l ON l.id = k.login_id \
             JOIN accounts a ON a.id = l.account_id \
             WHERE k.prefix = $1"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(prefix.to_string())
            .fetch_all(&self.pool)
            .await?;
        let mut found = None;
        for row in &rows {
            let stored: String = row.try_get("hash")?;
            let same: bool = stored.as_bytes().ct_eq(hash.as_bytes()).into();
            if same {
                found = Some(row);
            }
        }
        let Some(row) = found else {
            return Ok(None);
        };
        let revoked: Option<i64> = row.try_get("revoked_at")?;
        if revoked.is_some() {
            return Ok(None);
        }
        let account = account_from(row)?;
        let who = login_from(row)?;
        if login.is_some_and(|l| l.trim() != who.login) {
            return Ok(None);
        }
        let key_id: i64 = row.try_get("key_id")?;
        sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
            .bind(key_id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(Some(Authenticated {
            account,
            login: who,
            key_id: Some(key_id),
        }))
    }

    /// Opens a session for `ttl_ms` as `who` (its key ends it when revoked); returns it
    /// with its token (the only copy).
    pub async fn create_session(
        &self,
        who: &Authenticated,
        ttl_ms: Millis,
        now: Millis,
    ) -> Result<(Session, String)> {
        let token = random_secret(SESSION_TAG);
        let account_id = who.account.id;
        let row = sqlx::query(
            "INSERT INTO sessions (account_id, login_id, key_id, token_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, account_id, created_at, expires_at",
        )
        .bind(account_id)
        .bind(who.login.id)
        .bind(who.key_id)
        .bind(sha256_hex(token.as_bytes()))
        .bind(now)
        .bind(now.saturating_add(ttl_ms.max(0)))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| conflict_on_constraint(e, || format!("account {account_id} not found")))?;
        let session = Session {
            id: row.try_get("id")?,
            account_id: row.try_get("account_id")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
        };
        Ok((session, token))
    }

    /// The account and login behind a session token that has not expired (and whose key
    /// is not revoked).
    pub async fn verify_session(&self, token: &str, now: Millis) -> Result<Option<Authenticated>> {
        if !token.starts_with(SESSION_TAG) {
            return Ok(None);
        }
        let sql = format!(
            "SELECT a.id, a.login, a.name, a.created_at, s.key_id, {LOGIN_COLUMNS} \
             FROM sessions s JOIN logins l ON l.id = s.login_id \
             JOIN accounts a ON a.id = l.account_id \
             LEFT JOIN api_keys k ON k.id = s.key_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND k.revoked_at IS NULL"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(sha256_hex(token.as_bytes()))
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => Some(Authenticated {
                account: account_from(&row)?,
                login: login_from(&row)?,
                key_id: row.try_get("key_id")?,
            }),
            None => None,
        })
    }

    /// Logs a session out; false when there was no such session.
    pub async fn delete_session(&self, token: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(sha256_hex(token.as_bytes()))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Removes expired sessions, and staged import rows older than a day (an import that
    /// a stopped process left behind); returns how many sessions.
    pub async fn purge_sessions(&self, now: Millis) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        self.purge_stale_imports(now).await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_a_prefix_and_malformed_ones_do_not() {
        let key = random_secret(KEY_TAG);
        assert_eq!(key.len(), 4 + 64);
        assert_eq!(key_prefix(&key), Some(&key[4..12]));
        assert_eq!(key_prefix("odk_short"), None);
        assert_eq!(key_prefix(&key.replace("odk_", "xyz_")), None);
    }
}
