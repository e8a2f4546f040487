-- Step 5: the series generation of each entity's history, which lets a hub keep the ids of
-- history series in memory (src/series.rs) and know, in the transaction that uses them, whether
-- they still hold: every deletion of a series changes it (the deleting transaction's id), and a
-- new temporal representation starts with the id of the transaction that makes it. Rows from
-- before this step read NULL (generation 0, which no transaction id is). No table rewrite:
-- the column is added without a default, then the default is set for new rows.
ALTER TABLE temporal_entities ADD COLUMN series_gen bigint;
ALTER TABLE temporal_entities ALTER COLUMN series_gen SET DEFAULT pg_current_xact_id()::text::bigint;
