"""Meta's WhatsApp Cloud API webhook bodies → what intake stores, and the notices beside messages.

The body (WhatsApp webhooks reference, developers.facebook.com/documentation/business-messaging/
whatsapp/webhooks/reference/messages/): `object: whatsapp_business_account`, `entry[]` (one WABA,
`id`), `changes[]` (`field`: `messages`, `automatic_events`, `smb_message_echoes`) whose `value` holds
`metadata.phone_number_id`, `contacts[]` (`wa_id`, `profile.name`), `messages[]`, `statuses[]`
(delivery of what the business sent), `errors[]` and, for the `automatic_events` field,
`automatic_events[]` (Meta's own detection of a lead or purchase in a Click-to-WhatsApp chat).

A message becomes a `bot.parse.Message`, the same record Evolution's messages become: the text of
a text message, the caption of an image, video or document (else a placeholder like `[audio]`),
the title of an interactive or button reply; `referral` carries the ad (`ctwa_clid`, `source_id`,
`source_url`, `source_type`, `headline`, `body`, `media_type`). A person without a phone number
in the payload (WhatsApp usernames) is keyed by the user id Meta sends, flagged like a LID (no
phone for CAPI). A business that also uses the WhatsApp Business app beside the Cloud API
("coexistence") gets `smb_message_echoes`: `message_echoes[]`, what it sent from the app, shaped
like a message but `from` the business and `to` the person; each is an operator's message
(`from_me`, as Evolution's `fromMe`), which pauses the bot in that chat.
The shape is checked before anything is stored: a body that is not a Cloud webhook is a
`BadCloudBody` (400); one unreadable message is `Invalid` and the others go on. Reading is one
pass over the body, linear in its size.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.parse import MAX_CONTACT, Ignored, Invalid, Message
from bot.parse import _clean as clean_text
from bot.referral import Referral
from bot.values import as_text, plain, timestamp
from core.errors import BadInput
from core.web import is_digits

OBJECT = "whatsapp_business_account"
STATUSES = frozenset({"sent", "delivered", "read", "failed"})
CAPTIONED = ("image", "video", "document")
PLACEHOLDER_TYPES = frozenset({"audio", "sticker", "location", "contacts", "order", "image", "video", "document"})
# no words from the person: a reaction to a message, a number change notice, what Meta cannot read
# (`revoke`: a deleted message, documented for coexistence numbers; `edit`: its payload is a guess)
NO_CONTENT_TYPES = frozenset({"reaction", "system", "unsupported", "unknown", "request_welcome", "revoke", "edit"})
# the webhook fields read here; the app may be subscribed to others (template status, account updates…)
FIELDS = frozenset({"messages", "automatic_events", "smb_message_echoes"})
# what a business may write around the digits of the person's number in an echo's `to` ("+16505551234")
PHONE_PUNCTUATION = frozenset("+ -()")
REFERRAL_FIELDS = ("source_url", "source_id", "source_type", "headline", "body", "media_type", "ctwa_clid")


class BadCloudBody(BadInput):
    """The body is JSON but not a WhatsApp Cloud API webhook; the text says what is wrong."""

    code = "not_a_whatsapp_cloud_webhook"


@dataclass(frozen=True)
class Status:
    """A delivery status of a message the business sent (one of our replies)."""

    wamid: str
    status: str  # sent | delivered | read | failed
    at: datetime
    errors: list[dict[str, Any]]


@dataclass(frozen=True)
class Notice:
    """An automatic event or a webhook-level error, stored as received."""

    kind: str  # automatic_event | error
    key: str  # the event's wamid, or a digest of the error
    event_name: str | None
    ctwa_clid: str | None
    wamid: str | None
    at: datetime | None
    body: dict[str, Any]


@dataclass
class Change:
    """One `entry[].changes[]` item of a field read here: everything Meta said about one business number."""

    phone_number_id: str
    waba_id: str | None
    messages: list[Message | Ignored | Invalid] = field(default_factory=list)
    statuses: list[Status] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadCloudBody(f"{where} must be a list")
    return value


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadCloudBody(f"{where} must be an object")
    return value


def parse_body(body: Any) -> tuple[list[Change], list[str]]:
    """The body's changes of the fields read here, in order, and the other fields it names (answered
    200 and left alone, so Meta does not retry them); raises BadCloudBody when the shape is not Meta's."""
    body = _dict(body, "the body")
    if body.get("object") != OBJECT:
        raise BadCloudBody(f"object must be {OBJECT!r}")
    entries = _list(body.get("entry"), "entry")
    if not entries:
        raise BadCloudBody("entry is empty")
    changes: list[Change] = []
    others: list[str] = []
    for ei, entry in enumerate(entries):
        entry = _dict(entry, f"entry[{ei}]")
        for ci, change in enumerate(_list(entry.get("changes"), f"entry[{ei}].changes")):
            where = f"entry[{ei}].changes[{ci}]"
            field_name = as_text(_dict(change, where).get("field"))
            if field_name is not None and field_name not in FIELDS:
                others.append(field_name[:64])
                continue
            value = _dict(change.get("value"), f"{where}.value")
            changes.append(_change(value, as_text(entry.get("id")), where))
    return changes, others


