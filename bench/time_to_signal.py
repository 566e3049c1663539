"""Time to signal and capacity: from the end of a client's burst to its events at Meta (issue 18.1, 18.2).

For each checkout (`--before-root DIR`, another checkout with its own `.venv`, if given; then this one):
a fresh database migrated by that checkout's own `qualibot migrate`, the standard tenant, and that
checkout's `qualibot serve` (HTTP and workers, default settings but the buffer) against fakes in this
process with set latencies: Evolution (`tests/fakes/evolution.py`), an OpenAI-compatible model that
answers after `--llm-latency` seconds (`tests/fakes/llm.py`: the chat reply, and a verdict of level 2
citing the client's second message) and Meta's Graph API (`tests/fakes/graph.py`, `--meta-latency`),
which stamps when each event arrives.

`--dialogs` chats start at `--rate` per second, each a burst of two client messages from a
Click-to-WhatsApp ad: level 1 (LeadSubmitted, a count) and level 2 (QualifiedLead, from the analysis).
The burst ends `--buffer` seconds after the second message's 200; measured per chat:
- Lead: burst end → LeadSubmitted at Meta (target p99 ≤ 0.3 s);
- level 2: burst end → QualifiedLead at Meta, minus one analysis call (target p99 ≤ 0.3 s);
- and the Lead figure per quarter of the run (in start order): flat means the process keeps up;
- the service process's CPU per chat (its webhooks, jobs, replies and events): what bounds the rate
  one process can sustain on its share of the machine.

    .venv/bin/python bench/time_to_signal.py [--dialogs 100] [--rate 5] [--buffer 5] [--llm-latency 1]
                                     [--meta-latency 0] [--before-root DIR]

Database: TEST_DATABASE_URL's server, else PostgreSQL on 127.0.0.1:5432, else an embedded one.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.idle import checkout_env, checkouts, parse_args, prepare_checkout, spawn  # noqa: E402
from bench.ingest import cpu_seconds  # noqa: E402
from tests.dbsetup import fresh_database  # noqa: E402
from tests.fakes.evolution import FakeEvolution  # noqa: E402
from tests.fakes.evolution_webhook import client_message  # noqa: E402
from tests.fakes.graph import FakeGraph  # noqa: E402
from tests.fakes.llm import FakeLLM  # noqa: E402
from tests.helpers import wait_for, wait_healthy  # noqa: E402
from tests.proof.service import free_port  # noqa: E402
from tests.qualification.helpers import transcript_lines, verdict  # noqa: E402
from tests.seed import META_TOKEN, PIXEL_ID, USER_TOKEN, WEBHOOK_SECRET, tenant_config  # noqa: E402

LEAD, QUALIFIED = "LeadSubmitted", "QualifiedLead"  # the standard tenant's names for levels 1 and 2
BURST = ("Oi, vi o anúncio", "Quero um implante no dente de baixo, orçamento 5 mil, esta semana")


class StampingGraph(FakeGraph):
    """The fake Graph API, noting when each (hashed phone, event name) was first accepted."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.arrived: dict[tuple[str, str], float] = {}
        self._seen = 0

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = await super()._events(request)
        now = time.monotonic()
        for record in self.requests[self._seen:]:
            if record.get("status") == 200:
                for event in record.get("events", []):
                    for ph in event.get("user_data", {}).get("ph", []):
                        self.arrived.setdefault((ph, event.get("event_name", "")), now)
        self._seen = len(self.requests)
        return response


