-- Which node drives a campaign: several nodes sharing one database split the campaigns
-- between them (a node renews its lease every tick; an expired lease may be taken).
CREATE TABLE campaign_leases (
    campaign_id  BIGINT PRIMARY KEY REFERENCES campaigns(id) ON DELETE CASCADE,
    node         TEXT   NOT NULL,
    until        BIGINT NOT NULL
);
