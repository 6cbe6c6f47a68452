"""train / evaluate / export / predict from the command line."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from densestudio.cli import main
from densestudio.core import runs
from densestudio.core.store import Project
from tests.ml.conftest import add_images, write_images

TINY = ["--arch", "densenet_bc_tiny", "--img-size", "32", "--epochs", "2", "--batch-size", "6",
        "--device", "cpu", "--no-ema"]


@pytest.fixture
def project_path(tmp_path: Path) -> Path:
    path = tmp_path / "p.dsproj"
    with Project.create(path) as project:
        add_images(project, write_images(tmp_path / "imgs", 12))
    return path


def test_train_evaluate_export_predict(
    project_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", str(project_path), *TINY, "--augment", "light", "--seed", "3",
                 "--tta"]) == 0
    out = capsys.readouterr().out
    assert "Run 1:" in out and "epoch   2/2" in out and "Finished run 1" in out
    assert "  test: balanced accuracy " in out and "  validation: balanced accuracy " in out
    with Project.open(project_path) as project:
        info = runs.get_run(project, 1)
        assert info.status == "finished" and info.config["seed"] == 3
        assert info.config["augment"] == "light" and info.config["tta"] is True

    assert main(["evaluate", str(project_path), "--subset", "both"]) == 0
    out = capsys.readouterr().out
    assert "val set" in out and "test set" in out and "confusion matrix" in out

    model = tmp_path / "model.pt"  # TorchScript by its extension
    assert main(["export", str(project_path), str(model), "--run", "1"]) == 0
    assert model.is_file()
    assert "Parity: parity on" in capsys.readouterr().out

    folder = tmp_path / "exports"  # a folder: ONNX inside, named after project and run
    folder.mkdir()
    assert main(["export", str(project_path), str(folder)]) == 0
    out = capsys.readouterr().out
    onnx_model = folder / "p-run1.onnx"
    assert onnx_model.is_file() and f"Exported run 1 to {onnx_model}" in out
    assert "onnxruntime" in out and "argmax agreement 100.0 %" in out
    assert "Unknown-input check: UNSURE when ood_score >" in out
    onnx_csv = tmp_path / "onnx.csv"
    assert main(["predict", str(onnx_model), str(tmp_path / "imgs" / "dark"), "--csv",
                 str(onnx_csv)]) == 0
    onnx_rows = list(csv.DictReader(onnx_csv.open()))
    assert len(onnx_rows) == 12 and {"ood_score", "unfamiliar", "decision"} <= set(onnx_rows[0])
    assert main(["export", str(project_path), str(tmp_path / "m.pt"), "--format", "onnx"]) == 2
    assert "names a torchscript file" in capsys.readouterr().err

    csv_path = tmp_path / "preds.csv"
    assert main(["predict", str(model), str(tmp_path / "imgs" / "dark"), "--csv",
                 str(csv_path)]) == 0
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 12 and set(rows[0]) >= {"path", "class", "confidence", "p_dark"}
    capsys.readouterr()
    one = str(next((tmp_path / "imgs" / "bright").iterdir()))
    assert main(["predict", str(model), one]) == 0
    assert capsys.readouterr().out.startswith(one + "\t")


def test_cli_errors_are_messages(
    project_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(project_path)]) == 2
    assert "no finished training run" in capsys.readouterr().err
    assert main(["train", str(project_path), *TINY, "--img-size", "8"]) == 2
    assert "at least 32 px" in capsys.readouterr().err
    assert main(["train", str(project_path), "--pretrained", "--arch", "densenet121",
                 "--weights", str(tmp_path / "nope.pth"), "--device", "cpu"]) == 2
    assert "Weights file not found" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "missing.pt"), "x.png"]) == 2
    assert "Model file not found" in capsys.readouterr().err
    one_class = tmp_path / "one.dsproj"
    with Project.create(one_class) as project:
        add_images(project, write_images(tmp_path / "one", 5, classes=1))
    assert main(["train", str(one_class), *TINY]) == 2
    assert "at least 2 classes" in capsys.readouterr().err


def test_operating_point_command(
    project_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", str(project_path), *TINY]) == 0
    assert main(["evaluate", str(project_path), "--subset", "both"]) == 0
    capsys.readouterr()
    # Show only: the trade-off table, the suggestion, nothing stored yet.
    assert main(["operating-point", str(project_path), "--good", "dark",
                 "--cost-miss", "10"]) == 0
    out = capsys.readouterr().out
    assert "good ('dark')" in out and "suggested threshold" in out
    assert "Stored operating point: none" in out
    with Project.open(project_path) as project:
        assert runs.get_run(project, 1).extra.get("operating_point") is None

    assert main(["operating-point", str(project_path), "--good", "dark", "--threshold", "0.5",
                 "--unsure", "0.4", "0.6", "--subset", "test"]) == 0
    assert "Saved for run 1" in capsys.readouterr().out
    with Project.open(project_path) as project:
        stored = runs.get_run(project, 1).extra["operating_point"]
    assert stored["good_class"] == "dark" and stored["threshold"] == 0.5
    assert (stored["unsure_low"], stored["unsure_high"]) == (0.4, 0.6)

    model = tmp_path / "ok_ng.pt"
    assert main(["export", str(project_path), str(model)]) == 0
    capsys.readouterr()
    assert main(["predict", str(model), str(tmp_path / "imgs" / "dark")]) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    decisions = {cols[1] for cols in lines}
    assert decisions <= {"OK", "NG", "UNSURE"} and decisions
    # P(good) beside the decision, the most likely class after it (issue 21: "ok 0.55 NG"
    # read as a contradiction).
    assert all(cols[2].startswith("P(dark)=") and cols[3].startswith("top class ")
               for cols in lines)

    assert main(["operating-point", str(project_path), "--suggest", "--good", "bright"]) == 0
    assert "good class 'bright'" in capsys.readouterr().out
    assert main(["operating-point", str(project_path), "--good", "nope"]) == 2
    assert "'nope' is not a class" in capsys.readouterr().err
    assert main(["operating-point", str(project_path), "--threshold", "1.5"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err
    assert main(["operating-point", str(project_path), "--clear"]) == 0
    with Project.open(project_path) as project:
        assert runs.get_run(project, 1).extra.get("operating_point") is None
    # No --good and no class named like a good part (dark / bright / stripes): it asks.
    capsys.readouterr()
    assert main(["operating-point", str(project_path)]) == 2
    assert "No class name says so; pass --good CLASS" in capsys.readouterr().err
