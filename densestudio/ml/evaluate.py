"""Evaluation: per-image predictions stored in the project.

``evaluate_run`` predicts val/test images of a run's snapshot with its best weights (optionally
with flip test-time augmentation) and stores one Prediction row per image; ``ml.eval_report``
turns stored predictions into reports. ``predict_images`` predicts any images (e.g. unlabeled
ones) and stores them with subset "unlabeled".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from densestudio.core import preprocess, runs
from densestudio.core.file_changes import check_files, marked_for_review
from densestudio.core.progress import CancelToken, EventCallback, ignore_event
from densestudio.core.store import Project
from densestudio.ml import data as D
from densestudio.ml import zoo
from densestudio.ml.checkpoint import check_owner, load_checkpoint, model_from_meta
from densestudio.ml.eval_report import EvalReport, EvaluationError, build_report
from densestudio.ml.events import EvaluationProgress
from densestudio.ml.runtime import amp_dtype, predict_probs, resolve_device
from densestudio.ml.snapshot import Snapshot, load_snapshot


# ------------------------------------------------------------------ prediction
def _to_predictions(
    image_ids: Sequence[int], true: Sequence[int | None], probs: torch.Tensor
) -> list[runs.PredictionInfo]:
    out = []
    p = probs.numpy().astype(np.float32)
    pred = p.argmax(1)
    for row, (image_id, t) in enumerate(zip(image_ids, true, strict=False)):
        loss = None if t is None else float(-np.log(max(float(p[row, t]), 1e-12)))
        out.append(
            runs.PredictionInfo(
                int(image_id), "", t, int(pred[row]), float(p[row, pred[row]]), loss, p[row]
            )
        )
    return out


def evaluate_tensors(
    project: Project,
    run_id: int,
    model: torch.nn.Module,
    meta: dict[str, Any],
    snap: Snapshot,
    pixels: D.Pixels,
    device: torch.device,
    dtype: torch.dtype | None,
    channels_last: bool,
    *,
    subsets: Sequence[str] = ("val", "test"),
    tta: bool = False,
    on_event: EventCallback = ignore_event,
    cancel: CancelToken | None = None,
) -> dict[str, EvalReport]:
    """Predict the snapshot's images of ``subsets`` with an in-memory model; store; report."""
    views = meta.get("tta_views", 1) if tta else 1
    views = views if views in (1, 2, 4, 8) else 1
    wrapped = zoo.ProbabilityModel(model, views)
    reports = {}
    for subset in subsets:
        idx = snap.indices(subset)
        if not idx:
            continue

        def on_batch(done: int, total: int, subset: str = subset) -> None:
            on_event(EvaluationProgress(run_id, subset, done, total))

        probs = predict_probs(
            wrapped, pixels.take(idx), device, dtype=dtype,
            channels_last=channels_last, cancel=cancel, on_batch=on_batch,
        )  # fmt: skip
        preds = _to_predictions(
            [snap.image_ids[i] for i in idx], [snap.labels[i] for i in idx], probs
        )
        runs.save_predictions(project, run_id, subset, preds)
        reports[subset] = build_report(
            run_id, subset, snap.class_names,
            [runs.PredictionInfo(p.image_id, subset, p.true_index, p.pred_index, p.confidence,
                                 p.loss, p.probs) for p in preds],
        )  # fmt: skip
    return reports


def _check_owner(project: Project, run_id: int, ckpt: dict[str, Any], path: str) -> None:
    info = runs.get_run(project, run_id)
    check_owner(ckpt["meta"], path, run_id, project.project_id, info.class_names,
                load_snapshot(project, run_id).fingerprint, project.location)


def check_run_checkpoint(project: Project, run_id: int) -> None:
    """Refuse a run whose saved model is another run's or project's (copied into its
    folder); a run without one passes (its stored predictions may still be used)."""
    path = runs.get_run(project, run_id).checkpoint_best
    if path and Path(path).is_file():
        _check_owner(project, run_id, load_checkpoint(path), path)


def load_run_model(
    project: Project, run_id: int
) -> tuple[zoo.DenseStudioNet, dict[str, Any], dict[str, Any]]:
    """The run's best model (eval mode, CPU), its metadata and the run's config dict."""
    info = runs.get_run(project, run_id)
    path = info.checkpoint_best
    if not path:
        raise EvaluationError(
            f"Run {run_id} has no saved model (status: {info.shown_status}); train it first."
        )
    if not Path(path).is_file():  # moved or deleted: say where it was looked for
        raise EvaluationError(
            f"Run {run_id}'s model file is missing: looked for {path}. If the project was "
            "moved or renamed, move or rename its runs folder with it "
            f"({project.runs_dir.name}).")
    ckpt = load_checkpoint(path)
    _check_owner(project, run_id, ckpt, path)
    model = model_from_meta(ckpt["meta"])
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, ckpt["meta"], info.config


