-- SIP agents, agent pools, the campaign's pacing settings and the bridge leg of the CDR.
-- Same schema in ../sqlite and ../postgres (only the id type differs).

-- An agent a person who answered is bridged to. state: available | paused | busy | offline.
-- idle_since: when it last became free to take a call (set available, or its wrap-up
-- after the last call ended); lease_node: the node that holds it busy for a call.
CREATE TABLE sip_agents (
    id                INTEGER PRIMARY KEY,
    account_id        BIGINT  REFERENCES accounts(id) ON DELETE CASCADE,
    name              TEXT    NOT NULL,
    target            TEXT    NOT NULL,
    profile           TEXT    NOT NULL DEFAULT '',
    state             TEXT    NOT NULL,
    wrap_up_secs      BIGINT  NOT NULL DEFAULT 0,
    state_since       BIGINT  NOT NULL,
    idle_since        BIGINT,
    last_call_end_at  BIGINT,
    lease_node        TEXT,
    leased_at         BIGINT,
    calls             BIGINT  NOT NULL DEFAULT 0,
    talk_ms           BIGINT  NOT NULL DEFAULT 0,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL,
    UNIQUE (account_id, name)
);

-- A named, ordered list of agents; a campaign's connect_to may name one.
CREATE TABLE agent_pools (
    id          INTEGER PRIMARY KEY,
    account_id  BIGINT  REFERENCES accounts(id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    UNIQUE (account_id, name)
);

CREATE TABLE agent_pool_members (
    pool_id   BIGINT  NOT NULL REFERENCES agent_pools(id) ON DELETE CASCADE,
    agent_id  BIGINT  NOT NULL REFERENCES sip_agents(id) ON DELETE CASCADE,
    position  BIGINT  NOT NULL,
    PRIMARY KEY (pool_id, agent_id)
);
CREATE INDEX agent_pool_members_agent ON agent_pool_members(agent_id);

ALTER TABLE campaigns ADD COLUMN pacing TEXT NOT NULL DEFAULT 'progressive';
ALTER TABLE campaigns ADD COLUMN abandon_cap_pct DOUBLE PRECISION NOT NULL DEFAULT 3.0;
ALTER TABLE campaigns ADD COLUMN abandon_message TEXT;
ALTER TABLE campaigns ADD COLUMN agent_ring_timeout_secs BIGINT NOT NULL DEFAULT 15;
ALTER TABLE campaigns ADD COLUMN queue_timeout_secs BIGINT NOT NULL DEFAULT 2;

-- The agent leg of an attempt. Times are ms since the epoch; ended_by: callee | agent |
-- system; abandoned: a person answered and was not connected to an agent within 2 s.
ALTER TABLE call_attempts ADD COLUMN agent_call_id TEXT;
ALTER TABLE call_attempts ADD COLUMN agent_id BIGINT;
ALTER TABLE call_attempts ADD COLUMN agent_name TEXT;
ALTER TABLE call_attempts ADD COLUMN agent_ring_at BIGINT;
ALTER TABLE call_attempts ADD COLUMN agent_answer_at BIGINT;
ALTER TABLE call_attempts ADD COLUMN bridge_start_at BIGINT;
ALTER TABLE call_attempts ADD COLUMN bridge_end_at BIGINT;
ALTER TABLE call_attempts ADD COLUMN talk_ms BIGINT;
ALTER TABLE call_attempts ADD COLUMN ended_by TEXT;
ALTER TABLE call_attempts ADD COLUMN queue_wait_ms BIGINT;
ALTER TABLE call_attempts ADD COLUMN agent_idle_ms BIGINT;
ALTER TABLE call_attempts ADD COLUMN abandoned BIGINT NOT NULL DEFAULT 0;
