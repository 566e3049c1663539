"""LLM cost of qualification: our policy against analysing after every client message.

Usage: .venv/bin/python bench/llm_calls.py [--dialogs 240] [--seed 7] [--concurrency 16]

Generates dialogs (a fixed seed, so runs are comparable): people write in bursts of 1-5 messages
(1: 25 %, 2: 30 %, 3: 25 %, 4: 12 %, 5: 8 %), the bot answers each burst; each dialog is scripted
to stop at a level — 0 (one message), 1 (talks, answers at most two of the three questions),
2 (answers all three: which tooth, when, budget) or 3 (then books a slot, and may write a few
more bursts: thanks, parking…). The same dialogs are replayed twice in one fresh database:

- qualibot: after each burst the bot reply is stored and `schedule_qualification` is called; the
  real `qualification.dialog` job runs in a core.jobs Worker (level 1 by count, an analysis only
  for new client messages, none after level 3);
- naive: after every client message, an analysis of the dialog (the same prompt, window and
  evidence check) and every level the model reports, level 1 included, is recorded.

Each policy talks to its own fake model (tests/fakes/llm.py) that reads the transcript and answers
by keywords, so both get the same answers for the same dialog; the fakes count calls and tokens
(characters / 4). Prints both, the ratios and whether final levels agree (and match the scripts).
Targets (issue 5): ≤ 0.35× the naive calls, ≤ 0.5× the naive tokens, the same final levels.
Database: TEST_DATABASE_URL's server, else PostgreSQL on 127.0.0.1:5432, else an embedded one.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from openai import AsyncOpenAI

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.context import AppContext  # noqa: E402
from core.db import create_pool  # noqa: E402
from core.jobs import JobRegistry, Worker  # noqa: E402
from core.logging import configure_logging  # noqa: E402
from core.migrate import migrate  # noqa: E402
from core.settings import Settings  # noqa: E402
from qualification.analysis import analyse  # noqa: E402
from qualification.dialogs import load_transcript  # noqa: E402
from qualification.door import record_levels  # noqa: E402
from qualification.jobs import QUALIFY_JOB, register_jobs, schedule_qualification  # noqa: E402
from qualification.verdict import accept  # noqa: E402
from tests.dbsetup import fresh_database  # noqa: E402
from tests.fakes.llm import FakeLLM  # noqa: E402
from tests.qualification.helpers import transcript_lines, verdict  # noqa: E402
from tests.seed import seed  # noqa: E402

TARGET_CALLS, TARGET_TOKENS = 0.35, 0.5
BURST_SIZES, BURST_WEIGHTS = [1, 2, 3, 4, 5], [25, 30, 25, 12, 8]
LEVEL_WEIGHTS = [20, 30, 20, 30]  # how many dialogs are scripted to stop at level 0, 1, 2, 3

FILLER = ["Здравствуйте!", "Увидел вашу рекламу", "Сколько стоит имплант?", "А это больно?", "Минутку",
          "Ок", "👍", "А где вы находитесь?", "Извините, опечатка", "Сейчас уточню", "Понятно", "А гарантия есть?"]
ANSWERS = {
    "tooth": ["Нужен имплант на верхний моляр слева", "Нижний зуб, шестёрка", "Передний зуб, сломался"],
    "when": ["Хотелось бы в этом месяце", "Как можно скорее", "Не раньше чем через месяц"],
    "budget": ["Бюджет около 60 тысяч", "Готов потратить до 100 тысяч", "Интересует рассрочка"],
}
BOOKING = ["Да, записывайте на вторник в 10:00", "Подтверждаю четверг 15:30", "Хорошо, буду в пятницу в 12"]
AFTER = ["Спасибо!", "Есть парковка?", "А что взять с собой?", "До встречи", "Можно прийти с мужем?"]
BOT = ["Здравствуйте! Какой зуб беспокоит?", "Когда вам удобно прийти?", "На какой бюджет ориентируетесь?",
       "Могу предложить вторник 10:00, четверг 15:30 или пятницу 12:00.", "Отлично, ждём вас!"]
KEYWORDS = {"tooth": r"моляр|зуб|шест[её]рк", "when": r"месяц|скорее", "budget": r"бюджет|тысяч|рассрочк",
            "booked": r"записывайте|подтверждаю|буду в"}
CRITERIA = "Вопросы: какой зуб? когда? бюджет? Запись: клиент подтвердил дату и время."


@dataclass
class Script:
    target: int
    bursts: list[list[str]] = field(default_factory=list)


def _burst(rng: random.Random, must: list[str]) -> list[str]:
    size = max(len(must), rng.choices(BURST_SIZES, BURST_WEIGHTS)[0])
    messages = must + [rng.choice(FILLER) for _ in range(size - len(must))]
    rng.shuffle(messages)
    return messages


def make_script(rng: random.Random) -> Script:
    target = rng.choices(range(4), LEVEL_WEIGHTS)[0]
    script = Script(target)
    if target == 0:
        script.bursts.append([rng.choice(FILLER)])
        return script
    script.bursts.append(_burst(rng, [rng.choice(FILLER)]))
    topics = list(ANSWERS) if target >= 2 else rng.sample(list(ANSWERS), rng.randint(0, 2))
    rng.shuffle(topics)
    while topics:  # the answers, spread over one to three bursts
        n = rng.randint(1, len(topics))
        take, topics = topics[:n], topics[n:]
        script.bursts.append(_burst(rng, [rng.choice(ANSWERS[t]) for t in take]))
    if target == 3:
        script.bursts.append(_burst(rng, [rng.choice(BOOKING)]))
    extra = rng.randint(0, 3) if target == 3 else rng.randint(0, 2)
    script.bursts += [_burst(rng, [rng.choice(AFTER)]) for _ in range(extra)]
    if sum(len(b) for b in script.bursts) < 2:  # level 1 is "two or more messages"
        script.bursts.append(_burst(rng, [rng.choice(AFTER)]))
    return script


def keyword_model(request: dict[str, Any]) -> str:
    """The fake model: levels from keywords in the client's messages, citing them as evidence."""
    client = [m for m in transcript_lines(request) if m["role"] == "client"]
    found = {k: [m["id"] for m in client if re.search(p, m["text"], re.I)] for k, p in KEYWORDS.items()}
    qualified = all(found[t] for t in ANSWERS)
    scheduled = qualified and bool(found["booked"])
    evidence = [i for t in (*ANSWERS, "booked") for i in found[t][:1]] if qualified else []
    return verdict(interested=len(client) >= 2, qualified=qualified, scheduled=scheduled, evidence=evidence)


