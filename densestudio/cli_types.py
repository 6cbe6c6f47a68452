"""argparse value types that refuse out-of-range numbers with a usage message.

A number the command cannot use (nan, inf, a negative count, a rate above 1) must stop at the
command line with exit code 2 and one clear line, never reach the code below as a traceback.
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def number(convert: type[int] | type[float], *, above: float | None = None,
           at_least: float | None = None, below: float | None = None,
           at_most: float | None = None) -> Callable[[str], float]:
    """A finite int/float within the given bounds (above/below exclusive, at_least/at_most
    inclusive); the error names the accepted range."""
    wanted = "an integer" if convert is int else "a number"

    def show(v: float) -> str:  # 9223372036854775807, not 9.22337e+18
        return str(int(v)) if convert is int else f"{v:g}"

    if at_least is not None and at_most is not None:
        wanted += f" between {show(at_least)} and {show(at_most)}"
    elif above is not None and below is not None:
        wanted += f" between {show(above)} and {show(below)} (exclusive)"
    else:
        bounds = [(">", above), (">=", at_least), ("<", below), ("<=", at_most)]
        wanted += " and".join(f" {op} {show(v)}" for op, v in bounds if v is not None)

    def parse(text: str) -> float:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {wanted}") from None
        if (not math.isfinite(value)
                or (above is not None and value <= above)
                or (at_least is not None and value < at_least)
                or (below is not None and value >= below)
                or (at_most is not None and value > at_most)):
            raise argparse.ArgumentTypeError(f"'{text}' is not {wanted}")
        return value

    parse.__name__ = convert.__name__  # argparse names the type in some messages
    return parse


COUNT = number(int, at_least=0)
"""How many to show or list: 0 or more."""
PROBABILITY = number(float, at_least=0, at_most=1)
RATE = number(float, above=0, below=1)
"""A target rate such as a miss rate: strictly between 0 and 1."""
COST = number(float, at_least=0)

INT64_MAX = 2**63 - 1  # the database's and the random generators' largest integer
RUN_ID = number(int, at_least=1, at_most=INT64_MAX)
"""A run id (--run, --resume, --candidate): a huge one is refused here, not by SQLite."""
SEED = number(int, at_least=0, at_most=INT64_MAX)
MINUTES = number(float, above=0, at_most=60 * 24 * 366)
"""A time budget in minutes: at most a year (1e308 minutes is no plan)."""
LEARNING_RATE = number(float, above=0, at_most=100)
SIZE = number(int, at_least=0, at_most=1 << 20)
"""Epochs, pixels, batch sizes, folds: the training configuration checks the real limits."""


def author(text: str) -> str:
    """An author name (--user, --by, --author): refused here by the rule every command
    uses (1-64 characters, no control characters), never cut."""
    from densestudio.core.errors import ProjectError
    from densestudio.core.store import normalize_author

    try:
        return normalize_author(text)
    except ProjectError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
