"""What the pages compute from query rows: level-to-level conversion, durations, and the inline SVG
charts (drawn on the server, so pages need no JavaScript and no CDN)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

STATIC = Path(__file__).parent / "static"
_WIDTH, _HEIGHT, _PAD = 720, 160, 20
LEVEL_CLASSES = ("l1", "l2", "l3")


def conversion(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per direction over the period: decisions per level and the share that went one level further."""
    totals: dict[str | None, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in rows:
        totals[r["direction_id"]][r["event_level"] - 1] += r["total"]
    out = []
    for direction, (l1, l2, l3) in sorted(totals.items(), key=lambda kv: kv[0] or ""):
        out.append({"direction_id": direction, "level1": l1, "level2": l2, "level3": l3,
                    "level1_to_2": _share(l2, l1), "level2_to_3": _share(l3, l2)})
    return out


def per_day(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (day, direction), newest first, with each level's counts under `levels[1..3]`."""
    out: dict[tuple[Any, str | None], dict[str, Any]] = {}
    for r in rows:
        key = (r["day"], r["direction_id"])
        entry = out.setdefault(key, {"day": r["day"], "direction_id": r["direction_id"], "levels": {}})
        entry["levels"][r["event_level"]] = r
    return sorted(out.values(), key=lambda e: (-e["day"].toordinal(), e["direction_id"] or ""))


def _share(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def duration(seconds: int | float | None) -> str:
    """3725 → `1h 2m`; None → `–`."""
    if seconds is None:
        return "–"
    minutes = int(seconds) // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {mins}m"
    return f"{mins}m" if mins else f"{int(seconds)}s"


def _bars(days: list[date], series: list[tuple[str, list[float]]], top: float, title: str) -> Markup:
    """Grouped bars, one group per day; `series` are (css class, value per day)."""
    inner_w, inner_h = _WIDTH - 2 * _PAD, _HEIGHT - 2 * _PAD
    group = inner_w / max(len(days), 1)
    bar = group / (len(series) + 1)
    parts = [f'<svg class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>",
             f'<line x1="{_PAD}" y1="{_HEIGHT - _PAD}" x2="{_WIDTH - _PAD}" y2="{_HEIGHT - _PAD}" class="axis"/>']
    for i, day in enumerate(days):
        for j, (css, values) in enumerate(series):
            h = inner_h * values[i] / top if top else 0
            x = _PAD + i * group + j * bar
            parts.append(f'<rect class="{css}" x="{x:.1f}" y="{_HEIGHT - _PAD - h:.1f}" width="{bar:.1f}" '
                         f'height="{h:.1f}"><title>{day.isoformat()}: {values[i]:g}</title></rect>')
    if days:
        parts.append(f'<text x="{_PAD}" y="{_HEIGHT - 4}">{days[0].isoformat()}</text>')
        parts.append(f'<text x="{_WIDTH - _PAD}" y="{_HEIGHT - 4}" text-anchor="end">{days[-1].isoformat()}</text>')
    parts.append(f'<text x="{_PAD}" y="{_PAD - 6}">max {top:g}</text></svg>')
    return Markup("".join(parts))  # noqa: S704 - built from numbers and escaped text only


def _days(since: date, count: int) -> list[date]:
    return [since + timedelta(days=i) for i in range(count)]


def daily_levels(rows: list[dict[str, Any]], since: date, count: int) -> Markup:
    """Decisions per day and level (every status)."""
    days = _days(since, count)
    index = {d: i for i, d in enumerate(days)}
    series = [[0.0] * len(days) for _ in LEVEL_CLASSES]
    for r in rows:
        if r["day"] in index:
            series[r["event_level"] - 1][index[r["day"]]] += r["total"]
    top = max((v for s in series for v in s), default=0.0)
    return _bars(days, list(zip(LEVEL_CLASSES, series, strict=True)), top, "decisions per day and level")


def capture_share(rows: list[dict[str, Any]]) -> Markup:
    """Per day, every instance together: the share of new chats with a click id (percent)."""
    chats: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        chats[r["day"]][0] += r["new_chats"]
        chats[r["day"]][1] += r["with_click_id"]
    days = sorted(chats)
    shares = [round(100.0 * chats[d][1] / chats[d][0], 1) for d in days]
    return _bars(days, [("share", shares)], 100.0, "share of new chats with a click id, percent")
