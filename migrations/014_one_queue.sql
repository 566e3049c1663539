-- One queue (core/jobs.py, bot/drain.py, capi/jobs.py).
-- tenant: the account (or CRM connection) a job works for; with its name it forms the group that
-- fair claiming takes turns over, so one tenant's or one kind's flood cannot starve the others.
ALTER TABLE jobs ADD COLUMN tenant text;
CREATE INDEX jobs_due_group ON jobs (name, tenant, run_at) WHERE status = 'queued';
-- One running job per key: a second run of the same (name, key) waits until the first finishes
-- (the claim skips it); this index is the backstop should two claims ever race.
CREATE UNIQUE INDEX jobs_running_key ON jobs (name, key) WHERE status = 'running' AND key IS NOT NULL;
-- purging finished (failed) jobs past QUALIBOT_JOB_RETENTION_DAYS finds them by age
CREATE INDEX jobs_failed_at ON jobs (updated_at) WHERE status = 'failed';

-- Wake-ups: an idle worker LISTENs instead of polling. NOTIFY is delivered at commit, and only if
-- the transaction commits, so a wake-up never arrives before the work it announces is visible.
-- One notification per statement (and PostgreSQL folds equal ones within a transaction).
CREATE FUNCTION qualibot_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], '');
    RETURN NULL;
END $$;
-- a job became due or moved (enqueue, debounce, retry): the workers look again at their next run time
CREATE TRIGGER jobs_notify AFTER INSERT OR UPDATE OF run_at ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION qualibot_notify('qualibot_jobs');
-- A message arrived for the intake drain, and none was waiting before it: the drains may be idle.
-- Only then: a NOTIFY holds a database-wide lock through its commit, so one per webhook would
-- serialise the intake's commits. While messages wait, a drain is at work and looks again after
-- every batch that linked something (bot/drain.py), until a look finds nothing.
CREATE FUNCTION qualibot_notify_intake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- the nearest waiting message below this one, read backwards from it: under load the first
    -- index entry, not a walk over the linked (dead) entries of the whole backlog
    PERFORM 1 FROM messages m
    WHERE m.dialog_id IS NULL AND m.intake_error IS NULL AND m.id < NEW.id AND m.id >= NEW.id - 1000
    ORDER BY m.id DESC LIMIT 1;
    IF NOT FOUND THEN  -- (a message more than 1000 ids back may still wait: one NOTIFY too many)
        PERFORM pg_notify('qualibot_intake', '');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER messages_notify AFTER INSERT ON messages
    FOR EACH ROW WHEN (NEW.dialog_id IS NULL) EXECUTE FUNCTION qualibot_notify_intake();

-- The self-rescheduling `capi.send` job retired: the outbox sender is a worker loop woken by
-- NOTIFY qualibot_capi (sent in the transaction that makes a row pending) and by its next due row.
DELETE FROM jobs WHERE name = 'capi.send';
