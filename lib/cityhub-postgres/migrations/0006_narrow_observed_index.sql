-- Step 6: the history's observed index narrowed to (sid, t_observed). The wider one
-- (sid, t_observed, dataset_id, t_deleted, num) covered no query: every history read also names
-- the tenant, which no history index holds, so each matching row is read from the heap anyway;
-- its extra columns only made every one of the ~2,400 index entries an upsert of 200 entities
-- writes about three times as large (more leaf pages to find in shared buffers, split and log).
-- Building it takes a lock on the history for as long as the build lasts: on a large store,
-- run this step at a quiet hour (it is the step's only cost).
CREATE INDEX attr_history_sid_observed ON attr_history (sid, t_observed);
DROP INDEX attr_history_observed;
