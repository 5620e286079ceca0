-- AI voice agents, campaign goals and analyses, and what agents report per attempt.
-- Same schema in ../sqlite and ../postgres (only the id type differs).

-- An AI voice agent answered people are streamed to. kind: twilio_ws | l16_ws |
-- webrtc_smallwebrtc | webrtc_whip. custom_parameters: JSON object of strings.
-- auth_header_env names the environment variable that holds the auth header's value: the
-- value itself is never stored. on_agent_close: hangup | connect (to handoff_target).
CREATE TABLE ai_agents (
    id                 BIGSERIAL PRIMARY KEY,
    account_id         BIGINT  REFERENCES accounts(id) ON DELETE CASCADE,
    name               TEXT    NOT NULL,
    kind               TEXT    NOT NULL,
    url                TEXT    NOT NULL,
    custom_parameters  TEXT    NOT NULL DEFAULT '{}',
    auth_header_name   TEXT,
    auth_header_env    TEXT,
    sample_rate        BIGINT,
    on_agent_close     TEXT    NOT NULL DEFAULT 'hangup',
    handoff_target     TEXT,
    created_at         BIGINT  NOT NULL,
    updated_at         BIGINT  NOT NULL,
    UNIQUE (account_id, name)
);

-- The AI agent record a campaign bridges answered people to (instead of ai_agent_url).
-- The API refuses to delete an agent a campaign uses; deleting the account clears it.
ALTER TABLE campaigns ADD COLUMN ai_agent_id BIGINT REFERENCES ai_agents(id) ON DELETE SET NULL;
CREATE INDEX campaigns_ai_agent ON campaigns(ai_agent_id);

-- A campaign's goals and analysis questions. kind: primary | secondary (goals) | analysis;
-- type: yes_no | open_text | rating. Archived and inactive questions take no results.
CREATE TABLE campaign_questions (
    id           BIGSERIAL PRIMARY KEY,
    campaign_id  BIGINT  NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    kind         TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    question     TEXT    NOT NULL DEFAULT '',
    type         TEXT    NOT NULL,
    active       BIGINT  NOT NULL DEFAULT 1,
    archived     BIGINT  NOT NULL DEFAULT 0,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);
CREATE INDEX campaign_questions_campaign ON campaign_questions(campaign_id, kind, id);
-- At most one active, unarchived primary goal per campaign.
CREATE UNIQUE INDEX campaign_questions_one_primary ON campaign_questions(campaign_id)
    WHERE kind = 'primary' AND active = 1 AND archived = 0;

-- An AI agent's report about one attempt's conversation; a new report replaces it.
CREATE TABLE attempt_analyses (
    attempt_id   BIGINT  PRIMARY KEY REFERENCES call_attempts(id) ON DELETE CASCADE,
    summary      TEXT    NOT NULL DEFAULT '',
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);

-- One answer of a report per question: goals carry an outcome (achieved |
-- partially_achieved | not_achieved | unknown); value: the answer as JSON text, or NULL.
CREATE TABLE attempt_answers (
    attempt_id   BIGINT  NOT NULL REFERENCES attempt_analyses(attempt_id) ON DELETE CASCADE,
    question_id  BIGINT  NOT NULL REFERENCES campaign_questions(id) ON DELETE CASCADE,
    outcome      TEXT,
    value        TEXT,
    PRIMARY KEY (attempt_id, question_id)
);
CREATE INDEX attempt_answers_question ON attempt_answers(question_id);
