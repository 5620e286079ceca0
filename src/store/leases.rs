//! What the campaign engine asks of the store besides contacts and attempts: campaign
//! leases (one node drives a campaign at a time) and when the next queued contact falls due.
//! Calls left mid-call by a node that died are [`inflight`](super::inflight)'s.

use sqlx::Row;

use super::{Result, Store};
use crate::campaign::Millis;

impl Store {
    /// Takes or renews the lease on a campaign for `node` until `until`; `false` when
    /// another node holds a lease that has not expired at `now`.
    pub async fn take_campaign_lease(
        &self,
        campaign_id: i64,
        node: &str,
        now: Millis,
        until: Millis,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO campaign_leases (campaign_id, node, until) VALUES ($1, $2, $3) \
             ON CONFLICT (campaign_id) DO UPDATE SET node = excluded.node, until = excluded.until \
             WHERE campaign_leases.node = excluded.node OR campaign_leases.until < $4",
        )
        .bind(campaign_id)
        .bind(node.to_string())
        .bind(until)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Gives a lease back (shutdown), so another node can take the campaign at once.
    pub async fn release_campaign_leases(&self, node: &str) -> Result<u64> {
        let done = sqlx::query("DELETE FROM campaign_leases WHERE node = $1")
            .bind(node.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// The earliest `next_attempt_at` after `now` among the campaign's queued contacts
    /// (pending or retry), if any.
    pub async fn next_due_at(&self, campaign_id: i64, now: Millis) -> Result<Option<Millis>> {
        let row = sqlx::query(
            "SELECT MIN(next_attempt_at) AS at FROM contacts WHERE campaign_id = $1 \
             AND status IN ('pending', 'retry') AND next_attempt_at > $2",
        )
        .bind(campaign_id)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<Option<i64>, _>("at")?)
    }
}
