-- Step 4: cheaper writes (measured in /work/wt/pgbatch-bench.md's terms: CPU per 200-entity upsert).
--
-- Current documents (~3 KB expanded) and journal entries are compressed with LZ4 instead of
-- pglz when PostgreSQL was built with it (Debian's is): about half the server's time to compress
-- an upsert's 200 documents, and faster to read back. Values already stored stay as they are
-- (both read back alike). A server without LZ4 keeps pglz.
DO $$
BEGIN
    ALTER TABLE entities ALTER COLUMN doc SET COMPRESSION lz4;
    ALTER TABLE journal ALTER COLUMN before SET COMPRESSION lz4;
    ALTER TABLE journal ALTER COLUMN after SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'LZ4 not available: documents stay compressed with pglz';
END
$$;

-- (sid, t_created) served only temporal queries on createdAt and "has this series rows", which
-- the (sid, t_observed, ...) index answers as well by its sid prefix; every history row paid
-- for it at insert (a random leaf page per row, 2,400 rows per 200-entity upsert).
DROP INDEX attr_history_created;