async def _insert(pool: asyncpg.Pool, dialog_id: int, role: str, text: str) -> None:
    await pool.execute(
        """INSERT INTO messages (instance_name, message_id, dialog_id, role, text)
           VALUES ('clinic-main', $1, $2, $3, $4)""", f"bench-{uuid.uuid4().hex}", dialog_id, role, text)


async def _dialog(pool: asyncpg.Pool, phone: str) -> int:
    lead = await pool.fetchval(
        """INSERT INTO leads (account_id, instance_name, phone, direction_id, ctwa_clid)
           VALUES ('clinic', 'clinic-main', $1, 'implants', $2) RETURNING id""", phone, f"clid-{phone}")
    dialog_id: int = await pool.fetchval(
        """INSERT INTO dialog_analysis (account_id, instance_name, contact_phone, lead_id, direction_id)
           VALUES ('clinic', 'clinic-main', $1, $2, 'implants') RETURNING id""", phone, lead)
    return dialog_id


async def replay_ours(pool: asyncpg.Pool, dialog_id: int, script: Script) -> None:
    key = f"dialog:{dialog_id}"
    for number, burst in enumerate(script.bursts):
        for text in burst:
            await _insert(pool, dialog_id, "client", text)
        await _insert(pool, dialog_id, "bot", BOT[min(number, len(BOT) - 1)])
        await schedule_qualification(pool, dialog_id)
        deadline = time.monotonic() + 30
        while await pool.fetchval("SELECT 1 FROM jobs WHERE name = $1 AND key = $2", QUALIFY_JOB, key):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the qualification job of dialog {dialog_id} did not finish")
            await asyncio.sleep(0.01)


async def replay_naive(pool: asyncpg.Pool, llm: AsyncOpenAI, dialog_id: int, script: Script) -> None:
    for number, burst in enumerate(script.bursts):
        for text in burst:
            await _insert(pool, dialog_id, "client", text)
            transcript = await load_transcript(pool, dialog_id)
            result = await analyse(llm, model="gpt-4o-mini", criteria=CRITERIA, transcript=transcript,
                                   direction="implants", request_timeout=30)
            levels = [accept(result.verdict, transcript).level] + ([1] if result.verdict.is_interested else [])
            async with pool.acquire() as conn, conn.transaction():
                await record_levels(conn, dialog_id, [lvl for lvl in levels if lvl], "whatsapp")
        await _insert(pool, dialog_id, "bot", BOT[min(number, len(BOT) - 1)])


async def final_levels(pool: asyncpg.Pool, ids: list[int]) -> list[int]:
    rows = await pool.fetch(
        """SELECT id, is_interested::int + is_qualified::int + is_scheduled::int AS level
           FROM dialog_analysis WHERE id = ANY($1)""", ids)
    by_id = {r["id"]: r["level"] for r in rows}
    return [by_id[i] for i in ids]


