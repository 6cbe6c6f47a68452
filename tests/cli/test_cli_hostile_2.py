"""Hostile inputs, round 2 (issue 22), from the command line: each kind of the probe with
more than its example, as one clear line and the right exit code, never a traceback.
Core-level checks are in tests/reliability/test_hostile_inputs_2.py."""

from __future__ import annotations

import hashlib
import os
import shutil
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
