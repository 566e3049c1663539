-- The outbox's writes without per-row foreign-key checks, and room for HOT updates of the dialogs'
-- sent flags (issue 18.5).
--
-- capi_events_log's two foreign keys checked every inserted row with a query of its own (a
-- `SELECT ... FOR KEY SHARE` per row and per key): a third of the insert's PostgreSQL CPU in
-- bench/capi_send.py. And every transaction recording a decision for a direction locked that one
-- account_directions row, so concurrent decisions of a busy direction shared the lock (a MultiXact
-- each time). The rows are written through one door, `capi.record` (via `qualification.door`), inside
-- the transaction that has just locked and updated the dialog's row (so it cannot be deleted under
-- it), with the dialog's direction or the configured CRM direction. What the constraints did for the
-- referenced side is kept by the triggers below: a deleted direction or dialog leaves the log's rows
-- in place with the reference cleared (ON DELETE SET NULL, as before, so the funnel rollup moves them
-- like the constraint's own update did), and a referenced id cannot be changed (ON UPDATE NO ACTION,
-- as before). One difference: TRUNCATE of either table no longer needs capi_events_log in the same
-- statement (nothing in qualibot truncates them; `qualibot demo` truncates all of them together).
-- Dropping a constraint locks the log against every reader and writer until this transaction ends;
-- behind a long report it would queue the intake's and the sender's writes too. Better to fail
-- (lock_timeout) and run `qualibot migrate` again than to stall them.
SET LOCAL lock_timeout = '10s';
ALTER TABLE capi_events_log DROP CONSTRAINT IF EXISTS capi_events_log_direction_id_fkey;
ALTER TABLE capi_events_log DROP CONSTRAINT IF EXISTS capi_events_log_dialog_analysis_id_fkey;

-- TG_ARGV[0]: the log's column that holds the deleted rows' id
CREATE FUNCTION capi_events_log_clear_reference() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('UPDATE capi_events_log c SET %1$I = NULL, updated_at = now() FROM old_rows o WHERE c.%1$I = o.id',
                   TG_ARGV[0]);
    RETURN NULL;
END
$$;
CREATE TRIGGER account_directions_clear_capi_events AFTER DELETE ON account_directions
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION capi_events_log_clear_reference('direction_id');
CREATE TRIGGER dialog_analysis_clear_capi_events AFTER DELETE ON dialog_analysis
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION capi_events_log_clear_reference('dialog_analysis_id');

-- TG_ARGV[0]: the log's column that holds the updated row's id
CREATE FUNCTION capi_events_log_keep_referenced_id() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    referenced boolean;
BEGIN
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM capi_events_log WHERE %I = $1)', TG_ARGV[0])
        INTO referenced USING OLD.id;
    IF referenced THEN
        RAISE foreign_key_violation USING MESSAGE = format(
            '%s %s is still referenced from capi_events_log.%s', TG_TABLE_NAME, OLD.id, TG_ARGV[0]);
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER account_directions_keep_capi_id BEFORE UPDATE OF id ON account_directions
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION capi_events_log_keep_referenced_id('direction_id');
CREATE TRIGGER dialog_analysis_keep_capi_id BEFORE UPDATE OF id ON dialog_analysis
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION capi_events_log_keep_referenced_id('dialog_analysis_id');

-- A dialog's row is updated many times in its first minutes (each burst's counts and times, each
-- analysis, each delivered level's flags), and rows of dialogs started together share pages: room
-- on the page lets those updates that touch no indexed column (the sent flags) be HOT, with no new
-- entry in the table's nine indexes. Applies to pages filled from now on; nothing is rewritten.
ALTER TABLE dialog_analysis SET (fillfactor = 70);