async def run(args: argparse.Namespace, dsn: str) -> int:
    rng = random.Random(args.seed)
    scripts = [make_script(rng) for _ in range(args.dialogs)]
    pool = await create_pool(dsn, max_size=args.concurrency * 2 + 4)
    async with pool.acquire() as conn:
        await migrate(conn)
    await seed(pool)
    await pool.execute("UPDATE account_directions SET qualification_prompt = $1", CRITERIA)
    fakes = {name: FakeLLM(keyword_model) for name in ("ours", "naive")}
    for fake in fakes.values():
        await fake.start()
    clients = {n: AsyncOpenAI(api_key="k", base_url=f.base_url, max_retries=0) for n, f in fakes.items()}
    settings = Settings(database_url=dsn, worker_poll_seconds=0.01, log_level="warning")
    async with aiohttp.ClientSession() as http:
        ctx = AppContext(settings=settings, pool=pool, http=http, llm=clients["ours"])
        registry: JobRegistry[AppContext] = JobRegistry()
        register_jobs(registry)
        worker = Worker(pool, registry, ctx, concurrency=args.concurrency, poll_seconds=0.01)
        worker_task = asyncio.create_task(worker.run())
        ours = [await _dialog(pool, f"7900{i:07d}") for i in range(len(scripts))]
        naive = [await _dialog(pool, f"7910{i:07d}") for i in range(len(scripts))]
        gate = asyncio.Semaphore(args.concurrency)

        async def bounded(coro: Any) -> None:
            async with gate:
                await coro

        started = time.monotonic()
        await asyncio.gather(*(bounded(replay_ours(pool, d, s)) for d, s in zip(ours, scripts, strict=True)))
        ours_seconds = time.monotonic() - started
        started = time.monotonic()
        await asyncio.gather(*(bounded(replay_naive(pool, clients["naive"], d, s))
                               for d, s in zip(naive, scripts, strict=True)))
        naive_seconds = time.monotonic() - started
        await worker.stop(grace=5)
        await worker_task
    ours_levels, naive_levels = await final_levels(pool, ours), await final_levels(pool, naive)
    for client in clients.values():
        await client.close()
    for fake in fakes.values():
        await fake.stop()
    await pool.close()
    return report(scripts, fakes, ours_levels, naive_levels, ours_seconds, naive_seconds)


def report(scripts: list[Script], fakes: dict[str, FakeLLM], ours_levels: list[int], naive_levels: list[int],
           ours_seconds: float, naive_seconds: float) -> int:
    messages = sum(len(b) for s in scripts for b in s.bursts)
    bursts = sum(len(s.bursts) for s in scripts)
    targets = [s.target for s in scripts]
    print(f"dialogs: {len(scripts)}  scripted levels 0/1/2/3: "
          f"{'/'.join(str(targets.count(lv)) for lv in range(4))}  bursts: {bursts}  client messages: {messages}")
    print(f"{'policy':<10}{'calls':>8}{'prompt tok':>12}{'compl. tok':>12}{'total tok':>12}{'seconds':>9}")
    totals = {}
    for name, seconds in (("naive", naive_seconds), ("ours", ours_seconds)):
        f = fakes[name]
        totals[name] = (f.calls, f.prompt_tokens + f.completion_tokens)
        print(f"{name:<10}{f.calls:>8}{f.prompt_tokens:>12}{f.completion_tokens:>12}"
              f"{totals[name][1]:>12}{seconds:>9.1f}")
    call_ratio = totals["ours"][0] / max(totals["naive"][0], 1)
    token_ratio = totals["ours"][1] / max(totals["naive"][1], 1)
    same = sum(a == b for a, b in zip(ours_levels, naive_levels, strict=True))
    scripted = sum(a == t for a, t in zip(ours_levels, targets, strict=True))
    print(f"calls ratio:  {call_ratio:.3f}  (target ≤ {TARGET_CALLS})")
    print(f"tokens ratio: {token_ratio:.3f}  (target ≤ {TARGET_TOKENS})")
    print(f"final levels: ours = naive for {same}/{len(scripts)} dialogs; "
          f"ours = scripted for {scripted}/{len(scripts)}")
    ok = call_ratio <= TARGET_CALLS and token_ratio <= TARGET_TOKENS and same == len(scripts)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dialogs", type=int, default=240)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    configure_logging("warning")

    async def go() -> int:
        with tempfile.TemporaryDirectory() as tmp:
            async with fresh_database(Path(tmp)) as dsn:
                return await run(args, dsn)

    return asyncio.run(go())


if __name__ == "__main__":
    sys.exit(main())
