"""Suite-wide set-up.

- A backstop for pytest-timeout that needs no GIL. pytest-timeout's timer is a Python
  thread: a deadlock in which some thread holds the GIL forever (a worker inside a Qt call,
  waiting on a Qt lock) stops it as well. faulthandler's watchdog is a C thread:
  ``BACKSTOP_S`` after a test's timeout it prints every thread's Python stack to the real
  stderr and exits the process with status 1.
- Per-machine folders (caches, journals, the root mapping of shared projects) kept out of
  the user's home.
- A real PostgreSQL server (tests/pg_server.py) for the tests of shared projects, started on
  first use and stopped at the end of the session.
"""

from __future__ import annotations

import faulthandler
import itertools
import os
import sys
from collections.abc import Iterator

import pytest

from tests import pg_server as pg

BACKSTOP_S = float(os.environ.get("DENSESTUDIO_TIMEOUT_BACKSTOP_S", "30"))
_stderr_fd = pytest.StashKey[int]()


def pytest_report_header(config: pytest.Config) -> str:
    """Which CPU ran the suite and whether training used bf16 there (tests hold either way)."""
    from densestudio.ml.runtime import CPU_BF16_ENV, cpu_bf16_fast, cpu_model

    return (f"CPU: {cpu_model()}, {os.cpu_count()} cores; bf16 autocast on CPU: "
            f"{'yes' if cpu_bf16_fast() else 'no'} ({CPU_BF16_ENV}=0/1 overrides)")


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


@pytest.fixture(scope="session", autouse=True)
def _machine_dirs(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Caches, journals and the root mapping of shared projects live in per-user folders;
    the tests (and the CLI processes they start) use temporary ones."""
    base = tmp_path_factory.mktemp("machine")
    for name in ("CONFIG", "CACHE", "DATA"):
        os.environ[f"DENSESTUDIO_{name}_DIR"] = str(base / name.lower())


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pg.PgServer]:
    """A fresh PostgreSQL server for this test session; the tests that need it are skipped,
    saying why, only where the server binaries are missing (``make test`` installs them)."""
    reasons: list[str] = []
    server = pg.start(reasons)
    if server is None:
        pytest.skip(reasons[0])
    try:
        yield server
    finally:
        server.cleanup()


_schemas = itertools.count(1)


@pytest.fixture(scope="session")
def _pg_test_database(pg_server: pg.PgServer) -> str:
    return pg_server.create_database("dstests")


@pytest.fixture
def pg_url(pg_server: pg.PgServer, _pg_test_database: str) -> str:
    """The URL of a fresh, empty PostgreSQL project location: its own schema in the tests'
    database (a schema is made in milliseconds, a database in half a second)."""
    schema = f"s{next(_schemas)}"
    import psycopg

    with psycopg.connect(host=str(pg_server.socket_dir), port=pg_server.port,
                         user=pg.SUPERUSER, dbname=_pg_test_database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return pg_server.url(_pg_test_database) + f"&options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_database_url(pg_server: pg.PgServer) -> Iterator[str]:
    """The URL of a whole fresh database (for tests of several processes or a restart)."""
    name = pg_server.create_database()
    yield pg_server.url(name)
    pg_server.drop_database(name)
