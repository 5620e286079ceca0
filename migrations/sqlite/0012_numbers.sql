-- Phone numbers (DIDs) as records: an account's numbers, each in E.164 and unique across
-- the whole store (an inbound call's called number names one owner). A campaign may name
-- one as its number: its caller ID, fixed once the campaign is created. A number is held by
-- at most one campaign that is scheduled, processing or paused; the store checks that in
-- the transaction that moves a campaign into one of those statuses. Existing campaigns name
-- no number and keep their free-text caller_id.
-- Same schema in ../sqlite and ../postgres (only the id type differs).
CREATE TABLE numbers (
    id          INTEGER PRIMARY KEY,
    account_id  BIGINT  NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    number      TEXT    NOT NULL UNIQUE,
    label       TEXT,
    sip_profile TEXT,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);
CREATE INDEX numbers_account ON numbers(account_id, number);

-- A deleted number leaves its (finished or new) campaigns with their caller_id text.
ALTER TABLE campaigns ADD COLUMN number_id BIGINT REFERENCES numbers(id) ON DELETE SET NULL;
CREATE INDEX campaigns_number ON campaigns(number_id, status);
