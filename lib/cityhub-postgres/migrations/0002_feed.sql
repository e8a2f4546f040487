-- Step 2: the notification machinery and the records: subscriptions of both kinds with their
-- delivery status, the change journal, the notifier's cursor, the outbox, leases, and records
-- (context source registrations). Every per-tenant table has the tenant first in its primary key
-- and no foreign key (Citus could distribute each by tenant); `notifier_state` and `leases` are
-- hub-wide (Citus reference tables). Written and read by `subscriptions.rs`, `feed.rs` and
-- `records.rs` only.

CREATE TABLE subscriptions (
    tenant text COLLATE "C" NOT NULL,
    kind text NOT NULL,               -- SubscriptionKind::name: entity | csource
    id text COLLATE "C" NOT NULL,
    doc jsonb NOT NULL,               -- the hub's context-free form (cityhub-notify)
    times_sent bigint NOT NULL DEFAULT 0,
    times_failed bigint NOT NULL DEFAULT 0,
    dropped bigint NOT NULL DEFAULT 0,
    last_notification text,
    last_success text,
    last_failure text,
    PRIMARY KEY (tenant, kind, id)
);

-- Entity changes not yet turned into notifications, written only in tenants with an entity
-- subscription. `seq` comes from journal_seq while the writer holds the journal advisory lock
-- until its commit (feed::JOURNAL_LOCK), so seq order is commit order: a reader of `seq > cursor`
-- never skips an entry that committed after one with a higher seq. A sequence never hands out a
-- number twice, so the rows below the cursor may go.
CREATE SEQUENCE journal_seq AS bigint;
CREATE TABLE journal (
    tenant text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    before json,                      -- json, not jsonb: members read back in the order written
    after json,
    at text NOT NULL,
    PRIMARY KEY (tenant, seq)
);
CREATE INDEX journal_by_seq ON journal (seq);

-- How far the notifier has consumed the journal; moved only by compare-and-set.
CREATE TABLE notifier_state (
    name text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO notifier_state (name, value) VALUES ('cursor', 0);

-- Pending notifications; one ordered queue per endpoint (`id` order).
CREATE TABLE outbox (
    tenant text COLLATE "C" NOT NULL,
    id bigserial,
    endpoint text NOT NULL,
    kind text NOT NULL,
    subscription_id text COLLATE "C" NOT NULL,
    message json NOT NULL,
    created_at text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX outbox_by_endpoint ON outbox (endpoint, id);
CREATE INDEX outbox_by_subscription ON outbox (tenant, kind, subscription_id);

-- One holder per name at a time, on the database's clock.
CREATE TABLE leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Context source registrations, one expanded document each; `position` keeps the order in
-- which they were first written (a replacement keeps it).
CREATE TABLE records (
    tenant text COLLATE "C" NOT NULL,
    kind text NOT NULL,
    id text COLLATE "C" NOT NULL,
    doc jsonb NOT NULL,
    position bigserial,
    PRIMARY KEY (tenant, kind, id)
);
CREATE INDEX records_in_order ON records (tenant, kind, position);
