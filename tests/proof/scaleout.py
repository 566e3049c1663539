"""Scenario 3, redelivery and scale-out: two `qualibot serve --no-workers` and two `qualibot worker`
processes on one database; every webhook is posted 3 times at once, the copies spread over both
HTTP processes (Evolution redelivers after timeouts and 5xx, and a load balancer spreads them).

Each message must be stored once (one 200 says `stored`, the others `duplicate`), each burst
answered at most once, and each (dialog, level) delivered to Meta exactly once: there is no
crash here, so no at-least-once window either.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from tests.proof.checks import Report, check_events, check_logs, check_messages, wait_replies_done, wait_settled
from tests.proof.database import scenario_database
from tests.proof.peers import LLM_KEY, running_peers
from tests.proof.service import ServiceProcess, service_env, stop_all
from tests.proof.traffic import Poster, interleaved, plan_dialogs

WORK_LINES = ("bot.reply_sent", "qualification.analysis_complete", "capi.event_sent")


@dataclass
class ScaleParams:
    dialogs: int = 30
    per_dialog: int = 6
    copies: int = 3
    rate: float | None = 40.0  # distinct messages per second
    settle_timeout: float = 60.0


async def run_scaleout(params: ScaleParams, workdir: Path) -> Report:
    report = Report(f"redelivery x{params.copies} and scale-out (2 serve --no-workers + 2 worker, "
                    f"{params.dialogs * params.per_dialog} messages / {params.dialogs} dialogs)")
    plans = plan_dialogs(params.dialogs, params.per_dialog)
    async with running_peers() as peers, scenario_database(workdir, peers.evolution.url) as (dsn, pool):
        env = service_env(database_url=dsn, data_dir=workdir / "data", llm_url=peers.llm.base_url,
                          llm_key=LLM_KEY, graph_url=peers.graph.url)
        processes = [ServiceProcess(f"http-{n}", ["serve", "--no-workers"], env, workdir) for n in (1, 2)]
        processes += [ServiceProcess(f"worker-{n}", ["worker"], env, workdir) for n in (1, 2)]
        await asyncio.gather(*(p.start() for p in processes))
        poster = Poster([p.url for p in processes[:2]], concurrency=12)
        try:
            await poster.play(interleaved(plans), rate=params.rate, copies=params.copies)
            report.figures["settle seconds after the last message"] = await wait_settled(
                pool, plans, params.settle_timeout)
            report.figures["then until the last reply was delivered"] = await wait_replies_done(
                pool, params.settle_timeout)
        finally:
            await stop_all(processes)
            await poster.close()
        await check_messages(report, pool, plans, poster)
        outcomes = report.figures["200 outcomes"]
        messages = len(plans) * params.per_dialog
        copies = messages * (params.copies - 1)
        report.check(outcomes.get("stored") == messages and outcomes.get("duplicate") == copies,
                     f"expected {messages} 'stored' and {copies} 'duplicate' answers: {outcomes}")
        await check_events(report, pool, plans, peers.graph)
        replies = await pool.fetchval("SELECT count(*) FROM messages WHERE role = 'bot' AND delivery_status = 'sent'")
        report.figures["bot replies stored / sendText calls"] = f"{replies} / {len(peers.evolution.requests)}"
        report.check(replies == len(peers.evolution.requests), "a bot reply was sent more or less than once")
        report.figures["work done per worker process (replies, analyses, send batches)"] = {
            p.name: [sum(log.read_text().count(f'"{line}"') for log in p.logs) for line in WORK_LINES]
            for p in processes[2:]}
        check_logs(report, [log for p in processes for log in p.logs], [p.phone for p in plans])
    return report.finish()
