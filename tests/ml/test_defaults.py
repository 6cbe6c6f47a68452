"""Issue 11's defaults: recommendations from the data, balanced checkpoint selection, time
budget, and one preprocessing for every path that reads an image."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from densestudio.core import runs
from densestudio.core.preprocess import Preprocessing
from densestudio.core.profile import DataProfile, data_profile
from densestudio.core.store import Project
from densestudio.ml import budget, train
from densestudio.ml.config import TrainConfig
from densestudio.ml.events import BatchProgress, EpochsPlanned, RunFinished
from densestudio.ml.metrics import Scores
from densestudio.ml.recommend import IMBALANCE_RATIO, recommend
from densestudio.ml.recommend import SpeedFn as recommend_speed
from densestudio.ml.steps import retarget_schedule
from densestudio.ml.train import Validation, fit, monitor_score

from .conftest import add_images, tiny_config, write_images


def _profile(counts: tuple[int, ...], size: tuple[int, int] = (200, 200)) -> DataProfile:
    names = tuple(f"c{i}" for i in range(len(counts)))
    train = tuple(int(c * 0.7) for c in counts)
    return DataProfile(names, counts, train, ((*size, sum(counts)),), True)


# ------------------------------------------------------------------ recommendations
def test_imbalance_is_handled_by_default_and_said() -> None:
    balanced = recommend(_profile((300, 300, 300)))
    assert balanced.config.balance == "none"
    skewed = recommend(_profile((900, 60, 30)))
    assert skewed.config.balance != "none"
    assert any("imbalanced" in r and "30:1" in r for r in skewed.reasons)
    for rec in (balanced, skewed):
        assert rec.config.monitor == "val_balanced_acc"
        assert rec.config.fit == "letterbox" and rec.config.time_budget_s
        assert rec.config.problems() == []
    assert recommend(_profile((100, int(100 * IMBALANCE_RATIO)))).config.balance != "none"


@pytest.mark.parametrize(("size", "wide"), [((800, 200), True), ((80, 200), True),
                                            ((2048, 128), True), ((128, 128), False)])
def test_canvas_follows_the_images_shape(size: tuple[int, int], wide: bool) -> None:
    cfg = recommend(_profile((200, 200), size)).config
    w, h = cfg.canvas
    aspect = size[0] / size[1]
    if wide:
        assert (w > h) == (aspect > 1) and abs(math.log((w / h) / aspect)) < 0.35
        assert min(w, h) >= min(64, min(size))  # thin defects keep pixels across
    else:
        assert (w, h) == (128, 128)  # small images are never blown up


def test_input_size_follows_the_budget() -> None:
    small = recommend(_profile((150, 150), (600, 600)), budget_s=60).config
    large = recommend(_profile((150, 150), (600, 600)), budget_s=3600).config
    assert small.img_size < large.img_size <= 600
    # The Train tab says why the images are shrunk and what a larger size would cost.
    reasons = recommend(_profile((150, 150), (600, 600)), budget_s=60).reasons
    said = next(r for r in reasons if "shrunk" in r)
    assert f"from about 600 px to {small.img_size} px to fit the time budget" in said
    assert "at 600" not in said and " px, about " in said
    assert not any("shrunk" in r for r in recommend(_profile((150, 150), (64, 64))).reasons)


def test_input_size_follows_this_computers_measured_speed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 24: a faster computer buys a larger input in the same budget; the speed comes
    from a measurement (faked here: tests never depend on this CPU's speed)."""
    profile = _profile((150, 150), (600, 600))

    def speed_of(images_per_s_128: float) -> recommend_speed:
        return lambda _arch, pixels, _dev: images_per_s_128 * 128 * 128 / pixels

    slow = recommend(profile, speed=speed_of(30.0))
    fast = recommend(profile, speed=speed_of(300.0))
    assert slow.config.img_size < fast.config.img_size <= 600
    assert any("about 30 images/s at 128 px (measured" in r for r in slow.reasons)
    assert not any("measured" in r for r in recommend(profile).reasons)  # the table

    monkeypatch.setattr(budget, "_measured", {})
    first = budget.measure_train_speed("densenet_bc_tiny", "cpu", seconds=0.1)
    assert first > 0 and budget.measure_train_speed("densenet_bc_tiny", "cpu") == first
    assert budget.calibrated_train_speed("densenet_bc_tiny", 256 * 256, "cpu") == (
        pytest.approx(first / 4))


