"""How numbers are written for people: time left, estimates, percentages, HTML text.

One module so that the CLI, the Train tab, the import dialog, the label audit and the
reports say "2:05 left" and "97.8 %" the same way (pure Python: the CLI has no Qt).
"""

from __future__ import annotations

import math
from html import escape

UNKNOWN = "—"


def _unknown(value: float | None) -> bool:
    return value is None or math.isnan(value) or value < 0


def eta(seconds: float | None, unknown: str = UNKNOWN) -> str:
    """Time left as a clock: "0:42", "12:05", "1:02:03" (``unknown`` before it is known)."""
    if seconds is None or _unknown(seconds):
        return unknown
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def duration(seconds: float) -> str:
    """An estimate, so rounded: "40 s", "3 min", "1 h 20 min"."""
    if seconds < 60:
        return f"{max(10, round(seconds / 10) * 10)} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def percent(value: float | None, digits: int = 1) -> str:
    """A share in [0, 1] as "97.8 %" ("—" when there is none)."""
    if value is None or math.isnan(value):
        return UNKNOWN
    return f"{value * 100:.{digits}f} %"


def html_text(text: str) -> str:
    """Plain text made safe inside Qt rich text / HTML (names may contain < and &)."""
    return escape(text, quote=False)
