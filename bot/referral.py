"""Click-to-WhatsApp ad referral (click id, ad id, URL, title) from an Evolution `messages.upsert` data.

Evolution does not normalise referrals: it forwards what Baileys gives, and where that lands moved
between versions. Places are tried in order, the first that names an ad wins:
1. `data.contextInfo` (2.3.x hoists the text message's context here),
2. the media message's own `contextInfo` (`message.imageMessage.contextInfo`, what 2.4.0-rc keeps),
   or `message.extendedTextMessage.contextInfo` (v1 and old v2 payloads),
3. a Cloud-API-style `referral` object (`ctwa_clid`, `source_id`, `source_url`, `headline`),
4. a bounded recursive search of the whole data, for shapes nobody has documented yet.
WhatsApp sometimes sends only `ctwaPayload`/`entryPointConversionSource` without `externalAdReply`
(Baileys #2354); that still counts as an ad referral, without a click id.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bot.values import as_text, plain

SEARCH_DEPTH = 8
SEARCH_NODES = 2000
# contextInfo siblings of externalAdReply that describe the ad conversion
CONVERSION_KEYS = (
    "conversionSource", "entryPointConversionSource", "entryPointConversionApp", "ctwaSignals",
    "conversionDelaySeconds", "ctwaPayload", "conversionData",
)
# Baileys' opaque ad fields (bytes in WAProto `ContextInfo`: conversionData = 19, ctwaPayload = 55,
# Baileys 7.0.0-rc.9 WAProto/WAProto.proto); WhatsApp has been seen sending only these (Baileys #2354)
OPAQUE_AD_KEYS = ("ctwaPayload", "conversionData")
AD_ENTRY_POINTS = frozenset({"ctwa_ad", "fb_ads", "ads"})
# every shape above has one of these in a key name; a body without any cannot carry a referral
_BODY_HINTS = (b"ctwa", b"AdReply", b"referral", b"onversion")


@dataclass(frozen=True)
class Referral:
    ctwa_clid: str | None
    source_id: str | None
    source_url: str | None
    title: str | None
    source_type: str | None
    found_at: str
    raw: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """What is stored in `leads.referral`: where it was found and the ad data as received."""
        return {"found_at": self.found_at, **self.raw}


def _pick(obj: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = as_text(obj.get(name))
        if value:
            return value
    return None


def from_context(ctx: Any, where: str) -> Referral | None:
    """A referral from a Baileys `ContextInfo` (externalAdReply and its conversion siblings)."""
    if not isinstance(ctx, dict):
        return None
    ad = ctx.get("externalAdReply")
    conversion = {k: plain(ctx[k]) for k in CONVERSION_KEYS if k in ctx}
    entry = _pick(ctx, "entryPointConversionSource", "conversionSource")
    if isinstance(ad, dict):
        clid = _pick(ad, "ctwaClid", "ctwa_clid")
        source_id = _pick(ad, "sourceId", "source_id")
        source_url = _pick(ad, "sourceUrl", "source_url")
        if clid or source_id or source_url:
            return Referral(
                ctwa_clid=clid, source_id=source_id, source_url=source_url,
                title=_pick(ad, "title", "headline"), source_type=_pick(ad, "sourceType", "source_type"),
                found_at=where, raw={"externalAdReply": plain(ad), **conversion},
            )
    if isinstance(ctx.get("referral"), dict):
        return from_cloud(ctx["referral"], f"{where}.referral")
    if "ctwaPayload" in ctx or (entry is not None and entry.lower() in AD_ENTRY_POINTS):
        return Referral(None, None, None, None, entry, where, conversion)
    return None


def from_cloud(ref: Any, where: str) -> Referral | None:
    """A referral from Meta's Cloud API `referral` object (snake_case, or camelCase as some forks send)."""
    if not isinstance(ref, dict):
        return None
    clid = _pick(ref, "ctwa_clid", "ctwaClid")
    source_id = _pick(ref, "source_id", "sourceId")
    source_url = _pick(ref, "source_url", "sourceUrl")
    if not (clid or source_id or source_url):
        return None
    return Referral(
        ctwa_clid=clid, source_id=source_id, source_url=source_url,
        title=_pick(ref, "headline", "title"), source_type=_pick(ref, "source_type", "sourceType"),
        found_at=where, raw={"referral": plain(ref)},
    )


def _message_contexts(message: Any) -> Iterator[tuple[str, Any]]:
    if not isinstance(message, dict):
        return
    later = None
    for key, value in message.items():
        if isinstance(value, dict) and "contextInfo" in value:
            if key == "extendedTextMessage":
                later = value["contextInfo"]
            else:
                yield f"message.{key}.contextInfo", value["contextInfo"]
    if later is not None:
        yield "message.extendedTextMessage.contextInfo", later


def _search(node: Any, path: str, depth: int, budget: list[int]) -> Referral | None:
    if depth > SEARCH_DEPTH or budget[0] <= 0:
        return None
    budget[0] -= 1
    if isinstance(node, dict):
        if isinstance(node.get("externalAdReply"), dict):
            found = from_context(node, path)
            if found and (found.ctwa_clid or found.source_id):
                return found
        if "ctwa_clid" in node or "ctwaClid" in node:
            found = from_cloud(node, path)
            if found:
                return found
        children: Any = node.items()
    elif isinstance(node, list):
        children = ((str(i), v) for i, v in enumerate(node))
    else:
        return None
    for key, child in children:
        if isinstance(child, dict | list):
            found = _search(child, f"{path}.{key}", depth + 1, budget)
            if found:
                return found
    return None


def has_opaque_ad(data: dict[str, Any]) -> bool:
    """Whether the message's context (where `find_referral` looks first) holds an opaque ad field."""
    places = [data.get("contextInfo"), *(ctx for _, ctx in _message_contexts(data.get("message")))]
    return any(isinstance(ctx, dict) and any(ctx.get(k) for k in OPAQUE_AD_KEYS) for ctx in places)


def may_carry_referral(body: bytes) -> bool:
    """Cheap test on the raw webhook body: False means no referral search is needed at all."""
    return any(hint in body for hint in _BODY_HINTS)


def find_referral(data: dict[str, Any]) -> Referral | None:
    """The ad referral of one message's data, or None when the message did not come from an ad."""
    message = data.get("message")
    places: list[tuple[str, Any]] = [("data.contextInfo", data.get("contextInfo"))]
    places.extend(_message_contexts(message))
    partial: Referral | None = None  # ad conversion data without an ad id or click id
    for where, ctx in places:
        found = from_context(ctx, where)
        if found and (found.ctwa_clid or found.source_id or found.source_url):
            return found
        partial = partial or found
    msg = message if isinstance(message, dict) else {}
    for where, ref in (("data.referral", data.get("referral")), ("message.referral", msg.get("referral"))):
        found = from_cloud(ref, where)
        if found:
            return found
    return _search(data, "data", 0, [SEARCH_NODES]) or partial
