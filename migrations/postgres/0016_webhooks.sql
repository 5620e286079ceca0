-- Webhooks: where an account's call events are sent (a campaign's own, or the account's
-- default for campaigns without one), and the durable outbox of their deliveries. A delivery
-- row is written in the same transaction as its event, so an event stored is an event sent.
CREATE TABLE webhooks (
    id           BIGSERIAL PRIMARY KEY,
    account_id   BIGINT  NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    campaign_id  BIGINT  REFERENCES campaigns(id) ON DELETE CASCADE,
    url          TEXT    NOT NULL,
    -- JSON array of event kinds; empty: every call event.
    events       TEXT    NOT NULL DEFAULT '[]',
    format       TEXT    NOT NULL DEFAULT 'json',
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);
CREATE UNIQUE INDEX webhooks_scope ON webhooks(account_id, COALESCE(campaign_id, 0));
CREATE TABLE webhook_deliveries (
    id            BIGSERIAL PRIMARY KEY,
    webhook_id    BIGINT  NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id      BIGINT  NOT NULL,
    account_id    BIGINT  NOT NULL,
    -- Deliveries of one call (or one campaign's non-call events) go out in order.
    stream        TEXT    NOT NULL,
    status        TEXT    NOT NULL DEFAULT 'pending',
    attempts      BIGINT  NOT NULL DEFAULT 0,
    next_at       BIGINT  NOT NULL,
    last_status   BIGINT,
    last_error    TEXT,
    created_at    BIGINT  NOT NULL,
    delivered_at  BIGINT,
    -- The node sending it now, until when (several nodes share one outbox).
    claimed_by    TEXT,
    claimed_until BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_at, id);
CREATE INDEX webhook_deliveries_stream ON webhook_deliveries(webhook_id, stream, status, id);
CREATE INDEX webhook_deliveries_account ON webhook_deliveries(account_id, id);
ALTER TABLE accounts ADD COLUMN webhook_secret TEXT;
