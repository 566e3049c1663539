-- qualibot: no-transaction
-- The outbox's claim as a HOT update, and fewer index entries per written row (issue 18.5).
--
-- A claim used to push next_attempt_at past the lease. That column is indexed
-- (capi_events_log_pending), so each claim wrote a new row version with an entry in 8 of the
-- table's 12 indexes. The lease now has its own column, in no index and no index predicate: a
-- claim changes only attempts, lease_until and updated_at, which PostgreSQL writes as a HOT update
-- (the new version on the same page, no index touched) when the page has room. A claimable row is
-- pending, due (next_attempt_at <= now()) and not leased (lease_until NULL or past). Rows claimed
-- under the old scheme (next_attempt_at = the end of their lease) are not due until then: as before.
ALTER TABLE capi_events_log ADD COLUMN IF NOT EXISTS lease_until timestamptz;

-- Room on each page for a claim's row version: at fillfactor 50 every claim in bench/capi_send.py
-- was HOT (about 1 in 4 at 85), and the heap came out smaller than at 100, as versions are pruned in
-- place. It applies to pages filled from now on; ALTER TABLE ... SET rewrites nothing.
ALTER TABLE capi_events_log SET (fillfactor = 50);

-- Since migration 017, capi_funnel_daily reads the rollup: these day indexes served the view over
-- the log and no query uses them now, while every insert and every non-HOT update wrote to both.
DROP INDEX CONCURRENTLY IF EXISTS capi_events_log_direction_day;
DROP INDEX CONCURRENTLY IF EXISTS capi_events_log_day;
