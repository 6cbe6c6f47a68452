"""Hostile inputs and odd environments from the command line (issue 15): the exact command
sequences of the probe, each giving the right result as one clear line, never a traceback.
Core-level checks of the same items are in tests/reliability/test_hostile_inputs.py."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shlex
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import unicodedata
from pathlib import Path

import pytest
from sqlalchemy import Engine, event

from densestudio.cli import main
from densestudio.core import db
from densestudio.core.store import Project
from tests.core.bad_files import make_class_folders, make_fifo, noise, non_utf8_path
from tests.ml.conftest import write_images

TINY = ["--arch", "densenet_bc_tiny", "--img-size", "32", "--epochs", "2", "--batch-size", "6",
        "--device", "cpu", "--no-ema"]
CLI = [sys.executable, "-m", "densestudio"]
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def class_counts(out: str, name: str) -> list[int]:
    """total, train, val, test of a class row in `info`'s table."""
    row = next(line for line in out.splitlines() if line.split()[1:2] == [name])
    return [int(v) for v in row.split()[2:6]]


# ------------------------------------------------------------------ 1. locked test set
def test_locked_test_set_takes_nothing_on_a_later_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """new L; import L a (12 of one class); split L --lock on; import L b (60 more)."""
    monkeypatch.chdir(tmp_path)
    make_class_folders(tmp_path / "a", ("x",), per_class=12)
    make_class_folders(tmp_path / "b", ("x",), per_class=60, seed=1)
    assert run(capsys, "new", "L")[0] == 0
    assert run(capsys, "import", "L.dsproj", "a", "--labels-from-subfolders")[0] == 0
    code, out, _ = run(capsys, "split", "L.dsproj", "--lock", "on")
    assert code == 0 and class_counts(out, "x") == [12, 8, 2, 2]
    assert run(capsys, "import", "L.dsproj", "b", "--labels-from-subfolders")[0] == 0
    code, out, _ = run(capsys, "info", "L.dsproj")
    total, train, val, test = class_counts(out, "x")
    assert (total, test) == (72, 2), "the locked test set took nothing"
    assert train + val == 70 and val in (12, 13)
    code, out, _ = run(capsys, "split", "L.dsproj", "--resplit", "--seed", "5",
                       "--group-by", "folder")
    assert class_counts(out, "x")[3] == 2, "nor on a re-split with a new group key"


# ------------------------------------------------------------------ 2. cwd-independent models
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`cd X; densestudio train base.dsproj`, then an image replaced by a FIFO and a second
    `train` (item 6). Returns the folder and the second run's output."""
    from densestudio.ml.threads import limited_threads

    root = tmp_path_factory.mktemp("hostile_cli")
    work = root / "X"
    work.mkdir()
    write_images(work / "imgs", n_per_class=8)
    before = os.getcwd()
    os.chdir(work)
    try:
        with limited_threads():
            assert main(["new", "base"]) == 0
            assert main(["import", "base.dsproj", "imgs", "--labels-from-subfolders"]) == 0
            assert main(["train", "base.dsproj", *TINY, "--seed", "1"]) == 0
            second = {}
            if hasattr(os, "mkfifo"):
                victim = sorted((work / "imgs" / "dark").iterdir())[0]
                victim.unlink()
                os.mkfifo(victim)
                # the second run (another size: nothing cached) must skip it, not hang,
                # finish, and say so
                out, err = io.StringIO(), io.StringIO()
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    code = main(["train", "base.dsproj", *TINY, "--img-size", "40"])
                second = {"code": code, "err": err.getvalue(), "out": out.getvalue(),
                          "victim": victim.name}
    finally:
        os.chdir(before)
    return {"work": work, "root": root, "second": second}


