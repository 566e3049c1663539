"""Process settings, read from the environment (DESIGN.md "Contract: Environment")."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything a qualibot process needs to know about its surroundings.

    Field names map to the documented variables; tenants (accounts, directions, tokens) live in
    the database and come from `qualibot config apply`, never from here.
    """

    model_config = SettingsConfigDict(env_prefix="QUALIBOT_", extra="ignore", populate_by_name=True)

    database_url: str | None = Field(default=None, validation_alias=AliasChoices("DATABASE_URL"))
    data_dir: Path = Path(".qualibot")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    buffer_seconds: float = Field(default=5.0, ge=0)
    # a person who keeps typing still gets an answer after this long
    buffer_max_seconds: float = Field(default=60.0, ge=0)
    # a human operator's message pauses the bot for this dialog this long
    operator_pause_hours: float = Field(default=12.0, ge=0)
    # how often an idle worker looks for received messages to link (a safety poll: a new message wakes it)
    intake_poll_seconds: float = Field(default=60.0, gt=0)
    openai_api_key: str | None = Field(default=None, validation_alias=AliasChoices("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(default=None, validation_alias=AliasChoices("OPENAI_BASE_URL"))
    llm_model: str = "gpt-4o-mini"
    llm_timeout_seconds: float = Field(default=30.0, gt=0)
    meta_graph_url: str = Field(
        default="https://graph.facebook.com", validation_alias=AliasChoices("META_GRAPH_URL")
    )
    meta_api_version: str = Field(default="v25.0", validation_alias=AliasChoices("META_API_VERSION"))
    meta_timeout_seconds: float = Field(default=10.0, gt=0)
    partner_agent: str = "qualibot"
    # CAPI outbox tuning: events per request (Meta's maximum is 1000), requests in flight per sender,
    # how long a claimed row is reserved for its sender, and the retry delays after transient failures
    capi_batch_size: int = Field(default=1000, ge=1, le=1000)
    capi_concurrency: int = Field(default=4, ge=1)
    capi_lease_seconds: float = Field(default=120.0, gt=0)
    capi_retry_base_seconds: float = Field(default=30.0, gt=0)
    capi_retry_max_seconds: float = Field(default=3600.0, gt=0)
    # Meta throttling (codes 4, 17, 341, 613, 80000-80014) lasts minutes: the token rests this long at least
    capi_throttle_seconds: float = Field(default=60.0, ge=0)
    log_level: str = "info"
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    # worker tuning. A job is an asyncio task that holds a database connection only for its queries,
    # so slots are cheap: most of a job's time is spent waiting on the LLM, Evolution or a CRM, and
    # 8 slots made a 1 s LLM the bound of the whole process (issue 18.2)
    worker_concurrency: int = Field(default=128, ge=1)
    worker_poll_seconds: float = Field(default=0.5, gt=0)
    job_lease_seconds: float = Field(default=60.0, gt=0)
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    db_pool_max: int = Field(default=10, ge=1)
    # CRM sync: webhooks for one entity within this delay coalesce into one read of the CRM
    crm_sync_delay_seconds: float = Field(default=2.0, ge=0)
    crm_timeout_seconds: float = Field(default=15.0, gt=0)
    # a sync that would queue longer than this for its CRM's rate limit frees its worker and comes back
    crm_max_queue_seconds: float = Field(default=10.0, gt=0)
    # a failed or throttled CRM read is retried after base * 2^(attempt-1) seconds (max 10 min)
    crm_retry_base_seconds: float = Field(default=5.0, gt=0)
    # Evolution webhook edge (issue 12): with Evolution's `webhook_base64` on, bodies carry media as
    # base64, so the Evolution routes accept more than the others; Evolution signs its `jwt_key`
    # token once and reuses it on ~20 minutes of retries, so it is accepted this long past `exp`
    evolution_max_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    # Evolution bodies above max_body_bytes (media as base64) read at once; more get 503, which Evolution
    # retries: an unauthenticated client cannot make the server hold many 32 MiB bodies at a time
    evolution_large_bodies: int = Field(default=4, gt=0)
    jwt_grace_seconds: float = Field(default=1800.0, ge=0)
    # secrets (issue 14.2): how often a serving process reloads every configured secret value, so
    # logs and stored peer answers lose a token set by another process's `config apply`
    secrets_refresh_seconds: float = Field(default=60.0, gt=0)

    # --- LLM structured output (issue 13.4) ---
    # auto: json_schema, stepping down to json_object, then a JSON instruction, when the server refuses
    llm_structured: Literal["auto", "json_schema", "json_object", "prompt"] = "auto"
    # Click-id drift (issue 12.9): an instance that had chats from ads and has none among its last
    # this many new chats is reported by `qualibot doctor`; /metrics shows the share per instance
    click_id_drift_chats: int = Field(default=20, ge=1)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        value = value.lower()
        if value not in {"debug", "info", "warning", "error"}:
            raise ValueError("must be one of debug, info, warning, error")
        return value

    @field_validator("meta_graph_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    # --- hostile input and slow clients (issue 14) ---
    # form pairs one amoCRM / Bitrix24 webhook may carry; more is refused (400) before any is decoded
    form_max_fields: int = Field(default=20_000, ge=1)
    # a connection must deliver a request's headers within this long of opening (or of the previous
    # answer, on keep-alive), else it is closed; also how long an idle keep-alive connection stays open
    header_timeout_seconds: float = Field(default=15.0, gt=0)
    # the whole body must arrive within this long of the headers, else 408 and the connection is closed
    body_timeout_seconds: float = Field(default=60.0, gt=0)
    # when set, GET /metrics requires `Authorization: Bearer <token>` (401 otherwise); unset: open
    metrics_token: str | None = None
    # the people's data (issue 14.10): message text older than this many days is removed by the
    # workers (the rows, counts, levels and audit stay); 0 keeps it forever
    message_retention_days: int = Field(default=365, ge=0)

    # --- one queue (issue 15.2) ---
    # an idle worker sleeps until a NOTIFY, its next due job, or this safety poll (lost notifications);
    # worker_poll_seconds is its poll while the LISTEN connection is down
    worker_idle_poll_seconds: float = Field(default=60.0, gt=0)
    # a job running longer than this is cancelled and counts as a failed attempt (a kind may set its own)
    job_timeout_seconds: float = Field(default=600.0, gt=0)
    # failed jobs (kept with their last error; finished ones are deleted at once) are purged after this; 0 keeps them
    job_retention_days: float = Field(default=30.0, ge=0)
