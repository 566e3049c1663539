"""Job handlers of the qualification package, and how other packages ask for a run.

`qualification.dialog` (one per dialog, coalesced) applies the WhatsApp rules of a direction with
CAPI on and `capi_source = whatsapp`:
1. level 1 when the client has sent 2+ messages: a count, no LLM;
2. an LLM analysis only when there are client messages newer than the last analysis, level 3 is
   not reached yet, and level 1's rule holds: levels 2 and 3 sit above level 1 in the funnel, and
   a dialog of one message (often just the ad's prefilled greeting) has answered no question
   yet — its message is analysed with the second one. What the analysis proposes counts only
   with evidence (`qualification.verdict`);
3. no criteria (`qualification_prompt`) or no LLM: `analysis_status = not_analysed`, saying why;
4. the direction's `analyse` switch: `ad_leads` (the default) analyses only dialogs whose lead has
   a click id (an analysis costs money, and a dialog without one can send no event), `all` every
   dialog. Level 1 is a count and is recorded either way.
A dialog that belongs to no direction (its instance has no default direction and its ad is in no
direction's `ad_ids`) is not lost silently: when it reaches level 1 a `skipped` row names the
instance and why, and `qualibot doctor` reports such dialogs as an error.

A failed analysis (every quick attempt in `qualification.analysis` failed) is recorded as
`analysis_status = failed` with the reason, and the run is retried later with `Retry` — a delay
of its own, so the worker slot is free meanwhile and other dialogs go on — up to `FAILED_RUNS`
runs. After that the dialog waits for its next client message (the watermark did not move, so
that run analyses everything not yet analysed). Errors that another run cannot fix (401, 404,
400) are recorded and not retried.
"""

from __future__ import annotations

from openai import AsyncOpenAI

from core.context import AppContext
from core.errors import Retryable
from core.jobs import Executor, Job, JobRegistry, Retry, enqueue
from core.logging import get_logger
from core.retention import RetentionLoop
from qualification.analysis import AnalysisFailed, analyse
from qualification.dialogs import (
    DialogState,
    dialog_lead,
    load_state,
    load_transcript,
    mark_unanalysed,
    remove_old_reasoning,
    save_analysis,
)
from qualification.door import record_levels
from qualification.leads import lead_contact
from qualification.verdict import Acceptance, accept, hold_unsure, masked_reasoning

log = get_logger("qualification.jobs")

QUALIFY_JOB = "qualification.dialog"
FAILED_RUNS = 3  # job runs with a failed analysis before waiting for the next client message
RETRY_DEFER_SECONDS = 60.0  # × the run number


async def schedule_qualification(db: Executor, dialog_id: int, *, delay: float = 0.0) -> None:
    """Ask for the dialog to be (re)qualified; a burst of requests coalesces into one run."""
    await enqueue(db, QUALIFY_JOB, {"dialog_id": dialog_id}, key=f"dialog:{dialog_id}", mode="coalesce",
                  delay=delay)


def register_jobs(registry: JobRegistry[AppContext]) -> None:
    """Register this package's job handlers by name."""
    registry.register(QUALIFY_JOB, qualify_dialog, backoff_base=5.0, backoff_max=300.0)
    registry.register_loop("qualification.retention", RetentionLoop("analysis reasoning", remove_old_reasoning))


async def qualify_dialog(ctx: AppContext, job: Job) -> None:
    """The `qualification.dialog` job: the WhatsApp rules above for one dialog."""
    dialog_id = int(job.payload["dialog_id"])
    state = await load_state(ctx.pool, dialog_id)
    if state is None:
        log.warning("qualification.dialog_missing", dialog_id=dialog_id)
        return
    if state.direction_id is None:
        if state.client_messages >= 2 and state.level < 1:
            await _record_undirected(ctx, dialog_id)
        return
    if not state.qualifies_from_whatsapp:
        return  # CAPI off, or the CRM is this direction's source (crm.jobs records its levels)
    if state.client_messages >= 2 and state.level < 1:
        async with ctx.pool.acquire() as conn, conn.transaction():
            await record_levels(conn, dialog_id, [1], "whatsapp")
    if state.level >= 3 or state.client_messages < 2 or not state.has_unanalysed_client_messages:
        return
    if not await _analysis_wanted(ctx.pool, state):
        return
    criteria = (state.qualification_prompt or "").strip()
    if ctx.llm is None or not criteria:
        missing = "; ".join(
            ([] if ctx.llm else ["no LLM configured (OPENAI_API_KEY is not set)"])
            + ([] if criteria else [f"direction {state.direction_id} has no qualification_prompt"])
        )
        await mark_unanalysed(ctx.pool, dialog_id, "not_analysed", missing)
        log.warning("qualification.not_analysed", dialog_id=dialog_id, direction=state.direction_id,
                    reason=missing)
        return
    await _analyse(ctx, ctx.llm, criteria, job, state)


