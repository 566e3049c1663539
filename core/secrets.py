"""The secret values this process knows, and the one function that removes them from text.

A pattern (`token=...`, a key named `access_token`) finds only what looks like a secret; a peer
that echoes a token inside an error message does not look like anything. So the process keeps
the configured values themselves (every tenant's tokens, keys, webhook secrets, the code of a
Bitrix24 webhook URL, `OPENAI_API_KEY`) and replaces each occurrence, wherever it appears: in
every log line (`core.logging`) and in every peer answer before it is stored.

`core` knows no tenant: the product layer registers the values (`SECRETS.set_source(...)`) at
start and again whenever it reloads the configuration. One registry per process: logging is
configured once per process too, and every log line must see the same values.
Matching uses an Aho-Corasick automaton, so the cost is linear in the text whatever the number
of tenants.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import ahocorasick_rs

REDACTED = "[redacted]"
# shorter values are not secrets worth the name, and replacing them would mangle ordinary text
MIN_SECRET_LENGTH = 8
_MAX_DEPTH = 32  # nested answers deeper than this are cut off rather than walked


class SecretRegistry:
    """Secret values grouped by source (`"tenants"`, `"settings"`); replacing a source is atomic."""

    def __init__(self) -> None:
        self._sources: dict[str, frozenset[str]] = {}
        self._lock = threading.Lock()
        self._matchers: tuple[ahocorasick_rs.AhoCorasick, ahocorasick_rs.BytesAhoCorasick] | None = None

    def set_source(self, source: str, values: Iterable[str | None]) -> None:
        """Replace every value registered under `source` (None and too-short values are ignored)."""
        kept = frozenset(v for v in values if v and len(v) >= MIN_SECRET_LENGTH)
        with self._lock:
            self._sources[source] = kept
            everything = sorted(self.values())
            longest = ahocorasick_rs.MatchKind.LeftmostLongest
            self._matchers = (
                ahocorasick_rs.AhoCorasick(everything, matchkind=longest),
                ahocorasick_rs.BytesAhoCorasick([v.encode("utf-8", "surrogatepass") for v in everything],
                                                matchkind=longest),
            ) if everything else None

    def values(self) -> frozenset[str]:
        return frozenset().union(*self._sources.values())

    def redact(self, text: str, extra: Iterable[str | None] = ()) -> str:
        """`text` with every registered value (and every value in `extra`) replaced by REDACTED."""
        matchers = self._matchers
        if matchers is not None:
            try:
                text = _replace(text, matchers[0].find_matches_as_indexes(text), REDACTED)
            except UnicodeEncodeError:  # lone surrogates (broken UTF-16 from a peer): match the bytes
                raw = text.encode("utf-8", "surrogatepass")
                text = _replace(raw, matchers[1].find_matches_as_indexes(raw), _REDACTED_BYTES).decode(
                    "utf-8", "surrogatepass")
        for value in extra:
            if value and len(value) >= MIN_SECRET_LENGTH:
                text = text.replace(value, REDACTED)
        return text

    def redact_value(self, value: Any, extra: Iterable[str | None] = (), _depth: int = 0) -> Any:
        """A JSON-like value (dicts, lists, strings) with every string redacted, keys included."""
        extra = tuple(extra)
        if isinstance(value, str):
            return self.redact(value, extra)
        if _depth >= _MAX_DEPTH:
            return REDACTED if isinstance(value, Mapping | list | tuple) else value
        if isinstance(value, Mapping):
            return {
                self.redact(str(k), extra): self.redact_value(v, extra, _depth + 1) for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.redact_value(v, extra, _depth + 1) for v in value]
        return value

    def redact_bytes(self, data: bytes, extra: Iterable[str | None] = ()) -> bytes:
        """Raw peer bytes, redacted; whatever is not a secret stays byte for byte (UTF-8 or not)."""
        matchers = self._matchers
        if matchers is not None:
            data = _replace(data, matchers[1].find_matches_as_indexes(data), _REDACTED_BYTES)
        for value in extra:
            if value and len(value) >= MIN_SECRET_LENGTH:
                data = data.replace(value.encode("utf-8", "surrogatepass"), _REDACTED_BYTES)
        return data


_REDACTED_BYTES = REDACTED.encode()
_S = TypeVar("_S", str, bytes)


def _replace(text: _S, found: list[tuple[int, int, int]], by: _S) -> _S:
    if not found:
        return text
    parts: list[_S] = []
    last = 0
    for _, start, end in found:
        parts += (text[last:start], by)
        last = end
    parts.append(text[last:])
    return text[:0].join(parts)


SECRETS = SecretRegistry()


def redact(text: str, extra: Iterable[str | None] = ()) -> str:
    """`SECRETS.redact`: text with every configured secret value replaced."""
    return SECRETS.redact(text, extra)


def redact_value(value: Any, extra: Iterable[str | None] = ()) -> Any:
    """`SECRETS.redact_value`: a peer's parsed answer with every configured secret value replaced."""
    return SECRETS.redact_value(value, extra)


def redact_bytes(data: bytes, extra: Iterable[str | None] = ()) -> bytes:
    """`SECRETS.redact_bytes`: a peer's raw answer with every configured secret value replaced."""
    return SECRETS.redact_bytes(data, extra)
