-- Accounts isolation: logins with a role inside an account, API keys per login, sessions
-- tied to the key that opened them, a DNC list per account beside the global one,
-- business-hours schedules per account, and the staging table of CSV imports.
-- Same schema in ../sqlite and ../postgres (only the id type differs).

-- A login of an account. role: admin (manages the account's logins and keys) | operator.
-- Every existing account keeps its login as an admin login.
CREATE TABLE logins (
    id          BIGSERIAL PRIMARY KEY,
    account_id  BIGINT  NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    login       TEXT    NOT NULL UNIQUE,
    role        TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);
CREATE INDEX logins_account ON logins(account_id);
INSERT INTO logins (account_id, login, role, created_at)
    SELECT id, login, 'admin', created_at FROM accounts;

-- The login a key belongs to (existing keys: their account's own login).
ALTER TABLE api_keys ADD COLUMN login_id BIGINT REFERENCES logins(id) ON DELETE CASCADE;
UPDATE api_keys SET login_id = (
    SELECT l.id FROM logins l JOIN accounts a ON a.id = l.account_id
    WHERE a.id = api_keys.account_id AND l.login = a.login
);
CREATE INDEX api_keys_login ON api_keys(login_id);

-- A session remembers the key it was opened with: revoking the key ends it. Sessions
-- opened before this migration knew no key: they are ended (log in again).
DELETE FROM sessions;
ALTER TABLE sessions ADD COLUMN key_id BIGINT REFERENCES api_keys(id) ON DELETE CASCADE;
ALTER TABLE sessions ADD COLUMN login_id BIGINT REFERENCES logins(id) ON DELETE CASCADE;
CREATE INDEX sessions_key ON sessions(key_id);

-- The DNC lists: account_id names the account's own list, NULL the global list (admins
-- manage it; every campaign checks both). Existing numbers go to the global list, so
-- nothing that was blocked before is dialed now.
CREATE TABLE dnc_entries (
    id          BIGSERIAL PRIMARY KEY,
    account_id  BIGINT  REFERENCES accounts(id) ON DELETE CASCADE,
    phone       TEXT    NOT NULL,
    reason      TEXT    NOT NULL DEFAULT '',
    created_at  BIGINT  NOT NULL
);
CREATE UNIQUE INDEX dnc_entries_list_phone ON dnc_entries(COALESCE(account_id, 0), phone);
CREATE INDEX dnc_entries_phone ON dnc_entries(phone);
INSERT INTO dnc_entries (account_id, phone, reason, created_at)
    SELECT NULL, phone, reason, created_at FROM dnc_numbers;
DROP TABLE dnc_numbers;

-- Business-hours schedules belong to an account: the account of the first campaign that
-- uses one, else the first account.
ALTER TABLE business_hours ADD COLUMN account_id BIGINT REFERENCES accounts(id) ON DELETE SET NULL;
UPDATE business_hours SET account_id = (
    SELECT MIN(c.account_id) FROM campaigns c WHERE c.business_hours_id = business_hours.id
);
UPDATE business_hours SET account_id = (SELECT MIN(id) FROM accounts) WHERE account_id IS NULL;
CREATE INDEX business_hours_account ON business_hours(account_id);

-- Rows of a CSV import in progress. An import stages its accepted rows here (its own
-- duplicates meet the primary key), then moves them into contacts in one transaction
-- (duplicates of the campaign meet contacts' UNIQUE (campaign_id, phone)) or deletes them:
-- nothing is half-imported, and no memory grows with the file. Rows an interrupted
-- process left behind are purged with the expired sessions.
CREATE TABLE contact_imports (
    import_id   TEXT    NOT NULL,
    line        BIGINT  NOT NULL,
    phone       TEXT    NOT NULL,
    name        TEXT    NOT NULL DEFAULT '',
    comments    TEXT    NOT NULL DEFAULT '',
    tags        TEXT    NOT NULL DEFAULT '[]',
    timezone    TEXT,
    status      TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (import_id, phone)
);
CREATE INDEX contact_imports_line ON contact_imports(import_id, line);
CREATE INDEX contact_imports_created ON contact_imports(created_at);
