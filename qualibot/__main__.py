"""`python -m qualibot` is the same as the `qualibot` command."""

import sys

from qualibot.cli import main

sys.exit(main())
