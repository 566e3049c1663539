-- Intake in two steps (bot/intake.py, bot/drain.py): the webhook stores the message alone, with
-- what the drain needs to find or create its lead and dialog (contact, LID flag, push name, ad
-- referral), and answers 200 once that row is committed. The drain then links waiting messages in
-- batches: it upserts leads and dialogs, sets messages.dialog_id and debounces the dialog jobs.
-- A message waiting for the drain has dialog_id NULL; the partial index finds those in order. One
-- the drain cannot link (a data error on that message alone) gets intake_error and is set aside,
-- so it cannot hold up the others; clearing intake_error puts it back in line.
ALTER TABLE messages ALTER COLUMN dialog_id DROP NOT NULL;
ALTER TABLE messages
    ADD COLUMN contact   text,                           -- the chat: phone digits, or the LID
    ADD COLUMN is_lid    boolean NOT NULL DEFAULT false,
    ADD COLUMN push_name text,
    ADD COLUMN referral  jsonb,                          -- the ad referral this message carried
    ADD COLUMN intake_error text;                        -- why the drain could not link it
CREATE INDEX messages_undrained ON messages (id) WHERE dialog_id IS NULL AND intake_error IS NULL;

-- Concurrent deliveries of one message no longer race on lead and dialog updates: the message
-- insert's ON CONFLICT settles them, so the abort helper of 003_bot.sql has no caller left.
DROP FUNCTION bot_concurrent_delivery(text);