def test_gpu_and_weights_choose_a_pretrained_model() -> None:
    cfg = recommend(_profile((500, 500)), "cuda", weights_available=True).config
    assert cfg.uses_pretrained and cfg.arch == "densenet121" and cfg.problems() == []


def test_project_profile_counts_labels_sizes_and_color(tmp_path: Path) -> None:
    files = write_images(tmp_path / "a", 12, classes=2) + write_images(tmp_path / "b", 3,
                                                                      seed=1, classes=1)
    with Project.create(tmp_path / "p.dsproj") as project:
        add_images(project, files)
        prof = data_profile(project)
        assert prof.class_names == ("dark", "bright") and prof.counts == (15, 12)
        assert prof.gray and prof.sizes == ((24, 24, 27),) and prof.imbalance == 15 / 12
        assert sum(prof.train_counts) < prof.n_labeled


# ------------------------------------------------------------------ checkpoint selection
def _val(loss: float, acc: float, bal: float) -> Validation:
    return Validation(loss, Scores(acc, bal, bal, (), (), (), ()))


def test_balanced_accuracy_picks_the_checkpoint_not_the_big_class() -> None:
    # Epoch A: low loss and high accuracy from calling everything "good";
    # epoch B: a little worse on both, but it finds the small defect class.
    a, b = _val(0.30, 0.95, 0.50), _val(0.35, 0.93, 0.90)
    cfg = TrainConfig()
    assert monitor_score(cfg, b) > monitor_score(cfg, a)
    assert monitor_score(cfg.with_(monitor="val_loss"), a) > monitor_score(
        cfg.with_(monitor="val_loss"), b)


def test_defect_recall_monitor_counts_defects_called_good() -> None:
    names = ("ok", "crack", "spot")
    # Both epochs: the same balanced accuracy; B calls fewer defects "ok".
    a = Validation(0.3, Scores(0.9, 0.7, 0.7, (), (), (), ()),
                   np.array([[90, 5, 5], [6, 4, 0], [4, 0, 6]]))
    b = Validation(0.3, Scores(0.9, 0.7, 0.7, (), (), (), ()),
                   np.array([[80, 10, 10], [1, 9, 0], [2, 0, 8]]))
    assert a.defect_recall(0) == pytest.approx(0.5) and b.defect_recall(0) == pytest.approx(0.85)
    cfg = TrainConfig(monitor="val_defect_recall", good_class="ok")
    assert monitor_score(cfg, b, names) > monitor_score(cfg, a, names)
    assert TrainConfig(monitor="val_defect_recall").problems()  # needs the good class


