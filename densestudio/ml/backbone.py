"""The backbone DenseStudio ships: the compact DenseNet-BC pretrained on generated images.

``ml.pretrain`` made it from ``ml.synthetic`` (textures and surfaces with synthetic defects,
no third-party image). It starts the compact model when no ImageNet weights are on the
computer, so a few dozen labels give a usable model in minutes instead of training from
random weights. The file is checked against ``SHA256`` before it is read (``weights_only``
loading); a damaged or altered file is refused with one message and training falls back to
random weights, saying so.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from densestudio.ml import zoo
from densestudio.ml.config import BACKBONE_ARCH

ARCH = BACKBONE_ARCH
FILENAME = "backbone_densenet_bc_1m.pt"
INFO_FILENAME = "backbone_densenet_bc_1m.json"
# SHA-256 of the shipped file: `python -m densestudio.ml.pretrain --install RUN_DIR` prints it.
SHA256 = "71dda2781d4785f597410382e0ec865535c398b1de213bf92b5e5cc8ad1c15d3"


def resources_dir() -> Path:
    """resources/ at the repository root (source checkout, editable install) or the
    densestudio/resources package a wheel installs it as."""
    package_dir = Path(__file__).resolve().parent.parent
    for candidate in (package_dir.parent / "resources", package_dir / "resources"):
        if (candidate / FILENAME).is_file():
            return candidate
    return package_dir.parent / "resources"


def shipped_path() -> Path:
    return resources_dir() / FILENAME


@dataclass(frozen=True)
class StartingPoint:
    """Where a run's weights start and why (shown in the Train tab and printed by the CLI)."""

    kind: str  # "imagenet" | "backbone" | "scratch"
    text: str


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks (the shipped file's check and its record)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def load(path: Path | None = None, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """The backbone's ``features.*`` tensors (float32), verified; ``WeightsError`` if the file
    is missing, altered (checksum) or unreadable."""
    path = shipped_path() if path is None else Path(path)
    expected = SHA256 if sha256 is None else sha256
    if not path.is_file():
        raise zoo.WeightsError(f"The DenseStudio backbone ({path.name}) is missing from "
                               f"{path.parent}; reinstall DenseStudio.")  # fmt: skip
    if file_sha256(path) != expected:
        raise zoo.WeightsError(f"The DenseStudio backbone ({path}) is damaged or altered "
                               "(SHA-256 mismatch); reinstall DenseStudio.")  # fmt: skip
    state = zoo.load_state_dict_file(path)
    out = {k: v.float() if v.dtype.is_floating_point else v for k, v in state.items()
           if k.startswith("features.")}  # fmt: skip
    if not out:
        raise zoo.WeightsError(f"{path.name} has no DenseNet 'features.*' weights.")
    return out


def info(path: Path | None = None) -> dict[str, Any]:
    """The pretraining figures stored beside the file (command, seed, steps, accuracy)."""
    p = (shipped_path() if path is None else Path(path)).with_name(INFO_FILENAME)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


_checked: dict[tuple[str, int, int, str], str | None] = {}


def check(path: Path | None = None, sha256: str | None = None) -> str | None:
    """None if the backbone file is usable, else the reason it is not. Remembered per file
    version (path, size, mtime): the Train tab asks on every label change."""
    path = shipped_path() if path is None else Path(path)
    try:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns, SHA256 if sha256 is None else sha256)
    except OSError:
        key = None
    if key is not None and key in _checked:
        return _checked[key]
    try:
        load(path, sha256)
        problem = None
    except zoo.WeightsError as exc:
        problem = str(exc)
    if key is not None:
        _checked[key] = problem
    return problem


def apply(model: zoo.DenseStudioNet, state: dict[str, torch.Tensor]) -> None:
    """Copy the backbone into ``model``'s feature extractor. A 1-channel model gets the
    first convolution summed over the RGB filters: exactly what a gray image replicated to
    three channels would give."""
    state = dict(state)
    conv = model.backbone.features.conv0.weight
    w = state["features.conv0.weight"]
    if conv.shape[1] == 1 and w.shape[1] == 3:
        state["features.conv0.weight"] = w.sum(1, keepdim=True)
    features = {k.removeprefix("features."): v for k, v in state.items()}
    try:
        result = model.backbone.features.load_state_dict(features, strict=False)
    except RuntimeError as exc:
        raise zoo.WeightsError(f"The DenseStudio backbone does not fit {ARCH}.") from exc
    if result.missing_keys:
        raise zoo.WeightsError(f"The DenseStudio backbone does not fit this model: "
                               f"{len(result.missing_keys)} tensors missing.")  # fmt: skip
