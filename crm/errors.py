"""What can go wrong talking to a CRM, as one exception tree:

    CrmError                 any failure reading a CRM (a core.errors.QualibotError)
    ├── CrmAuthError         Permanent: 401/403, the token or webhook code is wrong, expired or
    │                        blocked; retrying will not help until someone fixes the connection
    ├── CrmThrottled         Retryable: 429 / 503 QUERY_LIMIT_EXCEEDED that outlasted our own
    │   │                    backoff, or our own limiter's queue; `retry_after` says when to come back
    │   └── CrmTooManyRequests  the CRM's own "too many requests", retried in-process first
    └── CrmUnavailable       Retryable: network errors, timeouts, 5xx, answers we cannot read

An entity that no longer exists (amoCRM 204, Bitrix24 400 "Not found") is not an error: the
clients return None for it.
"""

from __future__ import annotations

from core.errors import Permanent, QualibotError, Retryable
from core.secrets import redact


class CrmError(QualibotError):
    """A CRM request failed; `crm` names the CRM ("amocrm" or "bitrix24")."""

    def __init__(self, crm: str, message: str) -> None:
        super().__init__(redact(message))  # messages quote the CRM's answer, which may echo a secret
        self.crm = crm


class CrmAuthError(CrmError, Permanent):
    """The CRM refused our credentials (401/403)."""


class CrmThrottled(CrmError, Retryable):
    """The CRM kept answering "too many requests" after our in-process backoff."""

    def __init__(self, crm: str, message: str, retry_after: float) -> None:
        super().__init__(crm, message)
        self.retry_after: float = retry_after


class CrmTooManyRequests(CrmThrottled):
    """The CRM answered "too many requests" and the shared limiter is paused for it: the clients
    retry these in-process (`THROTTLE_TRIES`), then the last one reaches the sync job."""


class CrmUnavailable(CrmError, Retryable):
    """The CRM could not be reached or answered with something other than data."""
