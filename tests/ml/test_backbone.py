"""DenseStudio's own backbone (issue 23): the pretraining recipe, the shipped file and its
checksum, the starting point of a run and its fallback, the recommendation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from densestudio.core import runs
from densestudio.core.profile import DataProfile
from densestudio.core.store import Project
from densestudio.ml import backbone, pretrain, synthetic, zoo
from densestudio.ml.events import StartingPointChosen
from densestudio.ml.pretrain_setup import PretrainConfig
from densestudio.ml.recommend import FEW_LABELS_BUDGET_S, FEW_LABELS_MAX_SIZE, recommend
from densestudio.ml.train import fit
from tests.ml.conftest import tiny_config

TINY = PretrainConfig(seed=3, steps=20, batch_size=8, img_size=32, heldout=16, eval_every=10,
                      warmup_steps=2, checkpoint_every_s=1e9)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20-step pretraining run (the recipe's smoke run): its folder."""
    out = tmp_path_factory.mktemp("pretrain")
    pretrain.run(TINY, out, workers=0, log=lambda _m: None, command="test")
    return out


def use_backbone(monkeypatch: pytest.MonkeyPatch, path: Path, sha: str) -> None:
    monkeypatch.setattr(backbone, "shipped_path", lambda: path)
    monkeypatch.setattr(backbone, "SHA256", sha)


# ------------------------------------------------------------------ the generator
def test_generated_images_are_reproducible_and_cover_every_class() -> None:
    x1, y1 = synthetic.batch(7, 100, 40, 48)
    x2, y2 = synthetic.batch(7, 100, 40, 48)
    assert x1.shape == (40, 3, 48, 48) and x1.dtype == np.uint8
    assert (x1 == x2).all() and (y1 == y2).all()
    assert not (synthetic.batch(8, 100, 40, 48)[0] == x1).all()
    assert 64 <= synthetic.NUM_CLASSES <= 128
    assert len({c.name for c in synthetic.CLASSES}) == synthetic.NUM_CLASSES
    for label, cls in enumerate(synthetic.CLASSES):  # every family renders, with contrast
        img = cls.make(np.random.default_rng(label), 40)
        assert img.shape == (40, 40) and np.isfinite(img).all() and np.ptp(img) > 0.01, cls


