"""Client messages as Evolution API posts them: the recorded 2.3.7 fixtures of tests/bot/fixtures
(`text-2.3.7.json`, and `ctwa-text-2.3.7.json`'s ad context for a click id) for another chat,
text and id."""

from __future__ import annotations

import copy
from typing import Any

from tests.bot.conftest import load, text_message


def client_message(phone: str, text: str, message_id: str, *, clid: str | None = None,
                   push_name: str | None = None) -> dict[str, Any]:
    body = text_message(phone, text, message_id)
    if push_name:
        body["data"]["pushName"] = push_name
    if clid:
        context = copy.deepcopy(load("ctwa-text-2.3.7.json")["data"]["contextInfo"])
        context["externalAdReply"]["ctwaClid"] = clid
        body["data"]["contextInfo"] = context
    return body
