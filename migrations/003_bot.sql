-- WhatsApp intake (bot/intake.py) stores a webhook in one statement. When a concurrent delivery of
-- the same message commits first, that statement's lead and dialog updates must not count the
-- message twice: it calls this function, which aborts the statement with serialization_failure
-- (40001) so everything it did rolls back; the caller retries, finds the message, and changes nothing.
CREATE FUNCTION bot_concurrent_delivery(message_id text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'message % was stored by a concurrent delivery', message_id
        USING ERRCODE = 'serialization_failure';
END
$$;
