-- qualibot schema. The seed's table and column names (DESIGN.md "Database") are public: audits
-- and other tools query them, so they stay exactly so.

-- Tenants -----------------------------------------------------------------------------------

CREATE TABLE user_accounts (
    id              text PRIMARY KEY,
    name            text NOT NULL,
    default_region  text NOT NULL DEFAULT 'RU',
    access_token    text,                       -- the fallback Meta token
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ad_accounts (
    id              text PRIMARY KEY,           -- act_...
    account_id      text NOT NULL REFERENCES user_accounts(id) ON DELETE CASCADE,
    access_token    text,                       -- preferred over user_accounts.access_token
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ad_accounts_account ON ad_accounts (account_id);

CREATE TABLE crm_connections (
    id                  text PRIMARY KEY,
    account_id          text NOT NULL REFERENCES user_accounts(id) ON DELETE CASCADE,
    type                text NOT NULL CHECK (type IN ('amocrm', 'bitrix24')),
    base_url            text,                   -- amoCRM: https://<subdomain>.amocrm.ru
    rest_url            text,                   -- Bitrix24: https://<portal>/rest/<user>/<code>/
    access_token        text,                   -- amoCRM long-lived token
    crm_account_id      text,                   -- amoCRM account[id]
    subdomain           text,                   -- amoCRM account[subdomain]
    webhook_secret      text,                   -- amoCRM: the secret in the webhook URL
    application_token   text,                   -- Bitrix24: auth[application_token]
    rate_limit_per_second real,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX crm_connections_account ON crm_connections (account_id);

CREATE TABLE account_directions (
    id                              text PRIMARY KEY,
    account_id                      text NOT NULL REFERENCES user_accounts(id) ON DELETE CASCADE,
    name                            text NOT NULL,
    ad_account_id                   text REFERENCES ad_accounts(id) ON DELETE SET NULL,
    pixel_id                        text,
    whatsapp_business_account_id    text,
    ad_ids                          text[] NOT NULL DEFAULT '{}',
    bot_prompt                      text,
    qualification_prompt            text,
    capi_enabled                    boolean NOT NULL DEFAULT false,
    capi_source                     text NOT NULL DEFAULT 'whatsapp' CHECK (capi_source IN ('whatsapp', 'crm')),
    capi_crm_type                   text CHECK (capi_crm_type IN ('amocrm', 'bitrix24')),
    capi_crm_connection_id          text REFERENCES crm_connections(id) ON DELETE SET NULL,
    capi_test_event_code            text,
    -- {"1": "Lead", "2": "CompleteRegistration", "3": "Schedule"}; missing levels use the seed names
    capi_event_names                jsonb NOT NULL DEFAULT '{}',
    -- {"2": {"value": 100, "currency": "USD"}}: optional value per level
    capi_event_values               jsonb NOT NULL DEFAULT '{}',
    capi_interest_fields            jsonb NOT NULL DEFAULT '[]',
    capi_qualified_fields           jsonb NOT NULL DEFAULT '[]',
    capi_scheduled_fields           jsonb NOT NULL DEFAULT '[]',
    created_at                      timestamptz NOT NULL DEFAULT now(),
    updated_at                      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX account_directions_account ON account_directions (account_id);
CREATE INDEX account_directions_ad_ids ON account_directions USING gin (ad_ids);
CREATE INDEX account_directions_crm ON account_directions (capi_crm_connection_id);

CREATE TABLE whatsapp_instances (
    name                    text PRIMARY KEY,   -- Evolution instance name, as in the webhook's "instance"
    account_id              text NOT NULL REFERENCES user_accounts(id) ON DELETE CASCADE,
    api_url                 text NOT NULL,
    api_key                 text NOT NULL,
    webhook_secret          text NOT NULL,
    default_direction_id    text REFERENCES account_directions(id) ON DELETE SET NULL,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX whatsapp_instances_account ON whatsapp_instances (account_id);

-- WhatsApp side ------------------------------------------------------------------------------

CREATE TABLE leads (
    id              bigserial PRIMARY KEY,
    account_id      text NOT NULL REFERENCES user_accounts(id) ON DELETE CASCADE,
    instance_name   text NOT NULL,
    phone           text NOT NULL,              -- international digits (79161234567), or the LID when is_lid
    is_lid          boolean NOT NULL DEFAULT false,
    push_name       text,
    email           text,
    direction_id    text REFERENCES account_directions(id) ON DELETE SET NULL,
    ctwa_clid       text,                       -- Click-to-WhatsApp ad click id; the first referral wins
    ad_source_id    text,
    ad_source_url   text,
    ad_title        text,
    ad_source_type  text,
    referral        jsonb,
    referral_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (instance_name, phone)
);
CREATE INDEX leads_account_phone ON leads (account_id, phone);

-- dialog_analysis is the dialog: one row per (instance, contact), carrying the seed's level flags.
CREATE TABLE dialog_analysis (
    id                          bigserial PRIMARY KEY,
    account_id                  text NOT NULL REFERENCES user_accounts(id) ON DELETE CASCADE,
    instance_name               text NOT NULL,
    contact_phone               text NOT NULL,
    lead_id                     bigint REFERENCES leads(id) ON DELETE SET NULL,
    direction_id                text REFERENCES account_directions(id) ON DELETE SET NULL,
    is_interested               boolean NOT NULL DEFAULT false,
    is_qualified                boolean NOT NULL DEFAULT false,
    is_scheduled                boolean NOT NULL DEFAULT false,
    interest_reached_at         timestamptz,
    qualified_reached_at        timestamptz,
    scheduled_reached_at        timestamptz,
    capi_interest_sent          boolean NOT NULL DEFAULT false,
    capi_interest_sent_at       timestamptz,
    capi_interest_event_id      text,
    capi_qualified_sent         boolean NOT NULL DEFAULT false,
    capi_qualified_sent_at      timestamptz,
    capi_qualified_event_id     text,
    capi_scheduled_sent         boolean NOT NULL DEFAULT false,
    capi_scheduled_sent_at      timestamptz,
    capi_scheduled_event_id     text,
    client_message_count        integer NOT NULL DEFAULT 0,
    last_client_message_at      timestamptz,
    last_message_at             timestamptz,
    burst_started_at            timestamptz,    -- first client message not yet answered
    bot_paused_until            timestamptz,    -- a human operator took over until then
    analyzed_message_id         bigint,         -- newest messages.id the last LLM analysis saw
    analyzed_at                 timestamptz,
    analysis_status             text,           -- ok | not_analysed | failed
    analysis_detail             text,
    analysis_reasoning          text,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (instance_name, contact_phone)
);
CREATE INDEX dialog_analysis_lead ON dialog_analysis (lead_id);
CREATE INDEX dialog_analysis_direction ON dialog_analysis (direction_id);

CREATE TABLE messages (
    id              bigserial PRIMARY KEY,
    instance_name   text NOT NULL,
    message_id      text NOT NULL,              -- Evolution key.id, or qb-<uuid> for our replies before sending
    dialog_id       bigint NOT NULL REFERENCES dialog_analysis(id) ON DELETE CASCADE,
    role            text NOT NULL CHECK (role IN ('client', 'bot', 'operator')),
    text            text NOT NULL DEFAULT '',
    media_type      text,
    sent_at         timestamptz NOT NULL DEFAULT now(),
    delivery_status text,                       -- bot replies: pending | sent | failed
    delivery_error  text,
    external_id     text,                       -- bot replies: Evolution's key.id once sent
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (instance_name, message_id)
);
CREATE INDEX messages_dialog ON messages (dialog_id, id);

-- CRM side -----------------------------------------------------------------------------------

CREATE TABLE webhook_events (
    id              bigserial PRIMARY KEY,
    source          text NOT NULL CHECK (source IN ('amocrm', 'bitrix24')),
    connection_id   text NOT NULL REFERENCES crm_connections(id) ON DELETE CASCADE,
    event           text NOT NULL,              -- leads.status, ONCRMDEALUPDATE, ...
    entity_type     text NOT NULL,              -- lead | contact | company | deal
    entity_id       text NOT NULL,
    payload         jsonb NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_events_entity ON webhook_events (connection_id, entity_type, entity_id, received_at DESC);

-- Jobs ---------------------------------------------------------------------------------------

CREATE TABLE jobs (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL,
    key             text,                       -- debounce / coalesce key; one queued job per (name, key)
    payload         jsonb NOT NULL DEFAULT '{}',
    status          text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'failed')),
    run_at          timestamptz NOT NULL DEFAULT now(),
    first_queued_at timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL DEFAULT 10,
    lease_token     uuid,
    lease_until     timestamptz,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX jobs_queued_key ON jobs (name, key) WHERE status = 'queued' AND key IS NOT NULL;
CREATE INDEX jobs_due ON jobs (run_at) WHERE status = 'queued';
CREATE INDEX jobs_lease ON jobs (lease_until) WHERE status = 'running';

-- CAPI audit log and outbox --------------------------------------------------------------------

CREATE TABLE capi_events_log (
    id                  bigserial PRIMARY KEY,
    direction_id        text REFERENCES account_directions(id) ON DELETE SET NULL,
    dialog_analysis_id  bigint REFERENCES dialog_analysis(id) ON DELETE SET NULL,
    contact_phone       text,
    pixel_id            text,
    event_name          text NOT NULL,
    event_level         smallint NOT NULL CHECK (event_level BETWEEN 1 AND 3),
    event_id            text NOT NULL,          -- stable per (dialog, level), reused on every retry
    event_time          timestamptz NOT NULL DEFAULT now(),  -- when the level was reached
    source              text NOT NULL CHECK (source IN ('whatsapp', 'crm')),
    status              text NOT NULL CHECK (status IN ('pending', 'success', 'error', 'skipped')),
    attempts            integer NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    error               text,
    hint                text,
    crm_entity          text,                   -- e.g. amocrm:amo-main:lead:123 for CRM decisions
    request             jsonb,                  -- what was sent, secrets removed
    response            jsonb,                  -- Meta's answer
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    sent_at             timestamptz
);
-- at most one decision per (dialog, level): the database itself refuses a second send
CREATE UNIQUE INDEX capi_events_log_dialog_level ON capi_events_log (dialog_analysis_id, event_level)
    WHERE dialog_analysis_id IS NOT NULL;
-- CRM decisions without a dialog (no WhatsApp lead for the entity) are one per entity and level
CREATE UNIQUE INDEX capi_events_log_crm_entity_level ON capi_events_log (direction_id, crm_entity, event_level)
    WHERE dialog_analysis_id IS NULL AND crm_entity IS NOT NULL;
CREATE UNIQUE INDEX capi_events_log_event_id ON capi_events_log (event_id);
CREATE INDEX capi_events_log_pending ON capi_events_log (next_attempt_at) WHERE status = 'pending';
CREATE INDEX capi_events_log_direction_created ON capi_events_log (direction_id, created_at);
CREATE INDEX capi_events_log_status_created ON capi_events_log (status, created_at);
