"""Test-wide set-up: per-machine folders kept out of the user's home, and a real PostgreSQL
server (tests/pg_server.py) for the tests of shared projects, started on first use and
stopped at the end of the session."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from tests import pg_server as pg


@pytest.fixture(scope="session", autouse=True)
def _machine_dirs(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Caches, journals and the root mapping of shared projects live in per-user folders;
    the tests (and the CLI processes they start) use temporary ones."""
    base = tmp_path_factory.mktemp("machine")
    for name in ("CONFIG", "CACHE", "DATA"):
        os.environ[f"DENSESTUDIO_{name}_DIR"] = str(base / name.lower())


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pg.PgServer]:
    """A fresh PostgreSQL server for this test session (installed with apt-get if missing
    and we may); the tests that need it are skipped, saying why, only if that fails."""
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
