-- Rules written once (issue 15.1): which Meta token wins, which flags make a dialog's level, and the
-- default event names. Python reads them through these functions; the views are redefined on them.

-- The ad account's token when set, else the account's fallback token (NULL: neither has one).
CREATE FUNCTION capi_meta_token(ad_account_token text, account_token text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT COALESCE(NULLIF(ad_account_token, ''), NULLIF(account_token, ''))
$$;

-- A dialog's level, 0..3, from its dialog_analysis flags (levels only rise, so the highest set wins).
CREATE FUNCTION dialog_level(is_interested boolean, is_qualified boolean, is_scheduled boolean) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN is_scheduled THEN 3 WHEN is_qualified THEN 2 WHEN is_interested THEN 1 ELSE 0 END
$$;

-- The event name of a level: the direction's configured one (account_directions.capi_event_names,
-- {"1": "LeadSubmitted", ...}), else the seed's Lead / CompleteRegistration / Schedule.
CREATE FUNCTION capi_event_name(names jsonb, level integer) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT COALESCE(CASE WHEN jsonb_typeof(names -> level::text) = 'string'
                         THEN NULLIF(btrim(names ->> level::text), '') END,
                    (ARRAY['Lead', 'CompleteRegistration', 'Schedule'])[level])
$$;

CREATE OR REPLACE VIEW qualification_suspicious AS
SELECT id AS dialog_id,
       analysis_suspicious_at AS flagged_at,
       direction_id,
       instance_name,
       analysis_suspicious_message_id AS message_id,
       dialog_level(is_interested, is_qualified, is_scheduled) AS level,
       analysis_detail
FROM dialog_analysis
WHERE analysis_suspicious_message_id IS NOT NULL
ORDER BY analysis_suspicious_at DESC, id DESC;

CREATE OR REPLACE VIEW capi_optimization_readiness AS
WITH named AS (
    SELECT d.id AS direction_id, d.pixel_id, l.event_level,
           capi_event_name(d.capi_event_names, l.event_level) AS event_name
    FROM account_directions d CROSS JOIN (VALUES (1::smallint), (2::smallint), (3::smallint)) l (event_level)
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