def _change(value: dict[str, Any], waba_id: str | None, where: str) -> Change:
    metadata = _dict(value.get("metadata"), f"{where}.value.metadata")
    number_id = as_text(metadata.get("phone_number_id"))
    if number_id is None or not is_digits(number_id) or len(number_id) > MAX_CONTACT:
        raise BadCloudBody(f"{where}.value.metadata.phone_number_id must be a string of digits")
    out = Change(number_id, waba_id)
    names = _profile_names(_list(value.get("contacts"), f"{where}.value.contacts"))
    for mi, m in enumerate(_list(value.get("messages"), f"{where}.value.messages")):
        out.messages.append(_message(m, names, f"{where}.value.messages[{mi}]"))
    for mi, m in enumerate(_list(value.get("message_echoes"), f"{where}.value.message_echoes")):
        out.messages.append(_message(m, {}, f"{where}.value.message_echoes[{mi}]", echo=True))
    for si, s in enumerate(_list(value.get("statuses"), f"{where}.value.statuses")):
        out.statuses.append(_status(s, f"{where}.value.statuses[{si}]"))
    for e in _list(value.get("errors"), f"{where}.value.errors"):
        out.notices.append(_error_notice(_dict(e, f"{where}.value.errors[]")))
    for ai, a in enumerate(_list(value.get("automatic_events"), f"{where}.value.automatic_events")):
        out.notices.append(_automatic_event(a, f"{where}.value.automatic_events[{ai}]"))
    return out


def _profile_names(contacts: list[Any]) -> dict[str, str]:
    names: dict[str, str] = {}
    for c in contacts:
        if not isinstance(c, dict):
            continue
        profile = c.get("profile")
        name = as_text(profile.get("name")) if isinstance(profile, dict) else None
        for key in (as_text(c.get("wa_id")), as_text(c.get("user_id"))):
            if key and name:
                names[key] = clean_text(name)[:200]
    return names


def _sender(m: dict[str, Any]) -> tuple[str, bool] | None:
    """(contact, is_lid): the phone digits Meta sends in `from`, else the user id (usernames).

    `from_user_id` is a guess at the username field's name: no documented payload was read for it."""
    phone = as_text(m.get("from"))
    if phone is not None and is_digits(phone) and len(phone) <= MAX_CONTACT:
        return phone, False
    user = as_text(m.get("from_user_id")) or (phone if phone and not is_digits(phone) else None)
    if user is not None and len(user) <= MAX_CONTACT:
        return user, True
    return None


def _recipient(m: dict[str, Any]) -> tuple[str, bool] | None:
    """The person an echo went to: the `to` phone as the business typed it, its digits kept."""
    to = as_text(m.get("to"))
    if to is None or not set(to) <= PHONE_PUNCTUATION | set("0123456789"):
        return None
    digits = "".join(c for c in to if c.isdigit())
    return (digits, False) if digits and len(digits) <= MAX_CONTACT else None