def evaluate_run(
    project: Project,
    run_id: int,
    subsets: Sequence[str] = ("val", "test"),
    tta: bool = False,
    on_event: EventCallback = ignore_event,
    cancel: CancelToken | None = None,
    device: str = "auto",
) -> EvalReport:
    """Predict and store ``subsets`` with the run's best weights.

    Returns the report of the last subset that has images (by default: test, else val);
    ``report(project, run_id, subset)`` gives the others.
    """
    model, meta, config = load_run_model(project, run_id)
    snap = load_snapshot(project, run_id)
    wanted = [i for s in subsets for i in snap.indices(s)]
    if not wanted:
        raise EvaluationError(f"Run {run_id} has no images in {', '.join(subsets)}.")
    ids = [snap.image_ids[i] for i in wanted]
    check_files(project, ids)
    changed = marked_for_review(project, ids)
    if changed:  # their pixels are no longer what the run's labels describe
        raise EvaluationError(
            f"{len(changed)} image(s) of run {run_id}'s {'/'.join(subsets)} set changed since "
            f"they were labeled, e.g. {changed[0]}; their labels are marked for review. "
            "Look at them and label them again, then evaluate.")
    pixels, failures = D.DecodedCache(project.cache_dir).load(
        snap.items, preprocess.from_meta(meta), cancel=cancel
    )
    if failures:
        raise EvaluationError(
            f"{len(failures)} image(s) could not be read, e.g. {failures[0].path}: "
            f"{failures[0].reason}"
        )
    dev = resolve_device(device)
    model.to(dev)
    reports = evaluate_tensors(
        project, run_id, model, meta, snap, pixels, dev,
        amp_dtype(dev, bool(config.get("amp", True))), False,
        subsets=subsets, tta=tta, on_event=on_event, cancel=cancel,
    )  # fmt: skip
    return reports[[s for s in subsets if s in reports][-1]]


def predict_images(
    project: Project,
    run_id: int,
    image_ids: Sequence[int],
    on_event: EventCallback = ignore_event,
    cancel: CancelToken | None = None,
    tta: bool | None = None,
    device: str = "auto",
    store: bool = True,
) -> list[runs.PredictionInfo]:
    """Predict any project images (e.g. unlabeled ones); stored with subset "unlabeled"
    unless ``store`` is False (the release gate predicts labeled images it only compares)."""
    model, meta, config = load_run_model(project, run_id)
    check_files(project, image_ids)  # a replaced file is predicted as it is now
    images = project.images_by_ids(list(image_ids))
    items = [D.CacheItem(i.id, i.path, i.content_hash) for i in images]
    pixels, failures = D.DecodedCache(project.cache_dir).load(
        items, preprocess.from_meta(meta), cancel=cancel
    )
    bad = {f.image_id for f in failures}
    keep = [i for i, it in enumerate(items) if it.image_id not in bad]
    use_tta = bool(config.get("tta", False)) if tta is None else tta
    views = int(meta.get("tta_views", 1)) if use_tta else 1
    wrapped = zoo.ProbabilityModel(model, views)
    dev = resolve_device(device)
    model.to(dev)

    def on_batch(done: int, total: int) -> None:
        on_event(EvaluationProgress(run_id, "unlabeled", done, total))

    probs = predict_probs(
        wrapped, pixels.take(keep), dev,
        dtype=amp_dtype(dev, bool(config.get("amp", True))), cancel=cancel, on_batch=on_batch,
    )  # fmt: skip
    preds = [
        runs.PredictionInfo(p.image_id, "unlabeled", None, p.pred_index, p.confidence, None,
                            p.probs)
        for p in _to_predictions([items[i].image_id for i in keep], [None] * len(keep), probs)
    ]  # fmt: skip
    if store:
        runs.save_predictions(project, run_id, "unlabeled", preds)
        from densestudio.ml.frame_ranges import check_frames

        check_frames(project, run_id, [(items[i].image_id, items[i].path) for i in keep], meta,
                     cancel, on_event=on_event)
    return preds
