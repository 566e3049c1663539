-- Issue 19: the model's confidence, and levels 2-3 held for review below a per-direction threshold.
-- 0 (the default) holds nothing; 0.7 holds a level 2 or 3 whose verdict is less sure than that.
ALTER TABLE account_directions
    ADD COLUMN min_confidence real NOT NULL DEFAULT 0 CHECK (min_confidence >= 0 AND min_confidence <= 1);

-- A held level is not recorded (no capi_events_log row, nothing sent); the dialog keeps what was
-- held and why, until a later analysis, the CRM or an operator records that level.
ALTER TABLE dialog_analysis
    ADD COLUMN analysis_confidence real,
    ADD COLUMN analysis_held_level smallint CHECK (analysis_held_level IN (2, 3)),
    ADD COLUMN analysis_held_at    timestamptz;
CREATE INDEX dialog_analysis_held ON dialog_analysis (analysis_held_at)
    WHERE analysis_held_level IS NOT NULL;

-- `qualibot report held`: levels waiting for a person, newest first; a level recorded since is no
-- longer waiting.
CREATE VIEW qualification_held AS
SELECT id AS dialog_id,
       analysis_held_at AS held_at,
       direction_id,
       instance_name,
       analysis_held_level AS held_level,
       analysis_confidence AS confidence,
       dialog_level(is_interested, is_qualified, is_scheduled) AS level,
       analysis_detail
FROM dialog_analysis
WHERE analysis_held_level IS NOT NULL
  AND analysis_held_level > dialog_level(is_interested, is_qualified, is_scheduled)
ORDER BY analysis_held_at DESC, id DESC;