def test_fit_keeps_the_epoch_with_the_best_balanced_accuracy(
    tiny_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted = iter([_val(0.2, 0.9, 0.5), _val(0.4, 0.8, 0.8), _val(0.1, 0.95, 0.6)])
    real = train.validate
    monkeypatch.setattr(train, "validate", lambda *a: (real(*a), next(scripted))[1])
    run_id = fit(tiny_project, tiny_config(epochs=3))
    info = runs.get_run(tiny_project, run_id)
    assert info.best_epoch == 2  # val loss would have picked 3, accuracy 3 too


# ------------------------------------------------------------------ time budget
class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_planner_fits_epochs_into_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(budget.time, "perf_counter", clock)
    p = budget.EpochPlanner(budget_s=600, steps_per_epoch=40, n_train=1280, n_val=270,
                            n_final=540, max_epochs=100, started=0.0)
    clock.now = 20.0 + 8 * 0.3  # data prep, then 8 steps of 0.3 s
    first = p.after_steps(8, 0.3)
    # (600 - 20 - final) / (40 * 0.3 + validation) ~ 45 epochs
    assert 40 <= first <= 48
    clock.now = 20.0 + 13.0
    assert abs(p.after_epoch(1, 13.0) - first) <= 3  # the real epoch time confirms it
    # The computer gets twice as slow: the plan shrinks so the run still ends on time.
    for epoch in range(2, 10):
        clock.now += 26.0
        planned = p.after_epoch(epoch, 26.0)
    assert planned < first
    assert p.expected_total(9, 26.0) <= 600 * budget.SHRINK_SLACK
    # A budget too small (or a computer too busy) for a useful run: the minimum, and it says so.
    tight = budget.EpochPlanner(10, 40, 1280, 270, 540, 100, started=0.0)
    assert tight.after_steps(8, 5) == budget.MIN_EPOCHS
    assert tight.over_budget
    assert not p.over_budget
    assert budget.EpochPlanner(10, 40, 1280, 270, 540, 3, started=0.0).after_steps(8, 5) == 3


def test_planner_extends_within_the_cap_while_validation_improves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 24: near the planned end a still improving run may train longer, never past
    the user's cap (nor max_epochs); later re-plans keep to the cap, not the old budget."""
    clock = FakeClock()
    monkeypatch.setattr(budget.time, "perf_counter", clock)
    p = budget.EpochPlanner(budget_s=100, steps_per_epoch=10, n_train=320, n_val=60,
                            n_final=120, max_epochs=30, started=0.0)
    for epoch in range(1, 9):
        clock.now = 10.0 * epoch
        planned = p.after_epoch(epoch, 10.0)
    assert planned < 10  # about 100 s of 10 s epochs, less the final evaluation
    assert p.extend(8, cap_s=100, extra=4) == planned  # a cap no longer than the budget
    longer = p.extend(8, cap_s=150, extra=4)
    assert longer == planned + 4 and p.budget_s == 150
    clock.now = 90.0
    assert p.after_epoch(9, 10.0) == longer  # not shrunk back to the old budget
    assert p.extend(9, cap_s=150, extra=100) <= 9 + 60 / 10  # what fits in the cap
    assert budget.EpochPlanner(100, 10, 320, 60, 120, max_epochs=9, started=0.0).extend(
        1, 1000, 50) == 0  # nothing measured yet: no plan to extend
    assert TrainConfig(time_budget_s=600, time_cap_s=900).problems() == []
    assert TrainConfig(time_cap_s=900).problems()  # a cap needs a budget
    assert TrainConfig(time_budget_s=600, time_cap_s=300).problems()


def test_schedule_retargets_to_a_new_length() -> None:
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=1000,
                                                pct_start=0.25)
    for _ in range(10):
        opt.step()
        sched.step()
    retarget_schedule(sched, 100)
    lrs = []
    for _ in range(89):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert max(lrs) == pytest.approx(1e-3, rel=0.05)  # the peak came at ~25 of 100 steps
    assert lrs[-1] < 1e-5  # and the cycle ended with the new length


def test_fit_plans_its_epochs_from_the_time_budget(tiny_project: Project) -> None:
    events: list[object] = []
    cfg = tiny_config(epochs=400, time_budget_s=10.0, batch_size=4)
    run_id = fit(tiny_project, cfg, on_event=events.append)
    planned = [e for e in events if isinstance(e, EpochsPlanned)]
    assert planned and planned[0].budget_s == 10.0
    # Before the first plan the ETA is bounded by the budget, not 400 epochs' worst case.
    first = events[:events.index(planned[0])]
    etas = [e.eta_s for e in first if isinstance(e, BatchProgress) and e.eta_s is not None]
    assert etas and max(etas) <= 10.0
    info = runs.get_run(tiny_project, run_id)
    assert info.status == "finished" and info.epochs_done == planned[-1].epochs < 400
    assert info.planned_epochs == planned[-1].epochs
    assert isinstance(events[-1], RunFinished)


