-- qualibot: no-transaction
-- The dashboard's held page (issue 19.5) and index-driven admin Ads / Window / one-ad pages (issue 17).
-- Outside a transaction, a statement at a time (core/migrate.py): CREATE INDEX CONCURRENTLY does not
-- block the intake's writes to leads while it builds; every statement can run again after a failure.

-- qualification_held with the dialog's account, so a viewer's page filters on the account itself
-- (a dialog's direction is not tied to its account by a constraint); the columns before it unchanged.
CREATE OR REPLACE VIEW qualification_held AS
SELECT id AS dialog_id,
       analysis_held_at AS held_at,
       direction_id,
       instance_name,
       analysis_held_level AS held_level,
       analysis_confidence AS confidence,
       dialog_level(is_interested, is_qualified, is_scheduled) AS level,
       analysis_detail,
       account_id
FROM dialog_analysis
WHERE analysis_held_level IS NOT NULL
  AND analysis_held_level > dialog_level(is_interested, is_qualified, is_scheduled)
ORDER BY analysis_held_at DESC, id DESC;

-- The Dialogs page of one ad (`dialog_ads ... WHERE ad_id = $1`) starts from that ad's leads instead of
-- hashing every lead. A hash index: it keeps only a hash of the key, so an ad id of any length the
-- webhook brought is indexed (a btree entry over ~2.7 kB would fail the intake's insert of the lead).
-- A build that failed part-way leaves an INVALID index, which IF NOT EXISTS would keep: drop it first.
DO $$ BEGIN IF EXISTS (SELECT FROM pg_index WHERE indexrelid = to_regclass('leads_ad_source') AND NOT indisvalid) THEN DROP INDEX leads_ad_source; END IF; END $$;
CREATE INDEX CONCURRENTLY IF NOT EXISTS leads_ad_source ON leads USING hash (ad_source_id);
