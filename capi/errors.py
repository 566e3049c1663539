"""How Meta's answers are classified: the tables, and the plain hints shown to operators.

Every answer of `POST /{dataset}/events` ends in one of three kinds (reference meta-capi.md §4):

    success     HTTP 2xx, a JSON object, and `events_received` equal to the number sent
    transient   worth sending again later, with the same event ids
                ├── codes 1, 2, 4, 17, 341, 368, 613, 21009, 80000–80014, any `is_transient: true`
                ├── HTTP 5xx, 429, 408 without a recognised permanent code
                └── no answer at all: timeout, refused or closed connection, unreadable 2xx body
    permanent   sending it again changes nothing; the row becomes `error` with a hint
                ├── request-wide: the token (190, 102), the dataset (100/33), permissions
                │   (3, 10, 200–299), a deprecated API version (2635): every event shares the fate
                └── per event: code 100 with any other subcode (2804003 too old, 2804066 event
                    name, 2804087 click id, 2804009 missing value, …): Meta rejects the whole batch
                    for one bad event, so the sender isolates the offenders and resends the rest;
                    for 2804066 it splits by event name, not in halves, and remembers the refused
                    name (capi.refusals)

The tables are data, not control flow, so a new code is one line. A failure's type says which kind
it is (`MetaTransient` is a core.errors.Retryable, `MetaRejected` a Permanent); `kind` is its label.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from core.errors import Permanent, QualibotError, Retryable

Kind = Literal["success", "transient", "permanent"]

# Meta's FAQ list of event names accepted with action_source=business_messaging (reference §2).
BUSINESS_MESSAGING_EVENT_NAMES: tuple[str, ...] = (
    "Purchase", "LeadSubmitted", "InitiateCheckout", "AddToCart", "ViewContent", "OrderCreated",
    "OrderShipped", "OrderDelivered", "OrderCanceled", "OrderReturned", "CartAbandoned",
    "QualifiedLead", "RatingProvided", "ReviewProvided",
)

TRANSIENT_CODES: frozenset[int] = frozenset({1, 2, 4, 17, 341, 368, 613, 21009, *range(80000, 80015)})
THROTTLING_CODES: frozenset[int] = frozenset({4, 17, 341, 613, *range(80000, 80015)})
# codes whose rejection concerns the request (token, dataset, permission, version), never one event
REQUEST_WIDE_CODES: frozenset[int] = frozenset({3, 10, 102, 190, 2635, *range(200, 300)})
PERMANENT_CODES: frozenset[int] = REQUEST_WIDE_CODES | {100}
REQUEST_WIDE_SUBCODES: frozenset[int] = frozenset({33})

_NAMES = ", ".join(BUSINESS_MESSAGING_EVENT_NAMES)
INVALID_EVENT_TYPE = 2804066  # subcode: the event name is refused for business messaging
# names from the list for the three levels, suggested to operators and used by the demo: a lead
# (LeadSubmitted), a qualified lead (QualifiedLead), a booked visit (InitiateCheckout: the client
# commits to buy; it needs no value, unlike Purchase, and Sales campaigns can optimise for it)
SUGGESTED_EVENT_NAMES: dict[int, str] = {1: "LeadSubmitted", 2: "QualifiedLead", 3: "InitiateCheckout"}
SUGGESTED_NAMES_YAML = "{" + ", ".join(f"{k}: {v}" for k, v in SUGGESTED_EVENT_NAMES.items()) + "}"


def unlisted_event_names(names: Iterable[str]) -> list[str]:
    """The names outside Meta's documented list for business messaging, in the order given."""
    return [n for n in names if n not in BUSINESS_MESSAGING_EVENT_NAMES]


