"""The Train tab says where a model starts and offers the ImageNet download (issue 23):
DenseStudio's backbone without ImageNet weights, the download offer only when online (a
stubbed opener, never the network), and ImageNet first once the file is there."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pytestqt.qtbot import QtBot

from densestudio.core.importer import ImportOptions
from densestudio.ml import backbone, zoo
from densestudio.ui.train_panel import TrainPanel
from tests.ml.conftest import write_images

if TYPE_CHECKING:
    from densestudio.ui.main_window import MainWindow


def _open_labeled(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> TrainPanel:
    panel = window.train_panel
    assert window.new_project(tmp_path / "p.dsproj")
    window.show_panel(panel)
    write_images(tmp_path / "a", 10, classes=2)
    with qtbot.waitSignal(window.importFinished, timeout=60_000):
        window.start_import([tmp_path / "a"], ImportOptions(labels_from_subfolders=True))
    qtbot.waitUntil(lambda: panel.data_label.text().startswith("20 labeled"), timeout=10_000)
    return panel


def test_offline_without_imagenet_the_tab_starts_from_the_backbone(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zoo, "hub_checkpoint_dir", lambda: tmp_path / "hub")
    panel = _open_labeled(qtbot, window, tmp_path)
    cfg = panel.config()
    assert backbone.check() is None
    assert cfg.arch == "densenet_bc_1m" and cfg.backbone and panel.backbone.isChecked()
    assert "DenseStudio's backbone" in panel.start_label.text()
    assert "no ImageNet weights" in panel.start_label.text()
    assert any("backbone" in r for r in panel.recommendation().reasons)
    qtbot.wait(50)
    assert not panel.download_button.isVisible()  # offline: no offer, nothing waits
    # Unticking the box trains from scratch, and the line says so.
    panel.backbone.setChecked(False)
    assert not panel.config().backbone and panel.config().strategy == "full"
    assert "Random weights" in panel.start_label.text()


def test_damaged_backbone_is_named_and_the_tab_trains_from_scratch(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zoo, "hub_checkpoint_dir", lambda: tmp_path / "hub")
    damaged = tmp_path / "backbone.pt"
    damaged.write_bytes(backbone.shipped_path().read_bytes()[:-10] + b"0123456789")
    monkeypatch.setattr(backbone, "shipped_path", lambda: damaged)
    panel = _open_labeled(qtbot, window, tmp_path)
    assert not panel.config().backbone and not panel.backbone.isEnabled()
    assert "damaged or altered" in panel.start_label.text()
    assert "from scratch" in panel.start_label.text()


def test_online_the_tab_offers_imagenet_and_uses_it_after_consent(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = tmp_path / "hub"
    monkeypatch.setattr(zoo, "hub_checkpoint_dir", lambda: hub)
    payload = b"not really weights" * 4000
    digest = hashlib.sha256(payload).hexdigest()
    spec = zoo.WeightSpec("densenet121", f"https://example.invalid/densenet121-{digest[:8]}.pth")
    monkeypatch.setattr(zoo, "weight_spec", lambda _arch: spec)
    monkeypatch.setattr(TrainPanel, "online_probe", staticmethod(lambda: True))
    opened: list[str] = []

    def opener(url: str) -> io.BytesIO:
        opened.append(url)
        return io.BytesIO(payload)

    panel = _open_labeled(qtbot, window, tmp_path)
    panel.opener = opener
    qtbot.waitUntil(panel.download_button.isVisible, timeout=10_000)
    text = panel.download_label.text()
    assert spec.filename in text and "MB" in text and str(hub) in text
    asked: list[bool] = []

    def refuse() -> bool:
        asked.append(True)
        return False

    monkeypatch.setattr(panel, "confirm_download", refuse)
    assert panel.offer_download() is None and asked and not opened  # no consent: no fetch
    monkeypatch.setattr(panel, "confirm_download", lambda: True)
    worker = panel.offer_download()
    assert worker is not None
    qtbot.waitUntil(lambda: panel.download_worker is None, timeout=30_000)
    assert opened == [spec.url] and (hub / spec.filename).read_bytes() == payload
    assert not panel.download_button.isVisible()
    cfg = panel.config()
    assert cfg.arch == "densenet121" and cfg.pretrained and not cfg.backbone
    assert "ImageNet" in panel.start_label.text()
