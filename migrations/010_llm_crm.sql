-- CRM request pacing shared by every qualibot process (crm/ratelimit.py owns this table): one row
-- per bucket ("amocrm:<connection>", "bitrix24:<portal host>") holding the earliest moment, on the
-- database's clock, at which the bucket's next request may go out. A request reserves its moment
-- with one atomic upsert and waits for it outside any transaction.
-- UNLOGGED: a row is worth a second at most; after a crash the table is empty and pacing starts
-- afresh, so writing it to the WAL (and to replicas) buys nothing.
CREATE UNLOGGED TABLE crm_rate_slots (
    key      text PRIMARY KEY,
    next_at  timestamptz NOT NULL
);