# (code, subcode) → hint; (code, None) matches any subcode of that code.
HINTS: dict[tuple[int, int | None], str] = {
    (100, INVALID_EVENT_TYPE): (
        "Meta accepts only these event names for Click-to-WhatsApp (business_messaging) events: "
        f"{_NAMES}. Set capi.event_names for this direction in the config file, e.g. "
        f"{SUGGESTED_NAMES_YAML}, run `qualibot config apply`, then "
        "`qualibot capi retry --status error` to send these events again under the new names."
    ),
    (100, 2804003): (
        "The event happened more than 7 days before it was sent; Meta accepts events up to 7 days "
        "old, so this one can no longer be reported."
    ),
    (100, 2804087): (
        "Meta does not recognise this ctwa_clid: the click id must come from a real "
        "Click-to-WhatsApp ad click (made-up or test click ids are refused)."
    ),
    (100, 2804009): (
        "A Purchase event needs a value and a currency: set capi.event_values for this level in the "
        "direction's config."
    ),
    (100, 33): (
        "The dataset (the direction's pixel_id) does not exist or the token cannot use it: check "
        "pixel_id, and that the token has whatsapp_business_manage_events access to that dataset."
    ),
    (100, None): "Meta rejected a parameter of the event; its message says which.",
    (190, None): (
        "The Meta access token is invalid or expired: put a new one in the ad account's "
        "access_token (or the account's) and run `qualibot config apply`."
    ),
    (102, None): "The Meta session is invalid: issue a new access token.",
    (2635, None): "META_API_VERSION names a deprecated Graph API version: set a current one (e.g. v25.0).",
    (10, None): "The token lacks a permission for this dataset: grant whatsapp_business_manage_events.",
    (3, None): "The app lacks the capability to send Conversions API events for this dataset.",
}
PERMISSION_HINT = "The token lacks a permission for this dataset (ads_management / whatsapp_business_manage_events)."
UNKNOWN_HINT = "Meta refused the request with an error qualibot does not know; its message is in the response."


class MetaError(QualibotError):
    """One classified Meta failure (or a missing/unreadable answer); returned in a GraphAnswer,
    not raised. `meta_code`/`subcode` are Meta's own numbers."""

    code = "meta_error"

    def __init__(self, message: str, hint: str | None = None, meta_code: int | None = None,
                 subcode: int | None = None, request_wide: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.meta_code = meta_code
        self.subcode = subcode
        self.request_wide = request_wide  # False: one of the events is at fault, isolation can help

    @property
    def kind(self) -> Kind:
        return "transient" if isinstance(self, Retryable) else "permanent"

    @property
    def throttled(self) -> bool:
        return self.meta_code in THROTTLING_CODES


class MetaTransient(MetaError, Retryable):
    """Worth sending again later, with the same event ids."""


class MetaRejected(MetaError, Permanent):
    """Sending it again changes nothing; the row becomes `error` with a hint."""


def hint_for(code: int | None, subcode: int | None) -> str | None:
    if code is None:
        return None
    found = HINTS.get((code, subcode)) or HINTS.get((code, None))
    if found is None and 200 <= code <= 299:
        found = PERMISSION_HINT
    return found


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def describe(error: dict[str, Any]) -> str:
    """Meta's own words: the message, and the user title/message when it sends them."""
    parts = [str(error.get("message") or "no message")]
    title, user_msg = error.get("error_user_title"), error.get("error_user_msg")
    if title or user_msg:
        parts.append(": ".join(str(p) for p in (title, user_msg) if p))
    code, sub = error.get("code"), error.get("error_subcode")
    tag = f"code {code}" + (f"/{sub}" if sub is not None else "")
    return f"{' — '.join(parts)} ({tag})"


def classify_error(http_status: int, body: Any) -> MetaError:
    """A non-success answer: Meta's error envelope when there is one, else the HTTP status."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return classify_status(http_status, "the answer has no Meta error object")
    code, subcode = _int(error.get("code")), _int(error.get("error_subcode"))
    message = describe(error)
    if error.get("is_transient") is True or code in TRANSIENT_CODES:
        return MetaTransient(message, meta_code=code, subcode=subcode)
    if code in PERMANENT_CODES:
        request_wide = code in REQUEST_WIDE_CODES or subcode in REQUEST_WIDE_SUBCODES
        return MetaRejected(message, hint_for(code, subcode), code, subcode, request_wide)
    if http_status >= 500 or http_status in (408, 429):
        return MetaTransient(message, meta_code=code, subcode=subcode)
    return MetaRejected(message, hint_for(code, subcode) or UNKNOWN_HINT, code, subcode)


def classify_status(http_status: int, what: str) -> MetaError:
    """An answer without a usable Meta error: decided by the HTTP status alone."""
    message = f"HTTP {http_status}: {what}"
    if http_status >= 500 or http_status in (408, 429) or 200 <= http_status < 300:
        return MetaTransient(message)
    return MetaRejected(message, UNKNOWN_HINT)


def transport_error(what: str) -> MetaError:
    """No answer (timeout, connection refused or closed): Meta may or may not have the events."""
    return MetaTransient(what)
