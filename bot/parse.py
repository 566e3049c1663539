"""Evolution API webhook bodies → what intake stores (tolerant of the 2.2 to 2.4 shapes).

- The envelope: `event` (dotted `messages.upsert`, config-style `MESSAGES_UPSERT`, or the URL slug
  `messages-upsert` of `byEvents` webhooks) and `instance`.
- The chat: `remoteJidAlt` when it is a phone JID, else `remoteJid` when it is (2.4.0-rc swapped
  them), else the legacy `senderPn`; a chat known only by `@lid` is kept under the LID and flagged.
  Groups, `status@broadcast`, broadcast lists and newsletters are ignored.
- The text: `conversation`, `extendedTextMessage.text`, a media caption, a button/list answer or a
  speech-to-text transcript; media without text gets its type and a placeholder like `[audio]`.
- `send.message`: what was sent through Evolution's API (Chatwoot, a CRM widget, our own sendText).
  Baileys runs with `emitOwnEvents: false`, so these never come as a `fromMe` upsert; Evolution
  emits the sent message's `prepareMessage` record instead, the same `data` shape
  (`sendMessageWithTyping`, `src/api/integrations/channel/whatsapp/whatsapp.baileys.service.ts`,
  evolution-api 2.3.7 and 2.4.0-rc2). It is read as a `fromMe` message.
- With `webhook_base64` on, media arrive as `data.message.base64` (same file): dropped on reading,
  never stored.
- A `data` list is read message by message: an unreadable one is `Invalid`, the others go on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.referral import Referral, find_referral, has_opaque_ad
from bot.values import as_bool, as_text, timestamp
from core.errors import BadInput
from core.phones import normalize_phone
from core.web import is_digits, storable_text

UPSERT = "messages.upsert"
SEND = "send.message"
MESSAGE_EVENTS = frozenset({UPSERT, SEND})
PHONE_SUFFIXES = ("@s.whatsapp.net", "@c.us")
LID_SUFFIX = "@lid"
MAX_TEXT = 8000
MAX_CONTACT = 64
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

MEDIA_KINDS = {
    "imageMessage": "image", "videoMessage": "video", "ptvMessage": "video", "audioMessage": "audio",
    "documentMessage": "document", "stickerMessage": "sticker", "locationMessage": "location",
    "liveLocationMessage": "location", "contactMessage": "contact", "contactsArrayMessage": "contact",
    "pollCreationMessage": "poll", "pollCreationMessageV3": "poll", "eventMessage": "event",
}
# containers whose `.message` holds the real content
WRAPPERS = (
    "ephemeralMessage", "viewOnceMessage", "viewOnceMessageV2", "viewOnceMessageV2Extension",
    "documentWithCaptionMessage", "deviceSentMessage",
)
# keys that are metadata, not content
META_KEYS = frozenset({"messageContextInfo", "base64", "mediaUrl", "speechToText", "contextInfo"})
# content that is not a message from the person (Evolution forwards some of it anyway)
NO_CONTENT = frozenset({
    "protocolMessage", "reactionMessage", "pollUpdateMessage", "senderKeyDistributionMessage",
    "keepInChatMessage", "encReactionMessage", "editedMessage",
})


class BadEvent(BadInput):
    """The body is JSON but not an Evolution event we can read; the text says what is wrong."""

    code = "not_an_evolution_event"


@dataclass(frozen=True)
class Envelope:
    event: str  # dotted lowercase, e.g. "messages.upsert"
    instance: str
    data: Any


@dataclass(frozen=True)
class Message:
    message_id: str
    contact: str  # international phone digits, or the LID when is_lid
    is_lid: bool
    from_me: bool
    push_name: str | None
    text: str
    media_type: str | None
    sent_at: datetime
    referral: Referral | None
    ad_opaque: bool = False  # Baileys' opaque ad fields (ctwaPayload / conversionData) were present
    lid: str | None = None  # the chat's LID when the key names it beside the phone (see lid_beside)


@dataclass(frozen=True)
class Ignored:
    message_id: str
    reason: str  # group | status | broadcast | newsletter | no_content


@dataclass(frozen=True)
class Invalid:
    """One message of a webhook that cannot be read; the others of its `data` still are."""

    message_id: str | None
    reason: str


def event_name(raw: str) -> str:
    """`MESSAGES_UPSERT`, `messages-upsert`, `messages.upsert` → `messages.upsert`."""
    return raw.strip().lower().replace("_", ".").replace("-", ".")


def parse_envelope(body: Any, slug: str | None = None, header_instance: str | None = None) -> Envelope:
    if not isinstance(body, dict):
        raise BadEvent(f"the body is a JSON {type(body).__name__}; an Evolution event is an object "
                       "with event, instance and data")
    raw_event = body.get("event") if isinstance(body.get("event"), str) else slug
    if not raw_event or not raw_event.strip():
        raise BadEvent("`event` is missing: not an Evolution webhook")
    instance: Any = body.get("instance")
    if isinstance(instance, dict):  # some versions send {"instanceName": ...}
        instance = instance.get("instanceName") or instance.get("name")
    # the header is not cleaned as JSON bodies are: a name PostgreSQL cannot hold names no instance
    instance = as_text(instance) or (as_text(storable_text(header_instance)) if header_instance else None)
    if not instance:
        raise BadEvent("`instance` is missing: the instance name tells whose webhook this is")
    return Envelope(event_name(raw_event), instance, body.get("data"))


def _jid_user(jid: str) -> str:
    return jid.split("@", 1)[0].split(":", 1)[0]


def _is_phone_jid(jid: str) -> bool:
    return jid.endswith(PHONE_SUFFIXES) and is_digits(_jid_user(jid))


def ignored_chat(jid: str) -> str | None:
    if jid.endswith("@g.us"):
        return "group"
    if jid == "status@broadcast":
        return "status"
    if jid.endswith("@broadcast"):
        return "broadcast"
    if jid.endswith("@newsletter"):
        return "newsletter"
    return None


def _phone(digits: str) -> str:
    # a phone JID's user part is already the international number (country code first, no
    # trunk prefix), so it is used as is; anything of an unusual length goes through phonenumbers
    if 8 <= len(digits) <= 15 and digits[0] != "0":
        return digits
    return normalize_phone("+" + digits) or digits


def contact_of(key: dict[str, Any]) -> tuple[str, bool]:
    """(phone digits or LID, is_lid) of the chat; BadEvent if the key names no chat."""
    contact, is_lid = _contact(key)
    if len(contact) > MAX_CONTACT:  # E.164 numbers have 15 digits at most, LIDs about as many
        raise BadEvent(f"data.key.remoteJid is not a WhatsApp chat id (over {MAX_CONTACT} characters)")
    return contact, is_lid


def _contact(key: dict[str, Any]) -> tuple[str, bool]:
    remote = as_text(key.get("remoteJid"))
    for jid in (as_text(key.get("remoteJidAlt")), remote, as_text(key.get("senderPn"))):
        if jid and _is_phone_jid(jid):
            return _phone(_jid_user(jid)), False
    for jid in (remote, as_text(key.get("remoteJidAlt"))):
        if jid and jid.endswith(LID_SUFFIX) and _jid_user(jid):
            return _jid_user(jid), True
    if remote and "@" not in remote and is_digits(remote.lstrip("+")):
        return _phone(remote.lstrip("+")), False
    raise BadEvent("data.key.remoteJid is not a WhatsApp chat id")


def lid_beside(key: dict[str, Any]) -> str | None:
    """The LID a phone-addressed key also names: `remoteJid` in 2.3.5-2.3.6 and before 2.3.1 (with
    `senderPn`), `remoteJidAlt` in 2.4.0-rc2 (swapped, `addressingMode: "pn"`), `previousRemoteJid`
    in 2.3.1-2.3.4 (evolution-api whatsapp.baileys.service.ts, messages.upsert handler, at those
    tags). 2.3.7 overwrites `remoteJid` with `remoteJidAlt` and sends no LID at all."""
    for name in ("remoteJid", "remoteJidAlt", "previousRemoteJid"):
        jid = as_text(key.get(name))
        if jid and jid.endswith(LID_SUFFIX) and 0 < len(_jid_user(jid)) <= MAX_CONTACT:
            return _jid_user(jid)
    return None


def _unwrap(message: dict[str, Any]) -> dict[str, Any]:
    for _ in range(4):
        for wrapper in WRAPPERS:
            inner = message.get(wrapper)
            if isinstance(inner, dict) and isinstance(inner.get("message"), dict):
                message = inner["message"]
                break
        else:
            return message
    return message


def _interactive_text(message: dict[str, Any]) -> str | None:
    for key, path in (
        ("buttonsResponseMessage", ("selectedDisplayText",)),
        ("templateButtonReplyMessage", ("selectedDisplayText",)),
        ("listResponseMessage", ("title",)),
        ("interactiveResponseMessage", ("body", "text")),
    ):
        node: Any = message.get(key)
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if as_text(node):
            return as_text(node)
    return None


def content_of(message: Any) -> tuple[str, str | None] | None:
    """(text, media type) of a message, or None when it carries nothing a person said."""
    if not isinstance(message, dict):
        return None
    message = _unwrap(message)
    ext = message.get("extendedTextMessage")
    text = as_text(message.get("conversation")) or (as_text(ext.get("text")) if isinstance(ext, dict) else None)
    text = text or _interactive_text(message)
    media: str | None = None
    for key, kind in MEDIA_KINDS.items():
        node = message.get(key)
        if isinstance(node, dict):
            media = kind
            text = text or as_text(node.get("caption")) or as_text(node.get("name"))
            break
    text = text or as_text(message.get("speechToText"))
    if text is None and media is None:
        unknown = [k for k in message if k not in META_KEYS and k not in NO_CONTENT and k not in WRAPPERS]
        if not unknown:
            return None
        media = unknown[0].removesuffix("Message") or unknown[0]
    return _clean(text or f"[{media}]"), media


def _clean(text: str) -> str:
    return _CONTROL.sub("", text)[:MAX_TEXT]


def parse_message(data: Any, *, ads: bool = True, event: str = UPSERT) -> Message | Ignored:
    """One message; `ads=False` skips the referral search (the body has no ad data at all)."""
    if not isinstance(data, dict):
        raise BadEvent(f"{event}: `data` must be an object (or a list of them)")
    message = data.get("message")
    if isinstance(message, dict):
        message.pop("base64", None)  # media bytes (webhook_base64): never stored, freed at once
    key = data.get("key")
    if not isinstance(key, dict):
        raise BadEvent(f"{event}: data.key is missing")
    message_id = as_text(key.get("id"))
    if not message_id:
        raise BadEvent(f"{event}: data.key.id is missing")
    remote = as_text(key.get("remoteJid"))
    if not remote:
        raise BadEvent(f"{event}: data.key.remoteJid is missing")
    reason = ignored_chat(remote)
    if reason:
        return Ignored(message_id, reason)
    contact, is_lid = contact_of(key)
    content = content_of(message)
    if content is None:
        return Ignored(message_id, "no_content")
    from_me = event == SEND or as_bool(key.get("fromMe"))
    return Message(
        message_id=message_id[:200],
        contact=contact,
        is_lid=is_lid,
        from_me=from_me,
        push_name=None if from_me else _push_name(data.get("pushName")),
        text=content[0],
        media_type=content[1],
        sent_at=timestamp(data.get("messageTimestamp")),
        referral=find_referral(data) if ads and not from_me else None,
        ad_opaque=ads and not from_me and has_opaque_ad(data),
        lid=None if is_lid else lid_beside(key),
    )


def _push_name(value: Any) -> str | None:
    name = as_text(value)
    return _clean(name)[:200] if name and name != "Você" else None


def _key_id(data: Any) -> str | None:
    key = data.get("key") if isinstance(data, dict) else None
    message_id = as_text(key.get("id")) if isinstance(key, dict) else None
    return message_id[:200] if message_id else None


def parse_messages(data: Any, *, ads: bool = True, event: str = UPSERT) -> list[Message | Ignored | Invalid]:
    """Every message of a `messages.upsert` / `send.message` data (an object, or a list in some
    older versions), in order; BadEvent only when none of them can be read."""
    items = data if isinstance(data, list) else [data]
    if not items:
        raise BadEvent(f"{event}: `data` is empty")
    if len(items) > 100:
        raise BadEvent(f"{event}: more than 100 messages in one webhook")
    parsed: list[Message | Ignored | Invalid] = []
    for item in items:
        try:
            parsed.append(parse_message(item, ads=ads, event=event))
        except BadEvent as exc:
            parsed.append(Invalid(_key_id(item), str(exc)))
    if all(isinstance(p, Invalid) for p in parsed):
        reasons = [p.reason for p in parsed if isinstance(p, Invalid)]
        if len(reasons) == 1:
            raise BadEvent(reasons[0])
        raise BadEvent(f"none of the {len(reasons)} messages can be read: " + "; ".join(reasons[:5]))
    return parsed
