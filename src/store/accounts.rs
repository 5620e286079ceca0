//! Accounts, their API keys and login sessions.
//!
//! An API key is `odk_` + 64 hex digits (32 random bytes). Only its SHA-256 and a short
//! public prefix (the first 8 hex digits, to find the row and to show the key in a list)
//! are stored; the key itself is returned once, by [`Store::create_api_key`], and never
//! logged. [`Store::verify_api_key`] compares hashes in constant time (`subtle`). Session
//! tokens (`ods_` + 64 hex digits) are kept the same way, with an expiry.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use subtle::ConstantTimeEq;

use super::{conflict_on_constraint, hex, sha256_hex, Result, Store, StoreError};
use crate::campaign::model::Millis;

const KEY_TAG: &str = "odk_";
const SESSION_TAG: &str = "ods_";
/// Hex digits of the key shown and stored in clear.
pub const KEY_PREFIX_LEN: usize = 8;

/// Someone who logs in and owns campaigns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: i64,
    pub login: String,
    pub name: String,
    pub created_at: Millis,
}

/// An API key as stored (no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: i64,
    pub account_id: i64,
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
    /// The API key used; `None` for a session.
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

fn key_from(row: &AnyRow) -> Result<ApiKey> {
    Ok(ApiKey {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
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

const ACCOUNT_COLUMNS: &str = "id, login, name, created_at";
const KEY_COLUMNS: &str = "id, account_id, prefix, label, created_at, last_used_at, revoked_at";

impl Store {
    /// Creates an account; `login` must be unique (Conflict) and not empty (Invalid).
    pub async fn create_account(&self, login: &str, name: &str, now: Millis) -> Result<Account> {
        let login = login.trim();
        if login.is_empty() || login.len() > 200 {
            return Err(StoreError::Invalid(
                "login: must be 1 to 200 characters".into(),
            ));
        }
        let row = sqlx::query(
            "INSERT INTO accounts (login, name, created_at) VALUES ($1, $2, $3) \
             RETURNING id, login, name, created_at",
        )
        .bind(login.to_string())
        .bind(name.to_string())
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| conflict_on_constraint(e, || format!("login {login:?} is taken")))?;
        account_from(&row)
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

    /// Deletes an account with its keys and sessions; its campaigns lose their owner.
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

    /// Makes a new API key for the account; the returned `secret` is the only copy.
    pub async fn create_api_key(
        &self,
        account_id: i64,
        label: &str,
        now: Millis,
    ) -> Result<NewApiKey> {
        let secret = random_secret(KEY_TAG);
        let prefix = key_prefix(&secret)
            .expect("a generated key has the key format")
            .to_string();
        let sql = format!(
            "INSERT INTO api_keys (account_id, prefix, hash, label, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {KEY_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .bind(prefix)
            .bind(sha256_hex(secret.as_bytes()))
            .bind(label.to_string())
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| conflict_on_constraint(e, || format!("account {account_id} not found")))?;
        Ok(NewApiKey {
            key: key_from(&row)?,
            secret,
        })
    }

    pub async fn list_api_keys(&self, account_id: i64) -> Result<Vec<ApiKey>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE account_id = $1 ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(key_from).collect()
    }

    /// Revokes a key (kept for the record); revoking twice keeps the first time.
    pub async fn revoke_api_key(&self, key_id: i64, now: Millis) -> Result<()> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1")
                .bind(key_id)
                .bind(now)
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("api key {key_id}")));
        }
        Ok(())
    }

    /// Checks an API key: `Some` with its account when it exists and is not revoked
    /// (and, when `login` is given, belongs to that login). Records `last_used_at`.
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
        let rows = sqlx::query(
            "SELECT k.id AS key_id, k.hash, k.revoked_at, \
                    a.id, a.login, a.name, a.created_at \
             FROM api_keys k JOIN accounts a ON a.id = k.account_id \
             WHERE k.prefix = $1",
        )
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
        if login.is_some_and(|l| l.trim() != account.login) {
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
            key_id: Some(key_id),
        }))
    }

    /// Opens a session for `ttl_ms`; returns it with its token (the only copy).
    pub async fn create_session(
        &self,
        account_id: i64,
        ttl_ms: Millis,
        now: Millis,
    ) -> Result<(Session, String)> {
        let token = random_secret(SESSION_TAG);
        let row = sqlx::query(
            "INSERT INTO sessions (account_id, token_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4) RETURNING id, account_id, created_at, expires_at",
        )
        .bind(account_id)
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

    /// The account behind a session token that has not expired.
    pub async fn verify_session(&self, token: &str, now: Millis) -> Result<Option<Authenticated>> {
        if !token.starts_with(SESSION_TAG) {
            return Ok(None);
        }
        let sql = "SELECT a.id, a.login, a.name, a.created_at \
                   FROM sessions s JOIN accounts a ON a.id = s.account_id \
                   WHERE s.token_hash = $1 AND s.expires_at > $2";
        let row = sqlx::query(sql)
            .bind(sha256_hex(token.as_bytes()))
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => Some(Authenticated {
                account: account_from(&row)?,
                key_id: None,
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

    /// Removes expired sessions; returns how many.
    pub async fn purge_sessions(&self, now: Millis) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
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
