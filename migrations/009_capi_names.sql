-- Event names Meta refuses, and event ids unique to this installation (issue 13.1, 13.2).

-- The operator's word that a direction's event names, though outside Meta's documented list for
-- business messaging, are accepted for its dataset: `qualibot doctor` then stops failing on them.
ALTER TABLE account_directions
    ADD COLUMN capi_allow_unlisted_event_names boolean NOT NULL DEFAULT false;

-- One row: this installation's id, the namespace of its CAPI event ids (capi/record.py), so two
-- installations reporting to one dataset never share an event_id. Made once, by the migration
-- that creates the table (migrations run one at a time under an advisory lock).
CREATE TABLE installation (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id          uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO installation DEFAULT VALUES;

-- Owned by capi/refusals.py: the first refusal of an event name for a dataset (Meta subcode
-- 2804066). Later events with that name for that dataset fail without a request while the
-- refusing direction's event-name config keeps the fingerprint stored here; `qualibot capi
-- retry` forgets the names it re-queues.
CREATE TABLE capi_refused_event_names (
    dataset             text NOT NULL,
    event_name          text NOT NULL,
    direction_id        text REFERENCES account_directions(id) ON DELETE CASCADE,
    config_fingerprint  text NOT NULL,
    error               text NOT NULL,               -- Meta's words
    response            jsonb,                       -- Meta's answer (fbtrace_id)
    refused_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dataset, event_name)
);
