"""Who is acting: the name label changes, imports and approvals are recorded as."""

from __future__ import annotations

import getpass
import os
import unicodedata

from densestudio.core.errors import ProjectError

# Unicode categories a name must not hold: control characters, line and paragraph breaks.
BAD_NAME_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})

USER_ENV = "DENSESTUDIO_USER"  # who label changes and approvals are recorded as


def current_user() -> str:
    """The name recorded as who did something: $DENSESTUDIO_USER (set by ``--user`` or a
    preference) or else the OS login name."""
    name = os.environ.get(USER_ENV, "").strip()
    if name:  # refused, never cut: the same rule as every other author name
        try:
            return normalize_author(name)
        except ProjectError as exc:
            raise ProjectError(f"${USER_ENV} (--user): {exc}") from None
    try:
        return normalize_author(getpass.getuser())
    except Exception:  # no login name (some containers, services), or an odd one
        return "user"


MAX_AUTHOR = 64  # characters (the column's size)


def normalize_author(name: str) -> str:
    """An author name as given (``--author``, a CSV column): trimmed, 1-64 characters, no
    control characters. Raises ProjectError with the reason otherwise."""
    name = unicodedata.normalize("NFC", name).strip()
    if not name:
        raise ProjectError("An author name cannot be empty.")
    if any(unicodedata.category(ch) in BAD_NAME_CATEGORIES for ch in name):
        raise ProjectError("An author name cannot contain line breaks or control characters.")
    if len(name) > MAX_AUTHOR:
        raise ProjectError(f"An author name can have at most {MAX_AUTHOR} characters.")
    return name
