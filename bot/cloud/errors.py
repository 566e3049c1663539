"""How Graph's answers to a Cloud API send are classified, like CAPI's (`capi.errors`).

Meta's error object (`{"error": {"message", "type", "code", "error_subcode", "error_data":
{"details"}, "fbtrace_id"}}`, and the same code/title/details in a failed status's `errors[]`;
WhatsApp Cloud API error codes, developers.facebook.com/documentation/business-messaging/whatsapp/
support/error-codes) falls in one of:

    token         190, 102, or HTTP 401: the number's access_token is invalid or expired
    permission    3, 10, 200–299: the token may not send for this number
    re-engagement 131047: more than 24 hours since the person's last message (only a template may go)
    undeliverable 131026: the person cannot receive it (no WhatsApp, an old app, terms not accepted)
    throttled     130429, 131048, 131056, 80007 and CAPI's throttling codes (4, 17, 613, …)
    transient     1, 2, 131000, 131016, HTTP 5xx, no answer: Meta had trouble, sending later may work
    other         anything else (100 parameter, 131009, 133010 number not registered, …)

A reply is not sent again after any of them (`bot.jobs`: a timed-out send may have gone out);
the class names the failure in `messages.delivery_error`, so an operator sees what to fix.
"""

from __future__ import annotations

from typing import Any

from bot.values import as_int, as_text
from capi.errors import THROTTLING_CODES, TRANSIENT_CODES

TOKEN_CODES = frozenset({190, 102})
PERMISSION_CODES = frozenset({3, 10, *range(200, 300)})
RE_ENGAGEMENT = 131047
UNDELIVERABLE = 131026
CLOUD_THROTTLING = THROTTLING_CODES | {130429, 131048, 131056, 80007}
CLOUD_TRANSIENT = TRANSIENT_CODES | {131000, 131016}

HINTS = {
    "token": "the number's access_token is invalid or expired: put a new one in whatsapp_cloud_numbers "
             "and run `qualibot config apply`",
    "permission": "the token may not send for this number (whatsapp_business_messaging permission)",
    "re-engagement": "more than 24 hours since the person's last message: WhatsApp only lets a template through",
    "undeliverable": "WhatsApp could not deliver to this person (not on WhatsApp, an old app, or terms not accepted)",
    "throttled": "Meta's rate limit for this number was hit",
    "transient": "Meta had a temporary problem",
    "other": "Meta refused the message",
}


def error_class(code: int | None, http_status: int | None = None) -> str:
    if code in TOKEN_CODES or (code is None and http_status == 401):
        return "token"
    if code in PERMISSION_CODES:
        return "permission"
    if code == RE_ENGAGEMENT:
        return "re-engagement"
    if code == UNDELIVERABLE:
        return "undeliverable"
    if code in CLOUD_THROTTLING or (code is None and http_status == 429):
        return "throttled"
    if code in CLOUD_TRANSIENT or (code is None and http_status is not None and http_status >= 500):
        return "transient"
    return "other"


def describe(error: Any, http_status: int | None = None) -> str:
    """One line for `messages.delivery_error`: the class, Meta's code and details, and the hint."""
    error = error if isinstance(error, dict) else {}
    code = as_int(error.get("code"))
    kind = error_class(code, http_status)
    data = error.get("error_data")
    details = as_text(data.get("details")) if isinstance(data, dict) else None
    said = details or as_text(error.get("message")) or as_text(error.get("title"))
    head = f"{kind} ({code})" if code is not None else f"{kind} (HTTP {http_status})"
    return f"{head}: {HINTS[kind]}" + (f"; Meta says: {said[:300]}" if said else "")
