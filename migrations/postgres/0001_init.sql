-- outdial campaign store, PostgreSQL. Same schema as ../sqlite/0001_init.sql.
-- Times: BIGINT milliseconds since the Unix epoch (UTC). Flags: BIGINT 0/1. JSON: TEXT.

CREATE TABLE accounts (
    id          BIGSERIAL PRIMARY KEY,
    login       TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL DEFAULT '',
    created_at  BIGINT  NOT NULL
);

CREATE TABLE api_keys (
    id            BIGSERIAL PRIMARY KEY,
    account_id    BIGINT  NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    prefix        TEXT    NOT NULL,
    hash          TEXT    NOT NULL UNIQUE,
    label         TEXT    NOT NULL DEFAULT '',
    created_at    BIGINT  NOT NULL,
    last_used_at  BIGINT,
    revoked_at    BIGINT
);
CREATE INDEX api_keys_prefix ON api_keys(prefix);
CREATE INDEX api_keys_account ON api_keys(account_id);

CREATE TABLE sessions (
    id          BIGSERIAL PRIMARY KEY,
    account_id  BIGINT  NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    token_hash  TEXT    NOT NULL UNIQUE,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL
);
CREATE INDEX sessions_expires ON sessions(expires_at);

CREATE TABLE business_hours (
    id            BIGSERIAL PRIMARY KEY,
    name          TEXT    NOT NULL,
    timezone      TEXT    NOT NULL,
    week          TEXT    NOT NULL,
    closed_dates  TEXT    NOT NULL DEFAULT '[]',
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL
);

CREATE TABLE campaigns (
    id                        BIGSERIAL PRIMARY KEY,
    account_id                BIGINT  REFERENCES accounts(id) ON DELETE SET NULL,
    status                    TEXT    NOT NULL,
    name                      TEXT    NOT NULL,
    description               TEXT    NOT NULL DEFAULT '',
    connect_to                TEXT    NOT NULL DEFAULT '',
    ai_agent_url              TEXT,
    schedule_start            BIGINT,
    schedule_timezone         TEXT    NOT NULL DEFAULT 'UTC',
    pace                      DOUBLE PRECISION NOT NULL,
    max_concurrent            BIGINT  NOT NULL,
    call_interval_secs        BIGINT  NOT NULL DEFAULT 0,
    ring_timeout_secs         BIGINT  NOT NULL,
    ring_timeout_override     BIGINT  NOT NULL DEFAULT 0,
    business_hours_id         BIGINT  REFERENCES business_hours(id),
    contact_window_start      TEXT,
    contact_window_end        TEXT,
    amd_mode                  TEXT    NOT NULL,
    machine_action            TEXT    NOT NULL,
    voicemail_message         TEXT,
    play_message              TEXT,
    max_retries               BIGINT  NOT NULL,
    retry_interval_value      BIGINT  NOT NULL,
    retry_interval_unit       TEXT    NOT NULL,
    retry_on_busy             BIGINT  NOT NULL,
    retry_on_no_answer        BIGINT  NOT NULL,
    retry_on_failed           BIGINT  NOT NULL,
    retry_on_machine          BIGINT  NOT NULL,
    completion_timeout_value  BIGINT  NOT NULL,
    completion_timeout_unit   TEXT    NOT NULL,
    caller_id                 TEXT    NOT NULL DEFAULT '',
    billable_account          TEXT    NOT NULL DEFAULT '',
    sip_profile               TEXT    NOT NULL DEFAULT '',
    recording                 BIGINT  NOT NULL DEFAULT 0,
    default_country           TEXT    NOT NULL DEFAULT 'US',
    created_at                BIGINT  NOT NULL,
    updated_at                BIGINT  NOT NULL,
    started_at                BIGINT,
    finished_at               BIGINT
);
CREATE INDEX campaigns_account ON campaigns(account_id);
CREATE INDEX campaigns_status ON campaigns(status);

