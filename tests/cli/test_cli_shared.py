"""The CLI with a shared project: the URL wherever a project goes, import-labels, the files
root and the root mapping, and one clear line (exit 2) when the server cannot be reached."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from densestudio.core import machine
from densestudio.core.store import Project
from tests.cli.test_cli_hostile import run
from tests.core.bad_files import make_class_folders

Capsys = pytest.CaptureFixture[str]


@pytest.mark.postgres
def test_new_import_info_import_labels_on_a_server(pg_url: str, tmp_path: Path,
                                                   capsys: Capsys) -> None:
    data = make_class_folders(tmp_path / "nas" / "images", classes=("ok", "ng"), per_class=3)
    code, out, _ = run(capsys, "new", pg_url, "--files-root", tmp_path / "nas" / "proj")
    shown = Project.open(pg_url).location
    assert code == 0 and out.splitlines() == [
        f"Created project {shown}", f"  files root (runs, checkpoints): {tmp_path}/nas/proj"]
    code, out, _ = run(capsys, "import", pg_url, data, "--labels-from-subfolders")
    assert code == 0 and "6 image(s) added" in out
    with Project.open(pg_url) as project:
        first = project.page(limit=1)[0]
        other = next(c.name for c in project.classes() if c.id != first.label_id)
    labels = tmp_path / "labels.csv"
    labels.write_text(f"content_hash,class,author\n{first.content_hash},{other},mes\n"
                      "deadbeef,ok,mes\n", encoding="utf-8")
    code, out, _ = run(capsys, "import-labels", pg_url, labels)
    assert code == 1, "a row was skipped"
    assert out.splitlines()[0] == "2 row(s): 1 label(s) set, 0 already so, 1 row(s) skipped."
    assert "line 3: no image with path or hash 'deadbeef'" in out
    code, out, _ = run(capsys, "info", pg_url)
    assert code == 0 and out.startswith(f"Project {shown}\n  files root: {tmp_path}/nas/proj")
    assert "labeled by: " in out and "mes 1" in out
    code, out, _ = run(capsys, "files-root", pg_url)
    assert out.strip() == f"{tmp_path}/nas/proj"


def test_import_labels_on_a_file_and_its_errors(tmp_path: Path, capsys: Capsys) -> None:
    data = make_class_folders(tmp_path / "data", classes=("a",), per_class=2)
    proj = tmp_path / "p.dsproj"
    run(capsys, "new", proj)
    run(capsys, "import", proj, data)
    files = sorted((data / "a").iterdir())
    labels = tmp_path / "l.csv"
    labels.write_text(f"path,class\n{files[0]},new\n{files[1].relative_to(tmp_path)},new\n")
    code, out, _ = run(capsys, "import-labels", proj, labels)
    assert code == 1 and "unknown class 'new': 2 row(s) skipped" in out
    code, out, _ = run(capsys, "import-labels", proj, labels, "--create-classes",
                       "--author", "line-3")
    assert code == 0 and "created classes: new" in out and "2 label(s) set" in out
    code, _, err = run(capsys, "import-labels", proj, tmp_path / "missing.csv")
    assert code == 2 and err.startswith("error: Cannot read ")
    code, _, err = run(capsys, "files-root", proj, tmp_path)
    assert code == 2 and "only a shared project has a files root" in err


def test_unreachable_server_is_one_line_and_no_password(capsys: Capsys) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://alice:hunter2-secret@127.0.0.1:{port}/line3"
    for command in (["info", url], ["import-labels", url, "x.csv"], ["new", url]):
        code, out, err = run(capsys, *command)
        assert code == 2 and out == ""
        assert err.startswith("error: cannot reach the database server of "
                              f"postgresql://alice@127.0.0.1:{port}/line3 (")
        assert len(err.splitlines()) == 1 and "hunter2" not in err


def test_unreachable_server_in_a_fresh_process_has_no_traceback() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = subprocess.run([sys.executable, "-m", "densestudio", "info",
                             f"postgresql://bob:pw9876@127.0.0.1:{port}/db"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "cannot reach the database server" in result.stderr and "pw9876" not in result.stderr


def test_map_root_lists_adds_and_removes(tmp_path: Path, capsys: Capsys) -> None:
    try:
        code, out, _ = run(capsys, "map-root")
        assert code == 0 and "No roots are mapped" in out
        code, out, _ = run(capsys, "map-root", "/mnt/nas/line3", tmp_path / "l3")
        assert code == 0 and f"  /mnt/nas/line3 -> {tmp_path / 'l3'}" in out
        assert machine.root_map().to_local("/mnt/nas/line3/a.png") == str(tmp_path / "l3/a.png")
        code, _, err = run(capsys, "map-root", "/elsewhere", "--remove")
        assert code == 2 and "is not mapped" in err
        code, out, _ = run(capsys, "map-root", "/mnt/nas/line3", "--remove")
        assert code == 0 and "No roots are mapped" in out
    finally:
        (machine.config_dir() / machine.ROOTS_FILE).unlink(missing_ok=True)
        machine.load_root_map()


def test_open_refuses_a_bad_project_argument_before_the_window(capsys: Capsys) -> None:
    code, _, err = run(capsys, "open", "mysql://host/db")
    assert code == 2 and "database URL that DenseStudio cannot open (mysql)" in err


def test_open_hands_the_url_to_the_window(tmp_path: Path) -> None:
    from densestudio.ui.app import project_from_argv

    url = "postgresql://alice@db.plant/line3"
    assert project_from_argv(["densestudio", "--project", url]) == url
    file = tmp_path / "p.dsproj"
    file.write_bytes(b"")
    assert project_from_argv(["densestudio", str(tmp_path / "gone.dsproj"), str(file)]) \
        == str(file), "Open with: the first existing project file"
    assert project_from_argv(["densestudio"]) is None


@pytest.mark.postgres
def test_train_evaluate_export_on_a_shared_project(pg_url: str, tmp_path: Path,
                                                   capsys: Capsys) -> None:
    """Training writes its rows to the server and its checkpoints under the files root."""
    from densestudio.core import runs
    from tests.cli.test_cli_ml import TINY
    from tests.ml.conftest import add_images, write_images

    with Project.create(pg_url, files_root=tmp_path / "nas") as project:
        add_images(project, write_images(tmp_path / "imgs", 12))
    code, _, err = run(capsys, "train", pg_url, *TINY, "--seed", "1")
    assert code == 0, err
    with Project.open(pg_url) as project:
        run_info = runs.latest_run(project, "finished")
        assert Path(run_info.checkpoint_best).is_relative_to(tmp_path / "nas" / "runs")
        assert Path(run_info.checkpoint_best).is_file()
        name = project.name
    code, out, _ = run(capsys, "evaluate", pg_url)
    assert code == 0 and "accuracy" in out.lower()
    code, out, _ = run(capsys, "export", pg_url, tmp_path)
    assert code == 0 and (tmp_path / f"{name}-run{run_info.id}.pt").is_file()
