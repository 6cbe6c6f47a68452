from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from densestudio.cli import main
from tests.core.bad_files import make_class_folders


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_new_import_info_export_relink(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_class_folders(tmp_path / "data", classes=("good", "bad"), per_class=5)
    proj = tmp_path / "p.dsproj"
    assert run(capsys, "new", tmp_path / "p")[0] == 0
    code, out, _ = run(capsys, "import", proj, data, "--labels-from-subfolders")
    assert code == 0 and "10 image(s) added" in out
    code, out, _ = run(capsys, "import", proj, data, "--labels-from-subfolders")
    assert code == 0 and "10 already in project" in out
    code, out, _ = run(capsys, "info", proj)
    assert code == 0 and "good" in out and "bad" in out and "images: 10" in out
    code, out, _ = run(capsys, "export-labels", proj, tmp_path / "labels.csv")
    rows = list(csv.DictReader(open(tmp_path / "labels.csv", encoding="utf-8")))
    assert len(rows) == 10 and {r["label"] for r in rows} == {"good", "bad"}
    assert all(r["split"] in ("train", "val", "test") for r in rows)
    data.rename(tmp_path / "elsewhere")
    code, out, _ = run(capsys, "info", proj, "--check-files")
    assert "10 image file(s) are missing" in out
    code, out, _ = run(capsys, "relink", proj, tmp_path / "elsewhere")
    assert code == 0 and "Relinked 10" in out
    code, out, _ = run(capsys, "split", proj, "--resplit", "--seed", "3", "--lock", "on")
    assert code == 0 and "test set locked" in out and "seed 3" in out


def test_import_with_bad_files_exits_nonzero_with_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_class_folders(tmp_path / "data", classes=("a",), per_class=2)
    (data / "a" / "broken.jpg").write_text("nope")
    run(capsys, "new", tmp_path / "p")
    code, out, _ = run(capsys, "import", tmp_path / "p.dsproj", data)
    assert code == 1 and "1 skipped" in out and "broken.jpg" in out


def test_user_errors_are_messages_not_tracebacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "info", tmp_path / "missing.dsproj")
    assert code == 2 and err.startswith("error: Project file not found")
    run(capsys, "new", tmp_path / "p")
    code, _, err = run(capsys, "new", tmp_path / "p")
    assert code == 2 and "already exists" in err
    code, _, err = run(capsys, "import", tmp_path / "p.dsproj", tmp_path / "nope")
    assert code == 2 and "Not found" in err and "Traceback" not in err
    code, _, err = run(capsys, "split", tmp_path / "p.dsproj", "--resplit", "--ratios", "1,1,1")
    assert code == 2 and "sum to 1" in err


def test_console_entry_point_runs(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "densestudio", "new", str(tmp_path / "x")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "Created project" in result.stdout


def test_ctrl_c_cancels_then_aborts_and_restores_the_handler(
    capsys: pytest.CaptureFixture[str]
) -> None:
    import signal

    from densestudio.cli import ctrl_c_cancels
    from densestudio.core.progress import CancelToken

    before = signal.getsignal(signal.SIGINT)
    cancel = CancelToken()
    with pytest.raises(KeyboardInterrupt), ctrl_c_cancels(cancel):
        signal.raise_signal(signal.SIGINT)  # first: ask the job to stop cleanly
        assert cancel.cancelled and "Stopping" in capsys.readouterr().err
        signal.raise_signal(signal.SIGINT)  # second: abort at once
    assert signal.getsignal(signal.SIGINT) is before
