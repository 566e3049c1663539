"""structlog JSON logging with a processor that keeps secrets and phone numbers out of logs.

Secrets are removed twice over: values under a secret-looking key are dropped, and every
configured secret value (`core.secrets`) is replaced wherever it appears, in structlog events and
in the standard library's log records alike (a peer that echoes a token in an error message).
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

from core.secrets import REDACTED
from core.secrets import redact as redact_secrets

_SECRET_KEY = re.compile(r"token|secret|apikey|api_key|authorization|password|access_token", re.I)
# runs of 7+ digits, optionally with a leading + : phones, and too-long ids are masked the same way
_PHONE = re.compile(r"\+?\d{7,}")
# phone-looking keys whose values are masked even when short
_PHONE_KEY = re.compile(r"phone|jid|number|remote", re.I)
_ID_KEY = re.compile(r"(^|_)(id|ids|event_id|job_id|message_id|pixel_id|dataset|fbtrace_id)$", re.I)

__all__ = ["REDACTED", "configure_logging", "get_logger", "mask_phone", "redact"]


def mask_phone(value: str) -> str:
    """`79161234567` → `7916*****67`: enough to tell dialogs apart, not enough to call anyone."""
    digits = value
    if len(digits) <= 4:
        return "*" * len(digits)
    return digits[:4] + "*" * max(len(digits) - 6, 1) + digits[-2:]


def _mask_text(text: str) -> str:
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)


class _RedactRecords(logging.Filter):
    """Standard library records (aiohttp, asyncpg, openai...) lose configured secret values and full
    phone numbers too, in their message and in the exception text a formatter would append (aiohttp
    logs a request it cannot parse with the parser's error, which quotes the offending bytes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = _mask_text(redact_secrets(message))
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _mask_text(redact_secrets(record.exc_text))
        return True


_FORMATTER = logging.Formatter()


@functools.lru_cache(maxsize=1024)
def _key_kind(key: str) -> tuple[bool, bool, bool]:
    """(secret, id, phone) for a key: asked once per key, not for each of a list's thousand ids."""
    phone = bool(_PHONE_KEY.search(key))
    return bool(_SECRET_KEY.search(key)), bool(_ID_KEY.search(key)) and not phone, phone


def _scrub(key: str, value: Any, depth: int = 0) -> Any:
    secret, is_id, phone = _key_kind(key)
    if secret:
        return REDACTED
    if depth > 5:
        return value
    if isinstance(value, Mapping):
        return {k: _scrub(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(key, v, depth + 1) for v in value]
    if isinstance(value, str):
        value = redact_secrets(value)  # before phone masking, which could cut a secret in two
        if is_id:
            return value  # ids (pixel, event, Meta trace) are not personal data and audits need them
        return _mask_text(value)
    if isinstance(value, int) and not isinstance(value, bool) and phone:
        return mask_phone(str(value))
    return value


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: drop secret values, mask phone numbers in every other value."""
    for key in list(event_dict.keys()):
        if key in ("timestamp", "level", "logger"):
            continue
        event_dict[key] = _scrub(key, event_dict[key])
    return event_dict


class _LateStderrLogger:
    """Writes each line to whatever `sys.stderr` is *now* (test runners swap and close streams)."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def _late_stderr_factory(*_: Any) -> _LateStderrLogger:
    return _LateStderrLogger()


def configure_logging(level: str = "info", *, stream: Any = None) -> None:
    numeric = logging.getLevelName(level.upper())
    logging.basicConfig(stream=stream or sys.stderr, level=numeric, format="%(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _RedactRecords) for f in handler.filters):
            handler.addFilter(_RedactRecords())
    # libraries that narrate every request or subprocess at INFO: their warnings still show
    for noisy in ("httpx", "httpcore", "openai", "pgserver", "asyncio"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream) if stream else _late_stderr_factory,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