# ------------------------------------------------------------------ the recipe
def test_pretraining_smoke_run_writes_backbone_and_figures(tiny_backbone: Path) -> None:
    info = json.loads((tiny_backbone / pretrain.INFO_NAME).read_text())
    assert info["steps"] == 20 and info["images_seen"] == 160 and info["finished"]
    assert info["command"] == "test" and info["config"]["seed"] == 3
    assert 0.0 <= info["heldout_acc"] <= 1.0 and info["wall_s"] > 0
    assert [h["step"] for h in info["history"]] == [10, 20]
    path = tiny_backbone / pretrain.BACKBONE_NAME
    assert info["sha256"] == backbone.file_sha256(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert all(k.startswith("features.") for k in state)
    assert state["features.conv0.weight"].dtype == torch.float16


def test_pretraining_resumes_exactly(tmp_path: Path, tiny_backbone: Path) -> None:
    pretrain.run(TINY, tmp_path, workers=0, log=lambda _m: None, until_step=9)
    assert json.loads((tmp_path / pretrain.INFO_NAME).read_text())["steps"] == 9
    info = pretrain.run(TINY, tmp_path, workers=0, log=lambda _m: None)
    assert info["steps"] == 20
    whole = torch.load(tiny_backbone / pretrain.BACKBONE_NAME, weights_only=True)
    resumed = torch.load(tmp_path / pretrain.BACKBONE_NAME, weights_only=True)
    for key, value in whole.items():
        torch.testing.assert_close(resumed[key].float(), value.float(), atol=2e-3, rtol=2e-2)


def test_export_from_a_checkpoint_leaves_the_run_alone(tmp_path: Path,
                                                       tiny_backbone: Path) -> None:  # fmt: skip
    ckpt = tiny_backbone / pretrain.CHECKPOINT_NAME
    before = ckpt.stat().st_mtime_ns
    info = pretrain.export_checkpoint(ckpt, tmp_path / "snap")
    assert info["steps"] == 20 and (tmp_path / "snap" / pretrain.BACKBONE_NAME).is_file()
    assert ckpt.stat().st_mtime_ns == before


# ------------------------------------------------------------------ the shipped file
def test_shipped_backbone_loads_offline_and_matches_its_checksum() -> None:
    path = backbone.shipped_path()
    assert path.is_file(), "the backbone ships in resources/"
    assert path.stat().st_size < 8_000_000
    assert backbone.check() is None
    state = backbone.load()  # weights_only loading, SHA-256 checked first
    model = zoo.build_model(backbone.ARCH, 2, 1)
    backbone.apply(model, state)
    info = backbone.info()
    assert info["sha256"] == backbone.SHA256 and info["steps"] > 0 and info["command"]


def test_damaged_or_altered_file_is_refused(tmp_path: Path, tiny_backbone: Path) -> None:
    good = tiny_backbone / pretrain.BACKBONE_NAME
    sha = backbone.file_sha256(good)
    assert backbone.check(good, sha) is None
    altered = tmp_path / "altered.pt"
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF
    altered.write_bytes(bytes(data))
    problem = backbone.check(altered, sha)
    assert problem is not None and "damaged or altered" in problem
    with pytest.raises(zoo.WeightsError, match="SHA-256"):
        backbone.load(altered, sha)
    assert "missing" in (backbone.check(tmp_path / "nope.pt", sha) or "")


def test_gray_model_gets_the_rgb_filters_summed(tiny_backbone: Path) -> None:
    """A 1-channel model from the backbone computes what the 3-channel one does on a gray
    image replicated to RGB."""
    path = tiny_backbone / pretrain.BACKBONE_NAME
    state = backbone.load(path, backbone.file_sha256(path))
    gray = zoo.build_model(backbone.ARCH, 2, 1, mean=(0.4,), std=(0.2,))
    rgb = zoo.build_model(backbone.ARCH, 2, 3, mean=(0.4,) * 3, std=(0.2,) * 3)
    backbone.apply(gray, state)
    backbone.apply(rgb, state)
    x = torch.rand(2, 1, 32, 32)
    gray.eval(), rgb.eval()
    with torch.no_grad():
        a = gray.backbone.features((x - 0.4) / 0.2)
        b = rgb.backbone.features(((x - 0.4) / 0.2).expand(-1, 3, -1, -1))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------ a run's starting point
def test_run_starts_from_the_backbone_and_says_so(
    tiny_project: Project, tiny_backbone: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tiny_backbone / pretrain.BACKBONE_NAME
    use_backbone(monkeypatch, path, backbone.file_sha256(path))
    events: list[object] = []
    cfg = tiny_config(arch="densenet_bc_1m", backbone=True, strategy="head", epochs=1)
    run_id = fit(tiny_project, cfg, on_event=events.append)
    start = [e for e in events if isinstance(e, StartingPointChosen)]
    assert len(start) == 1 and start[0].kind == "backbone" and "backbone" in start[0].text
    info = runs.get_run(tiny_project, run_id)
    assert info.status == "finished"
    assert info.extra["starting_point"] == "backbone"
    # A frozen backbone (strategy "head") still holds the pretrained weights afterwards.
    assert info.checkpoint_best is not None
    best = torch.load(info.checkpoint_best, weights_only=True)["model"]
    key = "features.denseblock2.denselayer1.conv1.weight"
    expected = backbone.load(path, backbone.file_sha256(path))[key]
    torch.testing.assert_close(best["backbone." + key], expected)


def test_damaged_backbone_falls_back_to_scratch_and_says_so(
    tiny_project: Project, tiny_backbone: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good = tiny_backbone / pretrain.BACKBONE_NAME
    damaged = tmp_path / "backbone.pt"
    shutil.copy(good, damaged)
    with open(damaged, "r+b") as f:
        f.seek(100)
        f.write(b"\0" * 64)
    use_backbone(monkeypatch, damaged, backbone.file_sha256(good))
    events: list[object] = []
    cfg = tiny_config(arch="densenet_bc_1m", backbone=True, strategy="head_then_full",
                      unfreeze_epoch=1, epochs=2)  # fmt: skip
    run_id = fit(tiny_project, cfg, on_event=events.append)
    start = next(e for e in events if isinstance(e, StartingPointChosen))
    assert start.kind == "scratch"
    assert "damaged or altered" in start.text and "from scratch" in start.text
    info = runs.get_run(tiny_project, run_id)
    assert info.status == "finished" and info.extra["starting_point"] == "scratch"
    stored = info.config
    assert stored["backbone"] is False and stored["strategy"] == "full"


# ------------------------------------------------------------------ the recommendation
def _profile(per_class: int) -> DataProfile:
    return DataProfile(("a", "b"), (per_class, per_class), (int(per_class * 0.7),) * 2,
                       ((200, 200, 2 * per_class),), True)  # fmt: skip


def test_recommendation_prefers_imagenet_then_the_backbone_then_scratch() -> None:
    imagenet = recommend(_profile(200), "cpu", weights_available=True, backbone_available=True)
    assert imagenet.config.arch == "densenet121" and not imagenet.config.backbone
    own = recommend(_profile(200), "cpu", backbone_available=True).config
    assert own.arch == "densenet_bc_1m" and own.backbone and own.strategy == "head_then_full"
    assert own.validate() is own
    scratch = recommend(_profile(200), "cpu").config
    assert not scratch.backbone and scratch.strategy == "full"


def test_few_labels_get_a_fast_first_model_from_the_backbone() -> None:
    rec = recommend(_profile(30), "cpu", backbone_available=True)
    assert rec.config.time_budget_s == FEW_LABELS_BUDGET_S
    assert rec.config.img_size <= FEW_LABELS_MAX_SIZE
    assert any("fast first model" in r for r in rec.reasons)
    many = recommend(_profile(400), "cpu", backbone_available=True).config
    assert many.time_budget_s is not None and many.time_budget_s > FEW_LABELS_BUDGET_S
