-- Crash safety and several nodes on one database.
--
-- nodes: every `serve` process (its id is random and kept in its data directory) says it is
-- alive once a tick; a node whose heartbeat is older than one lease period is dead, and any
-- other node reconciles its calls.
CREATE TABLE nodes (
    id            TEXT   PRIMARY KEY,
    started_at    BIGINT NOT NULL,
    heartbeat_at  BIGINT NOT NULL
);

-- One row per campaign call in flight, written in the transaction that claims the contact
-- (so a contact has at most one live call: the contact id is the key), the dialog's facts
-- added at answer (what a BYE needs when the node that placed the call is gone), deleted in
-- the transaction that writes the attempt record. Trunk channels and campaign concurrency
-- are counted here, across nodes.
CREATE TABLE calls_in_flight (
    contact_id      BIGINT PRIMARY KEY REFERENCES contacts(id) ON DELETE CASCADE,
    campaign_id     BIGINT NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    node            TEXT   NOT NULL,
    trunk           TEXT   NOT NULL,
    attempt_number  BIGINT NOT NULL,
    destination     TEXT   NOT NULL,
    caller_id       TEXT   NOT NULL,
    started_at      BIGINT NOT NULL,
    state           TEXT   NOT NULL,
    answered_at     BIGINT,
    dialog          TEXT,
    reset_on_end    BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX calls_in_flight_node ON calls_in_flight (node);
CREATE INDEX calls_in_flight_trunk ON calls_in_flight (trunk);
CREATE INDEX calls_in_flight_campaign ON calls_in_flight (campaign_id);

-- Per-trunk claim window for max_cps across nodes (claims in the current second), and the
-- row a claim locks on PostgreSQL so two nodes count a trunk's channels one after the other.
CREATE TABLE trunk_claims (
    trunk         TEXT   PRIMARY KEY,
    window_start  BIGINT NOT NULL,
    claims        BIGINT NOT NULL
);
