"""Hostile inputs, round 2 (issue 22), from the command line: each kind of the probe with
more than its example, as one clear line and the right exit code, never a traceback.
Core-level checks are in tests/reliability/test_hostile_inputs_2.py."""

from __future__ import annotations

import hashlib
import os
import shutil
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densestudio.cli import main
from densestudio.core import runs
from densestudio.core.store import Project
from tests.cli.test_cli_hostile import TINY, run
from tests.ml.conftest import write_images


def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """P: 3 classes, runs 1 and 2; Q: 2 classes, run 1; m.onnx: P's run 1."""
    from densestudio.ml.threads import limited_threads

    root = tmp_path_factory.mktemp("hostile2")
    before = os.getcwd()
    os.chdir(root)
    try:
        with limited_threads():
            write_images(root / "imgs", n_per_class=8)
            write_images(root / "other", n_per_class=8, seed=5, classes=2)
            for name, folder, n_runs in (("P", "imgs", 2), ("Q", "other", 1)):
                assert main(["new", name]) == 0
                assert main(["import", f"{name}.dsproj", folder,
                             "--labels-from-subfolders"]) == 0
                for seed in range(n_runs):
                    assert main(["train", f"{name}.dsproj", *TINY, "--seed", str(seed)]) == 0
            assert main(["export", "P.dsproj", "m.onnx", "--run", "1"]) == 0
        yield root
    finally:
        os.chdir(before)


# ------------------------------------------------------------------ 1. no output over inputs
@pytest.mark.parametrize(("args", "victim"), [
    (["export-labels", "P.dsproj", "P.dsproj"], "P.dsproj"),
    (["export-labels", "P.dsproj", "imgs/../P.dsproj"], "P.dsproj"),
    (["export-labels", "P.dsproj", "P.dsproj-wal"], "P.dsproj-wal"),
    (["export-labels", "P.dsproj", "P.dsproj-runs/1/best.pt"], "P.dsproj-runs/1/best.pt"),
    (["export-labels", "P.dsproj", "imgs/dark/dark_0_0.png"], "imgs/dark/dark_0_0.png"),
    (["export-labels", "P.dsproj", "Q.dsproj-link"], "P.dsproj"),
    (["export", "P.dsproj", "P.dsproj-runs/1/best.pt", "--run", "1"], "P.dsproj-runs/1/best.pt"),
    (["export", "P.dsproj", "P.dsproj-runs/2/last.pt", "--run", "1"], "P.dsproj-runs/2/last.pt"),
    (["export", "P.dsproj", "p-hard.onnx", "--run", "1"], "P.dsproj"),
    (["report", "P.dsproj", "P.dsproj-runs/1/r.html", "--run", "1"], None),
    (["report", "P.dsproj", "p-link.html", "--run", "1"], "P.dsproj"),
    (["predict", "m.onnx", "imgs/dark", "--csv", "m.onnx"], "m.onnx"),
    (["predict", "m.onnx", "imgs/dark/dark_0_0.png", "--csv", "imgs/dark/dark_0_0.png"],
     "imgs/dark/dark_0_0.png"),
    (["predict", "m.onnx", "imgs/dark", "--csv", "imgs/dark/dark_0_1.png"],
     "imgs/dark/dark_0_1.png"),
    (["predict", "m.onnx", "imgs/dark", "--csv", "m-hard.csv"], "m.onnx"),
    (["backup", "P.dsproj", "P.dsproj"], "P.dsproj"),
    (["backup", "P.dsproj", "P.dsproj-runs"], None),
])
def test_no_command_writes_over_what_it_reads(
    work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    args: list[str], victim: str | None,
) -> None:
    """`export-labels P.dsproj P.dsproj` wrote the project over with a CSV file (exit 0);
    `predict model.onnx part.jpg --csv model.onnx` the model. Through links too."""
    monkeypatch.chdir(work)
    for link, target in (("p-link.html", "P.dsproj"), ("Q.dsproj-link", "P.dsproj")):
        if not Path(link).is_symlink():
            Path(link).symlink_to(target)
    for hard, target in (("p-hard.onnx", "P.dsproj"), ("m-hard.csv", "m.onnx")):
        if not Path(hard).exists():
            os.link(target, hard)
    before = {p: digest(p) for p in (Path("P.dsproj"), Path(victim or "P.dsproj"))}
    code, out, err = run(capsys, *args)
    errors = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert code == 2 and len(errors) == 1 and errors[0].startswith("error: Refusing to write ")
    assert "choose another output file" in errors[0] and out == ""
    assert {p: digest(p) for p in before} == before, "nothing written"
    assert run(capsys, "info", "P.dsproj")[0] == 0


