"""Event names Meta refused for a dataset (subcode 2804066), remembered in `capi_refused_event_names`.

Meta refuses a business-messaging event whose name is outside its list (reference meta-capi.md §2,
§4) and, as for any invalid event, rejects the whole request; its answer is one request-wide
`error` object (code, subcode, messages, fbtrace_id) that does not say which event was at fault:
facebook-python-business-sdk facebook_business/exceptions.py (FacebookRequestError reads one
`error`, with optional `error_data.blame_field_specs`, no event index) and
adobjects/serverside/event_response.py (a success carries only events_received, messages,
fbtrace_id). So the sender learns which name was refused by sending one name per request
(capi/outbox.py), and remembers the first refusal here so later events with that name for that
dataset fail at once, without a request.

A refusal holds while the refusing direction's event-name config (its `capi_event_names` and
`capi_allow_unlisted_event_names`) keeps the fingerprint stored with it: `config apply` that changes
either makes it stale. `qualibot capi retry` forgets the names it re-queues (`forget`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg

from capi import ledger, tenants

# the part of a direction's config a refusal depends on (`d` is account_directions)
_REMEMBER_SQL = """
INSERT INTO capi_refused_event_names (dataset, event_name, direction_id, config_fingerprint, error, response)
VALUES ($1, $2, $3, $4, $5, $6::jsonb)
ON CONFLICT (dataset, event_name) DO UPDATE
SET direction_id = EXCLUDED.direction_id, config_fingerprint = EXCLUDED.config_fingerprint,
    error = EXCLUDED.error, response = EXCLUDED.response, refused_at = now()"""

_REFUSED_SQL = """
SELECT r.dataset, r.event_name, r.direction_id, r.config_fingerprint, r.error, r.refused_at
FROM capi_refused_event_names r
JOIN unnest($1::text[], $2::text[]) AS t(dataset, event_name)
    ON t.dataset = r.dataset AND t.event_name = r.event_name"""


async def remember(db: asyncpg.Pool | asyncpg.Connection, row_id: int, error: str, response: Any) -> None:
    """Meta refused the event name of capi_events_log row `row_id` for its dataset."""
    event = await ledger.event_of(db, row_id)
    if event is None or event.dataset is None or event.direction_id is None:
        return
    fingerprint = (await tenants.event_config_fingerprints(db, [event.direction_id])).get(event.direction_id)
    if fingerprint is not None:
        await db.execute(_REMEMBER_SQL, event.dataset, event.event_name, event.direction_id, fingerprint,
                         error, response)


async def active(
    db: asyncpg.Pool | asyncpg.Connection, pairs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """Of these (dataset, event name) pairs, the ones refused under the current config → Meta's words
    and when."""
    wanted = sorted(set(pairs))
    if not wanted:
        return {}
    rows = await db.fetch(_REFUSED_SQL, [p[0] for p in wanted], [p[1] for p in wanted])
    # a refusal holds while its direction's event-name config is the one it was refused under
    current = await tenants.event_config_fingerprints(db, {r["direction_id"] for r in rows if r["direction_id"]})
    return {
        (r["dataset"], r["event_name"]): f"{r['error']}, first refused {r['refused_at']:%Y-%m-%d %H:%M} UTC"
        for r in rows if r["direction_id"] is not None and current.get(r["direction_id"]) == r["config_fingerprint"]
    }


async def forget(db: asyncpg.Pool | asyncpg.Connection, dataset: str | None, event_name: str) -> None:
    """`capi retry` sends the name again: Meta decides anew."""
    if dataset:
        await db.execute("DELETE FROM capi_refused_event_names WHERE dataset = $1 AND event_name = $2",
                         dataset, event_name)
