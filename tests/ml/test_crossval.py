"""Label audit (k-fold cross-training + confident learning) on a tiny synthetic data set."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from densestudio.core import history, runs
from densestudio.core.errors import CancelledError
from densestudio.core.progress import CancelToken
from densestudio.core.store import Project
from densestudio.ml import crossval
from densestudio.ml.config import TrainConfig
from densestudio.ml.label_errors import precision_at
from densestudio.ml.threads import limited_threads
from tests.ml.conftest import CLASS_NAMES, add_images, write_images

Noisy = tuple[Project, set[int]]  # the project, the images whose label was flipped


def _audit_cfg(**kw: object) -> TrainConfig:
    base = dict(
        arch="densenet_bc_tiny", img_size=32, epochs=8, batch_size=16, lr=3e-3,
        augment="light", ema=True, tta=False, device="cpu", seed=0, name="label audit",
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture
def noisy_project(tmp_path: Path) -> Iterator[Noisy]:
    """3 clearly separable classes x 30 images (24 px); 5 % of the labels flipped (seeded)."""
    files = write_images(tmp_path / "imgs", n_per_class=30)
    rng = np.random.default_rng(3)
    n_flip = round(0.05 * len(files))
    flipped = set(rng.choice(len(files), n_flip, replace=False).tolist())
    noisy = []
    for i, (p, c) in enumerate(files):
        if i in flipped:
            others = [n for n in CLASS_NAMES if n != c]
            c = others[int(rng.integers(len(others)))]
        noisy.append((p, c))
    project = Project.create(tmp_path / "p.dsproj")
    ids = add_images(project, noisy)
    yield project, {ids[i] for i in flipped}
    project.close()


def test_stratified_folds_spread_each_class() -> None:
    labels = np.array([0] * 10 + [1] * 7 + [2] * 2)
    folds = crossval.stratified_folds(labels, 3, seed=1)
    for c in range(3):
        counts = np.bincount(folds[labels == c], minlength=3)
        assert counts.max() - counts.min() <= 1
    assert set(folds.tolist()) == {0, 1, 2}


def test_audit_recovers_flipped_labels(noisy_project: Project) -> None:
    project, wrong = noisy_project
    events: list = []
    t = time.perf_counter()
    with limited_threads(1):  # a busy 2-core machine: spinning OpenMP threads cost 10x+
        audit = crossval.cross_validate(project, k=3, config=_audit_cfg(),
                                        on_event=events.append)
    seconds = time.perf_counter() - t

    assert len(audit.image_ids) == 90 and audit.probs.shape == (90, 3)
    assert np.allclose(audit.probs.sum(1), 1.0, atol=1e-4)
    wrong_rows = {audit.image_ids.index(i) for i in wrong}
    precision = precision_at(list(audit.issues), wrong_rows)
    print(f"\nlabel audit: precision at {len(wrong)} flipped = {precision:.2f} "
          f"(OOS accuracy {audit.oos_accuracy:.2%}, {seconds:.1f} s)")
    assert precision >= 0.6
    # The suggested class of a recovered flip is its true (folder) class.
    for issue in audit.issues[: len(wrong)]:
        image_id = audit.image_id(issue)
        if image_id in wrong:
            folder = project.image(image_id).folder.rsplit("/", 1)[-1]
            assert audit.class_names[issue.suggested] == folder

    # Progress: per fold, per epoch, with an ETA; then the summary.
    names = [type(e).__name__ for e in events]
    assert names.count("AuditStarted") == 1 and names.count("FoldEnded") == 3
    assert names[-1] == "AuditFinished"
    steps = [e for e in events if isinstance(e, crossval.AuditProgress)]
    assert {e.fold for e in steps} == {1, 2, 3} and steps[-1].epoch == 8
    assert steps[-1].eta_s is not None and steps[-1].eta_s < 1.0

    # Stored: survives reopening; hidden from the training-run lists.
    path = project.path
    project.close()
    with Project.open(path) as again:
        assert runs.list_runs(again) == []
        assert runs.latest_run(again) is None
        assert [r.id for r in crossval.list_audits(again)] == [audit.run_id]
        loaded = crossval.load_audit(again)
        assert loaded is not None and loaded.run_id == audit.run_id
        assert loaded.image_ids == audit.image_ids
        assert [i.index for i in loaded.issues] == [i.index for i in audit.issues]
        assert runs.prediction_count(again, audit.run_id, "oos") == 90
        # Confirming a label removes it from the suspects and is stored.
        first = loaded.suspects()[0]
        image_id = loaded.image_id(first)
        crossval.set_confirmed(again, audit.run_id, [image_id])
        reloaded = crossval.load_audit(again)
        assert image_id in reloaded.confirmed
        assert image_id not in [reloaded.image_id(i) for i in reloaded.suspects()]
        crossval.set_confirmed(again, audit.run_id, [image_id], confirmed=False)
        assert crossval.load_audit(again).confirmed == frozenset()
        # both are in the label history, with the label they kept
        label = again.image(image_id).label_id
        assert [(e.how, e.old_class_id, e.new_class_id) for e in
                history.image_history(again, image_id)][-2:] == [
            ("audit-confirm", label, label), ("audit-unconfirm", label, label)]


def test_audit_cancel_and_refusals(tiny_project: Project) -> None:
    token = CancelToken()

    def on_event(event: object) -> None:
        if isinstance(event, crossval.AuditProgress) and event.step >= 2:
            token.cancel()

    with pytest.raises(CancelledError), limited_threads(1):
        crossval.cross_validate(tiny_project, k=3, config=_audit_cfg(epochs=2),
                                on_event=on_event, cancel=token)
    assert runs.list_runs(tiny_project, kind=None) == []  # nothing half-done is kept
    assert crossval.load_audit(tiny_project) is None

    with pytest.raises(crossval.AuditError, match="folds"):
        crossval.cross_validate(tiny_project, k=1)
    with pytest.raises(crossval.AuditError, match="compact"):
        crossval.cross_validate(tiny_project, k=3, config=_audit_cfg(arch="densenet121"))
    empty = Project.create(tiny_project.path.with_name("empty.dsproj"))
    try:
        with pytest.raises(crossval.AuditError, match="at least 2 classes"):
            crossval.cross_validate(empty, k=3)
    finally:
        empty.close()


def test_audit_config_defaults() -> None:
    cfg = crossval.audit_config(1800, "cpu").validate()
    assert cfg.arch in ("densenet_bc_tiny", "densenet_bc_1m") and not cfg.uses_pretrained
    assert 6 <= cfg.epochs <= 30 and cfg.img_size <= 96


def test_new_audit_replaces_old_and_keeps_confirmations(tiny_project: Project) -> None:
    cfg = _audit_cfg(epochs=1)
    with limited_threads(1):
        first = crossval.cross_validate(tiny_project, k=3, config=cfg)
    keep, relabel = first.image_ids[0], first.image_ids[1]
    crossval.set_confirmed(tiny_project, first.run_id, [keep, relabel])
    other = next(c.id for c in tiny_project.classes()
                 if c.id != tiny_project.image(relabel).label_id)
    tiny_project.set_labels([relabel], other)
    with limited_threads(1):
        second = crossval.cross_validate(tiny_project, k=3, config=cfg)
    assert [r.id for r in crossval.list_audits(tiny_project)] == [second.run_id]
    assert second.confirmed == frozenset({keep})  # the relabeled one is asked about again


def test_estimate_seconds_scales_with_the_work_and_the_last_audit() -> None:
    cfg = _audit_cfg(img_size=64, epochs=10)
    one = crossval.estimate_seconds(1000, 5, cfg, threads=1)
    assert crossval.estimate_seconds(2000, 5, cfg, threads=1) == pytest.approx(2 * one, 0.01)
    assert crossval.estimate_seconds(1000, 5, cfg, threads=2) == pytest.approx(one / 2)
    # With an earlier audit of the project: its measured speed (same work -> same seconds).
    previous = runs.RunInfo(
        1, "label audit", None, None, "finished", {"epochs": 10, "img_size": 64, "folds": 5},
        (), {"seconds": 300.0, "n_images": 1000, "folds": 5}, None, None, 10, None, None,
        None, None, {})
    assert crossval.estimate_seconds(1000, 5, cfg, previous=previous) == pytest.approx(300.0)
    assert crossval.estimate_seconds(1000, 5, cfg.with_(img_size=32),
                                     previous=previous) == pytest.approx(75.0)
