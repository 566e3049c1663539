"""`qualibot bot resume --instance I --phone P`: end a human operator's pause of the bot early."""

from __future__ import annotations

import argparse
from typing import Any

from bot.operator import ResumeError, resume
from core.db import UNAVAILABLE_ERRORS, open_pool
from core.logging import mask_phone
from core.settings import Settings
from qualibot.cli import CliError


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("bot")
    bsub = p.add_subparsers(dest="bot_command", required=True, metavar="ACTION")
    r = bsub.add_parser("resume", help="end an operator's pause early: the bot answers this chat again")
    r.add_argument("--instance", required=True,
                   help="the Evolution instance name, or a WhatsApp Cloud number's phone_number_id "
                   "(or its instance name, cloud-<phone_number_id>)")
    r.add_argument("--phone", required=True,
                   help="the person's phone (+55 31 98888-7777, 553188887777, ...) or the chat's LID")
    r.set_defaults(func=run_resume)


async def run_resume(args: argparse.Namespace, settings: Settings) -> int:
    try:
        async with open_pool(settings, max_size=1) as pool:
            done = await resume(pool, args.instance, args.phone)
    except ResumeError as exc:
        raise CliError(str(exc), code=2 if str(exc).startswith("--") else 1) from None
    except UNAVAILABLE_ERRORS as exc:
        raise CliError(f"database unavailable: {type(exc).__name__}: {exc}") from None
    chat = mask_phone(done.contact)
    if done.was_paused_until is None:
        print(f"the bot was not paused in chat {chat} (dialog {done.dialog_id}); nothing changed")
    else:
        print(f"resumed: the bot answers chat {chat} (dialog {done.dialog_id}) again; "
              f"the operator's pause would have lasted until {done.was_paused_until:%Y-%m-%d %H:%M %Z}")
    return 0