def test_fit_extends_a_still_improving_run_within_the_cap(
    tiny_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The planner's arithmetic is faked (speed-independent): a plan of 2 epochs, validation
    that improves every epoch; the run asks to extend near its end and trains longer."""
    monkeypatch.setattr(budget.EpochPlanner, "after_steps", lambda self, *_a: 2)
    monkeypatch.setattr(budget.EpochPlanner, "after_epoch", lambda self, *_a: self.epochs or 2)
    asked: list[tuple[int, float]] = []

    def extend(self: budget.EpochPlanner, done: int, cap_s: float, extra: int) -> int:
        asked.append((done, cap_s))
        self.epochs = min(4, self.epochs + extra)
        return self.epochs

    monkeypatch.setattr(budget.EpochPlanner, "extend", extend)
    scripted = iter([_val(0.9, 0.5, 0.5 + i / 10) for i in range(10)])  # always improving
    real = train.validate
    monkeypatch.setattr(train, "validate", lambda *a: (real(*a), next(scripted))[1])
    events: list[object] = []
    run_id = fit(tiny_project, tiny_config(epochs=10, time_budget_s=60.0, time_cap_s=90.0),
                 on_event=events.append)
    assert asked and asked[0][1] == 90.0
    assert any(isinstance(e, EpochsPlanned) and "still improves" in e.reason for e in events)
    assert runs.get_run(tiny_project, run_id).epochs_done == 4


# ------------------------------------------------------------------ one preprocessing
def _strip(path: Path, size: tuple[int, int], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (size[1], size[0]), dtype=np.uint8)
    arr[:, : size[0] // 8] = 255  # a bright band at one end: squashing would move it
    Image.fromarray(arr, mode="L").save(path)
    return path


def test_training_evaluation_heatmaps_and_export_see_the_same_pixels(tmp_path: Path) -> None:
    from densestudio.core.preprocess import from_meta
    from densestudio.ml import data as D
    from densestudio.ml.checkpoint import load_checkpoint
    from densestudio.ml.explain import load_explainer
    from densestudio.ml.export import export_model, load_exported

    files = write_images(tmp_path / "imgs", 10)
    wide = _strip(tmp_path / "imgs" / "dark" / "wide.png", (160, 40), 1)  # 4:1
    tall = _strip(tmp_path / "imgs" / "bright" / "tall.png", (30, 90), 2)  # 1:3
    files += [(wide, "dark"), (tall, "bright")]
    with Project.create(tmp_path / "p.dsproj") as project:
        ids = add_images(project, files)
        run_id = fit(project, tiny_config(epochs=1, img_size=48, fit="letterbox"))
        info = runs.get_run(project, run_id)
        prep = from_meta(load_checkpoint(info.checkpoint_best)["meta"])
        assert prep == Preprocessing(48, 48, "L", "letterbox")
        cache = D.DecodedCache(project.cache_dir)
        model = load_exported(export_model(project, run_id, tmp_path / "m.pt"))
        explainer = load_explainer(project, run_id)
        for path, image_id in ((wide, ids[-2]), (tall, ids[-1])):
            from densestudio.core.imaging import file_hash

            trained, _ = cache.load([D.CacheItem(image_id, str(path), file_hash(path))], prep)
            exported = model.preprocess(path)  # uint8 C x H x W, as the runtime feeds it
            explained, box = explainer.pixels(image_id)
            np.testing.assert_array_equal(trained[0].numpy(), exported)
            np.testing.assert_array_equal(trained[0].numpy(), explained)
            _left, _top, w, h = box
            assert (w > h) == (path == wide) and max(w, h) == 48  # letterboxed, not squashed
            heat = explainer.explain(image_id).heatmap
            assert heat.shape == (h, w)  # the overlay covers the image, not the padding
