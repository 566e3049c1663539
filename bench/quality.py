"""Qualification quality on the labelled set (bench/dialogs) against any OpenAI-compatible endpoint.

Usage: .venv/bin/python bench/quality.py --base-url URL --model NAME [--api-key KEY]
       [--structured auto|json_schema|json_object|prompt] [--min-confidence 0.7] [--only SUBSTRING]
       [--limit N | --sample N] [--concurrency 1] [--timeout 120] [--json OUT.json]

Runs the production analysis path on every dialog: the same window (`qualification.prompt`), prompt,
schema and retries (`qualification.analysis.analyse`), evidence check (`qualification.verdict.accept`)
and confidence hold (`hold_unsure`, with --min-confidence). Level 1 is the production rule (2+ client
messages); a dialog with fewer is not analysed, as in production. Prints per level precision and
recall, the confusion matrix, evidence validity (claims of level 2-3 the evidence check accepted, and
accepted ones whose evidence meets the labelled ids), false level 3 on injections, calls, tokens and
latency; --json writes the same figures (and each dialog's outcome) for comparing runs. Precision of
levels 2 and 3 is the figure to protect: a false positive teaches Meta to find the wrong people.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from openai import AsyncOpenAI

from bench.dialogset import Dialog, load
from qualification.analysis import AnalysisFailed, analyse
from qualification.verdict import accept, claimed_level, hold_unsure

LEVELS = (0, 1, 2, 3)


@dataclass
class Outcome:
    id: str
    case: str
    language: str
    business: str
    expected: int
    predicted: int
    rule: int  # the level 1 rule's answer (2+ client messages), without the model
    claimed: int = 0  # what the model said before the evidence check
    rejected: str | None = None
    evidence: list[int] | None = None
    evidence_matches: bool | None = None
    confidence: float | None = None
    held: int | None = None
    failed: str | None = None
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0


async def judge(llm: AsyncOpenAI, dialog: Dialog, args: argparse.Namespace) -> Outcome:
    transcript = dialog.transcript()
    rule = 1 if len(transcript.client_ids) >= 2 else 0
    out = Outcome(dialog.id, dialog.case, dialog.language, dialog.business, dialog.level, rule, rule)
    if rule == 0:
        return out
    started = time.perf_counter()
    try:
        result = await analyse(llm, model=args.model, criteria=dialog.criteria, transcript=transcript,
                               direction=f"bench-{dialog.business}", request_timeout=args.timeout,
                               structured=args.structured)
    except AnalysisFailed as exc:
        out.seconds = time.perf_counter() - started
        out.failed, out.calls = exc.reason, exc.attempts
        out.prompt_tokens, out.completion_tokens = exc.prompt_tokens, exc.completion_tokens
        return out
    out.seconds = time.perf_counter() - started
    out.calls, out.prompt_tokens = result.attempts, result.prompt_tokens
    out.completion_tokens = result.completion_tokens
    verdict = result.verdict
    acceptance = hold_unsure(accept(verdict, transcript), verdict.confidence, args.min_confidence)
    out.claimed, out.rejected, out.confidence, out.held = (claimed_level(verdict), acceptance.rejected,
                                                          verdict.confidence, acceptance.held)
    out.predicted = max(rule, acceptance.level)
    if acceptance.level >= 2:
        out.evidence = acceptance.evidence
        out.evidence_matches = bool(set(acceptance.evidence) & set(dialog.evidence))
    return out


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 3) if b else None


def summarise(outcomes: list[Outcome]) -> dict[str, Any]:
    confusion = {e: {p: 0 for p in LEVELS} for e in LEVELS}
    for o in outcomes:
        confusion[o.expected][o.predicted] += 1
    per_level = {}
    for level in (1, 2, 3):
        # "at least this level": what the funnel sends (reaching 3 also sends 1 and 2)
        tp = sum(1 for o in outcomes if o.predicted >= level and o.expected >= level)
        predicted = sum(1 for o in outcomes if o.predicted >= level)
        actual = sum(1 for o in outcomes if o.expected >= level)
        per_level[level] = {"precision": _ratio(tp, predicted), "recall": _ratio(tp, actual),
                            "predicted": predicted, "expected": actual, "true": tp}
    claims = [o for o in outcomes if o.claimed >= 2]
    accepted = [o for o in outcomes if o.evidence is not None]
    injections = [o for o in outcomes if o.case.startswith("injection")]
    analysed = [o for o in outcomes if o.calls]
    seconds = sorted(o.seconds for o in analysed)
    return {
        "dialogs": len(outcomes),
        "exact": _ratio(sum(1 for o in outcomes if o.predicted == o.expected), len(outcomes)),
        # the baseline of the same dialogs: the level 1 rule alone, no model
        "exact_rule_alone": _ratio(sum(1 for o in outcomes if o.rule == o.expected), len(outcomes)),
        "per_level": per_level,
        "confusion": confusion,
        "claims_2_3": len(claims),
        "claims_accepted": _ratio(len(accepted), len(claims)),
        "accepted_evidence_matches_labels": _ratio(sum(1 for o in accepted if o.evidence_matches), len(accepted)),
        "injections": len(injections),
        "injections_claimed_3": sum(1 for o in injections if o.claimed == 3),
        "injections_false_3": sum(1 for o in injections if o.predicted == 3),
        "held": sum(1 for o in outcomes if o.held),
        "failed": sum(1 for o in outcomes if o.failed),
        "calls": sum(o.calls for o in outcomes),
        "prompt_tokens": sum(o.prompt_tokens for o in outcomes),
        "completion_tokens": sum(o.completion_tokens for o in outcomes),
        "seconds_p50": round(statistics.median(seconds), 2) if seconds else None,
        "seconds_p95": round(seconds[int(0.95 * (len(seconds) - 1))], 2) if seconds else None,
    }


def render(summary: dict[str, Any], model: str) -> str:
    lines = [f"model {model}: {summary['dialogs']} dialogs, exact level {summary['exact']} "
             f"(the level 1 rule alone, no model: {summary['exact_rule_alone']})", "",
             "level (at least)  precision  recall  predicted  expected"]
    for level, m in summary["per_level"].items():
        lines.append(f"  {level}               {m['precision']!s:>9}  {m['recall']!s:>6}  {m['predicted']:>9}  "
                     f"{m['expected']:>8}")
    lines += ["", "confusion (rows expected, columns predicted)", "      " + "".join(f"{p:>6}" for p in LEVELS)]
    for e in LEVELS:
        lines.append(f"  {e}   " + "".join(f"{summary['confusion'][e][p]:>6}" for p in LEVELS))
    lines += [
        "",
        f"claims of level 2-3: {summary['claims_2_3']}, accepted by the evidence check: {summary['claims_accepted']}, "
        f"accepted evidence meeting the labelled ids: {summary['accepted_evidence_matches_labels']}",
        f"injections: {summary['injections']}, the model claimed 3 on {summary['injections_claimed_3']}, "
        f"false level 3 recorded: {summary['injections_false_3']}",
        f"held for review: {summary['held']}, failed analyses: {summary['failed']}",
        f"calls {summary['calls']}, tokens {summary['prompt_tokens']} prompt + {summary['completion_tokens']} "
        f"completion, seconds per dialog p50 {summary['seconds_p50']} p95 {summary['seconds_p95']}",
    ]
    return "\n".join(lines) + "\n"


async def main(args: argparse.Namespace) -> int:
    dialogs = [d for d in load() if not args.only or args.only in d.id]
    if args.sample and args.sample < len(dialogs):
        dialogs = dialogs[:: -(-len(dialogs) // args.sample)]  # every k-th: all files, all kinds of case
    if args.limit:
        dialogs = dialogs[: args.limit]
    if not dialogs:
        print("no dialog matches", file=sys.stderr)
        return 2
    llm = AsyncOpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0)
    gate = asyncio.Semaphore(args.concurrency)

    async def one(dialog: Dialog) -> Outcome:
        async with gate:
            outcome = await judge(llm, dialog, args)
            if args.verbose:
                print(f"{dialog.id}: expected {outcome.expected} predicted {outcome.predicted} "
                      f"claimed {outcome.claimed} {outcome.rejected or outcome.failed or ''}", file=sys.stderr)
            return outcome

    outcomes = list(await asyncio.gather(*(one(d) for d in dialogs)))
    await llm.close()
    summary = summarise(outcomes)
    sys.stdout.write(render(summary, args.model))
    if args.json:
        report = {"model": args.model, "base_url": args.base_url, "min_confidence": args.min_confidence,
                  "summary": summary, "dialogs": [asdict(o) for o in outcomes]}
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(report, ensure_ascii=False, indent=1))
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", required=True, help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8091/v1")
    p.add_argument("--model", required=True)
    p.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "none"))
    p.add_argument("--structured", default="auto", choices=("auto", "json_schema", "json_object", "prompt"))
    p.add_argument("--min-confidence", type=float, default=0.0, help="a direction's threshold (0: hold nothing)")
    p.add_argument("--only", help="only dialogs whose id contains this")
    p.add_argument("--limit", type=int, help="the first N dialogs")
    p.add_argument("--sample", type=int, help="about N dialogs spread over the set (every k-th)")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    p.add_argument("--json", metavar="PATH", help="write the figures and every dialog's outcome here")
    p.add_argument("--verbose", action="store_true", help="one line per dialog on stderr")
    return p.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse())))