def _message(m: Any, names: dict[str, str], where: str, *, echo: bool = False) -> Message | Ignored | Invalid:
    """A person's message, or with `echo` one the business sent them from the WhatsApp Business app."""
    if not isinstance(m, dict):
        return Invalid(None, f"{where} is not an object")
    wamid = as_text(m.get("id"))
    if wamid is None or len(wamid) > 256:
        return Invalid(None, f"{where}.id is missing")
    sender = _recipient(m) if echo else _sender(m)
    if sender is None:
        what = "to is not a phone number" if echo else "from is not a phone number or user id"
        return Invalid(wamid, f"{where}.{what}")
    kind = as_text(m.get("type")) or "unknown"
    if kind in NO_CONTENT_TYPES:
        return Ignored(wamid, "no_content")
    text, media = _content(m, kind)
    return Message(
        message_id=wamid, contact=sender[0], is_lid=sender[1], from_me=echo,
        push_name=names.get(sender[0]), text=text, media_type=media, sent_at=timestamp(m.get("timestamp")),
        referral=None if echo else _referral(m.get("referral")),
    )


def _content(m: dict[str, Any], kind: str) -> tuple[str, str | None]:
    node = m.get(kind)
    node = node if isinstance(node, dict) else {}
    if kind == "text":
        return clean_text(as_text(node.get("body")) or "[text]"), None
    if kind == "interactive":  # a reply button or a list row the person tapped
        reply = node.get("button_reply") or node.get("list_reply") or node.get("nfm_reply") or {}
        title = as_text(reply.get("title")) if isinstance(reply, dict) else None
        return clean_text(title or "[interactive]"), None
    if kind == "button":  # a template's quick-reply button
        return clean_text(as_text(node.get("text")) or "[button]"), None
    caption = as_text(node.get("caption")) if kind in CAPTIONED else None
    media = kind if kind in PLACEHOLDER_TYPES else "other"
    return clean_text(caption or f"[{kind[:40]}]"), media


def _referral(ref: Any) -> Referral | None:
    if not isinstance(ref, dict):
        return None
    raw = {k: plain(ref[k]) for k in REFERRAL_FIELDS if k in ref}
    if not any(as_text(ref.get(k)) for k in ("ctwa_clid", "source_id", "source_url")):
        return None
    return Referral(
        ctwa_clid=as_text(ref.get("ctwa_clid")), source_id=as_text(ref.get("source_id")),
        source_url=as_text(ref.get("source_url")), title=as_text(ref.get("headline")),
        source_type=as_text(ref.get("source_type")), found_at="cloud.referral", raw=raw,
    )


def _status(s: Any, where: str) -> Status:
    s = _dict(s, where)
    wamid, status = as_text(s.get("id")), as_text(s.get("status"))
    if wamid is None or status not in STATUSES:
        raise BadCloudBody(f"{where} needs an id and a status among {', '.join(sorted(STATUSES))}")
    errors = [plain(e) for e in _list(s.get("errors"), f"{where}.errors") if isinstance(e, dict)]
    return Status(wamid, status, timestamp(s.get("timestamp")), errors)


def _automatic_event(a: Any, where: str) -> Notice:
    a = _dict(a, where)
    wamid, name = as_text(a.get("id")), as_text(a.get("event_name"))
    if wamid is None or name is None:
        raise BadCloudBody(f"{where} needs an id and an event_name")
    return Notice("automatic_event", wamid, name[:64], as_text(a.get("ctwa_clid")), wamid,
                  timestamp(a.get("timestamp")), plain(a))


def _error_notice(e: dict[str, Any]) -> Notice:
    body = plain(e)
    key = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
    code = as_text(e.get("code"))
    return Notice("error", key, code[:64] if code else None, None, None, None, body)