async def _analyse(ctx: AppContext, llm: AsyncOpenAI, criteria: str, job: Job, state: DialogState) -> None:
    direction = state.direction_id or "none"
    model = ctx.settings.llm_model
    transcript = await load_transcript(ctx.pool, state.id)
    log.info("qualification.analysis_started", dialog_id=state.id, direction=direction, model=model,
             messages=len(transcript.messages), level=state.level)
    try:
        result = await analyse(llm, model=model, criteria=criteria,
                               transcript=transcript, direction=direction,
                               request_timeout=ctx.settings.llm_timeout_seconds,
                               structured=ctx.settings.llm_structured)
    except AnalysisFailed as exc:
        await mark_unanalysed(ctx.pool, state.id, "failed", f"{exc.reason} (after {exc.attempts} attempts)")
        retry = isinstance(exc, Retryable) and job.attempts < FAILED_RUNS
        log.warning("qualification.analysis_failed", dialog_id=state.id, direction=direction, model=model,
                    reason=exc.reason, attempts=exc.attempts, run=job.attempts, will_retry=retry,
                    prompt_tokens=exc.prompt_tokens, completion_tokens=exc.completion_tokens)
        if retry:
            raise Retry(defer=RETRY_DEFER_SECONDS * job.attempts, reason=exc.reason) from None
        return
    confidence = result.verdict.confidence
    acceptance = hold_unsure(accept(result.verdict, transcript, flagged=state.suspicious_message_id),
                             confidence, state.min_confidence)
    async with ctx.pool.acquire() as conn, conn.transaction():
        new = await record_levels(conn, state.id, [acceptance.level], "whatsapp") if acceptance.level else []
        await save_analysis(conn, state.id, analyzed_message_id=transcript.newest_id,
                            detail=_detail(acceptance),
                            reasoning=masked_reasoning(result.verdict.reasoning, transcript),
                            suspicious=acceptance.suspicious, evidence=acceptance.evidence,
                            confidence=confidence, held=acceptance.held)
    if acceptance.suspicious is not None:
        log.warning("qualification.addressed_to_model", dialog_id=state.id, direction=direction,
                    message_id=acceptance.suspicious, claimed=acceptance.claimed)
    if acceptance.rejected:  # held for review (low confidence) or the evidence did not hold up
        log.warning("qualification.level_held" if acceptance.held else "qualification.evidence_rejected",
                    dialog_id=state.id, direction=direction,
                    claimed=acceptance.claimed, reason=acceptance.rejected)
    log.info("qualification.analysis_complete", dialog_id=state.id, direction=direction, model=result.model,
             levels=new, level=max(state.level, acceptance.level),
             is_interested=result.verdict.is_interested, is_qualified=result.verdict.is_qualified,
             is_scheduled=result.verdict.is_scheduled, prompt_tokens=result.prompt_tokens,
             completion_tokens=result.completion_tokens, attempts=result.attempts)


async def _analysis_wanted(db: Executor, state: DialogState) -> bool:
    """The direction's `analyse` switch: `all`, or `ad_leads` and the lead has a click id."""
    if state.analyse_all:
        return True
    lead = await lead_contact(db, state.lead_id) if state.lead_id is not None else None
    return lead is not None and lead.ctwa_clid is not None


async def _record_undirected(ctx: AppContext, dialog_id: int) -> None:
    """Level 1 of a dialog that belongs to no direction: a `skipped` row naming the instance."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        dialog = await dialog_lead(conn, dialog_id)
        if dialog is None:
            return
        lead = await lead_contact(conn, dialog.lead_id) if dialog.lead_id is not None else None
        ad_id = lead.ad_source_id if lead else None
        ad = f"and its ad {ad_id} is in no direction's ad_ids" if ad_id else "and it came from no ad"
        reason = (f"no direction: WhatsApp instance {dialog.instance_name!r} has no default_direction {ad}; "
                  "set default_direction on the instance (or the ad id on a direction)")
        await record_levels(conn, dialog_id, [1], "whatsapp", skip_reason=reason)
    log.warning("qualification.no_direction", dialog_id=dialog_id, instance=dialog.instance_name)


def _detail(acceptance: Acceptance) -> str:
    if acceptance.rejected:
        return f"level {acceptance.claimed} not recorded: {acceptance.rejected}"
    if acceptance.level:
        return f"level {acceptance.level} with evidence {acceptance.evidence}"
    return "no level 2 or 3 yet"
