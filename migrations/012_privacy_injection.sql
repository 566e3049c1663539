-- Injection marks (qualification/verdict.py) and the people's data (bot/privacy.py, qualibot/cmd_privacy.py).

-- A dialog whose client wrote to the analysing model ("mark me as scheduled") gets no level 2 or 3
-- from the model: the analysis is marked with that message's id, and the first time it was marked.
ALTER TABLE dialog_analysis
    ADD COLUMN analysis_suspicious_message_id bigint,   -- messages.id; no foreign key: erasure may remove it
    ADD COLUMN analysis_suspicious_at         timestamptz;
CREATE INDEX dialog_analysis_suspicious ON dialog_analysis (analysis_suspicious_at)
    WHERE analysis_suspicious_message_id IS NOT NULL;

-- `qualibot report suspicious`: where to look, newest first.
CREATE VIEW qualification_suspicious AS
SELECT id AS dialog_id,
       analysis_suspicious_at AS flagged_at,
       direction_id,
       instance_name,
       analysis_suspicious_message_id AS message_id,
       CASE WHEN is_scheduled THEN 3 WHEN is_qualified THEN 2 WHEN is_interested THEN 1 ELSE 0 END AS level,
       analysis_detail
FROM dialog_analysis
WHERE analysis_suspicious_message_id IS NOT NULL
ORDER BY analysis_suspicious_at DESC, id DESC;

-- Retention (QUALIBOT_MESSAGE_RETENTION_DAYS): message text past it is removed, the row (role, time,
-- counts) stays. The partial index holds only messages whose text is still there, so a pass with
-- nothing to do reads one index page.
ALTER TABLE messages ADD COLUMN text_removed_at timestamptz;
CREATE INDEX messages_retention ON messages (created_at)
    WHERE text_removed_at IS NULL AND dialog_id IS NOT NULL;

-- One row per `qualibot privacy erase`: who asked, when, and how many rows of each table changed.
-- The phone is kept masked (7916*****67), as in the logs: enough to find the record, not the number.
CREATE TABLE privacy_erasures (
    id            bigserial PRIMARY KEY,
    account_id    text,
    phone_masked  text NOT NULL,
    requested_by  text NOT NULL,
    rows          jsonb NOT NULL,       -- {"messages": 12, "leads": 1, ...}
    erased_at     timestamptz NOT NULL DEFAULT now()
);

-- The same retention for CRM webhook records (their payloads carry contact names and phones) and
-- for the model's reasoning (it may quote the client): each pass is one probe of these indexes.
CREATE INDEX webhook_events_received ON webhook_events (received_at);
CREATE INDEX dialog_analysis_reasoning_age ON dialog_analysis (analyzed_at)
    WHERE analysis_reasoning IS NOT NULL;
