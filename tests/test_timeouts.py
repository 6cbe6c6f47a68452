"""A hung test fails the run within its timeout and prints every thread's stack, also when
the hang holds the GIL (the faulthandler backstop in tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# hang -> (the test's last line, what every thread's stack starts with in the report)
HANGS = {
    # The GIL is free: pytest-timeout's timer thread reports ("Stack of <thread name>").
    "sleep": ("time.sleep(100)", "Stack of "),
    # libc's sleep called with the GIL held: only the faulthandler backstop can report.
    "gil_held": ("ctypes.PyDLL(None).sleep(100)", "Thread 0x"),
}


@pytest.mark.parametrize("hang", sorted(HANGS))
def test_a_hang_fails_fast_with_all_stacks(tmp_path: Path, hang: str) -> None:
    test = tmp_path / "test_hang.py"
    test.write_text(textwrap.dedent(f"""
        import ctypes, threading, time

        def test_hangs():
            threading.Thread(target=time.sleep, args=(100,), name="bystander",
                             daemon=True).start()
            {HANGS[hang][0]}
    """))
    env = {**os.environ, "DENSESTUDIO_TIMEOUT_BACKSTOP_S": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(test), "-c", str(ROOT / "pyproject.toml"),
         "--rootdir", str(tmp_path), "-p", "tests.conftest", "-p", "no:cacheprovider",
         "--timeout", "1", "-q"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "Timeout" in out and out.count(HANGS[hang][1]) >= 2, out  # main + bystander
