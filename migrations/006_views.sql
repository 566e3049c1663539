-- Audit views over capi_events_log (issue 7), and the indexes that let filtered queries on them
-- avoid reading the whole log. Days are UTC dates of created_at (when the decision was recorded).

-- A day expression index: `WHERE day >= ...` on capi_funnel_daily is pushed below its GROUP BY
-- and becomes a range on this expression, so it needs the expression itself indexed
-- (timezone(text, timestamptz) and timestamp::date are immutable).
CREATE INDEX capi_events_log_direction_day
    ON capi_events_log (direction_id, ((created_at AT TIME ZONE 'UTC')::date));
CREATE INDEX capi_events_log_day
    ON capi_events_log (((created_at AT TIME ZONE 'UTC')::date));
-- Newest errors first, overall and per direction: small partial indexes read in order, so
-- `... LIMIT n` stops after n rows.
CREATE INDEX capi_events_log_errors
    ON capi_events_log (created_at DESC, id DESC) WHERE status = 'error';
CREATE INDEX capi_events_log_direction_errors
    ON capi_events_log (direction_id, created_at DESC, id DESC) WHERE status = 'error';
-- The last 7 days' successes per direction and level (readiness), read from the index alone; time
-- first, so the scan covers the window whatever the number of directions or the log's age.
CREATE INDEX capi_events_log_success_window
    ON capi_events_log (created_at, direction_id, event_level) WHERE status = 'success';

-- Per direction, dataset, UTC day and event: how many decisions are in each status.
CREATE VIEW capi_funnel_daily AS
SELECT direction_id,
       pixel_id,
       (created_at AT TIME ZONE 'UTC')::date   AS day,
       event_level,
       event_name,
       count(*) FILTER (WHERE status = 'success') AS success,
       count(*) FILTER (WHERE status = 'error')   AS error,
       count(*) FILTER (WHERE status = 'skipped') AS skipped,
       count(*) FILTER (WHERE status = 'pending') AS pending,
       count(*)                                   AS total
FROM capi_events_log
GROUP BY direction_id, pixel_id, (created_at AT TIME ZONE 'UTC')::date, event_level, event_name;

COMMENT ON VIEW capi_funnel_daily IS
    'CAPI decisions per direction, dataset (pixel_id), UTC day of created_at and event: success, error, skipped, pending.';

-- Per direction and level: successful events in the last 7 days against Meta's learning-phase
-- threshold (about 50 optimisation events in 7 days), and the event to optimise for following the
-- seed's weekly strategy Lead -> CompleteRegistration -> Schedule: the highest level that reached
-- 50, moving up when the next level reaches 50 too. Event names are the direction's configured
-- ones (account_directions.capi_event_names), the seed's names where a level is not configured.
CREATE VIEW capi_optimization_readiness AS
WITH levels (event_level, default_name) AS (
    VALUES (1::smallint, 'Lead'), (2::smallint, 'CompleteRegistration'), (3::smallint, 'Schedule')
), named AS (
    SELECT d.id AS direction_id, d.pixel_id, l.event_level,
           coalesce(nullif(d.capi_event_names ->> l.event_level::text, ''), l.default_name) AS event_name
    FROM account_directions d CROSS JOIN levels l
), counts AS (
    SELECT direction_id, event_level, count(*) AS successes_7d
    FROM capi_events_log
    WHERE status = 'success' AND created_at >= now() - interval '7 days'
    GROUP BY direction_id, event_level
), scored AS (
    SELECT n.direction_id, n.pixel_id, n.event_level, n.event_name,
           coalesce(c.successes_7d, 0) AS successes_7d,
           coalesce(c.successes_7d, 0) >= 50 AS ready
    FROM named n LEFT JOIN counts c
        ON c.direction_id = n.direction_id AND c.event_level = n.event_level
), best AS (
    SELECT s.*,
           max(s.event_level) FILTER (WHERE s.ready) OVER (PARTITION BY s.direction_id) AS optimise_level,
           lead(s.event_name) OVER (PARTITION BY s.direction_id ORDER BY s.event_level) AS next_name
    FROM scored s
), named_best AS (
    SELECT b.*,
           max(b.event_name) FILTER (WHERE b.event_level = b.optimise_level)
               OVER (PARTITION BY b.direction_id) AS optimise_name
    FROM best b
)
SELECT direction_id,
       pixel_id,
       event_level,
       event_name,
       successes_7d,
       50 AS threshold,
       ready,
       optimise_level AS optimise_for_level,
       optimise_name  AS optimise_for_event,
       CASE
           WHEN optimise_level IS NULL AND event_level = 1 THEN format(
               'not ready: %s more %s in 7 days needed; keep optimising for conversations',
               50 - successes_7d, event_name)
           WHEN event_level = optimise_level AND next_name IS NOT NULL THEN format(
               'optimise for %s; move up to %s when it reaches 50 in 7 days', event_name, next_name)
           WHEN event_level = optimise_level THEN format('optimise for %s (the top level)', event_name)
           WHEN event_level < optimise_level THEN format('ready; %s is ready too: optimise for it', optimise_name)
           ELSE format('not ready: %s more in 7 days needed', 50 - successes_7d)
       END AS recommendation
FROM named_best;

COMMENT ON VIEW capi_optimization_readiness IS
    'Per direction and level: successful CAPI events in the last 7 days, ready at 50, and the event to optimise for (Lead -> CompleteRegistration -> Schedule).';

-- The newest failed sends first, with Meta's message (error), our hint, and Meta's error codes.
-- Ordered here so `SELECT * FROM capi_errors_recent LIMIT 20` is the latest twenty; with a LIMIT
-- and no outer ORDER BY the planner reads capi_events_log_errors in order and stops early.
CREATE VIEW capi_errors_recent AS
SELECT id,
       created_at,
       updated_at AS last_attempt_at,
       direction_id,
       pixel_id,
       event_level,
       event_name,
       source,
       attempts,
       error,
       hint,
       response -> 'error' ->> 'code'          AS meta_code,
       response -> 'error' ->> 'error_subcode' AS meta_subcode,
       response -> 'error' ->> 'fbtrace_id'    AS fbtrace_id,
       dialog_analysis_id,
       crm_entity,
       event_id
FROM capi_events_log
WHERE status = 'error'
ORDER BY created_at DESC, id DESC;

COMMENT ON VIEW capi_errors_recent IS
    'Failed CAPI sends, newest first, with Meta''s message (error), the hint, and Meta''s error code and subcode.';
