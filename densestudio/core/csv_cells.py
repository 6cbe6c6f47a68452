"""CSV files users open in a spreadsheet: text cells that are never run as formulas, and the
output file written safely. No database imports, so the torch-free ``predict`` can use it."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Any

from densestudio.core.files import open_output

# A spreadsheet runs a cell that starts like a formula (=HYPERLINK(...), +, -, @) - OWASP's
# CSV-injection advice: make such text cells start with a single quote instead.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: str) -> str:
    """A text cell that a spreadsheet shows as text, never evaluates."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def csv_output(out: Path) -> AbstractContextManager[IO[Any]]:
    """The CSV file a user named, written safely (see ``files.open_output``); file names
    that are not UTF-8 are written as their original bytes."""
    return open_output(Path(out), "w", newline="", encoding="utf-8", errors="surrogateescape")
