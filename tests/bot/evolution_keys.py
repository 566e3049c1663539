"""`messages.upsert` bodies with the message keys each Evolution version sends for one person.

Read from evolution-api's `src/api/integrations/channel/whatsapp/whatsapp.baileys.service.ts`,
the `messages.upsert` handler, at each tag (evolution-foundation/evolution-api):
- LID only: Baileys knows no phone; every version forwards `remoteJid: "<lid>@lid"` alone (the
  swaps below all require `remoteJidAlt`/`senderPn`; 2.3.7 L1478, 2.4.0-rc2 L1650);
- 2.3.3 (also 2.3.1-2.3.4): `previousRemoteJid` = the LID, `remoteJid` := `senderPn` (2.3.3 L1069-1071);
- 2.3.6: the raw Baileys rc.6 key, `remoteJid` = the LID, `remoteJidAlt` = the phone,
  `addressingMode: "lid"` (no swap before `sendDataWebhook`, 2.3.6 L1353);
- 2.3.7: `remoteJid` := `remoteJidAlt`, both the phone; the LID is gone (2.3.7 L1478-1479);
- 2.4.0-rc2: swapped, `remoteJid` = the phone, `remoteJidAlt` = the LID, `addressingMode: "pn"`
  (2.4.0-rc2 L1650-1656).
The rest of the body is the 2.3.7 text fixture (a real capture); the ad context is the 2.3.7
CTWA fixture's top-level `contextInfo` (`prepareMessage` hoists it, evolution-api.md §3).
"""

from __future__ import annotations

import copy
from typing import Any

from tests.bot.conftest import load

LID = "203469835821091"
LID_JID = f"{LID}@lid"


def key(shape: str, message_id: str, *, phone: str, lid: str = LID, from_me: bool = False) -> dict[str, Any]:
    pn, lj = f"{phone}@s.whatsapp.net", f"{lid}@lid"
    base: dict[str, Any] = {"fromMe": from_me, "id": message_id, "participant": ""}
    if shape == "lid-only":
        return {**base, "remoteJid": lj, "addressingMode": "lid"}
    if shape == "2.3.3":
        return {**base, "remoteJid": pn, "senderPn": pn, "previousRemoteJid": lj}
    if shape == "2.3.6":
        return {**base, "remoteJid": lj, "remoteJidAlt": pn, "addressingMode": "lid"}
    if shape == "2.3.7":
        return {**base, "remoteJid": pn, "remoteJidAlt": pn, "addressingMode": "lid"}
    if shape == "2.4.0-rc2":
        return {**base, "remoteJid": pn, "remoteJidAlt": lj, "addressingMode": "pn"}
    raise ValueError(shape)


def upsert(shape: str, message_id: str, text: str, *, phone: str, lid: str = LID, ad: bool = False,
           ad_id: str | None = None, instance: str = "clinic-main") -> dict[str, Any]:
    """A text message of `shape`'s key; `ad`: with the CTWA fixture's ad context (`ad_id`: another ad)."""
    body = copy.deepcopy(load("text-2.3.7.json"))
    body["instance"] = instance
    body["data"]["key"] = key(shape, message_id, phone=phone, lid=lid)
    body["data"]["message"] = {"conversation": text}
    if ad:
        body["data"]["contextInfo"] = copy.deepcopy(load("ctwa-text-2.3.7.json")["data"]["contextInfo"])
        if ad_id is not None:
            body["data"]["contextInfo"]["externalAdReply"]["sourceId"] = ad_id
    return body


def click_id() -> str:
    clid: str = load("ctwa-text-2.3.7.json")["data"]["contextInfo"]["externalAdReply"]["ctwaClid"]
    return clid
