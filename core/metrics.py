"""Prometheus metrics, one place for their names so dashboards have one list to read.

Module-level collectors are the prometheus_client idiom: they are process-wide by nature and
rendered by `GET /metrics`.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

WEBHOOKS = Counter(
    "qualibot_webhooks_total", "Webhooks received, by source and result", ["source", "result"]
)
JOBS_DONE = Counter("qualibot_jobs_done_total", "Jobs finished, by name and outcome", ["name", "outcome"])
CAPI_EVENTS = Counter(
    "qualibot_capi_events_total", "CAPI event decisions and outcomes, by status and event name",
    ["status", "event_name"],
)
META_LATENCY = Histogram(
    "qualibot_meta_request_seconds", "Latency of Meta Graph API requests", ["outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LLM_CALLS = Counter("qualibot_llm_calls_total", "LLM calls, by purpose, direction and outcome",
                    ["purpose", "direction", "outcome"])
LLM_TOKENS = Counter("qualibot_llm_tokens_total", "LLM tokens, by purpose, direction and kind",
                     ["purpose", "direction", "kind"])
REPLIES = Counter("qualibot_bot_replies_total", "Chatbot replies, by outcome", ["outcome"])
CRM_REQUESTS = Counter("qualibot_crm_requests_total", "CRM API requests, by CRM and outcome", ["crm", "outcome"])
INTAKE_DRAINED = Counter("qualibot_intake_drained_total", "Received WhatsApp messages linked to their lead and dialog")
INTAKE_LAG = Histogram(
    "qualibot_intake_lag_seconds", "Age of the oldest message of each intake batch when it was linked",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
NEW_CHATS_WITH_REFERRAL = Gauge(
    "qualibot_new_chats_with_referral_ratio",
    "Share of an instance's newest chats (QUALIBOT_CLICK_ID_DRIFT_CHATS) that arrived with an ad referral",
    ["instance"],
)
