"""Cost of the hardened webhook JSON reader (issue 14): `core.web.parse_json` against plain
`json.loads` (what `read_json` did before: decode, then the NUL/surrogate check), on normal
Evolution bodies of about 1 MiB, measured in the same run.

    .venv/bin/python bench/read_json.py [--mib 1] [--rounds 30]

Bodies (from tests/bot/fixtures/evolution/image-caption-2.3.7.json, Evolution 2.3.7): `base64`,
the media as one base64 string (webhook_base64 on: most of a media webhook is that string);
`bytes`, the thumbnail as Evolution 2.3.6+ encodes protobuf bytes, an object of numeric keys and
small integers (the number-heaviest body Evolution sends), capped below MAX_JSON_VALUES. Then
hostile bodies of the same size (`[[[[`, `[][][]`, `{"a":{"a":`..., escaped quotes), against
json.loads of the normal base64 body: a hostile body must cost about what a normal one does."""

from __future__ import annotations

import argparse
import base64
import copy
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.web import _UNSAFE, MAX_JSON_VALUES, BadJson, clean_strings, parse_json

FIXTURE = Path(__file__).resolve().parent.parent / "tests/bot/fixtures/evolution/image-caption-2.3.7.json"


def before(raw: bytes) -> Any:
    if not raw.strip():
        raise ValueError("empty")
    data = json.loads(raw)
    return clean_strings(data) if _UNSAFE.search(raw) else data


def bodies(size: int) -> dict[str, bytes]:
    doc = json.loads(FIXTURE.read_text())
    media = copy.deepcopy(doc)
    media["data"]["message"]["base64"] = base64.b64encode(os.urandom(size * 3 // 4)).decode()
    thumb = copy.deepcopy(doc)
    count = min(size // 10, MAX_JSON_VALUES - 1000)  # `"12345":255,` is about 11 bytes; more is refused
    thumb["data"]["message"]["imageMessage"]["jpegThumbnail"] = {str(i): i % 256 for i in range(count)}
    return {"base64": json.dumps(media).encode(), "bytes": json.dumps(thumb).encode()}


def hostile(size: int) -> dict[str, bytes]:
    return {"[[[[": b"[" * size, "[][][]": b"[" + b"[]," * (size // 3) + b"[]]",
            '{"a":{"a":': b'{"a":' * (size // 5), 'escaped "': b'["' + b'\\"' * (size // 3) + b'"]'}


def answer(raw: bytes) -> str:
    try:
        parse_json(raw)
    except BadJson as exc:
        return f"400 {exc.code}"
    return "decoded"  # `[][][]` is valid and shallow: the route then refuses it as no event


def best(fn: Callable[[bytes], Any], raw: bytes, rounds: int) -> tuple[float, float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn(raw)
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mib", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=30)
    args = p.parse_args()
    size = int(args.mib * 1024 * 1024)
    normal = bodies(size)
    for name, raw in normal.items():
        assert before(raw) == parse_json(raw)
        old_min, old_med = best(before, raw, args.rounds)
        new_min, new_med = best(parse_json, raw, args.rounds)
        print(f"{name:7} {len(raw) / 1048576:5.2f} MiB  json.loads {old_min * 1000:7.2f} ms "
              f"(median {old_med * 1000:.2f})  parse_json {new_min * 1000:7.2f} ms "
              f"(median {new_med * 1000:.2f})  ratio {new_min / old_min:.2f}")
    base_min, _ = best(before, normal["base64"], args.rounds)
    for name, raw in hostile(size).items():
        bad_min, bad_med = best(answer, raw, max(args.rounds // 3, 3))
        print(f"{name:10} {len(raw) / 1048576:5.2f} MiB  {answer(raw)} in {bad_min * 1000:7.2f} ms "
              f"(median {bad_med * 1000:.2f})  ratio to json.loads of the normal base64 body {bad_min / base_min:.2f}")


if __name__ == "__main__":
    main()
