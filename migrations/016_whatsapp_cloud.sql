-- WhatsApp Cloud API numbers (issue 16): Meta's own webhook as a second channel beside Evolution.
--
-- A Cloud number is also a row of whatsapp_instances (channel 'cloud', named 'cloud-<phone_number_id>'),
-- so its messages take the Evolution path unchanged: bot/intake.py stores them, bot/drain.py links
-- lead and dialog (account, default direction) from the instance row. Its Evolution columns stay
-- NULL; what Meta needs lives in whatsapp_cloud_numbers (bot/cloud/numbers.py).
ALTER TABLE whatsapp_instances
    ADD COLUMN channel text NOT NULL DEFAULT 'evolution' CHECK (channel IN ('evolution', 'cloud')),
    ALTER COLUMN api_url DROP NOT NULL,
    ALTER COLUMN api_key DROP NOT NULL,
    ALTER COLUMN webhook_secret DROP NOT NULL,
    ADD CONSTRAINT whatsapp_instances_evolution_complete
        CHECK (channel <> 'evolution' OR (api_url IS NOT NULL AND api_key IS NOT NULL AND webhook_secret IS NOT NULL));

CREATE TABLE whatsapp_cloud_numbers (
    phone_number_id text PRIMARY KEY,                 -- Meta's id of the business number (metadata.phone_number_id)
    account_id      text NOT NULL REFERENCES user_accounts(id) ON DELETE CASCADE,
    instance_name   text NOT NULL UNIQUE REFERENCES whatsapp_instances(name) ON DELETE CASCADE,
    waba_id         text NOT NULL,                    -- the WhatsApp Business Account holding the number
    access_token    text NOT NULL,                    -- system-user token: replies through Graph
    app_secret      text NOT NULL,                    -- signs the webhook (X-Hub-Signature-256)
    verify_token    text NOT NULL,                    -- echoed by Meta's GET verification
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX whatsapp_cloud_numbers_account ON whatsapp_cloud_numbers (account_id);

-- Meta's delivery statuses of our replies (statuses[]: sent, delivered, read, failed), on the reply.
ALTER TABLE messages
    ADD COLUMN peer_status    text,
    ADD COLUMN peer_status_at timestamptz;
CREATE INDEX messages_external_id ON messages (instance_name, external_id) WHERE external_id IS NOT NULL;

-- What Meta tells about a Cloud number's chats beside messages: its own detection of a lead or a
-- purchase (automatic_events; stored, never re-sent to CAPI) and webhook-level errors (errors[]).
-- One row per notice; a redelivery finds its key and writes nothing.
CREATE TABLE whatsapp_cloud_notices (
    id            bigserial PRIMARY KEY,
    instance_name text NOT NULL REFERENCES whatsapp_instances(name) ON DELETE CASCADE,
    kind          text NOT NULL CHECK (kind IN ('automatic_event', 'error')),
    notice_key    text NOT NULL,            -- the event's wamid; for an error, a digest of it
    dialog_id     bigint REFERENCES dialog_analysis(id) ON DELETE CASCADE,
    event_name    text,                     -- LeadSubmitted | Purchase; the error's code for errors
    ctwa_clid     text,
    body          jsonb NOT NULL,           -- the notice as Meta sent it
    occurred_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (instance_name, kind, notice_key)
);
CREATE INDEX whatsapp_cloud_notices_dialog ON whatsapp_cloud_notices (dialog_id) WHERE dialog_id IS NOT NULL;
