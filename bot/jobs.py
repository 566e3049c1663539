"""The dialog job (`bot.dialog`), run once a burst of messages has gone quiet.

The intake drain debounces it per dialog (buffer seconds of quiet, at most buffer_max after the
first message). A message of the chat still waiting for the drain means the burst is not over:
the run stops there, and the drain queues the next one when it links that message.
It first queues the dialog's qualification (every case: level 1 is a count and needs no reply, so
the Lead event does not wait for the reply's LLM call), then answers the burst unless a human
operator took over (the dialog is paused), the direction's `reply_to` withholds it
(`bot.operator`), or no LLM is configured. The reply goes out through the instance's transport
(`bot.transport`): Evolution's sendText, or Graph for a WhatsApp Cloud API number.
A reply is recorded before it is sent and keyed on the burst, so it is sent at most once; Evolution's
errors are recorded on the message and not retried (a timed-out send may have been delivered).
LLM errors are retried a few times with the job's backoff, then the burst goes unanswered.
"""

from __future__ import annotations

from bot import dialogs
from bot.drain import DRAIN_MIN_INTERVAL, INTAKE_CHANNEL, DrainLoop
from bot.intake import DIALOG_JOB
from bot.operator import reply_withheld
from bot.reply import HISTORY_LIMIT, compose_reply
from bot.transport import reply_transport
from core.context import AppContext
from core.jobs import Job, JobRegistry, Retry
from core.logging import get_logger
from core.metrics import REPLIES
from core.retention import RetentionLoop
from core.secrets import redact
from qualification.dialogs import remove_old_text
from qualification.jobs import schedule_qualification

log = get_logger("bot.jobs")

LLM_ATTEMPTS = 3
LLM_RETRY_SECONDS = 5.0  # times the attempt number


async def answer_burst(ctx: AppContext, state: dialogs.ReplyState, job: Job) -> str:
    """Reply to the dialog's latest burst if it should be; returns the outcome for metrics."""
    if state.last_client_id is None or state.replied:
        return "nothing_to_answer"
    if state.paused:
        return "operator_active"
    withheld = await reply_withheld(ctx.pool, state.id)
    if withheld:
        return withheld
    if ctx.llm is None:
        return "no_llm"
    transport = await reply_transport(ctx, state)
    if transport is None:
        return "no_instance"
    turns = await dialogs.history(ctx.pool, state.id, state.last_client_id, HISTORY_LIMIT)
    try:
        text = await compose_reply(ctx.llm, ctx.settings, state.direction_id, state.bot_prompt, turns)
    except Exception as exc:
        log.warning("bot.llm_failed", dialog_id=state.id, attempt=job.attempts,
                    error=redact(f"{type(exc).__name__}: {exc}")[:200])  # redact before cutting a key in two
        if job.attempts < LLM_ATTEMPTS:
            raise Retry(defer=LLM_RETRY_SECONDS * job.attempts, reason=f"LLM failed: {type(exc).__name__}") from exc
        return "llm_failed"
    if text is None:
        return "empty_reply"
    message_id = await dialogs.record_reply(ctx.pool, state, text)
    if message_id is None:
        return "already_answered"
    result = await transport.send(text)
    await dialogs.record_delivery(ctx.pool, message_id, result)
    if not result.ok:
        log.warning("bot.send_failed", dialog_id=state.id, message_id=message_id, status=result.status,
                    error=result.error, number=state.number)
        return "send_failed"
    log.info("bot.reply_sent", dialog_id=state.id, message_id=message_id)
    return "sent"


async def process_dialog(ctx: AppContext, job: Job) -> None:
    dialog_id = int(job.payload["dialog_id"])
    state = await dialogs.load_dialog(ctx.pool, dialog_id)
    if state is None:  # the dialog was deleted meanwhile
        return
    if state.waiting:  # the drain will link that message and queue this dialog's next run
        REPLIES.labels("intake_pending").inc()
        return
    # the signal first: the analysis reads only what the client wrote, and the reply composed
    # now is not part of what the client has seen
    await schedule_qualification(ctx.pool, dialog_id)
    outcome = await answer_burst(ctx, state, job)
    REPLIES.labels(outcome).inc()
    await dialogs.finish_burst(ctx.pool, state)


def register_jobs(registry: JobRegistry[AppContext]) -> None:
    """Register this package's job handlers by name."""
    registry.register(DIALOG_JOB, process_dialog, backoff_base=2.0, backoff_max=120.0)
    registry.register_loop("bot.drain", DrainLoop(), wake=INTAKE_CHANNEL, min_interval=DRAIN_MIN_INTERVAL)
    registry.register_loop("bot.retention", RetentionLoop("message text", remove_old_text))
