-- The dashboard (issue 17) and a funnel that no longer grows with the log (issue 18.6).

-- Dashboard viewers: one per login link. account_id NULL is an admin viewer (every account). The
-- one-time login token is stored as its SHA-256 only and cleared when used; session cookies are
-- JWTs signed with the viewer's own session_key, so revoking (or deleting) the viewer ends them
-- in every process at once without a shared server secret.
CREATE TABLE dashboard_viewers (
    id                  bigserial PRIMARY KEY,
    account_id          text REFERENCES user_accounts(id) ON DELETE CASCADE,
    name                text NOT NULL,
    login_token_hash    bytea UNIQUE,
    login_expires_at    timestamptz,
    session_key         bytea NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    logged_in_at        timestamptz,
    revoked_at          timestamptz
);
CREATE INDEX dashboard_viewers_account ON dashboard_viewers (account_id);

-- The funnel's daily rollup: decisions per UTC day of created_at, direction, dataset, level, event
-- name and status. Statement-level triggers on capi_events_log append one delta row per group a
-- statement changes (an insert only: writers never wait on each other or deadlock on a shared
-- counter row); `qualibot.reports.merge_funnel_rollup` (a worker loop, every minute) folds the
-- deltas into one merged row per group. Readers sum both, so a read is exact at any moment.
-- '' stands for a NULL direction or dataset, so that the merged key is one plain unique index.
CREATE TABLE capi_funnel_rollup (
    day             date NOT NULL,
    direction_id    text NOT NULL,
    pixel_id        text NOT NULL,
    event_level     smallint NOT NULL,
    event_name      text NOT NULL,
    status          text NOT NULL,
    n               bigint NOT NULL,
    merged          boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX capi_funnel_rollup_merged
    ON capi_funnel_rollup (day, direction_id, pixel_id, event_level, event_name, status) WHERE merged;
CREATE INDEX capi_funnel_rollup_deltas ON capi_funnel_rollup (day) WHERE NOT merged;
-- the view's `direction_id = ...` and `day >= ...` (its direction is nullif(direction_id, ''))
CREATE INDEX capi_funnel_rollup_direction_day ON capi_funnel_rollup ((nullif(direction_id, '')), day);
CREATE INDEX capi_funnel_rollup_day ON capi_funnel_rollup (day);

CREATE FUNCTION capi_funnel_rollup_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO capi_funnel_rollup (day, direction_id, pixel_id, event_level, event_name, status, n)
        SELECT (created_at AT TIME ZONE 'UTC')::date, coalesce(direction_id, ''), coalesce(pixel_id, ''),
               event_level, event_name, status, count(*)
        FROM new_rows GROUP BY 1, 2, 3, 4, 5, 6;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO capi_funnel_rollup (day, direction_id, pixel_id, event_level, event_name, status, n)
        SELECT (created_at AT TIME ZONE 'UTC')::date, coalesce(direction_id, ''), coalesce(pixel_id, ''),
               event_level, event_name, status, -count(*)
        FROM old_rows GROUP BY 1, 2, 3, 4, 5, 6;
    ELSE
        -- most updates (attempts, next_attempt_at, response) move no row between groups: the
        -- +1/-1 pairs cancel and nothing is written
        INSERT INTO capi_funnel_rollup (day, direction_id, pixel_id, event_level, event_name, status, n)
        SELECT day, direction_id, pixel_id, event_level, event_name, status, sum(n)
        FROM (SELECT (created_at AT TIME ZONE 'UTC')::date AS day, coalesce(direction_id, '') AS direction_id,
                     coalesce(pixel_id, '') AS pixel_id, event_level, event_name, status, 1 AS n FROM new_rows
              UNION ALL
              SELECT (created_at AT TIME ZONE 'UTC')::date, coalesce(direction_id, ''), coalesce(pixel_id, ''),
                     event_level, event_name, status, -1 FROM old_rows) c
        GROUP BY 1, 2, 3, 4, 5, 6 HAVING sum(n) <> 0;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION capi_funnel_rollup_clear() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM capi_funnel_rollup;
    RETURN NULL;
END
$$;

CREATE TRIGGER capi_funnel_rollup_insert AFTER INSERT ON capi_events_log
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION capi_funnel_rollup_apply();
CREATE TRIGGER capi_funnel_rollup_update AFTER UPDATE ON capi_events_log
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION capi_funnel_rollup_apply();
CREATE TRIGGER capi_funnel_rollup_delete AFTER DELETE ON capi_events_log
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION capi_funnel_rollup_apply();
CREATE TRIGGER capi_funnel_rollup_truncate AFTER TRUNCATE ON capi_events_log
    FOR EACH STATEMENT EXECUTE FUNCTION capi_funnel_rollup_clear();

-- the log as it is now (the migration holds its lock, so no change slips between this and the triggers)
LOCK TABLE capi_events_log IN SHARE MODE;
INSERT INTO capi_funnel_rollup (day, direction_id, pixel_id, event_level, event_name, status, n, merged)
SELECT (created_at AT TIME ZONE 'UTC')::date, coalesce(direction_id, ''), coalesce(pixel_id, ''),
       event_level, event_name, status, count(*), true
FROM capi_events_log GROUP BY 1, 2, 3, 4, 5, 6;

-- capi_funnel_daily keeps its columns (audits query it) and now reads the rollup: a few rows per
-- direction and day instead of every decision.
CREATE OR REPLACE VIEW capi_funnel_daily AS
SELECT nullif(direction_id, '') AS direction_id,
       nullif(pixel_id, '')     AS pixel_id,
       day,
       event_level,
       event_name,
       coalesce(sum(n) FILTER (WHERE status = 'success'), 0)::bigint AS success,
       coalesce(sum(n) FILTER (WHERE status = 'error'), 0)::bigint   AS error,
       coalesce(sum(n) FILTER (WHERE status = 'skipped'), 0)::bigint AS skipped,
       coalesce(sum(n) FILTER (WHERE status = 'pending'), 0)::bigint AS pending,
       sum(n)::bigint                                                 AS total
FROM capi_funnel_rollup
GROUP BY direction_id, pixel_id, day, event_level, event_name
HAVING sum(n) <> 0;

-- One row per dialog with its lead's ad (the Ads, Attribution window, Dialogs pages and `report ads|window`):
-- the join is written once here; filters on account, direction and created_at reach the indexes.
CREATE VIEW dialog_ads AS
SELECT d.id             AS dialog_id,
       d.account_id,
       d.direction_id,
       d.instance_name,
       d.contact_phone,
       d.created_at,
       dialog_level(d.is_interested, d.is_qualified, d.is_scheduled) AS level,
       l.ad_source_id   AS ad_id,
       l.ad_title,
       l.referral_at    AS clicked_at,
       l.ctwa_clid IS NOT NULL AS has_click_id,
       d.interest_reached_at,
       d.qualified_reached_at,
       d.scheduled_reached_at,
       (d.capi_interest_sent::int + d.capi_qualified_sent::int + d.capi_scheduled_sent::int) AS events_sent
FROM dialog_analysis d LEFT JOIN leads l ON l.id = d.lead_id;

CREATE INDEX dialog_analysis_account_created ON dialog_analysis (account_id, created_at);
CREATE INDEX dialog_analysis_created ON dialog_analysis (created_at);
CREATE INDEX leads_account_created ON leads (account_id, created_at);
CREATE INDEX leads_created ON leads (created_at);

-- the messages the model cited as evidence for its last accepted level (messages.id)
ALTER TABLE dialog_analysis ADD COLUMN analysis_evidence bigint[];