def test_backup_copies_an_open_project(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "backup", work / "P.dsproj", work / "copy.dsproj")
    assert code == 0 and out == f"Backed up {work / 'P.dsproj'} to {work / 'copy.dsproj'}\n"
    code, out, _ = run(capsys, "info", work / "copy.dsproj")
    assert code == 0 and "images: 24" in out


# ------------------------------------------------------------------ 2. changed files
def test_changed_files_are_reported_and_left_out_of_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cp other.jpg imgs/crazing/crazing_1.jpg` trained under the old label without a word
    and `info --check-files` saw nothing; now both say so."""
    files = write_images(tmp_path / "imgs", n_per_class=8)
    project = tmp_path / "p.dsproj"
    run(capsys, "new", project)
    run(capsys, "import", project, tmp_path / "imgs", "--labels-from-subfolders")
    replaced, other, touched = files[0][0], files[-1][0], files[1][0]
    shutil.copy(other, replaced)  # another image's content under this name
    Image.fromarray(np.full((24, 24), 7, np.uint8), "L").save(files[2][0])  # rewritten
    st = os.stat(touched)
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same content
    code, out, _ = run(capsys, "info", project, "--check-files")
    assert code == 0 and "2 labeled image file(s) changed since they were labeled" in out
    listed = out.split("changed since they were labeled")[1]
    assert str(replaced) in listed and str(files[2][0]) in listed and str(touched) not in listed
    code, out, err = run(capsys, "train", project, *TINY)
    assert code == 0 and "warning: 2 labeled image file(s) changed since they were labeled" \
                         in err
    with Project.open(project) as p:
        trained = {r.image_id for r in runs.snapshot_rows(p, 1)}
        assert len(trained) == 22, "the two changed images are left out"


# ------------------------------------------------------------------ 3. foreign checkpoints
@pytest.mark.parametrize(("source", "named"), [
    ("Q.dsproj-runs/1/best.pt", "its classes are bright, dark, the run's are bright, dark, "
                                "stripes"),
    ("P.dsproj-runs/2/best.pt", "it was saved by run 2, not run 1"),
])
def test_a_checkpoint_copied_into_a_run_is_refused(
    work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    source: str, named: str,
) -> None:
    """Another project's best.pt in run 1's folder exported with "argmax agreement 100 %"."""
    monkeypatch.chdir(work)
    own = Path("P.dsproj-runs/1/best.pt")
    saved = own.read_bytes()
    shutil.copy(source, own)
    try:
        for args in (["export", "P.dsproj", "x.onnx", "--run", "1"],
                     ["evaluate", "P.dsproj", "--run", "1", "--recompute"],
                     ["gate", "P.dsproj", "--candidate", "1", "--against", "2"]):
            code, _, err = run(capsys, *args)
            last = err.splitlines()[-1]
            assert code == 2 and last.startswith(f"error: The model file {own.absolute()} "
                                                 "does not belong to run 1: "), err
            assert named in last
        assert not Path("x.onnx").exists()
    finally:
        own.write_bytes(saved)
    assert run(capsys, "gate", "P.dsproj", "--candidate", "1", "--against", "2")[0] in (0, 1)


# ------------------------------------------------------------------ 5. renamed projects
def test_renamed_project_and_runs_folder_keep_their_models(
    work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(work / "P.dsproj", tmp_path / "R.dsproj")
    shutil.copytree(work / "P.dsproj-runs", tmp_path / "R.dsproj-runs")
    code, _, _ = run(capsys, "export", tmp_path / "R.dsproj", tmp_path / "r.onnx", "--run", "2")
    assert code == 0 and (tmp_path / "r.onnx").is_file()
    (tmp_path / "R.dsproj-runs").rename(tmp_path / "elsewhere")
    for args in (["export", tmp_path / "R.dsproj", tmp_path / "s.onnx", "--run", "2"],
                 ["evaluate", tmp_path / "R.dsproj", "--run", "2", "--recompute"]):
        code, _, err = run(capsys, *args)
        looked = tmp_path / "R.dsproj-runs" / "2" / "best.pt"
        assert code == 2 and f"model file is missing: looked for {looked}" in err
        assert "train it first" not in err


# ------------------------------------------------------------------ 7. non-finite loss
def test_a_learning_rate_that_makes_the_loss_nan_stops_the_run_resumably(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`train --lr 100` (one step per epoch or several) ended in an IntegrityError."""
    write_images(tmp_path / "imgs", n_per_class=8)
    project = tmp_path / "p.dsproj"
    run(capsys, "new", project)
    run(capsys, "import", project, tmp_path / "imgs", "--labels-from-subfolders")
    for batch, run_id in (("6", 1), ("32", 2)):
        code, _, err = run(capsys, "train", project, *TINY, "--lr", "100",
                           "--batch-size", batch)
        assert code == 2 and "IntegrityError" not in err
        assert "the learning rate is too high" in err.splitlines()[-1]
        with Project.open(project) as p:
            info = runs.get_run(p, run_id)
            assert info.status == "failed" and info.resumable


# ------------------------------------------------------------------ 9. terminal safety
UNSAFE = ["\x1b[2J", "\x1b]0;pwned\x07", "\r", "\u202e", "\u2066", "\u200b", "\x00"]


def test_user_text_is_printed_escaped(
    work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An approval reason, a class (folder) name, a file name: ESC sequences, carriage
    returns and bidi overrides reached the terminal raw (U+202E reorders what is shown)."""
    monkeypatch.chdir(work)
    why = "fine " + "".join(UNSAFE) + " exe.txt"
    code, out, err = run(capsys, "approve", "P.dsproj", "--run", "1", "--why", why)
    assert code == 0
    code, out, err = run(capsys, "approve", "P.dsproj", "--list")
    assert code == 0 and r"\x1b[2J\x1b]0;pwned\x07\r\u202e\u2066\u200b\x00 exe.txt" in out
    folder = tmp_path / "d" / "bad\u202egnp"
    folder.mkdir(parents=True)
    Image.fromarray(np.full((8, 8), 5, np.uint8), "L").save(folder / "x\x1b[1m.png")
    run(capsys, "new", tmp_path / "p")
    code, out, err = run(capsys, "import", tmp_path / "p.dsproj", tmp_path / "d",
                         "--labels-from-subfolders")
    code, info, _ = run(capsys, "info", tmp_path / "p.dsproj")
    assert r"bad\u202egnp" in info
    (folder / "x\x1b[1m.png").unlink()
    code, info, _ = run(capsys, "info", tmp_path / "p.dsproj", "--check-files")
    assert r"x\x1b[1m.png" in info
    for text in (out, err, info):
        raw = [ch for ch in text if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cf")]
        assert not raw, f"nothing unsafe printed raw: {raw} in {text!r}"
    assert "\n" in info and "\t" not in info


@pytest.mark.parametrize("args", [
    ["--user", "U" * 65, "info", "P.dsproj"],
    ["approve", "P.dsproj", "--run", "1", "--why", "x", "--by", "U" * 65],
    ["import-labels", "P.dsproj", "labels.csv", "--author", "U" * 65],
    ["--user", "two\nlines", "info", "P.dsproj"],
])
def test_names_over_the_limit_are_refused_the_same_way_everywhere(
    work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    args: list[str],
) -> None:
    """--user was cut to 64 characters silently, --author refused, --by cut."""
    monkeypatch.chdir(work)
    code, out, err = run(capsys, *args)
    last = err.splitlines()[-1]  # after argparse's usage lines
    assert code == 2 and out == "" and "error: argument --" in last
    assert last.endswith(("An author name can have at most 64 characters.",
                          "An author name cannot contain line breaks or control characters."))


def test_a_long_user_name_from_the_environment_is_refused(
    work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(work)
    monkeypatch.setenv("DENSESTUDIO_USER", "U" * 65)
    code, _, err = run(capsys, "approve", "P.dsproj", "--run", "2", "--why", "x")
    assert code == 2 and err == ("error: $DENSESTUDIO_USER (--user): An author name can have "
                                 "at most 64 characters.\n")


# ------------------------------------------------------------------ 10. import-labels
def test_import_labels_help_says_where_paths_resolve(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "import-labels", "--help")
    assert code == 0 and "resolved against the CSV file's folder" in " ".join(out.split())


def test_import_labels_of_a_cp1252_file_is_one_line_and_changes_nothing(
    work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(work)
    Path("cp.csv").write_bytes("path,class,author\nimgs/dark/dark_0_3.png,bright,Zoë\n"
                               .encode("cp1252"))
    before = digest(Path("P.dsproj"))
    code, out, err = run(capsys, "import-labels", "P.dsproj", "cp.csv")
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert "is not UTF-8 text" in err and "Windows-1252 (cp1252)" in err
    assert digest(Path("P.dsproj")) == before


# ------------------------------------------------------------------ 8. converted model files
@pytest.mark.parametrize("graph", [dict(half=1), dict(batch=1), dict(half=1, batch=1),
                                   dict(batch=4)])
def test_model_files_as_converters_leave_them_predict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], graph: dict
) -> None:
    """fp16 inputs (an "invalid input type" traceback) and a fixed batch of 1 (a shape
    error): cast, and predicted in pieces of the fixed size."""
    from tests.deploy import crafted

    images = tmp_path / "imgs"
    images.mkdir()
    for i, value in enumerate((5, 60, 120, 200, 250)):
        Image.fromarray(np.full((16, 16), value, np.uint8), "L").save(images / f"{i}.png")
    plain = crafted.write(tmp_path / "plain.onnx", crafted.metadata())
    odd = crafted.write(tmp_path / "odd.onnx", crafted.metadata(), **graph)
    code, want, _ = run(capsys, "predict", plain, images)
    code, got, err = run(capsys, "predict", odd, images)
    assert code == 0, err
    rows = [line.split("\t") for line in got.splitlines()]
    assert [r[:2] for r in rows] == [r.split("\t")[:2] for r in want.splitlines()]
    assert len(rows) == 5


def test_a_model_giving_nan_is_an_error_per_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.deploy import crafted

    model = crafted.write(tmp_path / "nan.onnx", crafted.metadata(), nan=1)
    for i in range(3):
        Image.fromarray(np.full((16, 16), 40 * i, np.uint8), "L").save(tmp_path / f"{i}.png")
    code, out, _ = run(capsys, "predict", model, *sorted(tmp_path.glob("*.png")))
    assert code == 1 and len(out.splitlines()) == 3
    assert all(line.split("\t")[1:] == ["ERROR", "the model gave no usable output for this "
                                         "image (NaN or infinite)"] for line in out.splitlines())


# ------------------------------------------------------------------ 6. predict's inputs
def test_predict_reports_what_it_skips_and_refuses_claiming_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.deploy import crafted
    from tests.reliability.test_hostile_inputs_2 import _claiming

    model = crafted.write(tmp_path / "m.onnx", crafted.metadata())
    folder = tmp_path / "in"
    folder.mkdir()
    _claiming(folder / "claim.jpg", (200, 200), (14000, 14000))
    Image.fromarray(np.full((16, 16), 9, np.uint8), "L").save(folder / "ok.pgm")
    (folder / "readme.txt").write_text("x")
    code, out, err = run(capsys, "predict", model, folder)
    assert code == 1
    lines = dict(line.split("\t", 1) for line in out.splitlines())
    assert lines[str(folder / "claim.jpg")].startswith("ERROR\tthe JPEG header claims 14000 x "
                                                       "14000 pixels")
    assert not lines[str(folder / "ok.pgm")].startswith("ERROR")
    assert ("note: 1 other file(s) are not image types DenseStudio reads and were skipped: "
            ".txt 1") in err
