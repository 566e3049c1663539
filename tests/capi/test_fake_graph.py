"""The fake Graph API accepts what real clients send and refuses what Meta refuses."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fakes.graph import FakeGraph

TOKEN = "EAAtoken"


@pytest.fixture
async def fake() -> AsyncIterator[FakeGraph]:
    graph = FakeGraph(tokens={TOKEN}, datasets={"111"})
    async with graph:
        yield graph


def _event(i: int = 0, **kw: Any) -> dict[str, Any]:
    event = {"event_name": "LeadSubmitted", "event_time": int(time.time()), "event_id": f"e{i}",
             "action_source": "business_messaging", "messaging_channel": "whatsapp",
             "user_data": {"ctwa_clid": "clid", "whatsapp_business_account_id": "1"}}
    event.update(kw)
    return event


async def _post(fake: FakeGraph, **kw: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(f"{fake.url}/v25.0/111/events", **kw) as resp:
        return resp.status, await resp.json()


async def test_the_sdks_form_encoding_with_the_token_in_the_query_is_accepted(fake: FakeGraph) -> None:
    data = json.dumps([json.dumps(_event(1)), json.dumps(_event(2))])  # what the SDK's sync path sends
    status, body = await _post(fake, data={"data": data}, params={"access_token": TOKEN})
    assert status == 200 and body["events_received"] == 2 and body["fbtrace_id"]
    assert fake.requests[0]["body"] == "form" and fake.requests[0]["token_via"] == "query"
    assert fake.delivered_ids() == {"e1", "e2"}


async def test_a_json_body_with_a_bearer_token_is_accepted(fake: FakeGraph) -> None:
    status, _ = await _post(fake, json={"data": [_event()]}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and fake.requests[0]["token_via"] == "bearer"


@pytest.mark.parametrize(
    ("events", "token", "status", "code", "subcode"),
    [
        ([_event()], "wrong", 401, 190, None),
        ([_event(i) for i in range(1001)], TOKEN, 400, 100, None),
        ([_event(event_time=int(time.time()) - 8 * 86400)], TOKEN, 400, 100, 2804003),
        ([_event(user_data={"ctwa_clid": "c", "ph": ["79161234567"]})], TOKEN, 400, 100, None),
        ([_event(user_data={"whatsapp_business_account_id": "1"})], TOKEN, 400, 100, 2804087),
        ([_event(event_name="Purchase")], TOKEN, 400, 100, 2804009),
    ],
    ids=["bad token", "over 1000", "too old", "unhashed phone", "no click id", "purchase without value"],
)
async def test_meta_refusals(
    fake: FakeGraph, events: list[Any], token: str, status: int, code: int, subcode: int | None
) -> None:
    got, body = await _post(fake, json={"data": events, "access_token": token})
    assert got == status and body["error"]["code"] == code and body["error"].get("error_subcode") == subcode
    assert not fake.delivered


async def test_names_outside_metas_list_are_refused_with_the_whole_request(fake: FakeGraph) -> None:
    # reference meta-capi.md §2/§4: Lead is refused with business_messaging, and one invalid event
    # rejects the batch
    events = [_event(1), _event(2, event_name="Lead")]
    status, body = await _post(fake, json={"data": events, "access_token": TOKEN})
    assert (status, body["error"]["code"], body["error"]["error_subcode"]) == (400, 100, 2804066)
    assert body["error"]["error_user_title"] == "Messaging Event Invalid Event Type" and not fake.delivered
    status, _ = await _post(fake, json={"data": [_event(1)], "access_token": TOKEN})
    assert status == 200
    status, _ = await _post(fake, json={"data": [_event(3, event_name="Lead", action_source="website")],
                                        "access_token": TOKEN})
    assert status == 200  # the list is for business messaging only


async def test_the_accepting_mode_plays_integrators_who_report_lead_accepted(fake: FakeGraph) -> None:
    fake.business_messaging_names = False
    status, _ = await _post(fake, json={"data": [_event(event_name="Lead")], "access_token": TOKEN})
    assert status == 200


async def test_an_unknown_dataset_names_the_dataset(fake: FakeGraph) -> None:
    async with aiohttp.ClientSession() as http, http.post(
        f"{fake.url}/v25.0/222/events", json={"data": [_event()], "access_token": TOKEN}
    ) as resp:
        body = await resp.json()
    assert resp.status == 400 and body["error"]["error_subcode"] == 33 and "'222'" in body["error"]["message"]
