"""A throwaway PostgreSQL server for the tests (real, local, stopped at the end).

Uses the server binaries of Debian's ``postgresql`` package (``make test`` installs it with
tests/setup_services.sh when /usr/lib/postgresql/*/bin/initdb is missing and we are root).
The cluster is initialized into a fresh temporary folder,
listens on a unix socket in that folder and on 127.0.0.1 (a free port), and runs as a
non-root user (PostgreSQL refuses root): ``postgres`` when it exists. It stops with the
process that started it: ``cleanup`` at the end of the session (and atexit), and the
parent-death signal if that process dies without cleaning up. Local socket logins
are trusted; TCP logins need the superuser's password (``PASSWORD``), so the tests can check
password handling too. fsync is off (the tests kill the server on purpose, never the OS).

Run by hand: ``python tests/pg_server.py`` starts one and prints its URL until Enter.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

SUPERUSER = "densestudio"
PASSWORD = "s3cret-test-pw"  # the superuser's password for TCP logins (tests only)


def find_bindir() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb")
    return Path(os.path.realpath(found)).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    bindir: Path
    root: Path  # temp folder: data/, the socket, the log
    port: int
    user: str | None  # run the server as this user (we are root), else as ourselves
    _databases: int = field(default=0)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root

    def _run(self, *args: str, check: bool = True, timeout: float = 60
             ) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    # ------------------------------------------------------------ life cycle
    def init(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self.user:
            shutil.chown(pwfile, self.user)
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--pwfile", str(pwfile),
                  "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync", timeout=120)
        pwfile.unlink()

    def start(self) -> None:
        """Run the postmaster as our own child (so a killed one is reaped at once and a
        restart never meets a stale "another postmaster" lock), and wait until it is ready."""
        # setpriv (util-linux): the postmaster gets SIGQUIT (immediate shutdown) when the
        # thread that started it dies, so a test run killed or ended by the faulthandler
        # backstop (no atexit then) leaves no server behind either.
        setpriv = shutil.which("setpriv")
        guard = [setpriv, "--pdeathsig", "QUIT", "--"] if setpriv else []
        args = [*guard, str(self.bindir / "postgres"), "-D", str(self.data),
                "-c", "listen_addresses=127.0.0.1", "-c", f"port={self.port}",
                "-c", f"unix_socket_directories={self.socket_dir}", "-c", "fsync=off",
                "-c", "full_page_writes=off", "-c", "max_connections=60",
                "-c", "shared_buffers=32MB", "-c", "log_min_messages=warning"]
        log = open(self.root / "log", "ab")
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=subprocess.STDOUT, user=self.user,
                                      start_new_session=True)
        log.close()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise subprocess.SubprocessError(
                    f"postgres exited with {self._proc.returncode}")
            ready = subprocess.run(
                [str(self.bindir / "pg_isready"), "-q", "-h", str(self.socket_dir), "-p",
                 str(self.port), "-U", SUPERUSER, "-d", "postgres"], capture_output=True)
            if ready.returncode == 0:
                return
            time.sleep(0.05)
        raise subprocess.SubprocessError("postgres did not become ready in 90 s")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: "fast" (SIGINT), "immediate" (SIGQUIT: no shutdown checkpoint,
        like ``pg_ctl stop -m immediate``) or "kill" (SIGKILL to the postmaster, as a crash
        would; its backends exit when they notice)."""
        proc = getattr(self, "_proc", None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal({"fast": signal.SIGINT, "immediate": signal.SIGQUIT,
                          "kill": signal.SIGKILL}[mode])
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(60)

    def kill(self) -> None:
        self.stop("kill")

    def running(self) -> bool:
        proc = getattr(self, "_proc", None)
        return proc is not None and proc.poll() is None

    def cleanup(self) -> None:
        self.stop("fast")
        shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------ databases
    def url(self, database: str = "postgres", password: bool = False, tcp: bool = False) -> str:
        """A project URL: over the unix socket (trusted), or TCP with the password."""
        if tcp:
            secret = f":{PASSWORD}" if password else ""
            return f"postgresql://{SUPERUSER}{secret}@127.0.0.1:{self.port}/{database}"
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}&port={self.port}"

    def admin(self) -> psycopg.Connection:
        import psycopg

        return psycopg.connect(host=str(self.socket_dir), port=self.port, user=SUPERUSER,
                               dbname="postgres", autocommit=True)

    def create_database(self, prefix: str = "t") -> str:
        self._databases += 1
        name = f"{prefix}_{os.getpid()}_{self._databases}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with contextlib.suppress(Exception), self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start(reason_if_unavailable: list[str] | None = None) -> PgServer | None:
    """Start a fresh server; None if there are no server binaries, with the reason appended
    to ``reason_if_unavailable``."""
    bindir = find_bindir()
    if bindir is None:
        if reason_if_unavailable is not None:
            reason_if_unavailable.append(
                "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb): "
                "install Debian's postgresql package; `make test` does it as root "
                "(tests/setup_services.sh)")
        return None
    user = None
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres").pw_name
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "postgres"],
                           check=True, capture_output=True)
            user = "postgres"
    root = Path(tempfile.mkdtemp(prefix="densestudio-pg-"))
    if user:
        shutil.chown(root, user)
    server = PgServer(bindir, root, _free_port(), user)
    atexit.register(server.cleanup)  # no server left behind, whatever happens
    try:
        server.init()
        server.start()
    except subprocess.SubprocessError as exc:
        log = (root / "log").read_text(errors="replace")[-800:] if (root / "log").exists() \
            else ""
        detail = getattr(exc, "stderr", "") or ""
        server.cleanup()
        raise RuntimeError(f"cannot start the PostgreSQL test server: {exc}\n{detail}\n{log}") \
            from exc
    return server


if __name__ == "__main__":
    reasons: list[str] = []
    srv = start(reasons)
    if srv is None:
        raise SystemExit(reasons[0])
    print(srv.url(srv.create_database("manual")))
    input("running; Enter stops it ")
    srv.cleanup()
