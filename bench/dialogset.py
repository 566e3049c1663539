"""The labelled dialogs of `bench/dialogs/` (issue 19), read into the transcripts production builds.

One YAML file per business and language: `business`, `language`, `description`,
`qualification_prompt`, then `dialogs`, each with an `id`, a `case` (booked, qualified,
operator_books_no_confirm, availability_only, booked_then_cancelled, non_fit_answers_all,
injection, media_only, long_past_window, …), the expected `level` (0-3: 1 is the "2+ client
messages" rule, 2 qualified, 3 booked and confirmed by the client) and the `evidence`: the ids of
the client messages that prove a level 2 or 3. Messages are one-key maps, numbered from 1 in order:
`c` client, `b` bot, `o` operator; `audio`, `image`, `video`, `document`, `sticker` a client's media
message with its caption (often empty).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

from qualification.prompt import WINDOW_MESSAGES, Role, Transcript, TranscriptMessage

DIALOGS_DIR = Path(__file__).parent / "dialogs"
ROLES: dict[str, Role] = {"c": "client", "b": "bot", "o": "operator"}
MEDIA = ("audio", "image", "video", "document", "sticker")


@dataclass(frozen=True)
class Dialog:
    id: str
    business: str
    language: str
    case: str
    level: int
    evidence: list[int]
    messages: list[TranscriptMessage]
    criteria: str  # the business's description and qualification prompt, as a direction holds them

    @property
    def client_ids(self) -> set[int]:
        return {m.id for m in self.messages if m.role == "client"}

    def transcript(self, window: int = WINDOW_MESSAGES) -> Transcript:
        """What production shows the model: the newest `window` messages (qualification.dialogs)."""
        shown = self.messages[-window:]
        return Transcript(shown, omitted=len(self.messages) - len(shown))


def _message(n: int, item: dict[str, Any]) -> TranscriptMessage:
    if len(item) != 1:
        raise ValueError(f"message {n}: one key (c, b, o or a media type), not {sorted(item)}")
    key, text = next(iter(item.items()))
    if key in MEDIA:
        return TranscriptMessage(n, "client", str(text or ""), key)
    if key not in ROLES:
        raise ValueError(f"message {n}: unknown key {key!r}")
    return TranscriptMessage(n, ROLES[key], str(text))


def load(directory: Path = DIALOGS_DIR) -> list[Dialog]:
    dialogs = []
    for path in sorted(directory.glob("*.yaml")):
        data = cast(dict[str, Any], yaml.safe_load(path.read_text(encoding="utf-8")))
        criteria = f"{data['description']}\n{data['qualification_prompt']}".strip()
        for d in data["dialogs"]:
            messages = [_message(n, item) for n, item in enumerate(d["messages"], start=1)]
            dialogs.append(Dialog(id=d["id"], business=data["business"], language=data["language"],
                                  case=d["case"], level=int(d["level"]), evidence=list(d["evidence"]),
                                  messages=messages, criteria=criteria))
    return dialogs