def test_models_are_found_from_any_working_directory(
    trained: dict, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """cd /; densestudio export X/base.dsproj m.pt (was: "Run 1 has no saved model")."""
    work = trained["work"]
    monkeypatch.chdir("/")
    out_dir = trained["root"] / "out"
    out_dir.mkdir(exist_ok=True)
    code, out, _ = run(capsys, "export", work / "base.dsproj", out_dir / "m.pt", "--run", "1")
    assert code == 0 and (out_dir / "m.pt").is_file()
    code, out, _ = run(capsys, "evaluate", work / "base.dsproj", "--run", "1", "--recompute")
    assert code == 0 and "test set" in out
    monkeypatch.chdir(trained["root"])  # and from the parent folder, as a relative path
    code, out, _ = run(capsys, "evaluate", "X/base.dsproj", "--run", "1")
    assert code == 0


def test_export_into_a_folder_writes_inside_it(
    trained: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = trained["root"] / "models"
    folder.mkdir(exist_ok=True)
    code, out, _ = run(capsys, "export", trained["work"] / "base.dsproj", folder, "--run", "1")
    assert code == 0 and (folder / "base-run1.onnx").is_file()  # ONNX is the default format
    assert f"to {folder / 'base-run1.onnx'}" in out
    assert not folder.with_suffix(".onnx").exists(), "nothing beside the folder"


@needs_fifo
def test_train_skips_an_image_replaced_by_a_fifo(trained: dict) -> None:
    second = trained["second"]
    assert second["code"] == 0, second["err"]
    assert "could not be read and are left out of this run" in second["err"]
    assert second["victim"] in second["err"] and "not a regular file" in second["err"]
    assert "Finished run 2" in second["out"]
    with Project.open(trained["work"] / "base.dsproj") as project:
        from densestudio.core import runs

        assert runs.get_run(project, 2).status == "finished", "not left 'running'"


@needs_fifo
def test_predict_refuses_a_fifo_at_once(
    trained: dict, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    model = trained["root"] / "predict.pt"
    assert run(capsys, "export", trained["work"] / "base.dsproj", model, "--run", "1")[0] == 0
    fifo = make_fifo(tmp_path / "f.jpg")
    good = sorted((trained["work"] / "imgs" / "bright").iterdir())[0]
    result: list = []
    worker = threading.Thread(target=lambda: result.append(
        run(capsys, "predict", model, fifo, good)), daemon=True)
    worker.start()
    worker.join(120)
    assert result, "predict blocked on the FIFO"
    code, out, _ = result[0]
    assert code == 1
    assert f"{fifo}\tERROR\tnot a regular file (a named pipe (FIFO))" in out
    assert f"{good}\t" in out, "the other image is still predicted"


def test_predict_csv_through_a_symlink_and_with_formula_like_names(
    trained: dict,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = trained["root"] / "csv.pt"
    assert run(capsys, "export", trained["work"] / "base.dsproj", model, "--run", "1")[0] == 0
    noise((24, 24), "L", seed=3).save(tmp_path / "=HYPERLINK(1).png")
    target = tmp_path / "real.csv"
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    monkeypatch.chdir(tmp_path)
    code, _out, _ = run(capsys, "predict", model, "=HYPERLINK(1).png", "--csv", link)
    assert code == 0 and link.is_symlink(), "the link stays a link"
    rows = list(csv.DictReader(target.open(encoding="utf-8")))
    assert rows[0]["path"] == "'=HYPERLINK(1).png", "escaped for spreadsheets"


# ------------------------------------------------------------------ 3. names are not URLs
def test_project_names_with_url_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    names = ["other.db?.dsproj", "what?.dsproj", "a#b.dsproj", "x%20y.dsproj"]
    for name in names:
        code, out, _ = run(capsys, "new", name)
        assert code == 0 and out.strip() == f"Created project {tmp_path / name}"
        code, out, _ = run(capsys, "info", name)
        assert code == 0 and out.startswith(f"Project {tmp_path / name}\n")
    assert sorted(os.listdir(tmp_path)) == sorted(names), "no other.db, no what, no 'x y'"


# ------------------------------------------------------------------ 4. non-UTF-8 names
def test_non_utf8_names_import_info_relink(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    odd = non_utf8_path(tmp_path / "imgs", b"caf\xe9.png")
    if odd is None:
        pytest.skip("this file system refuses non-UTF-8 names")
    noise(seed=1).save(odd)
    noise(seed=2).save(tmp_path / "imgs" / "good.png")
    run(capsys, "new", tmp_path / "p")
    code, out, _ = run(capsys, "import", tmp_path / "p.dsproj", tmp_path / "imgs")
    assert code == 0 and "2 image(s) added" in out
    (tmp_path / "imgs").rename(tmp_path / "moved")
    code, out, _ = run(capsys, "info", tmp_path / "p.dsproj", "--check-files")
    assert "2 image file(s) are missing" in out and "caf\\udce9.png" in out, "shown escaped"
    code, out, _ = run(capsys, "relink", tmp_path / "p.dsproj", tmp_path / "moved")
    assert code == 0 and "Relinked 2 image(s); 0 still missing." in out


# ------------------------------------------------------------------ 5. concurrent writers
def test_two_imports_at_once_with_overlapping_content(tmp_path: Path) -> None:
    shared = make_class_folders(tmp_path / "shared", ("a", "b"), per_class=15)
    own = [make_class_folders(tmp_path / f"own{i}", ("a", "c"), per_class=5, seed=10 + i)
           for i in range(2)]
    path = tmp_path / "p.dsproj"
    subprocess.run([*CLI, "new", str(path)], check=True, capture_output=True)
    procs = [subprocess.Popen([*CLI, "import", str(path), str(shared), str(folder),
                               "--labels-from-subfolders"], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for folder in own]
    results = [(*p.communicate(timeout=180), p.returncode) for p in procs]
    for _out, err, code in results:
        assert code == 0 and "Traceback" not in err, err
    with Project.open(path) as project:
        assert project.count_images() == 30 + 20
        assert sorted(c.name for c in project.classes()) == ["a", "b", "c"]
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


def test_a_writer_holding_the_lock_too_long_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_class_folders(tmp_path / "d", ("a",), per_class=3)
    run(capsys, "new", tmp_path / "p")
    monkeypatch.setattr(db, "LOCK_NOTICE_S", 0.05)
    monkeypatch.setattr(db, "LOCK_WAIT_S", 0.3)
    holder = sqlite3.connect(tmp_path / "p.dsproj", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    code, out, err = run(capsys, "import", tmp_path / "p.dsproj", data)
    holder.execute("ROLLBACK")
    holder.close()
    assert code == 2
    lines = [line for line in err.splitlines() if not line.startswith("[")]
    assert lines[0] == ("waiting for another DenseStudio process that is writing to this "
                        "project (p.dsproj)...")
    assert lines[-1].startswith("error: ") and "stayed locked by another program" in lines[-1]
    code, out, _ = run(capsys, "import", tmp_path / "p.dsproj", data)
    assert code == 0 and "3 image(s) added" in out


# ------------------------------------------------------------------ 6. special files
@needs_fifo
def test_import_of_a_fifo_says_not_a_regular_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = make_fifo(tmp_path / "f.jpg")
    run(capsys, "new", tmp_path / "p")
    code, out, _ = run(capsys, "import", tmp_path / "p.dsproj", fifo)
    assert code == 1 and f"skipped {fifo}: not a regular file (a named pipe (FIFO))" in out
    assert "Not a directory" not in out


# ------------------------------------------------------------------ 7. odd environments
def unprivileged(cmd: list[str]) -> list[str]:
    """``cmd`` run so that file permissions apply (root ignores them unless it drops its
    DAC capabilities)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return cmd
    capsh = shutil.which("capsh")
    if capsh is None:
        pytest.skip("running as root without capsh: file permissions cannot be tested")
    return [capsh, "--drop=cap_dac_override,cap_dac_read_search", "--", "-c", shlex.join(cmd)]


@pytest.mark.parametrize("where", ["file", "folder"])
def test_read_only_project_file_or_folder(tmp_path: Path, where: str) -> None:
    folder = tmp_path / "ro"
    make_class_folders(tmp_path / "d", ("a",), per_class=3)
    path = folder / "p.dsproj"
    for args in (["new", str(path)], ["import", str(path), str(tmp_path / "d"),
                                      "--labels-from-subfolders"]):
        subprocess.run([*CLI, *args], check=True, capture_output=True)
    before = path.read_bytes()
    os.chmod(path, 0o444) if where == "file" else os.chmod(folder, 0o555)
    try:
        info = subprocess.run(unprivileged([*CLI, "info", str(path)]), text=True,
                              capture_output=True, timeout=120)
        write = subprocess.run(unprivileged([*CLI, "split", str(path), "--lock", "on"]),
                               text=True, capture_output=True, timeout=120)
    finally:
        os.chmod(folder, 0o755)
        os.chmod(path, 0o644)
    assert info.returncode == 0, info.stderr
    assert "images: 3" in info.stdout
    assert info.stderr.startswith("note: opened read-only: ")
    assert write.returncode == 2 and "Traceback" not in write.stderr
    assert write.stderr.splitlines()[-1].startswith("error: The project is open read-only")
    assert path.read_bytes() == before, "nothing written"
    if where == "folder":
        assert not [n for n in os.listdir(folder) if n.endswith(("-wal", "-shm"))], \
            "no -wal/-shm files (SQLite opened it immutable)"


def test_disk_full_during_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = make_class_folders(tmp_path / "first", ("a",), per_class=3, seed=7)
    data = make_class_folders(tmp_path / "d", ("a",), per_class=40, size=(64, 64))
    run(capsys, "new", tmp_path / "p")
    run(capsys, "import", tmp_path / "p.dsproj", first, "--labels-from-subfolders")
    real = db._make_engine
    limit = os.path.getsize(tmp_path / "p.dsproj") // 4096 + 2

    def full_disk_engine(*args: object, **kwargs: object) -> Engine:
        engine = real(*args, **kwargs)  # SQLite then fails with SQLITE_FULL, as on a full disk
        event.listen(engine, "connect",
                     lambda con, _r: con.execute(f"PRAGMA max_page_count = {limit}"))
        return engine

    monkeypatch.setattr(db, "_make_engine", full_disk_engine)
    monkeypatch.setattr("densestudio.core.importer.BATCH_SIZE", 5)
    code, out, err = run(capsys, "import", tmp_path / "p.dsproj", data)
    assert code == 2
    message = err.splitlines()[-1]
    assert message.startswith("error: The disk is full: cannot save changes to ")
    assert "The import stopped; the " in message and "are saved" in message
    monkeypatch.setattr(db, "_make_engine", real)
    code, out, _ = run(capsys, "info", tmp_path / "p.dsproj")
    assert code == 0 and class_counts(out, "a")[0] >= 3, "what was saved is still there"


def test_damaged_thumbnail_cache_is_rebuilt_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "new", tmp_path / "p")
    (tmp_path / "p.dsproj-cache" / "thumbnails.sqlite").mkdir(parents=True)
    data = make_class_folders(tmp_path / "d", ("a",), per_class=2)
    code, out, err = run(capsys, "import", tmp_path / "p.dsproj", data)
    assert code == 0 and "2 image(s) added" in out
    assert "warning: The thumbnail cache " in err and "was moved to thumbnails.broken-" in err
    assert (tmp_path / "p.dsproj-cache" / "thumbnails.sqlite").is_file()


def test_bad_schema_version_and_damaged_file_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "new", tmp_path / "p")
    con = sqlite3.connect(tmp_path / "p.dsproj")
    con.execute("UPDATE meta SET value = 'two' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    code, _, err = run(capsys, "info", tmp_path / "p.dsproj")
    assert code == 2 and err == (f"error: {tmp_path / 'p.dsproj'} has an invalid schema version "
                                 "('two'); it was not written by DenseStudio or has been "
                                 "edited.\n")
    run(capsys, "new", tmp_path / "q")
    with open(tmp_path / "q.dsproj", "r+b") as f:  # page 2 holds a table: garbage header
        f.seek(4096)
        f.write(b"\xff" * 16)
    code, _, err = run(capsys, "info", tmp_path / "q.dsproj")
    assert code == 2 and "is damaged (database disk image is malformed)" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("ratios", ["a,b,c", "nan,nan,nan", "inf,0,0", "-1,1,1", "0.5,0.5"])
def test_split_ratios_are_checked_before_anything_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ratios: str
) -> None:
    run(capsys, "new", tmp_path / "p")
    code, out, err = run(capsys, "split", tmp_path / "p.dsproj", "--resplit",
                         f"--ratios={ratios}")
    assert code == 2 and out == ""
    assert (f"argument --ratios: '{ratios}' is not three fractions for train,val,test that "
            "are >= 0 and sum to 1") in err
    code, out, _ = run(capsys, "info", tmp_path / "p.dsproj")
    assert "split 70/15/15, seed 0" in out


def test_split_ratios_alone_are_saved_for_new_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "new", tmp_path / "p")
    code, out, _ = run(capsys, "split", tmp_path / "p.dsproj", "--ratios", "0.5,0.25,0.25")
    assert code == 0 and "Saved; it applies to new images" in out and "split 50/25/25" in out


# ------------------------------------------------------------------ 8. smaller ones
def test_class_names_from_folders_and_info_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "new", tmp_path / "p")
    project = tmp_path / "p.dsproj"
    make_class_folders(tmp_path / "a", ("scratches",), per_class=1)
    run(capsys, "import", project, tmp_path / "a", "--labels-from-subfolders")
    for seed, folder in enumerate(["Scratches", unicodedata.normalize("NFD", "café"),
                                   "café", "L" * 250]):
        (tmp_path / "b" / folder).mkdir(parents=True)
        noise(seed=seed).save(tmp_path / "b" / folder / "i.png")
    code, out, _ = run(capsys, "import", project, tmp_path / "b", "--labels-from-subfolders")
    assert code == 0 and "4 image(s) added" in out
    assert "  note: folder 'Scratches' labeled as existing class 'scratches'" in out
    assert (f"note: folder '{'L' * 59}…' is not a class name (a class name can have at "
            "most 200 characters, this one has 250); its images are left unlabeled") in out, \
        "refused as a typed name is (issue 22), never cut"
    with Project.open(project) as p:
        names = sorted(c.name for c in p.classes())
        assert names == sorted(["scratches", "café"]), "NFC and NFD are one class"
    con = sqlite3.connect(project)  # an old project may hold a newline in a class name
    con.execute("INSERT INTO label_class (name, color, position, created_at) VALUES "
                "('two\nlines', '#000000', 9, '2024-01-01')")
    con.commit()
    con.close()
    code, out, _ = run(capsys, "info", project)
    assert code == 0 and "two\\nlines" in out and "\nlines" not in out


def test_export_labels_onto_links_pipes_devices_and_folders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "new", tmp_path / "p")
    project = tmp_path / "p.dsproj"
    make_class_folders(tmp_path / "d", ('=HYPERLINK("x")',), per_class=2)
    run(capsys, "import", project, tmp_path / "d", "--labels-from-subfolders")
    target = tmp_path / "real.csv"
    (tmp_path / "link.csv").symlink_to(target)
    code, _out, _ = run(capsys, "export-labels", project, tmp_path / "link.csv")
    assert code == 0 and (tmp_path / "link.csv").is_symlink()
    rows = list(csv.DictReader(target.open(encoding="utf-8")))
    assert {r["label"] for r in rows} == {"'=HYPERLINK(\"x\")"}
    if Path("/dev/null").exists():
        assert run(capsys, "export-labels", project, "/dev/null")[0] == 0
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode), "the device node is untouched"
    if hasattr(os, "mkfifo"):
        fifo = make_fifo(tmp_path / "pipe.csv")
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
        reader.start()
        assert run(capsys, "export-labels", project, fifo)[0] == 0
        reader.join(30)
        assert fifo.is_fifo() and got and got[0].startswith(b"path,filename,")
    code, _, err = run(capsys, "export-labels", project, tmp_path / "d")
    assert code == 2 and err == f"error: Cannot write {tmp_path / 'd'}: it is a folder; give " \
                                "a file name.\n"


# ------------------------------------------------------------------ held-out probe (after 15)
@pytest.mark.parametrize("args", [
    ["train", "P", "--minutes", "nan"], ["train", "P", "--minutes", "-1"],
    ["operating-point", "P", "--max-miss-rate", "2"],
    ["operating-point", "P", "--max-miss-rate", "nan"],
    ["operating-point", "P", "--threshold", "1.5"],
    ["operating-point", "P", "--unsure", "0.2", "inf"],
    ["operating-point", "P", "--cost-miss", "-3"],
    ["report", "P", "r.html", "--mistakes", "-5"], ["history", "P", "--limit", "-1"],
    ["gate", "P", "--candidate", "1", "--max-newly-wrong", "-1"],
    ["evaluate", "P", "--top", "x"], ["duplicates", "P", "--max-distance", "9"],
    ["import", "P", "d", "--show-skipped", "-2"],
    # issue 22: ids and seeds past 2^63-1 (SQLite's and the generators' limit), a budget
    # of 1e308 minutes, learning rates that cannot train, absurd sizes
    ["evaluate", "P", "--run", "99999999999999999999"], ["export", "P", "o", "--run", "0"],
    ["train", "P", "--resume", str(2**63)], ["gate", "P", "--candidate", "1e3"],
    ["approve", "P", "--run", "-1"], ["train", "P", "--seed", str(2**63)],
    ["split", "P", "--seed", str(2**64)], ["audit", "P", "--seed", "-1"],
    ["train", "P", "--minutes", "1e308"], ["train", "P", "--lr", "inf"],
    ["train", "P", "--lr", "0"], ["train", "P", "--lr", "1e30"],
    ["train", "P", "--epochs", "9" * 30], ["audit", "P", "--folds", "1e9"],
    ["train", "P", "--batch-size", "-4"],
])
def test_numbers_a_command_cannot_use_are_refused_at_the_command_line(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    """`train --minutes nan` and `operating-point --max-miss-rate 2` were tracebacks."""
    code, out, err = run(capsys, *args)
    option = next(a for a in reversed(args) if a.startswith("--"))
    assert code == 2 and out == "" and f"error: argument {option}: '" in err
    assert "is not a number" in err or "is not an integer" in err


def test_an_empty_project_name_or_a_file_as_its_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`densestudio new ''` created <parent>/<cwd name>.dsproj beside the working folder."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for command in ("new", "info"):
        code, _, err = run(capsys, command, "")
        assert code == 2 and err == ("error: No project given: name a project file "
                                     "(e.g. line3.dsproj).\n")
    assert list(tmp_path.iterdir()) == [work] and list(work.iterdir()) == []
    (work / "notes.txt").write_text("a file")
    code, _, err = run(capsys, "new", "notes.txt/sub/x.dsproj")
    assert code == 2 and err == (f"error: Cannot create {work / 'notes.txt/sub/x.dsproj'}: "
                                 f"{work / 'notes.txt'} is a file, not a folder.\n")


def test_report_into_a_folder_writes_inside_it(
    trained: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    """As export does: `report P <dir>` wrote <dir>.html beside the folder."""
    folder = trained["root"] / "reports"
    folder.mkdir(exist_ok=True)
    code, _out, _ = run(capsys, "report", trained["work"] / "base.dsproj", folder, "--run", "1",
                       "--mistakes", "0", "--no-heatmaps", "--no-gate")
    assert code == 0 and (folder / "base-run1-report.html").is_file()
    assert not folder.with_suffix(".html").exists(), "nothing beside the folder"


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name == "nt", reason="POSIX signals")
def test_sigterm_stops_training_cleanly_and_resumably(tmp_path: Path) -> None:
    """`kill PID` (a service manager, a batch system's time limit) left the run "running"
    for ever; now it stops like Ctrl-C: saved as stopped, resumable."""
    data = make_class_folders(tmp_path / "d", ("ok", "ng"), per_class=8)
    path = tmp_path / "p.dsproj"
    subprocess.run([*CLI, "new", str(path)], check=True, capture_output=True)
    subprocess.run([*CLI, "import", str(path), str(data), "--labels-from-subfolders"],
                   check=True, capture_output=True)
    args = [*TINY, "--epochs", "500"]  # the last --epochs counts
    proc = subprocess.Popen([*CLI, "train", str(path), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:  # the first epoch's summary line: training is under way
        if line.lstrip().startswith("epoch") and "train loss" in line:
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130 and "Traceback" not in rest
    assert "stopped after epoch" in rest and "--resume 1" in rest
    with Project.open(path) as project:
        from densestudio.core import runs

        info = runs.get_run(project, 1)
        assert info.status == "cancelled" and info.resumable and not info.interrupted


def test_predict_refuses_a_folder_as_csv_before_predicting(
    trained: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    model = trained["root"] / "out" / "probe.onnx"
    run(capsys, "export", trained["work"] / "base.dsproj", model, "--run", "1")
    folder = trained["root"] / "csvs"
    folder.mkdir(exist_ok=True)
    code, out, err = run(capsys, "predict", model, trained["work"], "--csv", folder)
    assert code == 2 and out == "" and "predicting" not in err
    assert err == f"error: Cannot write {folder}: it is a folder; give a file name.\n"


@needs_fifo
def test_a_fifo_or_device_as_project_model_or_weights_says_what_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """They were "not found" (a FIFO is never opened: that waits for a writer for ever)."""
    fifo = make_fifo(tmp_path / "p.dsproj")
    code, _, err = run(capsys, "info", fifo)
    assert code == 2 and err == f"error: Project file {fifo} is a named pipe (FIFO), not a " \
                                "regular file.\n"
    images = make_class_folders(tmp_path / "d", ("x",), per_class=1)
    for model, kind in ((make_fifo(tmp_path / "m.onnx"), "a named pipe (FIFO)"),
                        (Path("/dev/zero"), "a character device"), (images, "a folder")):
        if not model.exists():
            continue
        code, _, err = run(capsys, "predict", model, images)
        assert code == 2 and err == f"error: Model file {model} is {kind}, not a regular file.\n"
    from densestudio.ml import zoo

    with pytest.raises(zoo.WeightsUnavailable, match=r"is a named pipe \(FIFO\), not a regular"):
        zoo.resolve_weights("densenet121", weights_path=tmp_path / "m.onnx")
