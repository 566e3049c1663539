"""In-process retries, on one library: stamina (exponential backoff with jitter, on tenacity).

    async for attempt in retrying("crm.amocrm.get", CrmTooManyRequests, attempts=3):
        with attempt:
            ...  # raise to try again; the last failure propagates

Each retry is counted in stamina's own Prometheus counter `stamina_retries_total{callable,
retry_num, error_type}` (`callable` is the operation name given here) and logged as
`retry.scheduled`. stamina's default log hook is replaced: it would log the retried callable's
arguments, which may hold a token or a phone number.

Retries across runs (minutes, surviving a restart) are the job queue's (`core.jobs`), not these.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import stamina
from stamina.instrumentation import PrometheusOnRetryHook, RetryDetails, set_on_retry_hooks

from core.logging import get_logger

log = get_logger("core.retries")

# what to retry on: exception types, or a predicate on the exception (stamina's `on`)
RetryOn = type[Exception] | tuple[type[Exception], ...] | Callable[[Exception], bool]


def _log_retry(details: RetryDetails) -> None:
    log.info("retry.scheduled", operation=details.name, retry=details.retry_num,
             error_type=type(details.caused_by).__name__, wait_seconds=round(details.wait_for, 3))


set_on_retry_hooks([PrometheusOnRetryHook, _log_retry])


def retrying(
    operation: str, on: RetryOn, *, attempts: int, wait_initial: float = 0.1,
    wait_max: float = 5.0, wait_jitter: float = 0.0, wait_exp_base: float = 2.0,
) -> AsyncIterator[stamina.Attempt]:
    """Up to `attempts` tries of the block, retried when `on` (exception types or a predicate) says
    so, waiting `wait_initial * wait_exp_base ** (n - 1)` (at most `wait_max`) plus up to
    `wait_jitter` seconds between them. No overall timeout: the attempts bound it."""
    return stamina.retry_context(
        on=on, attempts=attempts, timeout=None, wait_initial=wait_initial, wait_max=wait_max,
        wait_jitter=wait_jitter, wait_exp_base=wait_exp_base,
    ).with_name(operation, (), {})
