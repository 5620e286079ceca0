//! Business-hours schedules (guide 2: Settings → Business Hours), shared by campaigns.
//! The week and the closed dates are JSON text; the spec is validated before it is stored.
//! A schedule a campaign still uses cannot be deleted (Conflict). Each schedule belongs to
//! an account: the API reads and changes only the caller's (another's is NotFound); the
//! engine reads a campaign's schedule by id ([`Store::get_business_hours`]).

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{conflict_on_constraint, get_json, to_json, Result, Store, StoreError};
use crate::campaign::model::{BusinessHours, BusinessHoursSpec, Millis};

fn hours_from(row: &AnyRow) -> Result<BusinessHours> {
    Ok(BusinessHours {
        id: row.try_get("id")?,
        spec: BusinessHoursSpec {
            name: row.try_get("name")?,
            timezone: row.try_get("timezone")?,
            week: get_json(row, "week")?,
            closed_dates: get_json(row, "closed_dates")?,
        },
    })
}

const COLUMNS: &str = "id, name, timezone, week, closed_dates";

impl Store {
    /// Stores a schedule of `account` (`None`: of no account, the engine's tests).
    pub async fn create_business_hours(
        &self,
        account: Option<i64>,
        spec: &BusinessHoursSpec,
        now: Millis,
    ) -> Result<BusinessHours> {
        spec.validate()?;
        let sql = format!(
            "INSERT INTO business_hours (account_id, name, timezone, week, closed_dates, created_at, updated_at) \
             VALUES ($6, $1, $2, $3, $4, $5, $5) RETURNING {COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(spec.name.clone())
            .bind(spec.timezone.clone())
            .bind(to_json(&spec.week))
            .bind(to_json(&spec.closed_dates))
            .bind(now)
            .bind(account)
            .fetch_one(&self.pool)
            .await?;
        hours_from(&row)
    }

    /// A schedule by id, whoever owns it (the engine's and the reports' read, for a
    /// campaign already checked).
    pub async fn get_business_hours(&self, id: i64) -> Result<BusinessHours> {
        let sql = format!("SELECT {COLUMNS} FROM business_hours WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("business hours {id}")))?;
        hours_from(&row)
    }

    /// One of the account's schedules (another account's: NotFound).
    pub async fn account_business_hours(&self, account: i64, id: i64) -> Result<BusinessHours> {
        let sql = format!("SELECT {COLUMNS} FROM business_hours WHERE id = $1 AND account_id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(account)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("business hours {id}")))?;
        hours_from(&row)
    }

    /// The account's schedules, by name.
    pub async fn list_business_hours(&self, account: i64) -> Result<Vec<BusinessHours>> {
        let sql =
            format!("SELECT {COLUMNS} FROM business_hours WHERE account_id = $1 ORDER BY name, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(hours_from).collect()
    }

    /// Replaces one of the account's schedules (campaigns using it follow at once).
    pub async fn update_business_hours(
        &self,
        account: i64,
        id: i64,
        spec: &BusinessHoursSpec,
        now: Millis,
    ) -> Result<BusinessHours> {
        spec.validate()?;
        let sql = format!(
            "UPDATE business_hours SET name = $2, timezone = $3, week = $4, closed_dates = $5, \
             updated_at = $6 WHERE id = $1 AND account_id = $7 RETURNING {COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(spec.name.clone())
            .bind(spec.timezone.clone())
            .bind(to_json(&spec.week))
            .bind(to_json(&spec.closed_dates))
            .bind(now)
            .bind(account)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("business hours {id}")))?;
        hours_from(&row)
    }

    /// Deletes one of the account's schedules that no campaign uses (else Conflict).
    pub async fn delete_business_hours(&self, account: i64, id: i64) -> Result<()> {
        let done = sqlx::query("DELETE FROM business_hours WHERE id = $1 AND account_id = $2")
            .bind(id)
            .bind(account)
            .execute(&self.pool)
            .await
            .map_err(|e| {
                conflict_on_constraint(e, || format!("business hours {id} is used by a campaign"))
            })?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("business hours {id}")));
        }
        Ok(())
    }
}
