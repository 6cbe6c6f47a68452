"""Cancel tokens and progress reporting shared by every long-running core/ml function.

Long work is a plain function taking ``on_event`` (a callable receiving frozen dataclass
events) and a ``CancelToken``. The GUI wraps such a function in a worker thread; the CLI
prints the events. Neither side needs to know about the other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from densestudio.core.errors import CancelledError

EventCallback = Callable[[Any], None]


@dataclass(frozen=True)
class Progress:
    """Base of the events that only say how far a job is (done of total, a step, a rate).

    They come often and each one supersedes the last, so a receiver may drop all but the
    newest; every other event (started, epoch ended, finished, failed) must be delivered.
    """


def ignore_event(_event: object) -> None:
    """Default ``on_event`` for callers that do not care about progress."""


class CancelToken:
    """A thread-safe flag: the UI sets it, the worker polls it between units of work."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise CancelledError("Cancelled by the user.")
