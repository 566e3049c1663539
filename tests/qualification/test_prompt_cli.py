"""`qualibot prompt generate`: a prompt from a business description, printed, saved with --save."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import stamina

from core.settings import Settings
from qualibot.cli import CliError, build_parser
from tests.fakes.llm import FakeLLM, prompt_text

BUSINESS = "Smile Clinic, Moscow. Dental implants from 30 000 RUB.\nConsultations on weekdays, 9–18."


def generated(questions: int = 4) -> str:
    return json.dumps({
        "business_context": "A dental clinic placing implants for adults in Moscow.",
        "questions": [{"question": f"Question {i}?", "good_answer": f"good {i}", "bad_answer": f"bad {i}"}
                      for i in range(1, questions + 1)],
        "booking_signs": ["A date and time confirmed by the client"],
    })


@pytest.fixture
def business_file(tmp_path: Path) -> Path:
    path = tmp_path / "business.txt"
    path.write_text(BUSINESS, encoding="utf-8")
    return path


async def _run(settings: Settings, *argv: str) -> int:
    args = build_parser().parse_args(["prompt", "generate", *argv])
    try:
        code: int = await args.func(args, settings)
    except CliError as exc:
        return exc.exit_code
    return code


async def test_generate_prints_a_prompt_and_saves_it_only_when_asked(
    seeded: asyncpg.Pool, fake_llm: FakeLLM, make_settings: Callable[..., Settings], business_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_llm.responder = lambda _req: generated(questions=6)
    settings = make_settings(openai_api_key="k", openai_base_url=fake_llm.base_url)
    before = await seeded.fetchval("SELECT qualification_prompt FROM account_directions WHERE id = 'implants'")
    assert await _run(settings, "--direction", "implants", "--business", str(business_file)) == 0
    out = capsys.readouterr().out
    assert out.startswith("Business: A dental clinic") and "Signs of a booked meeting:" in out
    assert "5. Question 5?" in out and "Question 6" not in out  # at most five questions
    assert "   Good answer: good 1" in out and "   Bad answer: bad 1" in out
    assert await seeded.fetchval(
        "SELECT qualification_prompt FROM account_directions WHERE id = 'implants'") == before
    assert BUSINESS.splitlines()[1] in prompt_text(fake_llm.requests[0]["json"])

    assert await _run(settings, "--direction", "implants", "--business", str(business_file), "--save") == 0
    saved = await seeded.fetchval("SELECT qualification_prompt FROM account_directions WHERE id = 'implants'")
    assert saved == capsys.readouterr().out.strip()


@pytest.mark.parametrize(("case", "code"), [
    ("unknown direction", 2), ("missing file", 2), ("empty file", 2), ("no LLM key", 2),
    ("too few questions", 1), ("LLM down", 1),
])
async def test_bad_input_and_failures_have_clear_exit_codes(
    case: str, code: int, seeded: asyncpg.Pool, fake_llm: FakeLLM, make_settings: Callable[..., Settings],
    business_file: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers: dict[str, Any] = {"too few questions": generated(questions=2), "LLM down": {"status": 503}}
    fake_llm.responder = lambda _req: answers.get(case, generated())
    settings = make_settings(openai_api_key=None if case == "no LLM key" else "k",
                             openai_base_url=fake_llm.base_url)
    direction = "nope" if case == "unknown direction" else "implants"
    path = business_file.parent / "absent.txt" if case == "missing file" else business_file
    if case == "empty file":
        path.write_text("  \n", encoding="utf-8")
    with stamina.set_testing(True, attempts=100, cap=True):  # no waits between tries, as many tries
        assert await _run(settings, "--direction", direction, "--business", str(path), "--save") == code
    saved = await seeded.fetchval("SELECT qualification_prompt FROM account_directions WHERE id = 'implants'")
    assert saved.startswith("Questions: which tooth?")  # unchanged
    assert fake_llm.calls == {"too few questions": 3, "LLM down": 3}.get(case, 0)


async def test_the_installed_command_end_to_end(
    seeded: asyncpg.Pool, fake_llm: FakeLLM, database_url: str, business_file: Path
) -> None:
    fake_llm.responder = lambda _req: generated()
    env = {**os.environ, "DATABASE_URL": database_url, "OPENAI_API_KEY": "k",
           "OPENAI_BASE_URL": fake_llm.base_url}

    async def qualibot(*argv: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "qualibot", *argv, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        return proc.returncode or 0, out.decode(), err.decode()

    code, out, err = await qualibot("prompt", "generate", "--direction", "implants", "--business",
                                    str(business_file), "--save")
    assert code == 0, err
    assert "Qualification questions:" in out and "config apply" in err
    saved = await seeded.fetchval("SELECT qualification_prompt FROM account_directions WHERE id = 'implants'")
    assert saved == out.strip()
    code, _, err = await qualibot("prompt", "generate", "--direction", "ghost", "--business", str(business_file))
    assert code == 2 and "unknown direction 'ghost'" in err
