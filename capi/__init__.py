"""Meta Conversions API: reached levels in, delivered events out, every decision in capi_events_log.

- `record.record_event`: the single door, a level → one `pending` or `skipped` row (in the caller's transaction);
- `normalize`, `payload`: hashing and the event/request shapes;
- `graph`, `errors`: the Graph API client and the classification of its answers;
- `outbox`, `jobs`: the sender job that delivers pending rows, each (dialog, level) once.
"""
