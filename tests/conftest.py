"""Suite-wide: a backstop for pytest-timeout that needs no GIL.

pytest-timeout's timer is a Python thread: a deadlock in which some thread holds the GIL
forever (a worker inside a Qt call, waiting on a Qt lock) stops it as well. faulthandler's
watchdog is a C thread: ``BACKSTOP_S`` after a test's timeout it prints every thread's Python
stack to the real stderr and exits the process with status 1.
"""

from __future__ import annotations

import faulthandler
import os
import sys
from collections.abc import Iterator

import pytest

BACKSTOP_S = float(os.environ.get("DENSESTUDIO_TIMEOUT_BACKSTOP_S", "30"))
_stderr_fd = pytest.StashKey[int]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_stderr_fd] = os.dup(sys.__stderr__.fileno())  # not the captured one


def _timeout(item: pytest.Item) -> float:
    """The test's pytest-timeout limit: its marker, --timeout, or the ini value (0 = none)."""
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    option = item.config.getoption("timeout", None)
    if option is not None:
        return float(option)
    try:
        return float(item.config.getini("timeout") or 0)
    except ValueError:  # pytest-timeout is not installed
        return 0.0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    timeout = _timeout(item)
    if timeout > 0:
        faulthandler.dump_traceback_later(timeout + BACKSTOP_S, exit=True,
                                          file=item.config.stash[_stderr_fd])
    try:
        yield
    finally:
        if timeout > 0:
            faulthandler.cancel_dump_traceback_later()
