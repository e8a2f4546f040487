-- Step 1: tenants, hosted and cached @contexts, entities (current state) with their indexes,
-- and their history. Identifiers compare byte-wise (COLLATE "C"): pages are ordered by id exactly
-- as on the embedded store, whatever the database's locale. Documents are `json`, not `jsonb`:
-- they read back exactly as written (member order too); every lookup goes through the index
-- tables below, never into a document.

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
    doc json NOT NULL,
    PRIMARY KEY (tenant, id)
);

-- type -> ids, in id order per type.
CREATE TABLE entity_types (
    tenant text COLLATE "C" NOT NULL,
    type text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant, type, id)
);

-- One row per (type, attribute) of an entity saying the attribute is there (num and str NULL),
-- and one per scalar its instances hold (q on an attribute's own value).
CREATE TABLE facets (
    tenant text COLLATE "C" NOT NULL,
    attr text COLLATE "C" NOT NULL,
    type text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,
    num double precision,
    str text COLLATE "C"
);
-- Partial: each row is in two indexes (its kind's and the entity's), not four.
CREATE INDEX facets_present ON facets (tenant, attr, type, id) WHERE num IS NULL AND str IS NULL;
CREATE INDEX facets_num ON facets (tenant, attr, type, num, id) WHERE num IS NOT NULL;
CREATE INDEX facets_str ON facets (tenant, attr, type, str, id) WHERE str IS NOT NULL;
CREATE INDEX facets_entity ON facets (tenant, id, attr);

-- One row per GeoProperty instance. `near` measures metres on geography (its own index).
CREATE TABLE geometries (
    tenant text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,
    attr text COLLATE "C" NOT NULL,
    n integer NOT NULL,
    geom geometry(Geometry, 4326) NOT NULL,
    PRIMARY KEY (tenant, id, attr, n)
);
CREATE INDEX geometries_geom ON geometries USING gist (geom);
CREATE INDEX geometries_geog ON geometries USING gist ((geom::geography));

-- The temporal representation: every entity that ever had a history, deleted or not.
CREATE TABLE temporal_entities (
    tenant text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,
    types json NOT NULL,
    scope json NOT NULL,
    created_at text NOT NULL,
    modified_at text NOT NULL,
    deleted_at text,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE temporal_types (
    tenant text COLLATE "C" NOT NULL,
    type text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant, type, id)
);
CREATE INDEX temporal_types_by_id ON temporal_types (tenant, id);

-- One row per (entity, attribute) with a history; the history's rows carry its integer sid.
CREATE SEQUENCE attr_series_sid;
CREATE TABLE attr_series (
    tenant text COLLATE "C" NOT NULL,
    entity_id text COLLATE "C" NOT NULL,
    attr text COLLATE "C" NOT NULL,
    sid bigint NOT NULL DEFAULT nextval('attr_series_sid'),
    PRIMARY KEY (tenant, entity_id, attr)
);
CREATE UNIQUE INDEX attr_series_sid_key ON attr_series (tenant, sid);

-- Every attribute instance ever written. t_* are microseconds since the Unix epoch. An
-- instance's id is urn:ngsi-ld:Instance:<seq>, unless it came from another store with an id of
-- another form (legacy_instance_id). Partitioned by month of t_part (the observation time, or
-- the creation time of an instance without one): partitions are created on demand for months
-- from ten years back to one year ahead; any other time lands in the default partition.
CREATE SEQUENCE attr_history_seq;
CREATE TABLE attr_history (
    tenant text COLLATE "C" NOT NULL,
    sid bigint NOT NULL,
    seq bigint NOT NULL DEFAULT nextval('attr_history_seq'),
    t_part bigint NOT NULL,
    dataset_id text COLLATE "C",
    doc json NOT NULL,
    val text NOT NULL,
    num double precision,
    t_observed bigint,
    t_created bigint NOT NULL,
    t_modified bigint NOT NULL,
    t_deleted bigint,
    legacy_instance_id text,
    PRIMARY KEY (tenant, seq, t_part)
) PARTITION BY RANGE (t_part);
CREATE TABLE attr_history_default PARTITION OF attr_history DEFAULT;
-- Covering for numeric aggregation over observedAt.
CREATE INDEX attr_history_observed ON attr_history (sid, t_observed, dataset_id, t_deleted, num);
CREATE INDEX attr_history_created ON attr_history (sid, t_created);
CREATE INDEX attr_history_legacy ON attr_history (legacy_instance_id) WHERE legacy_instance_id IS NOT NULL;

-- GeoJSON text -> geometry in WGS 84, or NULL when PostGIS cannot read it.
CREATE FUNCTION cityhub_geometry(g text) RETURNS geometry
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN ST_SetSRID(ST_GeomFromGeoJSON(g), 4326);
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;
