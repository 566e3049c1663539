"""`qualibot prompt generate --direction ID --business FILE [--save]`: a qualification prompt
written by the LLM from a description of the business, printed, and stored with `--save`.

Exit codes: 0 done; 1 the LLM gave no usable prompt, or the database is unavailable;
2 bad input (no such file, an empty file, an unknown direction, no LLM key configured).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from capi import tenants
from core.context import make_llm
from core.db import UNAVAILABLE_ERRORS, open_pool
from core.settings import Settings
from qualibot.cli import CliError
from qualification.prompt_gen import MAX_BUSINESS_CHARS, PromptGenerationFailed, generate_prompt


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("prompt")
    psub = p.add_subparsers(dest="prompt_command", required=True, metavar="ACTION")
    gen = psub.add_parser(
        "generate", help="write a direction's qualification prompt from a business description",
        description="Ask the LLM for a qualification prompt (business context, 3 to 5 questions with "
                    "good and bad answers, signs of a booked meeting) from a description of the "
                    "business, and print it. --save also stores it on the direction.",
        epilog="exit codes: 0 done, 1 no usable prompt or database unavailable, 2 bad input",
    )
    gen.add_argument("--direction", required=True, metavar="ID", help="the direction's id")
    gen.add_argument("--business", required=True, type=Path, metavar="FILE",
                     help="a text file describing the business: offer, clients, how meetings are booked")
    gen.add_argument("--save", action="store_true",
                     help="store the prompt as the direction's qualification_prompt")
    gen.set_defaults(func=run_generate)


def _read_business(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{path}: not UTF-8 text", code=2) from None
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror or exc}", code=2) from None
    if not text.strip():
        raise CliError(f"{path}: the business description is empty", code=2)
    if len(text) > MAX_BUSINESS_CHARS:
        print(f"qualibot: {path}: only the first {MAX_BUSINESS_CHARS} characters are used", file=sys.stderr)
    return text


async def run_generate(args: argparse.Namespace, settings: Settings) -> int:
    business = _read_business(args.business)
    llm = make_llm(settings)
    if llm is None:
        raise CliError("no LLM configured: set OPENAI_API_KEY (and OPENAI_BASE_URL for another "
                       "OpenAI-compatible server)", code=2)
    try:
        async with open_pool(settings, max_size=2) as pool:
            direction = await tenants.direction_name(pool, args.direction)
            if direction is None:
                raise CliError(f"unknown direction {args.direction!r} (`qualibot config export` lists them)",
                               code=2)
            try:
                text = await generate_prompt(
                    llm, model=settings.llm_model, business=business, direction=direction["id"],
                    direction_name=direction["name"], request_timeout=max(settings.llm_timeout_seconds, 60.0),
                    structured=settings.llm_structured,
                )
            except PromptGenerationFailed as exc:
                raise CliError(f"no prompt was generated: {exc}") from None
            if args.save:
                await tenants.save_qualification_prompt(pool, direction["id"], text)
    except UNAVAILABLE_ERRORS as exc:
        raise CliError(f"database unavailable: {type(exc).__name__}") from None
    finally:
        await llm.close()
    print(text)
    if args.save:
        print(f"qualibot: saved as the qualification_prompt of direction {direction['id']!r}; `qualibot config "
              "apply` keeps it while the file has no qualification_prompt for that direction", file=sys.stderr)
    return 0
