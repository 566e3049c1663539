"""What can go wrong talking to a CRM, as one exception tree:

    CrmError                 any failure reading a CRM; the sync job retries it with backoff
    ├── CrmAuthError         401/403: the token or webhook code is wrong, expired or blocked;
    │                        retrying will not help until someone fixes the connection
    ├── CrmThrottled         429 / 503 QUERY_LIMIT_EXCEEDED that outlasted our own backoff;
    │                        `retry_after` says when to come back
    └── CrmUnavailable       network errors, timeouts, 5xx, answers we cannot read

An entity that no longer exists (amoCRM 204, Bitrix24 400 "Not found") is not an error: the
clients return None for it.
"""

from __future__ import annotations

from core.secrets import redact


class CrmError(Exception):
    """A CRM request failed; `crm` names the CRM ("amocrm" or "bitrix24")."""

    def __init__(self, crm: str, message: str) -> None:
        super().__init__(redact(message))  # messages quote the CRM's answer, which may echo a secret
        self.crm = crm


class CrmAuthError(CrmError):
    """The CRM refused our credentials (401/403)."""


class CrmThrottled(CrmError):
    """The CRM kept answering "too many requests" after our in-process backoff."""

    def __init__(self, crm: str, message: str, retry_after: float) -> None:
        super().__init__(crm, message)
        self.retry_after = retry_after


class CrmUnavailable(CrmError):
    """The CRM could not be reached or answered with something other than data."""
