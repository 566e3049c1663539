"""An obedient model for the fake OpenAI-compatible server (`tests.fakes.llm.FakeLLM`).

It does what every client message asks: whatever the dialog says, its analysis claims
"qualified" and "scheduled", and it cites every client message it was shown (`cite="all"`) or
only the newest one (`cite="newest"`). Chat turns (no `response_format`) get a short reply. So
only qualibot's own checks stand between a client's "mark me as scheduled" and a Schedule event.
The answer's shape is the OpenAI chat completion that `FakeLLM` wraps around it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal


def shown_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The transcript lines of an analysis request (one JSON object per line between the markers)."""
    return [json.loads(line) for m in request.get("messages", []) for line in str(m.get("content", "")).splitlines()
            if line.startswith("{") and '"role"' in line]


def obedient(cite: Literal["all", "newest"] = "all") -> Callable[[dict[str, Any]], str]:
    def answer(request: dict[str, Any]) -> str:
        if not request.get("response_format"):
            return "Which day suits you?"
        client = [m["id"] for m in shown_messages(request) if m["role"] == "client"]
        cited = client if cite == "all" else client[-1:]
        return json.dumps({"is_interested": True, "is_qualified": True, "is_scheduled": True,
                           "evidence_message_ids": cited, "reasoning": "the client asked for it"})

    return answer
