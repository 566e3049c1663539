"""Scenario 6, security, against `qualibot serve` as a process: every webhook route refuses a missing
or wrong credential (401/403; an unknown instance or connection is 404), refuses an oversized
body (413, also when it comes chunked without a Content-Length), refuses hostile input with a 400
(issue 14: megabyte form keys, too many fields, deep JSON, `Infinity`/`NaN`/`1e400`/100,000-digit
numbers, `²` as an index or id), writes nothing for any of those, answers each in time linear in
its size (the slowest answer is a figure), cuts off clients that send headers or a body slowly while
serving others, keeps /metrics behind its token, and neither its logs nor /metrics hold a token, a
secret or a full phone number.

Wrong credentials are built by extending the real ones (`<secret>-wrong`), so a service that
echoed a presented credential into its logs would be caught by the scan for the real secret.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.proof.checks import SECRETS, Report, check_logs
from tests.proof.database import scenario_database
from tests.proof.peers import LLM_KEY, running_peers
from tests.proof.service import ServiceProcess, service_env
from tests.proof.traffic import FIXTURES, fixture
from tests.seed import AMO_SECRET, B24_APP_TOKEN, WEBHOOK_SECRET

PHONE = "79161112233"
LIMIT = 2 * 1024 * 1024  # QUALIBOT_MAX_BODY_BYTES and _EVOLUTION_ of the process: megabyte bodies reach parsers
METRICS_TOKEN = SECRETS["metrics token"]
SLOW_SECONDS = 1.0  # QUALIBOT_HEADER_TIMEOUT_SECONDS and QUALIBOT_BODY_TIMEOUT_SECONDS of the process
MB = 1024 * 1024


def jwt(secret: str, claims: dict[str, Any]) -> str:
    def enc(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    head = enc(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = enc(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{enc(signature)}"


def evolution_body(instance: str = "clinic-main", pad: int = 0) -> bytes:
    body = copy.deepcopy(fixture("text-2.3.7.json"))
    jid = f"{PHONE}@s.whatsapp.net"
    body["instance"] = instance
    body["data"]["key"].update({"remoteJid": jid, "remoteJidAlt": jid, "id": f"SEC{time.monotonic_ns()}"})
    if pad:
        body["data"]["message"]["conversation"] = "x" * pad
    return json.dumps(body).encode()


def amo_body(account: str = "17769199", subdomain: str = "clinic", pad: int = 0) -> bytes:
    raw = (FIXTURES["amocrm"] / "webhook-add-lead.txt").read_text().strip()
    raw = raw.replace("17769199", account).replace("account[subdomain]=clinic", f"account[subdomain]={subdomain}")
    return (raw + ("&leads[add][0][note]=" + "x" * pad if pad else "")).encode()


def b24_body(token: str | None = B24_APP_TOKEN, pad: int = 0) -> bytes:
    raw = (FIXTURES["bitrix24"] / "webhook-deal-update.txt").read_text().strip()
    raw = raw.replace(f"&auth[application_token]={B24_APP_TOKEN}", "")
    if token is not None:
        raw += f"&auth[application_token]={token}"
    return (raw + ("&data[FIELDS][NOTE]=" + "x" * pad if pad else "")).encode()


@dataclass(frozen=True)
class Probe:
    what: str
    path: str
    body: bytes
    headers: dict[str, str]
    expect: tuple[int, ...]
    chunked: bool = False
    method: str = "POST"


def with_timestamp(raw: str) -> bytes:
    """The Evolution probe body with `messageTimestamp` as this raw JSON text."""
    return re.sub(rb'"messageTimestamp": -?\d+', b'"messageTimestamp": ' + raw.encode(), evolution_body(), count=1)


def hostile() -> list[Probe]:
    """Issue 14: input json.loads, int() or the form parser would choke on, with the right credentials."""
    ok = {"Content-Type": "application/json", "X-Webhook-Secret": WEBHOOK_SECRET}
    form_ct = {"Content-Type": "application/x-www-form-urlencoded"}
    b24, amo = "/webhooks/bitrix24/b24-main", "/webhooks/amocrm/amo-main/" + AMO_SECRET
    found = [
        Probe("Bitrix24: 1 MB form body, one key of a megabyte (was quadratic: 25 s)", b24,
              b24_body() + b"&data" + b"[x]" * (MB // 3) + b"=1", form_ct, (400,)),
        Probe("Bitrix24: 1 MB form body of 200,000 fields", b24, b24_body() + b"&f=1" * (MB // 5), form_ct, (400,)),
        Probe("Bitrix24: key nested 13 deep", b24, b24_body() + b"&data" + b"[x]" * 13 + b"=1", form_ct, (400,)),
        Probe("Bitrix24: `²` as the entity id", b24,
              b24_body().replace(b"data[FIELDS][ID]=759", "data[FIELDS][ID]=²".encode()), form_ct, (400,)),
        Probe("amoCRM: `²` as an entity index", amo, amo_body().replace(b"[add][0]", "[add][²]".encode()), form_ct,
              (400,)),
        Probe("amoCRM: 1 MB form body, one key of a megabyte", amo, amo_body() + b"&leads" + b"[x]" * (MB // 3) + b"=1",
              form_ct, (400,)),
        Probe("evolution: 1 MB of `[` (was a RecursionError: 500)", "/webhooks/evolution", b"[" * MB, ok, (400,)),
        Probe("evolution: 1 MB of `{\"a\":` nesting", "/webhooks/evolution", b'{"a":' * (MB // 5), ok, (400,)),
    ]
    deep_head = base64.urlsafe_b64encode(b"[" * 5000).decode().rstrip("=")
    found.append(Probe("evolution: bearer JWT whose header is 5,000 `[` (was a RecursionError: 500)",
                       "/webhooks/evolution", evolution_body(),
                       {"Content-Type": "application/json", "Authorization": f"Bearer {deep_head}.e30.c2ln"}, (401,)))
    for raw in ("Infinity", "-Infinity", "NaN", "1e400", "9" * 100_000):
        found.append(Probe(f"evolution: messageTimestamp {raw[:12]}{'...' if len(raw) > 12 else ''}",
                           "/webhooks/evolution", with_timestamp(raw), ok, (400,)))
    found.append(Probe("/metrics without its token", "/metrics", b"", {}, (401,), method="GET"))
    found.append(Probe("/metrics with a wrong token", "/metrics", b"",
                       {"Authorization": f"Bearer {METRICS_TOKEN}-wrong"}, (401,), method="GET"))
    return found


def probes() -> list[Probe]:
    now = int(time.time())
    good_jwt = {"iat": now, "exp": now + 600, "app": "evolution", "action": "webhook"}
    json_ct, form_ct = {"Content-Type": "application/json"}, {"Content-Type": "application/x-www-form-urlencoded"}
    ok = {**json_ct, "X-Webhook-Secret": WEBHOOK_SECRET}
    found: list[Probe] = []
    wrong, other = {"X-Webhook-Secret": WEBHOOK_SECRET + "-wrong"}, {"X-Webhook-Secret": AMO_SECRET}
    for path in ("/webhooks/evolution", "/webhooks/evolution/messages-upsert"):
        found += [
            Probe("evolution: no secret", path, evolution_body(), json_ct, (401,)),
            Probe("evolution: wrong secret", path, evolution_body(), {**json_ct, **wrong}, (401,)),
            Probe("evolution: another route's secret", path, evolution_body(), {**json_ct, **other}, (401,)),
            Probe("evolution: JWT signed with another key", path, evolution_body(),
                  {**json_ct, "Authorization": "Bearer " + jwt(WEBHOOK_SECRET + "-wrong", good_jwt)}, (401,)),
            Probe("evolution: expired JWT", path, evolution_body(),
                  {**json_ct, "Authorization": "Bearer " + jwt(WEBHOOK_SECRET, {**good_jwt, "exp": now - 3600})},
                  (401,)),
            Probe("evolution: bearer that is no JWT", path, evolution_body(),
                  {**json_ct, "Authorization": f"Bearer {WEBHOOK_SECRET}-wrong"}, (401,)),
            Probe("evolution: unknown instance", path, evolution_body("nobody"), ok, (404,)),
            Probe("evolution: oversized body", path, evolution_body(pad=LIMIT), ok, (413,)),
            Probe("evolution: oversized chunked body", path, evolution_body(pad=LIMIT), ok, (413,), chunked=True),
        ]
    amo = "/webhooks/amocrm/amo-main/"
    found += [
        Probe("amoCRM: wrong secret", amo + AMO_SECRET + "-wrong", amo_body(), form_ct, (401, 403)),
        Probe("amoCRM: another route's secret", amo + WEBHOOK_SECRET, amo_body(), form_ct, (401, 403)),
        Probe("amoCRM: missing secret", "/webhooks/amocrm/amo-main", amo_body(), form_ct, (404, 405)),
        Probe("amoCRM: another account", amo + AMO_SECRET, amo_body("999", "other"), form_ct, (401, 403)),
        Probe("amoCRM: unknown connection", "/webhooks/amocrm/nope/" + AMO_SECRET, amo_body(), form_ct, (404,)),
        Probe("amoCRM: a Bitrix24 connection", "/webhooks/amocrm/b24-main/" + AMO_SECRET, amo_body(), form_ct, (404,)),
        Probe("amoCRM: oversized body", amo + AMO_SECRET, amo_body(pad=LIMIT), form_ct, (413,)),
        Probe("amoCRM: oversized chunked body", amo + AMO_SECRET, amo_body(pad=LIMIT), form_ct, (413,), chunked=True),
        Probe("Bitrix24: no token", "/webhooks/bitrix24/b24-main", b24_body(None), form_ct, (401, 403)),
        Probe("Bitrix24: wrong token", "/webhooks/bitrix24/b24-main", b24_body(B24_APP_TOKEN + "-wrong"), form_ct,
              (401, 403)),
        Probe("Bitrix24: unknown connection", "/webhooks/bitrix24/nope", b24_body(), form_ct, (404,)),
        Probe("Bitrix24: an amoCRM connection", "/webhooks/bitrix24/amo-main", b24_body(), form_ct, (404,)),
        Probe("Bitrix24: oversized body", "/webhooks/bitrix24/b24-main", b24_body(pad=LIMIT), form_ct, (413,)),
        Probe("Bitrix24: oversized chunked body", "/webhooks/bitrix24/b24-main", b24_body(pad=LIMIT), form_ct, (413,),
              chunked=True),
    ]
    return found


def controls() -> list[Probe]:
    """The same routes with the right credentials: accepted, so the refusals above mean something."""
    json_ct, form_ct = {"Content-Type": "application/json"}, {"Content-Type": "application/x-www-form-urlencoded"}
    now = int(time.time())
    return [
        Probe("evolution: right secret", "/webhooks/evolution", evolution_body(),
              {**json_ct, "X-Webhook-Secret": WEBHOOK_SECRET}, (200,)),
        Probe("evolution: right JWT", "/webhooks/evolution/messages-upsert", evolution_body(),
              {**json_ct, "Authorization": "Bearer " + jwt(WEBHOOK_SECRET, {"iat": now, "exp": now + 600})}, (200,)),
        Probe("amoCRM: right secret", "/webhooks/amocrm/amo-main/" + AMO_SECRET, amo_body(), form_ct, (200,)),
        Probe("Bitrix24: right token", "/webhooks/bitrix24/b24-main", b24_body(), form_ct, (200,)),
    ]


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for at in range(0, len(body), 8192):
        yield body[at:at + 8192]


async def fingerprint(pool: asyncpg.Pool) -> tuple[Any, ...]:
    tables = [r[0] for r in await pool.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'")]
    row = await pool.fetchrow("SELECT " + ", ".join(
        f"(SELECT count(*) || ':' || coalesce(max(xmin::text::bigint), 0) FROM {t})" for t in sorted(tables)))
    return tuple(row or ())


async def _send(http: aiohttp.ClientSession, url: str, probe: Probe) -> tuple[int, Any]:
    data: Any = _chunks(probe.body) if probe.chunked else probe.body
    try:
        async with http.request(probe.method, url + probe.path, data=data or None, headers=probe.headers) as resp:
            return resp.status, await resp.json(content_type=None)
    except (aiohttp.ClientError, ValueError) as exc:
        return 0, repr(exc)


async def _served(http: aiohttp.ClientSession, url: str) -> bool:
    async with http.get(url + "/healthz") as resp:
        return resp.status == 200


async def slow_clients(http: aiohttp.ClientSession, url: str) -> dict[str, str]:
    """A client that trickles its headers is closed without an answer, one that trickles its body gets
    408 and is closed; a normal request is served meanwhile. Answers: what each slow client got."""
    host, port = url.removeprefix("http://").split(":")
    body = evolution_body()
    head = (b"POST /webhooks/evolution HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-Webhook-Secret: " + WEBHOOK_SECRET.encode() + b"\r\n")
    found: dict[str, str] = {}
    for what, first, rest in (
        ("slow headers", head, [b"X-Slow-%d: y\r\n" % n for n in range(2000)]),
        ("slow body", head + b"Content-Length: %d\r\n\r\n" % len(body) + body[:10], [bytes([b]) for b in body[10:]]),
    ):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(first)

        async def trickle(pieces: list[bytes], writer: asyncio.StreamWriter = writer) -> None:
            for piece in pieces:
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.05)

        dripping = asyncio.create_task(trickle(rest))
        start = time.monotonic()
        try:
            served = await _served(http, url)
            answer = await asyncio.wait_for(reader.read(65536), timeout=30 * SLOW_SECONDS)
            answered = time.monotonic() - start
            await asyncio.wait_for(reader.read(), timeout=30 * SLOW_SECONDS)  # aiohttp lingers up to 10 s
            status = answer[9:12].decode() if answer.startswith(b"HTTP/1.1 ") else "closed without an answer"
            found[what] = (f"{status} after {answered:.1f} s, closed after {time.monotonic() - start:.1f} s; "
                           f"a normal request meanwhile: {'200' if served else 'failed'}")
        except TimeoutError:
            found[what] = "still open"
        finally:
            dripping.cancel()
            await asyncio.gather(dripping, return_exceptions=True)
            writer.close()
    return found


async def run_security(workdir: Path, other_logs: Iterable[Path] = ()) -> Report:
    report = Report("security: credentials, body limit, logs")
    async with running_peers() as peers, scenario_database(workdir, peers.evolution.url) as (dsn, pool):
        env = service_env(database_url=dsn, data_dir=workdir / "data", llm_url=peers.llm.base_url,
                          llm_key=LLM_KEY, graph_url=peers.graph.url, QUALIBOT_MAX_BODY_BYTES=str(LIMIT),
                          QUALIBOT_EVOLUTION_MAX_BODY_BYTES=str(LIMIT),
                          QUALIBOT_METRICS_TOKEN=METRICS_TOKEN, QUALIBOT_HEADER_TIMEOUT_SECONDS=str(SLOW_SECONDS),
                          QUALIBOT_BODY_TIMEOUT_SECONDS=str(SLOW_SECONDS))
        service = ServiceProcess("security-serve", ["serve", "--no-workers"], env, workdir)
        await service.start()
        answers: dict[str, Any] = {}
        slowest = (0.0, "")
        try:
            async with aiohttp.ClientSession() as http:
                for probe in probes() + hostile():
                    before = await fingerprint(pool)
                    start = time.monotonic()
                    status, body = await _send(http, service.url, probe)
                    slowest = max(slowest, (time.monotonic() - start, probe.what))
                    answers[probe.what] = status
                    report.check(status in probe.expect, f"{probe.what} ({probe.path}): {status} {body}, "
                                 f"expected {probe.expect}")
                    report.check(isinstance(body, dict) and "error" in body, f"{probe.what}: no JSON error: {body}")
                    report.check(await fingerprint(pool) == before, f"{probe.what}: rows were written")
                for probe in controls():
                    status, body = await _send(http, service.url, probe)
                    report.check(status == 200, f"control {probe.what}: {status} {body}")
                before = await fingerprint(pool)
                slow = await slow_clients(http, service.url)
                report.check(await fingerprint(pool) == before, "a slow client's request wrote rows")
                report.check(slow.get("slow headers", "").startswith("closed without an answer")
                             and slow.get("slow body", "").startswith("408"), f"slow clients: {slow}")
                report.check(all(v.endswith("meanwhile: 200") for v in slow.values()),
                             f"a normal request was not served while slow clients held connections: {slow}")
                async with http.get(service.url + "/metrics",
                                    headers={"Authorization": f"Bearer {METRICS_TOKEN}"}) as resp:
                    report.check(resp.status == 200, f"/metrics with its token: {resp.status}")
                    metrics = await resp.text()
        finally:
            await service.stop()
        leaks = [what for what, secret in SECRETS.items() if secret in metrics]
        leaks += ["phone"] if PHONE in metrics else []
        report.check(not leaks, f"/metrics shows {leaks}")
        expected = {p.what: p.expect for p in probes() + hostile()}
        refused = sum(1 for what, s in answers.items() if s in expected[what])
        report.figures.update({"probes": len(answers) + len(slow), "answered as expected": refused + sum(
            1 for v in slow.values() if v.startswith(("408", "closed"))),
                               "max answer time (s)": f"{slowest[0]:.3f} ({slowest[1]})",
                               "answers": {k: v for k, v in answers.items()}, "slow clients": slow})
        check_logs(report, service.logs, [PHONE], label=" (this process)")
        check_logs(report, list(other_logs), _scenario_phones(), label=" (every scenario of this run)")
    return report.finish()


def logs_under(directory: Path, excluding: Path | None = None) -> list[Path]:
    """Every service log under `directory` (the proof scenarios name them `<process>-<n>.log`)."""
    return [p for p in directory.rglob("*.log") if excluding is None or excluding not in p.parents]


def _scenario_phones() -> list[str]:
    """Every phone the traffic plans use (79165000000 + n) and this scenario's."""
    return [PHONE] + [f"79165{n:06d}" for n in range(1000)]
