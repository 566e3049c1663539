"""One POST of JSON to a peer the bot sends replies through (Evolution, Graph), never retried here.

Every outcome is returned, none raised: a reply's caller records it on the message. A timeout is
told apart from a refused connection, because after a timeout the message may well have gone out.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True)
class PeerAnswer:
    status: int | None  # HTTP status; None when no answer came
    body: Any  # the decoded JSON answer; None when unreadable
    timed_out: bool = False
    failure: str | None = None  # why no answer came (the exception's type)


async def post_json(http: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str],
                    client_timeout: aiohttp.ClientTimeout) -> PeerAnswer:
    try:
        async with http.post(url, json=body, headers=headers, timeout=client_timeout) as resp:
            try:
                answer: Any = await resp.json(content_type=None)
            except ValueError:
                answer = None
            return PeerAnswer(resp.status, answer)
    except TimeoutError:
        return PeerAnswer(None, None, timed_out=True, failure="timeout")
    except (aiohttp.ClientError, OSError) as exc:
        return PeerAnswer(None, None, failure=type(exc).__name__)
    except asyncio.CancelledError:
        raise
