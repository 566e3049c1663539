-- How WhatsApp identifies people (issue 12, items 5-9).

-- Phones: WhatsApp treats Brazil 55+DDD+9+8 digits and 55+DDD+8 digits as one user, likewise Mexico
-- 521+10 ≡ 52+10 and Argentina 549+10 ≡ 54+10. Evolution API checks both forms of such a number
-- (evolution-api 2.3.7 src/utils/onWhatsappCache.ts getAvailableNumbers, and
-- src/api/integrations/channel/whatsapp/whatsapp.baileys.service.ts whatsappNumber, the
-- "Brazilian numbers" and "Mexican/Argentina numbers" blocks; createJid.ts formatBRNumber /
-- formatMXOrARNumber pick one of the forms when sending). The matching key of a phone is its form
-- without that extra digit: every lookup by phone compares keys. This function is the one place
-- the rule is written; `leads.phone_key` stores it so lookups stay indexed.
CREATE FUNCTION whatsapp_phone_key(phone text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE
        WHEN length(phone) = 13 AND phone LIKE '55%' AND substr(phone, 5, 1) = '9'
            THEN substr(phone, 1, 4) || substr(phone, 6)
        WHEN length(phone) = 13 AND (phone LIKE '521%' OR phone LIKE '549%')
            THEN substr(phone, 1, 2) || substr(phone, 4)
        ELSE phone END
$$;

ALTER TABLE leads ADD COLUMN phone_key text
    GENERATED ALWAYS AS (CASE WHEN is_lid THEN NULL ELSE whatsapp_phone_key(phone) END) STORED;
-- replaces (account_id, phone): CRM linking looks leads up by the key
DROP INDEX leads_account_phone;
CREATE INDEX leads_account_phone_key ON leads (account_id, phone_key);
-- the newest chats of an instance, for the click-id drift check (doctor, /metrics)
CREATE INDEX leads_instance_recent ON leads (instance_name, id);

-- @lid: a chat first seen as `<lid>@lid` and later with its phone is one person. A message whose
-- key names both (Evolution 2.3.5-2.3.6 remoteJid/remoteJidAlt, 2.4 swapped, older senderPn or
-- previousRemoteJid) keeps the LID beside the phone; the intake drain learns the mapping from it,
-- merges what was recorded under the LID into the phone's lead and dialog, and links later
-- messages that come with the LID only to the phone.
ALTER TABLE messages ADD COLUMN lid text;  -- the chat's LID when the key named it beside the phone
CREATE TABLE whatsapp_lids (
    instance_name   text NOT NULL,
    lid             text NOT NULL,
    phone           text NOT NULL,          -- international digits, as in leads.phone
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance_name, lid)
);

-- Who the bot answers and which dialogs the LLM analyses, per direction.
ALTER TABLE account_directions
    ADD COLUMN reply_to text NOT NULL DEFAULT 'all' CHECK (reply_to IN ('all', 'ad_leads', 'off')),
    -- "analyse" is a reserved word in PostgreSQL
    ADD COLUMN analyse_dialogs text NOT NULL DEFAULT 'ad_leads' CHECK (analyse_dialogs IN ('ad_leads', 'all'));

-- Click-id drift: "did this instance ever have a chat from an ad" without reading its whole history
-- (only leads with a referral are in this index, so intake without ads pays nothing for it)
CREATE INDEX leads_instance_referral ON leads (instance_name, id) WHERE referral IS NOT NULL;
