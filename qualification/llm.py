"""One structured-output call to an OpenAI-compatible endpoint, with its failures sorted out.

Exceptions:

    LLMCallError    one call gave nothing usable. `.outcome` names what, for metrics and logs
                    (refused | truncated | invalid | timeout | error); `.retryable` says whether
                    another try may help (not after a 4xx other than 408/409/429); `.usage` is
                    what the call cost, when the endpoint said.
"""

from __future__ import annotations

from typing import TypeVar

import openai
import pydantic
from openai import AsyncOpenAI
from openai.types import CompletionUsage

from core.secrets import redact

T = TypeVar("T", bound=pydantic.BaseModel)


class LLMCallError(Exception):
    def __init__(
        self, outcome: str, reason: str, *, retryable: bool = True, usage: CompletionUsage | None = None
    ) -> None:
        reason = redact(reason)  # the endpoint's words may echo the API key or a tenant's secret
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason
        self.retryable = retryable
        self.usage = usage


async def ask(
    llm: AsyncOpenAI, *, model: str, messages: list[dict[str, str]], schema: type[T], max_tokens: int,
    request_timeout: float,
) -> tuple[T, str, CompletionUsage | None]:
    """The parsed answer, the model that gave it and its token usage; raises `LLMCallError`.
    Uses the SDK's `chat.completions.parse` (strict JSON schema from the pydantic model)."""
    try:
        completion = await llm.chat.completions.parse(
            model=model,
            messages=messages,  # type: ignore[arg-type]  # plain role/content dicts
            response_format=schema,
            temperature=0,
            max_tokens=max_tokens,
            timeout=request_timeout,  # the SDK's per-request HTTP timeout
        )
    except openai.LengthFinishReasonError as exc:
        raise LLMCallError("truncated", "output truncated at the token limit", usage=exc.completion.usage) from None
    except openai.ContentFilterFinishReasonError:
        raise LLMCallError("refused", "output stopped by the content filter") from None
    except pydantic.ValidationError as exc:
        errors = exc.errors()
        kind, where = (errors[0]["type"], ".".join(str(p) for p in errors[0]["loc"])) if errors else ("?", "")
        raise LLMCallError("invalid", f"output does not fit the schema ({kind} at {where or 'output'})") from None
    except openai.APITimeoutError:
        raise LLMCallError("timeout", f"no answer within {request_timeout:g}s") from None
    except openai.APIConnectionError as exc:
        raise LLMCallError("error", f"connection failed: {type(exc).__name__}") from None
    except openai.APIStatusError as exc:
        status = exc.status_code
        retryable = status >= 500 or status in (408, 409, 429)
        raise LLMCallError("error", f"LLM endpoint answered HTTP {status}", retryable=retryable) from None
    except openai.APIError as exc:
        raise LLMCallError("error", f"LLM call failed: {type(exc).__name__}") from None
    if not completion.choices:
        raise LLMCallError("invalid", "the answer has no choices", usage=completion.usage)
    message = completion.choices[0].message
    if message.refusal:
        raise LLMCallError("refused", "the model refused to answer", usage=completion.usage)
    if message.parsed is None:
        raise LLMCallError("invalid", "the answer is empty", usage=completion.usage)
    return message.parsed, completion.model, completion.usage
