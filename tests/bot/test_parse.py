"""The parser and the referral search on Evolution 2.2–2.4 shapes (pure functions, no database)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.parse import (
    SEND,
    BadEvent,
    Ignored,
    Invalid,
    Message,
    event_name,
    parse_envelope,
    parse_message,
    parse_messages,
)
from bot.referral import Referral, find_referral, may_carry_referral
from bot.values import as_bytes, as_int, plain, timestamp
from tests.bot.conftest import load

CLID = "Affc9P3TLX9o7iBSwwqSi-6dEoQ1n2c3Kx8"
AD_ID = "120239177205810192"


def data_of(name: str) -> dict[str, Any]:
    return copy.deepcopy(load(name)["data"])


def found(data: dict[str, Any]) -> Referral | None:
    """find_referral, checking that the raw-body pre-test would not have skipped it."""
    referral = find_referral(data)
    if referral is not None:
        assert may_carry_referral(json.dumps({"data": data}).encode())
    return referral


def only(name: str) -> Message | Ignored:
    [parsed] = parse_messages(data_of(name))
    return parsed


def test_event_names_in_every_casing_are_one() -> None:
    assert event_name("messages.upsert") == event_name("MESSAGES_UPSERT") == event_name("messages-upsert")
    assert parse_envelope({"instance": "x", "data": {}}, slug="messages-upsert").event == "messages.upsert"


@pytest.mark.parametrize(("body", "says"), [
    ([1, 2], "JSON list"),
    ("text", "JSON str"),
    ({"instance": "clinic-main", "data": {}}, "`event` is missing"),
    ({"event": "messages.upsert", "data": {}}, "`instance` is missing"),
])
def test_envelope_says_what_is_missing(body: Any, says: str) -> None:
    with pytest.raises(BadEvent, match=says):
        parse_envelope(body)


def test_ctwa_text_has_click_id_and_ad() -> None:
    message = only("ctwa-text-2.3.7.json")
    assert isinstance(message, Message)
    assert message.text == "Olá! Quero saber mais sobre isso."
    assert message.referral is not None
    assert (message.referral.ctwa_clid, message.referral.source_id) == (CLID, AD_ID)
    assert message.referral.source_url == "https://fb.me/5z9Rw6Obv"
    assert message.referral.title == "Converse conosco"
    assert message.referral.source_type == "ad"
    assert message.referral.found_at == "data.contextInfo"
    # byte objects are stored compactly, thumbnails are not stored
    assert message.referral.record()["ctwaPayload"] == "QWZk"


def test_reply_context_is_not_a_referral() -> None:
    message = only("reply-with-context-2.3.7.json")
    assert isinstance(message, Message) and message.referral is None
    assert message.text == "Sim, quero agendar"


def test_media_caption_and_placeholder() -> None:
    image, audio = only("image-caption-2.3.7.json"), only("audio-2.3.7.json")
    assert isinstance(image, Message) and isinstance(audio, Message)
    assert (image.text, image.media_type) == ("foto do meu dente", "image")
    assert (audio.text, audio.media_type) == ("[audio]", "audio")


def test_speech_to_text_is_the_audio_text() -> None:
    data = data_of("audio-2.3.7.json")
    data["message"]["speechToText"] = "quanto custa um implante?"
    message = parse_message(data)
    assert isinstance(message, Message)
    assert (message.text, message.media_type) == ("quanto custa um implante?", "audio")


def test_phone_from_remote_jid_alt_when_remote_jid_is_a_lid() -> None:
    message = only("lid-2.3.6.json")
    assert isinstance(message, Message)
    assert (message.contact, message.is_lid) == ("79161234567", False)


def test_phone_from_remote_jid_in_the_2_4_swap() -> None:
    data = data_of("lid-2.3.6.json")
    data["key"].update({"remoteJid": "79161234567@s.whatsapp.net", "remoteJidAlt": "203469835821091@lid",
                        "addressingMode": "pn"})
    message = parse_message(data)
    assert isinstance(message, Message) and (message.contact, message.is_lid) == ("79161234567", False)


def test_lid_only_chat_is_kept_and_flagged() -> None:
    data = data_of("lid-2.3.6.json")
    del data["key"]["remoteJidAlt"]
    message = parse_message(data)
    assert isinstance(message, Message) and (message.contact, message.is_lid) == ("203469835821091", True)


def test_legacy_sender_pn_and_device_suffix() -> None:
    data = data_of("lid-2.3.6.json")
    data["key"] = {"remoteJid": "203469835821091@lid", "senderPn": "79161234567:12@s.whatsapp.net",
                   "fromMe": False, "id": "X1"}
    message = parse_message(data)
    assert isinstance(message, Message) and message.contact == "79161234567"


@pytest.mark.parametrize(("name", "reason"), [
    ("group-2.3.7.json", "group"), ("status-broadcast-2.3.7.json", "status"),
])
def test_groups_and_status_are_ignored(name: str, reason: str) -> None:
    assert only(name) == Ignored(load(name)["data"]["key"]["id"], reason)


def test_newsletters_and_reactions_are_ignored() -> None:
    data = data_of("text-2.3.7.json")
    data["key"]["remoteJid"] = "120363000000000000@newsletter"
    assert isinstance(parse_message(data), Ignored)
    data = data_of("text-2.3.7.json")
    data["message"] = {"reactionMessage": {"text": "👍", "key": {"id": "x"}}, "messageContextInfo": {}}
    assert parse_message(data) == Ignored(data["key"]["id"], "no_content")


def test_operator_message_is_from_me_without_push_name() -> None:
    message = only("from-me-operator-2.3.7.json")
    assert isinstance(message, Message)
    assert message.from_me and message.push_name is None and message.contact == "5511988887777"


def test_cloud_api_channel_text() -> None:
    message = only("cloud-api-channel.json")
    assert isinstance(message, Message)
    assert (message.text, message.contact, message.referral) == ("hola!", "541131376731", None)


def test_old_extended_text_message_and_its_context() -> None:
    data = data_of("ctwa-text-2.3.7.json")
    context = data.pop("contextInfo")
    data["message"] = {"extendedTextMessage": {"text": "Oi, vi o anúncio", "contextInfo": context}}
    message = parse_message(data)
    assert isinstance(message, Message) and message.text == "Oi, vi o anúncio"
    assert message.referral is not None and message.referral.ctwa_clid == CLID
    assert message.referral.found_at == "message.extendedTextMessage.contextInfo"


def test_media_message_context_as_2_4_keeps_it() -> None:
    data = data_of("image-caption-2.3.7.json")
    data["message"]["imageMessage"]["contextInfo"] = data_of("ctwa-text-2.3.7.json")["contextInfo"]
    data["contextInfo"] = {"deviceListMetadataVersion": 2}
    referral = found(data)
    assert referral is not None and referral.ctwa_clid == CLID
    assert referral.found_at == "message.imageMessage.contextInfo"


def test_cloud_style_referral_object() -> None:
    data = data_of("cloud-api-channel.json")
    data["referral"] = {"source_url": "https://fb.me/x", "source_id": AD_ID, "source_type": "ad",
                        "headline": "Implantes", "ctwa_clid": "ARAkLkA8"}
    referral = found(data)
    assert referral is not None
    assert (referral.ctwa_clid, referral.source_id, referral.title) == ("ARAkLkA8", AD_ID, "Implantes")


def test_seed_style_context_referral_camel_case() -> None:
    data = data_of("text-2.3.7.json")
    data["contextInfo"] = {"referral": {"ctwaClid": "CLID-1", "sourceId": AD_ID}}
    referral = found(data)
    assert referral is not None and (referral.ctwa_clid, referral.source_id) == ("CLID-1", AD_ID)


def test_recursive_search_finds_an_undocumented_place() -> None:
    data = data_of("text-2.3.7.json")
    data["message"]["someFutureMessage"] = {"wrapper": [{"info": {"externalAdReply": {
        "ctwaClid": "DEEP", "sourceId": AD_ID}}}]}
    referral = found(data)
    assert referral is not None and referral.ctwa_clid == "DEEP"


def test_recursive_search_is_bounded() -> None:
    node: dict[str, Any] = {"ctwaClid": "TOO-DEEP", "sourceId": AD_ID}
    for _ in range(30):
        node = {"x": node}
    data = data_of("text-2.3.7.json")
    data["nested"] = node
    assert found(data) is None


def test_conversion_data_without_ad_reply_still_marks_an_ad() -> None:
    data = data_of("text-2.3.7.json")
    data["contextInfo"] = {"ctwaPayload": {"0": 1, "1": 2}, "entryPointConversionSource": "ctwa_ad"}
    referral = found(data)
    assert referral is not None and referral.ctwa_clid is None and referral.source_type == "ctwa_ad"


def test_wrapped_view_once_message() -> None:
    data = data_of("text-2.3.7.json")
    data["message"] = {"viewOnceMessageV2": {"message": {"imageMessage": {"caption": "olha", "url": "u"}}}}
    message = parse_message(data)
    assert isinstance(message, Message) and (message.text, message.media_type) == ("olha", "image")


@pytest.mark.parametrize(("data", "says"), [
    ("x", "must be an object"),
    ({"message": {}}, "data.key is missing"),
    ({"key": {"remoteJid": "1@s.whatsapp.net"}}, "data.key.id is missing"),
    ({"key": {"id": "A"}}, "data.key.remoteJid is missing"),
    ({"key": {"id": "A", "remoteJid": "garbage"}}, "not a WhatsApp chat id"),
])
def test_unreadable_messages_say_why(data: Any, says: str) -> None:
    with pytest.raises(BadEvent, match=says):
        parse_messages(data)


def test_longs_bytes_and_timestamps() -> None:
    assert as_int({"low": 1771373380, "high": 0, "unsigned": False}) == 1771373380
    assert as_int({"low": -1, "high": -1, "unsigned": False}) == -1
    assert as_int({"low": 0, "high": 1, "unsigned": True}) == 1 << 32
    assert as_int("1771373387") == 1771373387
    assert as_bytes({"1": 156, "0": 78}) == bytes([78, 156])
    assert as_bytes({"a": 1}) is None and as_bytes({"0": 300}) is None
    expected = datetime.fromtimestamp(1771373387, UTC)
    for raw in (1771373387, "1771373387", {"low": 1771373387, "high": 0, "unsigned": True}, 1771373387000):
        assert timestamp(raw) == expected
    assert plain({"jpegThumbnail": {"0": 255}, "fileLength": {"low": 5, "high": 0, "unsigned": True}}) == {
        "fileLength": 5}


def test_plain_bodies_skip_the_referral_search() -> None:
    assert not may_carry_referral(json.dumps(load("text-2.3.7.json")).encode())
    assert may_carry_referral(json.dumps(load("ctwa-text-2.3.7.json")).encode())


def test_send_message_is_read_as_sent_by_the_business() -> None:
    # evolution-api 2.3.7 whatsapp.baileys.service.ts sendMessageWithTyping: the prepareMessage record
    body = load("send-message-2.3.7.json")
    assert parse_envelope(body).event == SEND
    [message] = parse_messages(copy.deepcopy(body["data"]), event=SEND)
    assert isinstance(message, Message) and message.from_me and message.push_name is None
    assert message.text.startswith("Oi! Aqui é a Ana") and message.contact == "5511988887777"
    data = copy.deepcopy(body["data"])
    data["key"]["fromMe"] = False  # whatever the key says, a sent message is the business's
    assert isinstance(m := parse_message(data, event=SEND), Message) and m.from_me and m.referral is None


def test_base64_media_is_dropped_on_reading() -> None:
    data = data_of("image-base64-2.3.7.json")
    message = parse_message(data)
    assert isinstance(message, Message) and (message.text, message.media_type) == ("raio-x do dente", "image")
    assert "base64" not in data["message"]


def test_opaque_ad_fields_are_recorded() -> None:
    message = parse_message(data_of("ctwa-opaque-2.3.7.json"))
    assert isinstance(message, Message) and message.ad_opaque
    assert message.referral is not None and message.referral.ctwa_clid is None
    media = data_of("image-caption-2.3.7.json")
    media["message"]["imageMessage"]["contextInfo"] = {"conversionData": {"0": 1}}  # 2.4.0-rc keeps media's
    assert isinstance(m := parse_message(media), Message) and m.ad_opaque
    with_click_id = parse_message(data_of("ctwa-text-2.3.7.json"))  # ctwaPayload beside externalAdReply
    assert isinstance(with_click_id, Message) and with_click_id.ad_opaque and with_click_id.referral is not None
    assert isinstance(m := parse_message(data_of("text-2.3.7.json")), Message) and not m.ad_opaque


def test_one_unreadable_message_does_not_sink_the_batch() -> None:
    good = data_of("text-2.3.7.json")
    parsed = parse_messages([{"key": {"id": "BROKEN-1"}}, good, "x", data_of("group-2.3.7.json")])
    assert [type(p).__name__ for p in parsed] == ["Invalid", "Message", "Invalid", "Ignored"]
    first = parsed[0]
    assert isinstance(first, Invalid) and first.message_id == "BROKEN-1" and "remoteJid is missing" in first.reason
    with pytest.raises(BadEvent, match="none of the 2 messages can be read"):
        parse_messages([{"key": {"id": "A"}}, "x"])
