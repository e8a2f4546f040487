-- Step 1: tenants, hosted and cached @contexts, entities (current state), their geometries and
-- their history. Identifiers compare byte-wise (COLLATE "C"): pages are ordered by id exactly as
-- on the embedded store, whatever the database's locale.

CREATE EXTENSION IF NOT EXISTS postgis;

CREATE TABLE tenants (
    tenant text COLLATE "C" PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Hub-wide (served to every tenant): a Citus reference table. `tenant` is the one that hosted it.
CREATE TABLE contexts (
    id text COLLATE "C" PRIMARY KEY,
    kind text NOT NULL,
    url text NOT NULL,
    -- json, not jsonb: the document reads back exactly as it was written.
    document json NOT NULL,
    created_at text NOT NULL,
    last_used_at text,
    hits bigint NOT NULL DEFAULT 0,
    tenant text COLLATE "C" NOT NULL DEFAULT ''
);

-- The current state of each entity: its expanded document.
CREATE TABLE entities (
    tenant text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,
    doc jsonb NOT NULL,
    PRIMARY KEY (tenant, id)
);
