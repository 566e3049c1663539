"""One structured-output call to any OpenAI-compatible endpoint, with its failures sorted out.

Servers differ in what they accept, so the request adapts per (endpoint, model):

- structured output, `QUALIBOT_LLM_STRUCTURED` (default `auto`): `json_schema` (strict schema from
  the pydantic model) → `json_object` → `prompt` (no response_format; the schema in the system
  message). In `auto` the first server error that names `response_format` steps one mode down;
  a fixed mode never changes, and its refusal is reported;
- `max_tokens` → `max_completion_tokens` when the server refuses the first (OpenAI's reasoning
  models), and no `temperature` when it refuses 0 (same models).

What a server answered, as the openai SDK reports it (`APIStatusError.body` is the `error` object):
- OpenAI, json_schema on a model without it: 400 {"message": "Invalid parameter: 'response_format'
  of type 'json_schema' is not supported with this model. …", "type": "invalid_request_error",
  "param": "response_format" (sometimes null), "code": null} (langchain-ai/langchain#31490,
  AgnostiqHQ/multi-agent-llm#2; the same with 'json_object': mrwadams/stride-gpt#19);
- llama.cpp's server before json_schema support: 500 {"code": 500, "message": "response_format type
  must be one of \"text\" or \"json_object\", but got: json_schema", "type": "server_error"}
  (ikawrakow/ik_llama.cpp#778, llama.cpp PR 9527), so a 5xx naming response_format counts too;
- other hosts: 400 {"code": "InvalidParameter", "message": "The parameter `response_format.type`
  … supported values are: `json_object` and `text`", "param": "response_format.type"} (agno#2553);
- OpenAI reasoning models: 400 {"message": "Unsupported parameter: 'max_tokens' is not supported
  with this model. Use 'max_completion_tokens' instead.", "param": "max_tokens", "code":
  "unsupported_parameter"} (griptape-ai/ComfyUI-Griptape#312) and {"message": "Unsupported value:
  'temperature' does not support 0 with this model. …", "param": "temperature", "code":
  "unsupported_value"} (OpenHands/OpenHands#4131).

What was learnt is remembered in the process, per client (one endpoint) and model: a new process
relearns it with at most three refused requests, which cost no tokens, and a server that is
upgraded or replaced is met fresh on restart; a table would need invalidation for that and a
round trip per call to gain nothing measurable.

Answers are read tolerantly in every mode (servers that accept json_schema do not all enforce it):
a `<think>` block is dropped, then the content as JSON, else a fenced block, else the first JSON
object inside prose.

Exceptions:

    LLMError        one call gave nothing usable. `.outcome` names what, for metrics and logs
                    (refused | truncated | invalid | timeout | error); `.usage` is what the call
                    cost, when the endpoint said. The reason carries the server's own error text
                    (secrets removed). Its type says whether another try may help:
    ├── LLMCallError    Retryable: timeouts, 5xx/408/409/429, refusals, truncated or invalid output
    └── LLMSetupError   Permanent: any other 4xx (key, model, request shape: the setup is wrong)
"""

from __future__ import annotations

import json
import re
import weakref
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar, get_args

import openai
import pydantic
from openai import AsyncOpenAI
from openai.types import CompletionUsage

from core.errors import Permanent, QualibotError, Retryable
from core.logging import get_logger
from core.secrets import redact

log = get_logger("qualification.llm")

T = TypeVar("T", bound=pydantic.BaseModel)
Structured = Literal["auto", "json_schema", "json_object", "prompt"]
Mode = Literal["json_schema", "json_object", "prompt"]
MODES: tuple[Mode, ...] = get_args(Mode)
SERVER_TEXT_CHARS = 300  # of the server's error message kept in reasons and logs
ADAPTATIONS = 4  # at most this many refused requests re-sent adapted within one call
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
_SCAN_OBJECTS = 50  # `{` positions tried in prose; the answer is bounded by the token limit


class LLMError(QualibotError):
    code = "llm_error"

    def __init__(self, outcome: str, reason: str, *, usage: CompletionUsage | None = None,
                 content: str | None = None) -> None:
        reason = redact(reason)  # the endpoint's words may echo the API key or a tenant's secret
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason
        self.usage = usage
        self.content = content  # a truncated answer's text: the caller compares two of them


