"""`densestudio train` starts from DenseStudio's backbone and says so; `--scratch` opts out;
`densestudio pretrain` runs the recipe (issue 23)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from densestudio.cli import main
from densestudio.core import runs
from densestudio.core.store import Project
from densestudio.ml import zoo
from tests.ml.conftest import add_images, write_images

SMALL = ["--img-size", "32", "--epochs", "2", "--batch-size", "6", "--device", "cpu",
         "--no-ema", "--offline"]


@pytest.fixture
def project_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(zoo, "hub_checkpoint_dir", lambda: tmp_path / "hub")
    path = tmp_path / "p.dsproj"
    with Project.create(path) as project:
        add_images(project, write_images(tmp_path / "imgs", 12))
    return path


def test_train_starts_from_the_backbone_and_scratch_opts_out(
    project_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", str(project_path), *SMALL]) == 0
    out = capsys.readouterr().out
    assert "starts from DenseStudio's backbone" in out  # the reasons
    assert "fast first model" in out  # 12 images per class: few labels
    assert "Starting from DenseStudio's backbone" in out  # the run
    with Project.open(project_path) as project:
        info = runs.get_run(project, 1)
        assert info.config["backbone"] is True and info.config["arch"] == "densenet_bc_1m"
        assert info.extra["starting_point"] == "backbone"

    assert main(["train", str(project_path), *SMALL, "--scratch"]) == 0
    out = capsys.readouterr().out
    assert "Starting from random weights" in out and "backbone" not in out
    with Project.open(project_path) as project:
        info = runs.get_run(project, 2)
        assert info.config["backbone"] is False and info.config["strategy"] == "full"


def test_pretrain_command_runs_the_recipe(tmp_path: Path) -> None:
    out = tmp_path / "pt"
    assert main(["pretrain", str(out), "--steps", "3", "--batch-size", "4", "--img-size", "32",
                 "--heldout", "8", "--workers", "0",
                 "--threads", str(torch.get_num_threads())]) == 0  # fmt: skip
    info = json.loads((out / "backbone.json").read_text())
    assert info["steps"] == 3 and info["images_seen"] == 12 and info["finished"]
    assert (out / "backbone.pt").is_file() and (out / "checkpoint.pt").is_file()


def test_minutes_given_override_the_fast_first_model_budget(project_path: Path) -> None:
    from densestudio.cli import _train_config, build_parser

    with Project.open(project_path) as project:
        fast = _train_config(build_parser().parse_args(["train", str(project_path)]), project)
        assert fast.backbone and fast.time_budget_s == 120.0
        args = build_parser().parse_args(["train", str(project_path), "--minutes", "5"])
        assert _train_config(args, project).time_budget_s == 300.0
