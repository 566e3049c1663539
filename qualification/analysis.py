"""One LLM analysis of a dialog: structured output into `Verdict`, with bounded retries.

Exceptions:

    AnalysisFailed          every attempt failed; `.reason` says why, `.retryable` whether a
                            later run may succeed (timeouts, 5xx, 429, refusals, truncated or
                            invalid output) or not (401/403/404/400: the setup is wrong)

What is retried here, at once, inside one job run: a refusal, output cut at the token limit (the
next attempt gets a larger limit), output that does not fit the schema, a timeout, a 5xx/429 or a
connection failure. These are usually transient, and a quick second try is cheaper than a job
round trip. After `ANALYSIS_ATTEMPTS` the caller records the failure (see `qualification.jobs`).
The SDK's own retries are off (`core.context.make_llm`), so every call is counted here
(`qualibot_llm_calls_total` / `qualibot_llm_tokens_total`, purpose "analysis", per direction).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from openai import AsyncOpenAI
from openai.types import CompletionUsage

from core.logging import get_logger
from core.metrics import LLM_CALLS, LLM_TOKENS
from qualification.llm import LLMCallError, Structured, ask
from qualification.prompt import Transcript, build_messages
from qualification.verdict import Verdict

log = get_logger("qualification.analysis")

ANALYSIS_ATTEMPTS = 3
MAX_COMPLETION_TOKENS = 400
RETRY_PAUSE_SECONDS = 0.2  # × attempt number, between quick retries
PURPOSE = "analysis"


class AnalysisFailed(Exception):
    """Every attempt of one analysis failed."""

    def __init__(self, reason: str, *, retryable: bool, attempts: int, tokens: tuple[int, int]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.attempts = attempts
        self.prompt_tokens, self.completion_tokens = tokens


@dataclass(frozen=True)
class Analysis:
    verdict: Verdict
    model: str
    prompt_tokens: int
    completion_tokens: int
    attempts: int


@dataclass
class _Tokens:
    direction: str
    prompt: int = 0
    completion: int = 0

    def add(self, usage: CompletionUsage | None) -> None:
        if usage is None:
            return
        self.prompt += usage.prompt_tokens
        self.completion += usage.completion_tokens
        LLM_TOKENS.labels(PURPOSE, self.direction, "prompt").inc(usage.prompt_tokens)
        LLM_TOKENS.labels(PURPOSE, self.direction, "completion").inc(usage.completion_tokens)


async def analyse(
    llm: AsyncOpenAI, *, model: str, criteria: str, transcript: Transcript, direction: str,
    request_timeout: float, structured: Structured = "auto",
) -> Analysis:
    """Ask the model for a `Verdict` on `transcript`; raises `AnalysisFailed`."""
    messages = build_messages(criteria, transcript)
    tokens = _Tokens(direction)
    max_tokens = MAX_COMPLETION_TOKENS
    failure = LLMCallError("error", "not attempted")
    attempt = 0
    for attempt in range(1, ANALYSIS_ATTEMPTS + 1):
        try:
            verdict, used_model, usage = await ask(llm, model=model, messages=messages, schema=Verdict,
                                                   max_tokens=max_tokens, request_timeout=request_timeout,
                                                   structured=structured)
        except LLMCallError as exc:
            tokens.add(exc.usage)
            LLM_CALLS.labels(PURPOSE, direction, exc.outcome).inc()
            log.warning("qualification.analysis_attempt_failed", direction=direction, attempt=attempt,
                        outcome=exc.outcome, reason=exc.reason)
            failure = exc
            if not exc.retryable:
                break
            if exc.outcome == "truncated":
                max_tokens *= 2
            if attempt < ANALYSIS_ATTEMPTS:
                await asyncio.sleep(RETRY_PAUSE_SECONDS * attempt)
            continue
        tokens.add(usage)
        LLM_CALLS.labels(PURPOSE, direction, "ok").inc()
        return Analysis(verdict, used_model, tokens.prompt, tokens.completion, attempt)
    raise AnalysisFailed(failure.reason, retryable=failure.retryable, attempts=attempt,
                         tokens=(tokens.prompt, tokens.completion))