class LLMCallError(LLMError, Retryable):
    """Another try may help."""


class LLMSetupError(LLMError, Permanent):
    """The endpoint refuses the request itself; trying again will not help until the setup changes."""


@dataclass
class Capability:
    """What one endpoint's model accepts, as learnt from its refusals."""

    mode: Mode = "json_schema"
    limit_param: str = "max_tokens"
    temperature: bool = True


_LEARNT: weakref.WeakKeyDictionary[AsyncOpenAI, dict[str, Capability]] = weakref.WeakKeyDictionary()


def capability(llm: AsyncOpenAI, model: str) -> Capability:
    """What this process knows of (llm's endpoint, model); the defaults until a refusal says otherwise."""
    return _LEARNT.setdefault(llm, {}).setdefault(model, Capability())


def server_text(exc: openai.APIStatusError, secret: str | None = None) -> str:
    """The server's own error message, one line, bounded, without our API key."""
    body = exc.body
    message = body.get("message") if isinstance(body, dict) else body
    text = " ".join(str(message if message is not None else exc.message).split())
    if secret and len(secret) >= 8:
        text = text.replace(secret, "***")
    return text[:SERVER_TEXT_CHARS]


def _param(exc: openai.APIStatusError) -> str | None:
    param = exc.body.get("param") if isinstance(exc.body, dict) else None
    return param.split(".")[0] if isinstance(param, str) else None


def _names(exc: openai.APIStatusError, parameter: str) -> bool:
    return _param(exc) == parameter or parameter in server_text(exc)


def _adapt(cap: Capability, exc: openai.APIStatusError, structured: Structured) -> str | None:
    """Change `cap` so the server may accept the request; what changed, or None if nothing helps."""
    if exc.status_code not in (400, 422) and not (exc.status_code >= 500 and _names(exc, "response_format")):
        return None
    text = server_text(exc)
    if cap.limit_param == "max_tokens" and (_param(exc) == "max_tokens" or "max_completion_tokens" in text):
        cap.limit_param = "max_completion_tokens"
        return "max_tokens → max_completion_tokens"
    if cap.temperature and (_param(exc) == "temperature" or "'temperature'" in text):
        cap.temperature = False
        return "temperature 0 → the server's default"
    if structured == "auto" and _names(exc, "response_format") and cap.mode != "prompt":
        was, cap.mode = cap.mode, MODES[MODES.index(cap.mode) + 1]
        return f"{was} → {cap.mode}"
    return None


def extract_json(text: str) -> Any:
    """The JSON object in a model's answer: whole, fenced, or the first one inside prose."""
    text = _THINK.sub("", text).strip()
    candidates = [text] + [m.group(1).strip() for m in _FENCE.finditer(text)]
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    decoder = json.JSONDecoder()
    start = text.find("{")
    for _ in range(_SCAN_OBJECTS):
        if start < 0:
            break
        try:
            found, _end = decoder.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if isinstance(found, dict):
            return found
        start = text.find("{", start + 1)
    raise ValueError("the answer holds no JSON object")


def _schema(schema: type[pydantic.BaseModel]) -> dict[str, Any]:
    """The strict JSON schema the SDK's own `parse` sends (public helper `pydantic_function_tool`)."""
    parameters: dict[str, Any] = openai.pydantic_function_tool(schema)["function"]["parameters"]
    return parameters


def _request(
    cap: Capability, mode: Mode, messages: list[dict[str, str]], schema: type[pydantic.BaseModel], max_tokens: int
) -> dict[str, Any]:
    extra: dict[str, Any] = {cap.limit_param: max_tokens}
    if cap.temperature:
        extra["temperature"] = 0
    if mode == "json_schema":
        extra["response_format"] = {"type": "json_schema", "json_schema": {
            "name": schema.__name__, "schema": _schema(schema), "strict": True}}
        return {"messages": messages, **extra}
    if mode == "json_object":
        extra["response_format"] = {"type": "json_object"}
    # json_object needs the word JSON in the messages (OpenAI refuses it otherwise); both need the shape
    instruction = ("Answer with one JSON object only, no prose and no code fences, matching this JSON schema: "
                   + json.dumps(_schema(schema), ensure_ascii=False, separators=(",", ":")))
    if messages and messages[0]["role"] == "system":
        messages = [{"role": "system", "content": f"{messages[0]['content']}\n\n{instruction}"}, *messages[1:]]
    else:
        messages = [{"role": "system", "content": instruction}, *messages]
    return {"messages": messages, **extra}


