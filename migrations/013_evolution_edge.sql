-- Evolution webhook edge (bot/intake.py, bot/dialogs.py).
-- ad_opaque: the message carried Baileys' opaque ad fields (ContextInfo.ctwaPayload / conversionData,
-- WAProto.proto in Baileys 7.0.0-rc.9), with or without a readable externalAdReply; the click-id
-- drift check counts these per instance.
-- reply_to: on our own bot replies only, the messages.id of the last client message of the burst
-- they answer; at most one reply per burst. Only our code sets it: it replaces the reply key
-- `qb-<dialog>-<message>` in message_id, a namespace a WhatsApp sender can write into (a client
-- message with that id suppressed another chat's reply). Bot replies now get a random message_id.
ALTER TABLE messages
    ADD COLUMN ad_opaque boolean NOT NULL DEFAULT false,
    ADD COLUMN reply_to  bigint;
UPDATE messages SET reply_to = split_part(message_id, '-', 3)::bigint
WHERE role = 'bot' AND message_id ~ '^qb-[0-9]{1,18}-[0-9]{1,18}$';
CREATE UNIQUE INDEX messages_reply_to ON messages (reply_to) WHERE reply_to IS NOT NULL;
