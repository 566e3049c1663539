"""One LLM analysis of a dialog: structured output into `Verdict`, with bounded retries.

Exceptions:

    AnalysisFailed          every attempt failed; `.reason` says why; its type whether a later
    │                       run may succeed:
    ├── AnalysisUnavailable Retryable: timeouts, 5xx, 429, refusals, truncated or invalid output
    └── AnalysisRefused     Permanent: 401/403/404/400, the setup is wrong
        └── AnalysisLooped  the model loops until the token limit on this transcript

What is retried here, at once, inside one job run: a refusal, output cut at the token limit (the
next attempt gets a larger limit, once, unless the cut output is a run-away list of ids: at
temperature 0 the same loop repeats, so doubling only doubles the waste; a second truncation that
begins as the first did is the same loop and ends the analysis), output that does not fit the
schema, a timeout, a 5xx/429 or a connection failure. These are usually transient, and a quick
second try is cheaper than a job round trip. After `ANALYSIS_ATTEMPTS` the caller records the
failure (see `qualification.jobs`).
The SDK's own retries are off (`core.context.make_llm`), so every call is counted here
(`qualibot_llm_calls_total` / `qualibot_llm_tokens_total`, purpose "analysis", per direction).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from openai import AsyncOpenAI
from openai.types import CompletionUsage

from core.errors import Permanent, QualibotError, Retryable
from core.logging import get_logger
from core.metrics import LLM_CALLS, LLM_TOKENS
from core.retries import retrying
from qualification.llm import LLMError, Structured, ask
from qualification.prompt import Transcript, build_messages
from qualification.verdict import MAX_EVIDENCE, Verdict

log = get_logger("qualification.analysis")

ANALYSIS_ATTEMPTS = 3
MAX_COMPLETION_TOKENS = 400
RETRY_PAUSE_SECONDS = 0.2  # before the second attempt, doubled before each next one
PURPOSE = "analysis"


class AnalysisFailed(QualibotError):
    """Every attempt of one analysis failed."""

    code = "analysis_failed"

    def __init__(self, reason: str, *, attempts: int, tokens: tuple[int, int]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts
        self.prompt_tokens, self.completion_tokens = tokens


class AnalysisUnavailable(AnalysisFailed, Retryable):
    """A later run may succeed."""


class AnalysisRefused(AnalysisFailed, Permanent):
    """The endpoint refuses the request itself: a later run will not succeed until the setup changes."""


class AnalysisLooped(AnalysisRefused):
    """The model repeats itself until the token limit; at temperature 0 another run does the same
    until the transcript changes (the next client message schedules a new run)."""


_RUNAWAY_IDS = re.compile(r'"evidence_message_ids"\s*:\s*\[\s*(\d+\s*,\s*){' + str(MAX_EVIDENCE) + ',}')


def looped(content: str, previous: str | None) -> bool:
    """A truncated answer that another budget will not fix: an id list past the schema's limit,
    or the same beginning as the previous truncated answer (temperature 0 repeats itself)."""
    if _RUNAWAY_IDS.search(content):
        return True
    return previous is not None and bool(previous) and content.startswith(previous)


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
    tries = 0
    truncated: str | None = None
    try:
        # only a Retryable LLM failure is tried again; an LLMSetupError ends the analysis at once
        async for attempt in retrying("qualification.analyse", Retryable, attempts=ANALYSIS_ATTEMPTS,
                                      wait_initial=RETRY_PAUSE_SECONDS):
            with attempt:
                tries = attempt.num
                try:
                    verdict, used_model, usage = await ask(llm, model=model, messages=messages, schema=Verdict,
                                                           max_tokens=max_tokens, request_timeout=request_timeout,
                                                           structured=structured)
                except LLMError as exc:
                    tokens.add(exc.usage)
                    LLM_CALLS.labels(PURPOSE, direction, exc.outcome).inc()
                    log.warning("qualification.analysis_attempt_failed", direction=direction, attempt=tries,
                                outcome=exc.outcome, reason=exc.reason)
                    if exc.outcome == "truncated":
                        if looped(exc.content or "", truncated):
                            raise AnalysisLooped(
                                f"the model repeated itself until the token limit ({max_tokens}); not retried",
                                attempts=tries, tokens=(tokens.prompt, tokens.completion)) from None
                        truncated, max_tokens = exc.content or "", max_tokens * 2
                    raise
    except LLMError as exc:
        failed = AnalysisUnavailable if isinstance(exc, Retryable) else AnalysisRefused
        raise failed(exc.reason, attempts=tries, tokens=(tokens.prompt, tokens.completion)) from None
    tokens.add(usage)
    LLM_CALLS.labels(PURPOSE, direction, "ok").inc()
    return Analysis(verdict, used_model, tokens.prompt, tokens.completion, tries)