CREATE TABLE contacts (
    id               BIGSERIAL PRIMARY KEY,
    campaign_id      BIGINT  NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    phone            TEXT    NOT NULL,
    name             TEXT    NOT NULL DEFAULT '',
    comments         TEXT    NOT NULL DEFAULT '',
    tags             TEXT    NOT NULL DEFAULT '[]',
    timezone         TEXT,
    status           TEXT    NOT NULL,
    attempts         BIGINT  NOT NULL DEFAULT 0,
    retries          BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT,
    last_attempt_at  BIGINT,
    last_outcome     TEXT,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL,
    UNIQUE (campaign_id, phone)
);
-- The scheduler's "due" query walks this index in order (NULL first, then by time, then id).
CREATE INDEX contacts_due ON contacts(campaign_id, status, next_attempt_at NULLS FIRST, id);

CREATE TABLE call_attempts (
    id                BIGSERIAL PRIMARY KEY,
    campaign_id       BIGINT  REFERENCES campaigns(id) ON DELETE CASCADE,
    contact_id        BIGINT  REFERENCES contacts(id) ON DELETE SET NULL,
    attempt_number    BIGINT  NOT NULL DEFAULT 1,
    call_id           TEXT    NOT NULL DEFAULT '',
    sip_profile       TEXT    NOT NULL DEFAULT '',
    caller_id         TEXT    NOT NULL DEFAULT '',
    billable_account  TEXT    NOT NULL DEFAULT '',
    destination       TEXT    NOT NULL DEFAULT '',
    started_at        BIGINT  NOT NULL,
    ended_at          BIGINT,
    ring_ms           BIGINT,
    answer_ms         BIGINT,
    duration_ms       BIGINT  NOT NULL DEFAULT 0,
    sip_code          BIGINT,
    reason            TEXT    NOT NULL DEFAULT '',
    outcome           TEXT    NOT NULL,
    hangup            TEXT,
    codec             TEXT,
    amd_mode          TEXT,
    amd_verdict       TEXT,
    answered_by       TEXT,
    amd_cause         TEXT,
    amd_confidence    DOUBLE PRECISION,
    amd_decision_ms   BIGINT,
    beep_ms           BIGINT,
    rtp_sent          BIGINT  NOT NULL DEFAULT 0,
    rtp_received      BIGINT  NOT NULL DEFAULT 0,
    rtp_lost          BIGINT  NOT NULL DEFAULT 0,
    jitter_ms         DOUBLE PRECISION,
    rtt_ms            DOUBLE PRECISION,
    recording_path    TEXT,
    dtmf              TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX call_attempts_campaign ON call_attempts(campaign_id, started_at);
CREATE INDEX call_attempts_contact ON call_attempts(contact_id);
CREATE INDEX call_attempts_call_id ON call_attempts(call_id);

CREATE TABLE dnc_numbers (
    id          BIGSERIAL PRIMARY KEY,
    phone       TEXT    NOT NULL UNIQUE,
    reason      TEXT    NOT NULL DEFAULT '',
    created_at  BIGINT  NOT NULL
);

CREATE TABLE export_jobs (
    id           BIGSERIAL PRIMARY KEY,
    campaign_id  BIGINT  NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    format       TEXT    NOT NULL,
    scope        TEXT    NOT NULL,
    params       TEXT    NOT NULL DEFAULT '{}',
    status       TEXT    NOT NULL,
    file_path    TEXT,
    content      BYTEA,
    row_count    BIGINT  NOT NULL DEFAULT 0,
    error        TEXT,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL,
    finished_at  BIGINT
);
CREATE INDEX export_jobs_campaign ON export_jobs(campaign_id, id);

-- Append-only; no foreign keys, so the log outlives what it talks about.
CREATE TABLE events (
    id           BIGSERIAL PRIMARY KEY,
    campaign_id  BIGINT,
    contact_id   BIGINT,
    kind         TEXT    NOT NULL,
    detail       TEXT    NOT NULL DEFAULT '{}',
    created_at   BIGINT  NOT NULL
);
CREATE INDEX events_campaign ON events(campaign_id, id);
CREATE INDEX events_contact ON events(contact_id, id);