async def ask(
    llm: AsyncOpenAI, *, model: str, messages: list[dict[str, str]], schema: type[T], max_tokens: int,
    request_timeout: float, structured: Structured = "auto",
) -> tuple[T, str, CompletionUsage | None]:
    """The parsed answer, the model that gave it and its token usage; raises `LLMCallError`."""
    cap = capability(llm, model)
    for _ in range(ADAPTATIONS + 1):
        mode: Mode = cap.mode if structured == "auto" else structured
        sent = replace(cap)
        try:
            completion = await llm.chat.completions.create(
                model=model, timeout=request_timeout,  # the SDK's per-request HTTP timeout
                **_request(cap, mode, messages, schema, max_tokens),
            )
        except openai.APIStatusError as exc:
            text = server_text(exc, llm.api_key)
            if cap != sent:  # a concurrent call learnt something meanwhile: try with that first
                continue
            change = _adapt(cap, exc, structured)
            if change is None:
                raise _status_error(exc, text, mode, structured) from None
            log.warning("llm.request_adapted", endpoint=str(llm.base_url), model=model, change=change,
                        status=exc.status_code, server_error=text)
            continue
        except openai.APITimeoutError:
            raise LLMCallError("timeout", f"no answer within {request_timeout:g}s") from None
        except openai.APIConnectionError as exc:
            raise LLMCallError("error", f"connection failed: {type(exc).__name__}") from None
        except openai.APIError as exc:
            raise LLMCallError("error", f"LLM call failed: {type(exc).__name__}") from None
        return _parsed(completion, schema), completion.model, completion.usage
    raise LLMSetupError("error", f"the LLM endpoint refused {ADAPTATIONS + 1} adapted requests")


def _status_error(exc: openai.APIStatusError, text: str, mode: Mode, structured: Structured) -> LLMError:
    status = exc.status_code
    kind = LLMCallError if status >= 500 or status in (408, 409, 429) else LLMSetupError
    hint = ""
    if structured != "auto" and _names(exc, "response_format"):
        hint = f" (QUALIBOT_LLM_STRUCTURED={structured}; `auto` would try the next mode)"
    elif mode == "prompt" and _names(exc, "response_format"):
        hint = " (no response_format was sent)"
    return kind("error", f"LLM endpoint answered HTTP {status}: {text or 'no message'}{hint}")


def _parsed(completion: Any, schema: type[T]) -> T:
    usage = completion.usage
    if not completion.choices:
        raise LLMCallError("invalid", "the answer has no choices", usage=usage)
    choice = completion.choices[0]
    if choice.finish_reason == "length":
        raise LLMCallError("truncated", "output truncated at the token limit", usage=usage,
                           content=choice.message.content or "")
    if choice.finish_reason == "content_filter":
        raise LLMCallError("refused", "output stopped by the content filter", usage=usage)
    message = choice.message
    if getattr(message, "refusal", None):
        raise LLMCallError("refused", "the model refused to answer", usage=usage)
    if not (message.content or "").strip():
        raise LLMCallError("invalid", "the answer is empty", usage=usage)
    try:
        data = extract_json(message.content)
    except ValueError as exc:
        raise LLMCallError("invalid", f"output does not fit the schema ({exc})", usage=usage) from None
    try:
        return schema.model_validate(data)
    except pydantic.ValidationError as exc:
        errors = exc.errors()
        kind, where = (errors[0]["type"], ".".join(str(p) for p in errors[0]["loc"])) if errors else ("?", "")
        raise LLMCallError("invalid", f"output does not fit the schema ({kind} at {where or 'output'})",
                           usage=usage) from None
