"""The checkpoint format: what a run's ``best.pt`` and ``last.pt`` hold, and the model
metadata that travels with the weights into evaluation, heatmaps and export.

``<project file>-runs/<run id>/last.pt``: model, EMA, optimizer, scheduler, scaler, epoch,
early-stopping state, the planned epochs and the RNG state, so a cancelled or crashed run
resumes exactly. ``best.pt``: the deployable weights (EMA when on) with the model metadata
and validation metrics. Both are plain tensors and containers written atomically, and load
with ``torch.load(weights_only=True)``: a checkpoint someone sends you cannot run code.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from densestudio import __version__
from densestudio.core.errors import DenseStudioError
from densestudio.ml import data as D
from densestudio.ml import zoo
from densestudio.ml.config import TrainConfig

CHECKPOINT_FORMAT = "densestudio-checkpoint-1"


class CheckpointError(DenseStudioError):
    """A checkpoint file is missing, unreadable or not DenseStudio's."""


def model_meta(
    cfg: TrainConfig, class_names: Sequence[str], mode: str, model: zoo.DenseStudioNet
) -> dict[str, Any]:
    """What a model needs besides its weights: classes, input and preprocessing, norms."""
    return {
        "arch": cfg.arch,
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "mode": mode,
        "in_channels": int(model.backbone.features.conv0.in_channels),
        "img_size": cfg.img_size,
        "preprocessing": cfg.preprocessing(mode).to_dict(),
        "mean": [float(v) for v in model.mean.flatten()],
        "std": [float(v) for v in model.std.flatten()],
        "tta_views": D.tta_views(cfg.augment) if cfg.tta else 1,
        "app_version": __version__,
    }


def model_from_meta(meta: dict[str, Any]) -> zoo.DenseStudioNet:
    """An untrained model of the architecture the metadata describes."""
    return zoo.build_model(
        meta["arch"], int(meta["num_classes"]), int(meta["in_channels"]),
        mean=tuple(meta["mean"]), std=tuple(meta["std"]),
    )  # fmt: skip


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the module's state (safe to save while training goes on)."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    try:
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise CheckpointError(f"Checkpoint not found: {path}") from exc
    except Exception as exc:  # torch raises many types for damaged or foreign files
        raise CheckpointError(f"Cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a DenseStudio checkpoint.")
    return ckpt


def owner_meta(run_id: int, project_id: str, fingerprint: str) -> dict[str, Any]:
    """What ties a checkpoint to its run: kept in its metadata, checked on every load."""
    return {"run_id": run_id, "project_id": project_id, "data_fingerprint": fingerprint}


def check_owner(meta: dict[str, Any], path: str | Path, run_id: int, project_id: str,
                class_names: Sequence[str], fingerprint: str, where: str) -> None:
    """Refuse a checkpoint that is not this run's (another project's or run's file copied
    into the run folder), naming both. Old checkpoints without the keys are checked on
    their class names only."""
    names = [str(n) for n in meta.get("class_names", [])]
    problems = []
    if names != list(class_names):
        problems.append(f"its classes are {', '.join(names) or '(none)'}, the run's are "
                        f"{', '.join(class_names)}")
    theirs = meta.get("project_id")
    if theirs and project_id and theirs != project_id:
        problems.append(f"it was saved by project {theirs}, this is project {project_id} "
                        f"({where})")
    if meta.get("run_id") is not None and meta["run_id"] != run_id:
        problems.append(f"it was saved by run {meta['run_id']}, not run {run_id}")
    their_data = meta.get("data_fingerprint")
    if their_data and fingerprint and their_data != fingerprint:
        problems.append(f"it was trained on data {their_data}, run {run_id}'s data is "
                        f"{fingerprint}")
    if problems:
        raise CheckpointError(f"The model file {path} does not belong to run {run_id}: "
                              + "; ".join(problems) + ".")
