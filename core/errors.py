"""The one exception tree: every error qualibot raises on purpose derives from `QualibotError`, and
whether trying again can help is said by its type, nowhere else.

    QualibotError                 `.code` (a stable machine word) and `.detail` (plain words)
    ├── Retryable                 a later try may succeed; `.retry_after` seconds when a peer said
    │                             (the job worker backs off, or waits `retry_after`; HTTP 503)
    └── Permanent                 trying again changes nothing until someone fixes the input or
        │                         the setup (the job worker fails the job at once; HTTP 500)
        ├── BadInput              the request is not what we accept (HTTP 400)
        ├── Unauthorized          the request's credentials are wrong (HTTP 401)
        └── NotFound              the request names something that does not exist (HTTP 404)

Domain errors derive from these (a domain base may sit between, e.g. `CrmError`); the HTTP status
of each is decided in one place, `core.web.http_status`, used by the app's error middleware.
"""

from __future__ import annotations


class QualibotError(Exception):
    """Base of every error qualibot raises on purpose. The text (`detail`) must hold no secret."""

    code = "internal_error"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code


class Retryable(QualibotError):
    """A later try may succeed (a peer or the database is away, a rate limit, a lost race)."""

    code = "unavailable"

    def __init__(self, detail: str, *, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(detail, code=code)
        self.retry_after = retry_after


class Permanent(QualibotError):
    """Trying again changes nothing until someone fixes the input, the configuration or the code."""


class BadInput(Permanent):
    """What a peer or a user sent is not what we accept; `detail` says what is wrong."""

    code = "bad_request"


class Unauthorized(Permanent):
    """The credentials that came with a request are missing or wrong."""

    code = "unauthorized"


class NotFound(Permanent):
    """The request names an object (instance, connection, dialog) that does not exist."""

    code = "not_found"