def model(latency: float) -> Any:
    """The chat reply, or a verdict of level 2 citing the client's last message, after `latency` s."""

    def answer(request: dict[str, Any]) -> dict[str, Any]:
        client = [m["id"] for m in transcript_lines(request) if m["role"] == "client"]
        if not client:  # not an analysis: the chatbot's reply
            return {"delay": latency, "content": "Olá! Como posso ajudar?"}
        qualified = len(client) >= 2
        return {"delay": latency, "content": verdict(interested=True, qualified=qualified,
                                                     evidence=client[-1:] if qualified else [])}

    return answer


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(root: Path, args: argparse.Namespace) -> tuple[list[float], list[float], float]:
    """Per chat, in start order: Lead latency, level-2 latency minus one analysis call; and the
    service's CPU seconds per chat (its process, not the database's)."""
    async with FakeEvolution() as evolution, FakeLLM(model(args.llm_latency)) as llm, \
            StampingGraph(tokens={META_TOKEN, USER_TOKEN}, datasets={PIXEL_ID}) as graph, \
            fresh_database(Path(tempfile.mkdtemp(prefix="qualibot-signal-"))) as dsn:
        graph.latency = args.meta_latency
        env = checkout_env(dsn, tempfile.mkdtemp(prefix="qualibot-signal-data-"))
        await prepare_checkout(root, dsn, env, tenant_config(evolution_url=evolution.url))
        port = free_port()
        env.update({"QUALIBOT_PORT": str(port), "QUALIBOT_BUFFER_SECONDS": str(args.buffer),
                    "OPENAI_API_KEY": "bench-key", "OPENAI_BASE_URL": llm.base_url,
                    "META_GRAPH_URL": graph.url})
        proc = spawn(root, "serve", env=env, stdout=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        ended: list[tuple[str, float]] = []
        try:
            async with aiohttp.ClientSession(headers={"X-Webhook-Secret": WEBHOOK_SECRET}) as http:
                await wait_healthy(http, url, what=f"{root.name}'s serve")

                async def burst(n: int) -> None:
                    phone = f"55119{n:08d}"
                    for k, text in enumerate(BURST):
                        body = client_message(phone, text, f"3EB0SIG{n:05d}{k}", clid=None if k else f"ARAk-sig-{n}")
                        async with http.post(f"{url}/webhooks/evolution", json=body) as resp:
                            assert resp.status == 200, await resp.text()
                    ended.append((hashlib.sha256(phone.encode()).hexdigest(), time.monotonic() + args.buffer))

                cpu = cpu_seconds(proc.pid)
                started = time.monotonic()
                tasks = []
                for n in range(args.dialogs):  # a steady rate: the n-th chat starts at n / rate
                    await asyncio.sleep(max(0.0, started + n / args.rate - time.monotonic()))
                    tasks.append(asyncio.create_task(burst(n)))
                await asyncio.gather(*tasks)
                ended.sort(key=lambda e: int(e[1] * 1e6))

                async def all_arrived() -> bool:
                    return all((ph, name) in graph.arrived for ph, _ in ended for name in (LEAD, QUALIFIED))

                await wait_for(all_arrived, timeout=args.buffer + 300, interval=0.2, what="every event at Meta")
                cpu = (cpu_seconds(proc.pid) - cpu) / args.dialogs
        finally:
            proc.terminate()
            await asyncio.to_thread(proc.wait, 30)
        lead = [graph.arrived[(ph, LEAD)] - end for ph, end in ended]
        level2 = [graph.arrived[(ph, QUALIFIED)] - end - args.llm_latency for ph, end in ended]
        return lead, level2, cpu


def summary(values: list[float]) -> str:
    return f"p50 {statistics.median(values):.3f} s, p99 {percentile(values, 0.99):.3f} s"


async def run(args: argparse.Namespace) -> int:
    print(f"{args.dialogs} chats at {args.rate:g}/s, buffer {args.buffer:g} s, LLM {args.llm_latency:g} s, "
          f"Meta {args.meta_latency:g} s", flush=True)
    for label, root in checkouts(args.before_root):
        lead, level2, cpu = await measure(root, args)
        q = max(1, len(lead) // 4)
        quarters = ", ".join(f"{statistics.median(lead[i * q:(i + 1) * q]):.3f}" for i in range(4))
        print(f"{label:6} ({root.name}): burst end → Lead at Meta: {summary(lead)}; "
              f"→ level 2 at Meta minus the analysis call: {summary(level2)}; "
              f"Lead p50 per quarter of the run: {quarters} s; service CPU {cpu * 1000:.1f} ms per chat", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dialogs", type=int, default=100)
    parser.add_argument("--rate", type=float, default=5.0, help="new chats per second")
    parser.add_argument("--buffer", type=float, default=5.0)
    parser.add_argument("--llm-latency", type=float, default=1.0)
    parser.add_argument("--meta-latency", type=float, default=0.0)
    return asyncio.run(run(parse_args(parser)))


if __name__ == "__main__":
    sys.exit(main())
