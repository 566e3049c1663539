"""The one error tree: every domain error's HTTP answer through the app's real middleware, the job
worker's retry decision by type, and what is *not* a client error or a database outage."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from structlog.testing import capture_logs

import bot.cloud.parse
import bot.intake
import bot.operator
import bot.parse
import capi.errors
import core.db
import core.embedded
import core.jobs
import core.migrate
import core.web
import crm.errors
import crm.form
import crm.ratelimit
import qualibot.cli
import qualibot.dashboard.viewers
import qualibot.tenants
import qualification.analysis
import qualification.door
import qualification.llm
import qualification.prompt_gen
from core.context import AppContext
from core.errors import BadInput, NotFound, Permanent, QualibotError, Retryable, Unauthorized
from core.jobs import Job, JobRegistry, enqueue
from core.settings import Settings
from qualibot.app import create_app, running_worker
from tests.helpers import running, wait_for

TOKENS = (0, 0)

# (error, HTTP status, `error` code in the answer): every domain error class of every package
CASES: list[tuple[QualibotError, int, str]] = [
    (bot.parse.BadEvent("`event` is missing"), 400, "not_an_evolution_event"),
    (bot.cloud.parse.BadCloudBody("object must be 'whatsapp_business_account'"), 400, "not_a_whatsapp_cloud_webhook"),
    (core.web.BadJson("the body is not valid JSON", code="invalid_json"), 400, "invalid_json"),
    (crm.form.FormError("key 'a[' has an unclosed bracket"), 400, "invalid_form"),
    (qualibot.tenants.ConfigError(["accounts[0].id: field required"]), 400, "invalid_config"),
    (BadInput("no entities", code="no_entities"), 400, "no_entities"),
    (Unauthorized("X-Webhook-Secret does not match", code="invalid_secret"), 401, "invalid_secret"),
    (bot.intake.InstanceGone("3EB0"), 404, "unknown_instance"),
    (bot.operator.ResumeError("no chat with 7916…"), 404, "not_found"),
    (qualification.door.UnknownDialog("dialog 7 does not exist"), 404, "not_found"),
    (qualibot.dashboard.viewers.NoSuchAccount("no account 'x'"), 404, "not_found"),
    (NotFound("nothing here"), 404, "not_found"),
    (core.web.ApiError(422, "bad_thing", "the thing is bad"), 422, "bad_thing"),
    # a failure a later try may fix is 503, so the peer retries
    (crm.errors.CrmUnavailable("amocrm", "amoCRM answered 502"), 503, "unavailable"),
    (crm.errors.CrmThrottled("amocrm", "queued", retry_after=3), 503, "unavailable"),
    (crm.errors.CrmTooManyRequests("amocrm", "429", retry_after=3), 503, "unavailable"),
    (crm.ratelimit.Backlogged(3.0), 503, "unavailable"),
    (qualification.llm.LLMCallError("timeout", "no answer within 30s"), 503, "llm_error"),
    (qualification.analysis.AnalysisUnavailable("timeout", attempts=3, tokens=TOKENS), 503, "analysis_failed"),
    (qualification.prompt_gen._ShortDraft("2 questions"), 503, "unavailable"),
    (capi.errors.MetaTransient("code 2"), 503, "meta_error"),
    (core.jobs.Retry(defer=5), 503, "unavailable"),
    (core.db.DatabaseUnavailable("cannot connect"), 503, "database_unavailable"),
    (Retryable("the peer is away"), 503, "unavailable"),
    # anything else of ours is our bug or our setup: 500, without internals
    (crm.errors.CrmAuthError("amocrm", "401"), 500, "internal_error"),
    (crm.errors.CrmError("amocrm", "?"), 500, "internal_error"),
    (qualification.llm.LLMSetupError("error", "HTTP 401"), 500, "internal_error"),
    (qualification.llm.LLMError("error", "?"), 500, "internal_error"),
    (qualification.analysis.AnalysisRefused("HTTP 404", attempts=1, tokens=TOKENS), 500, "internal_error"),
    (qualification.analysis.AnalysisLooped("repeated itself", attempts=2, tokens=TOKENS), 500, "internal_error"),
    (qualification.analysis.AnalysisFailed("?", attempts=1, tokens=TOKENS), 500, "internal_error"),
    (qualification.prompt_gen.PromptGenerationFailed("no usable prompt"), 500, "internal_error"),
    (capi.errors.MetaRejected("code 190"), 500, "internal_error"),
    (capi.errors.MetaError("?"), 500, "internal_error"),
    (core.migrate.MigrationError("1 migration(s) pending"), 500, "internal_error"),
    (core.embedded.EmbeddedDatabaseError("cannot start"), 500, "internal_error"),
    (qualibot.cli.CliError("bad"), 500, "internal_error"),
    (Permanent("broken"), 500, "internal_error"),
    (QualibotError("broken"), 500, "internal_error"),
]


def _all_subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _all_subclasses(sub)
    return found


def test_the_table_names_every_error_class() -> None:
    """A new domain error must say here which answer it gets."""
    assert _all_subclasses(QualibotError) - {type(e) for e, _, _ in CASES} == set()


def test_retryable_and_permanent_exclude_each_other() -> None:
    assert not [c for c in _all_subclasses(QualibotError) if issubclass(c, Retryable) and issubclass(c, Permanent)]


@pytest.fixture
async def app_url(
    db: asyncpg.Pool, make_settings: Callable[..., Settings]
) -> AsyncIterator[tuple[str, dict[str, BaseException]]]:
    """The real app (its error middleware) with one extra route that raises what a test names."""
    raising: dict[str, BaseException] = {}

    async def fail(request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        if kind == "data_error":
            await db.fetchval("SELECT 'not a number'::int")  # our SQL's bug: SQLSTATE 22P02, a DataError
        raise raising[kind]

    app = create_app(make_settings(), pool=db)
    app.router.add_post("/fail/{kind}", fail)
    async with running(app) as url:
        yield url, raising


async def _post(url: str, kind: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.post(f"{url}/fail/{kind}") as resp:
        return resp.status, await resp.json()


@pytest.mark.parametrize(("error", "status", "code"), CASES, ids=[type(e).__name__ for e, _, _ in CASES])
async def test_each_domain_error_gets_its_status(
    app_url: tuple[str, dict[str, BaseException]], error: QualibotError, status: int, code: str
) -> None:
    url, raising = app_url
    raising["it"] = error
    answer_status, answer = await _post(url, "it")
    assert (answer_status, answer["error"]) == (status, code)
    if status >= 500:  # no internals in a 5xx
        assert error.detail not in str(answer["detail"])
    else:
        assert answer["detail"] == error.detail


async def test_a_data_error_from_our_sql_is_500_not_bad_input(app_url: tuple[str, dict[str, BaseException]]) -> None:
    """Evolution does not retry a 4xx: a bug in our SQL answered 400 would lose the message."""
    url, _ = app_url
    with capture_logs() as logs:
        status, answer = await _post(url, "data_error")
    assert (status, answer["error"]) == (500, "internal_error")
    assert [e["error_type"] for e in logs if e["event"] == "http.database_error"] == ["InvalidTextRepresentationError"]


@pytest.mark.parametrize("error", [FileNotFoundError(2, "No such file", "a.txt"), TimeoutError(), OSError(5, "I/O")],
                         ids=["FileNotFoundError", "TimeoutError", "OSError"])
async def test_an_os_error_unrelated_to_the_database_is_500_not_503(
    app_url: tuple[str, dict[str, BaseException]], error: OSError
) -> None:
    url, raising = app_url
    raising["os"] = error
    with capture_logs() as logs:
        status, answer = await _post(url, "os")
    assert (status, answer["error"]) == (500, "internal_error")
    assert not [e for e in logs if e["event"] == "http.database_unavailable"]


async def test_the_worker_fails_a_permanent_error_at_once_and_backs_off_a_retryable_one(
    db: asyncpg.Pool, make_settings: Callable[..., Settings]
) -> None:
    async def gone(ctx: AppContext, job: Job) -> None:
        raise qualification.door.UnknownDialog("dialog 7 does not exist")

    async def down(ctx: AppContext, job: Job) -> None:
        raise crm.errors.CrmUnavailable("amocrm", "amoCRM answered 502")

    registry: JobRegistry[AppContext] = JobRegistry()
    registry.register("t.gone", gone)
    registry.register("t.down", down, backoff_base=60.0)
    await enqueue(db, "t.gone", {}, max_attempts=5)
    await enqueue(db, "t.down", {}, max_attempts=5)
    async with aiohttp.ClientSession() as http:
        ctx = AppContext(settings=make_settings(worker_poll_seconds=0.02), pool=db, http=http, llm=None)
        async with running_worker(ctx, registry):

            async def settled() -> list[asyncpg.Record] | None:
                rows = await db.fetch(
                    """SELECT name, status, attempts, run_at > now() + interval '10 seconds' AS later
                       FROM jobs WHERE last_error IS NOT NULL ORDER BY name""")
                return rows if len(rows) == 2 else None

            rows = await wait_for(settled, what="both jobs to run once")
    assert [(r["name"], r["status"], r["attempts"]) for r in rows] == [("t.down", "queued", 1), ("t.gone", "failed", 1)]
    assert rows[0]["later"]  # backed off, not retried at once
