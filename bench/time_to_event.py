"""Time to event: from the end of a client's burst to its Lead event at Meta, before and after (issue 15.2).

For each checkout (`--before-root DIR`, another checkout with its own `.venv`, if given; then this one):
a fresh database migrated by that checkout's own `qualibot migrate`, the standard tenant, and that
checkout's `qualibot serve` (HTTP and workers, default settings but the buffer) against fakes in
this process: Evolution (`tests/fakes/evolution.py`), an OpenAI-compatible model answering at once
(`tests/fakes/llm.py`) and Meta's Graph API (`tests/fakes/graph.py`), which stamps when each event
arrives. `--dialogs` chats, one started every `--spacing` seconds, each a burst of two client
messages from a Click-to-WhatsApp ad (two messages: level 1, the LeadSubmitted event). Measured per
chat: the second message's 200 → its event at the fake Meta; printed as p50/p99, and minus the
buffer (what the queue and the pipeline add).

    .venv/bin/python bench/time_to_event.py [--dialogs 40] [--buffer 1] [--spacing 0.25] [--before-root DIR]

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
from tests.dbsetup import fresh_database  # noqa: E402
from tests.fakes.evolution import FakeEvolution  # noqa: E402
from tests.fakes.evolution_webhook import client_message  # noqa: E402
from tests.fakes.graph import FakeGraph  # noqa: E402
from tests.fakes.llm import FakeLLM  # noqa: E402
from tests.helpers import wait_for  # noqa: E402
from tests.proof.service import free_port  # noqa: E402
from tests.seed import META_TOKEN, PIXEL_ID, USER_TOKEN, WEBHOOK_SECRET, tenant_config  # noqa: E402


class StampingGraph(FakeGraph):
    """The fake Graph API, noting when each event (by its hashed phone) was accepted."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.arrived: dict[str, float] = {}

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = await super()._events(request)
        now = time.monotonic()
        for record in self.requests:
            if record.get("status") == 200:
                for event in record.get("events", []):
                    for ph in event.get("user_data", {}).get("ph", []):
                        self.arrived.setdefault(ph, now)
        return response


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(root: Path, args: argparse.Namespace) -> list[float]:
    async with FakeEvolution() as evolution, FakeLLM(lambda _r: "Olá!") as llm, \
            StampingGraph(tokens={META_TOKEN, USER_TOKEN}, datasets={PIXEL_ID}) as graph, \
            fresh_database(Path(tempfile.mkdtemp(prefix="qualibot-tte-"))) as dsn:
        env = checkout_env(dsn, tempfile.mkdtemp(prefix="qualibot-tte-data-"))
        await prepare_checkout(root, dsn, env, tenant_config(evolution_url=evolution.url))
        port = free_port()
        env.update({"QUALIBOT_PORT": str(port), "QUALIBOT_BUFFER_SECONDS": str(args.buffer),
                    "OPENAI_API_KEY": "bench-key", "OPENAI_BASE_URL": llm.base_url,
                    "META_GRAPH_URL": graph.url})
        proc = spawn(root, "serve", env, stdout=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        ended: dict[str, float] = {}
        try:
            async with aiohttp.ClientSession(headers={"X-Webhook-Secret": WEBHOOK_SECRET}) as http:
                async def healthy() -> bool:
                    try:
                        async with http.get(f"{url}/healthz") as resp:
                            return resp.status == 200
                    except aiohttp.ClientError:
                        return False

                await wait_for(healthy, timeout=60, what=f"{root.name}'s serve")

                async def burst(n: int) -> None:
                    phone = f"55119{n:08d}"
                    for k, text in enumerate(("Oi", "Quero saber o preço")):
                        clid = None if k else f"ARAk-tte-{n}"
                        body = client_message(phone, text, f"3EB0TTE{n:04d}{k}", clid=clid)
                        async with http.post(f"{url}/webhooks/evolution", json=body) as resp:
                            assert resp.status == 200, await resp.text()
                    ended[hashlib.sha256(phone.encode()).hexdigest()] = time.monotonic()

                tasks = []
                for n in range(args.dialogs):
                    tasks.append(asyncio.create_task(burst(n)))
                    await asyncio.sleep(args.spacing)
                await asyncio.gather(*tasks)

                async def all_arrived() -> bool:
                    return all(ph in graph.arrived for ph in ended)

                await wait_for(all_arrived, timeout=args.buffer + 120, interval=0.2, what="every Lead event at Meta")
        finally:
            proc.terminate()
            await asyncio.to_thread(proc.wait, 30)
        return [graph.arrived[ph] - t for ph, t in ended.items()]


async def run(args: argparse.Namespace) -> int:
    for label, root in checkouts(args.before_root):
        times = await measure(root, args)
        print(f"{label:6} ({root.name}): burst end → event at Meta over {len(times)} chats: "
              f"p50 {statistics.median(times):.2f} s, p99 {percentile(times, 0.99):.2f} s; minus the "
              f"{args.buffer:g} s buffer: p50 {statistics.median(times) - args.buffer:.2f} s, "
              f"p99 {percentile(times, 0.99) - args.buffer:.2f} s", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dialogs", type=int, default=40)
    parser.add_argument("--buffer", type=float, default=1.0)
    parser.add_argument("--spacing", type=float, default=0.25)
    return asyncio.run(run(parse_args(parser)))


if __name__ == "__main__":
    sys.exit(main())
