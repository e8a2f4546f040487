-- The audit log (issue 16 item 6): one row per audited request, from every hub on the database.
-- The tenant leads the key, as for all per-tenant data; reads go newest first by time.
CREATE TABLE audit_log (
    tenant text NOT NULL,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    at bigint NOT NULL,
    subject text NOT NULL,
    via text NOT NULL,
    client text NOT NULL,
    method text NOT NULL,
    route text NOT NULL,
    target text,
    status integer NOT NULL,
    error text,
    PRIMARY KEY (tenant, seq)
);
CREATE INDEX audit_log_at ON audit_log (at, seq);
