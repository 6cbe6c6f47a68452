"""fit(): training, events, snapshot, cancel/resume, early stopping, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from densestudio.core import runs
from densestudio.core.progress import CancelToken
from densestudio.core.store import Project, resplit
from densestudio.ml import train
from densestudio.ml.config import ConfigError, TrainConfig
from densestudio.ml.data import BatchPart
from densestudio.ml.events import (
    BatchProgress,
    CheckpointSaved,
    EpochEnded,
    EvaluationProgress,
    PreparingData,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunStarted,
    StartingPointChosen,
)
from densestudio.ml.train import TrainingError, check_trainable, fit

from .conftest import add_images, tiny_config, write_images


def test_fit_learns_and_reports_events_in_order(tiny_project: Project) -> None:
    events: list[object] = []
    run_id = fit(tiny_project, tiny_config(epochs=3, tta=True), on_event=events.append)

    kinds = [type(e) for e in events]
    start = events[0]
    assert isinstance(start, StartingPointChosen) and start.kind == "scratch"
    assert kinds[1] is PreparingData
    first_started = kinds.index(RunStarted)
    assert all(k is PreparingData for k in kinds[1:first_started])
    assert kinds[-1] is RunFinished
    epoch_ends = [e for e in events if isinstance(e, EpochEnded)]
    assert [e.epoch for e in epoch_ends] == [1, 2, 3]
    # The metric that picks the checkpoint (balanced accuracy by default) comes every epoch.
    assert all(e.monitor == "val_balanced_acc" and e.monitor_value == e.val_balanced_acc
               for e in epoch_ends)
    # Within each epoch: batches, then EpochEnded, then checkpoint(s).
    for e in epoch_ends:
        i = events.index(e)
        assert isinstance(events[i - 1], BatchProgress) and events[i - 1].epoch == e.epoch
        assert isinstance(events[i + 1], CheckpointSaved) and not events[i + 1].best
    assert any(isinstance(e, EvaluationProgress) for e in events)
    steps = [(e.epoch, e.step) for e in events if isinstance(e, BatchProgress)]
    assert steps == sorted(steps)

    # Loss falls, the model learned the (easy) task.
    assert epoch_ends[-1].train_loss < epoch_ends[0].train_loss
    info = runs.get_run(tiny_project, run_id)
    assert info.status == "finished" and info.epochs_done == 3
    live = info.extra[runs.LIVE_KEY]  # what the run list shows while it trains
    assert live["best_epoch"] == info.best_epoch and live["metric"] == "val_balanced_acc"
    assert live["best_balanced_acc"] == epoch_ends[info.best_epoch - 1].val_balanced_acc
    assert info.metrics["test_acc"] >= 0.6  # 3 classes: chance is 0.33
    assert info.class_names == ("dark", "bright", "stripes")
    assert TrainConfig.from_json(info.config) == tiny_config(epochs=3, tta=True)

    # Rows: per-epoch metrics, snapshot, predictions for val and test.
    assert [m.epoch for m in runs.epoch_metrics(tiny_project, run_id)] == [1, 2, 3]
    assert len(runs.run_images(tiny_project, run_id)) == 42
    assert len(runs.predictions(tiny_project, run_id, "val")) == 6
    assert len(runs.predictions(tiny_project, run_id, "test")) == 6
    ckpt = torch.load(info.checkpoint_last, map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 3 and "optimizer" in ckpt and "rng_cpu" in ckpt
    best = torch.load(info.checkpoint_best, map_location="cpu", weights_only=True)
    assert best["meta"]["in_channels"] == 1  # all images are grayscale


def test_snapshot_is_immune_to_relabeling(tiny_project: Project) -> None:
    before = {c.name: c.id for c in tiny_project.classes()}
    all_ids = tiny_project.image_ids()
    changed = []

    def on_event(e: object) -> None:
        if isinstance(e, BatchProgress) and not changed:
            changed.append(tiny_project.set_labels(all_ids, before["dark"]))

    run_id = fit(tiny_project, tiny_config(epochs=1), on_event=on_event)
    assert changed
    snapshot = runs.run_images(tiny_project, run_id)
    assert {r.class_index for r in snapshot} == {0, 1, 2}
    assert {p.true_index for p in runs.predictions(tiny_project, run_id, "test")} == {0, 1, 2}


def test_cancel_then_resume_matches_an_uninterrupted_run(tiny_project: Project) -> None:
    cfg = tiny_config(epochs=2, ema=True)
    reference = fit(tiny_project, cfg)
    ref_losses = [m.train_loss for m in runs.epoch_metrics(tiny_project, reference)]

    token = CancelToken()
    events: list[object] = []

    def on_event(e: object) -> None:
        events.append(e)
        if isinstance(e, BatchProgress) and e.epoch == 2 and e.step == 2:
            token.cancel()

    run_id = fit(tiny_project, cfg, on_event=on_event, cancel=token)
    assert isinstance(events[-1], RunCancelled) and events[-1].epoch == 1
    info = runs.get_run(tiny_project, run_id)
    assert info.status == "cancelled" and info.epochs_done == 1 and info.resumable

    events.clear()
    assert fit(tiny_project, None, on_event=events.append, resume_run_id=run_id) == run_id
    started = next(e for e in events if isinstance(e, RunStarted))
    assert started.start_epoch == 1
    assert isinstance(events[-1], RunFinished)
    losses = [m.train_loss for m in runs.epoch_metrics(tiny_project, run_id)]
    assert losses == pytest.approx(ref_losses, rel=1e-4, abs=1e-5)
    assert runs.get_run(tiny_project, run_id).status == "finished"
    with pytest.raises(TrainingError, match="already finished"):
        fit(tiny_project, None, resume_run_id=run_id)


def test_crash_is_recorded_and_resumable(
    tiny_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = train.D.augment_batch
    calls = {"n": 0}

    def flaky(
        x: torch.Tensor, preset: str, g: torch.Generator, part: BatchPart | None = None
    ) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 7:  # second epoch (5 steps per epoch)
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(x, preset, g, part)

    monkeypatch.setattr(train.D, "augment_batch", flaky)
    events: list[object] = []
    with pytest.raises(TrainingError, match="smaller batch size or image size"):
        fit(tiny_project, tiny_config(epochs=2), on_event=events.append)
    failed = events[-1]
    assert isinstance(failed, RunFailed) and "Out of memory" in failed.message
    info = runs.get_run(tiny_project, failed.run_id)
    assert info.status == "failed" and info.epochs_done == 1 and "memory" in info.error

    monkeypatch.setattr(train.D, "augment_batch", real)
    fit(tiny_project, None, resume_run_id=failed.run_id)
    info = runs.get_run(tiny_project, failed.run_id)
    assert info.status == "finished" and info.epochs_done == 2 and info.error is None


def test_early_stopping(tiny_project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(train, "monitor_score", lambda *a: 0.0)  # never improves after epoch 1
    events: list[object] = []
    run_id = fit(
        tiny_project, tiny_config(epochs=8, early_stopping_patience=2), on_event=events.append
    )
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.stopped_early
    assert finished.best_epoch == 1
    assert runs.get_run(tiny_project, run_id).epochs_done == 3


@pytest.mark.parametrize("balance", ["weighted_loss", "sampler", "sqrt_sampler", "logit_adjust"])
def test_balance_options_train(tmp_path: Path, balance: str) -> None:
    files = write_images(tmp_path / "a", 6, classes=2) + write_images(tmp_path / "b", 20, seed=1,
                                                                     classes=1)
    with Project.create(tmp_path / "p.dsproj") as project:
        add_images(project, files)
        run_id = fit(project, tiny_config(epochs=1, balance=balance, augment="none"))
        assert runs.get_run(project, run_id).status == "finished"


def test_rgb_images_give_a_three_channel_model(tmp_path: Path) -> None:
    from PIL import Image

    files = write_images(tmp_path / "imgs", 8, classes=2)
    for p, _ in files:
        Image.open(p).convert("RGB").save(p)
    with Project.create(tmp_path / "p.dsproj") as project:
        add_images(project, files)
        run_id = fit(project, tiny_config(epochs=1))
        best = torch.load(runs.get_run(project, run_id).checkpoint_best, weights_only=True)
        assert best["meta"]["in_channels"] == 3 and best["meta"]["mode"] == "RGB"


# ------------------------------------------------------------------ refusals
def test_refuses_fewer_than_two_classes(tmp_path: Path) -> None:
    with Project.create(tmp_path / "p.dsproj") as project:
        add_images(project, write_images(tmp_path / "i", 8, classes=1))
        assert "at least 2 classes" in check_trainable(project)[0]
        with pytest.raises(TrainingError, match="at least 2 classes"):
            fit(project, tiny_config())
        assert runs.list_runs(project) == []


def test_refuses_class_without_training_images(tiny_project: Project) -> None:
    tiny_project.add_class("scratches")
    problems = check_trainable(tiny_project)
    assert any("'scratches' has no training images" in p for p in problems)
    with pytest.raises(TrainingError, match="'scratches' has no training images"):
        fit(tiny_project, tiny_config())


def test_refuses_without_validation_images(tiny_project: Project) -> None:
    resplit(tiny_project, (0.8, 0.0, 0.2), seed=1)
    with pytest.raises(TrainingError, match="no validation images"):
        fit(tiny_project, tiny_config())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"arch": "resnet50"}, "Unknown architecture"),
        ({"img_size": 16}, "at least 32 px"),
        ({"batch_size": 1}, "Batch size"),
        ({"strategy": "head"}, "use 'full'"),
        ({"augment": "heavy"}, "Unknown augment"),
        ({"lr": 0.0}, "Learning rate"),
        ({"arch": "densenet_bc_1m", "pretrained": True}, "no pretrained weights"),
    ],
)
def test_bad_configs_are_refused(tiny_project: Project, changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        fit(tiny_project, tiny_config(**changes))


def test_config_json_roundtrip_and_old_runs() -> None:
    cfg = tiny_config(early_stopping_patience=3, channels=1, aspect=4.0, time_budget_s=60.0)
    assert TrainConfig.from_json(cfg.to_json()) == cfg
    # A run stored before letterboxing existed squashed its images: it keeps doing so.
    old = {k: v for k, v in __import__("json").loads(cfg.to_json()).items()
           if k not in ("fit", "aspect", "time_budget_s")}
    assert TrainConfig.from_json(old).fit == "stretch"
    assert TrainConfig().fit == "letterbox" and TrainConfig().monitor == "val_balanced_acc"


def test_head_then_full_with_a_user_weights_file(tiny_project: Project, tmp_path: Path) -> None:
    """A picked weights file (no hub, no network): head epoch keeps the backbone frozen."""
    from densestudio.ml import zoo

    torch.manual_seed(0)
    weights = tmp_path / "imagenet.pth"
    torch.save(zoo.build_model("densenet121", 1000, 3).backbone.state_dict(), weights)
    original = torch.load(weights, weights_only=True)
    key = "features.denseblock1.denselayer1.conv1.weight"
    seen: dict[int, torch.Tensor] = {}

    def on_event(e: object) -> None:
        if isinstance(e, CheckpointSaved) and not e.best:
            state = torch.load(e.path, weights_only=True)["model"]
            seen[e.epoch] = state["backbone." + key]

    cfg = tiny_config(
        arch="densenet121", weights_path=str(weights), strategy="head_then_full",
        unfreeze_epoch=1, epochs=2, batch_size=8,
    )  # fmt: skip
    run_id = fit(tiny_project, cfg, on_event=on_event)
    assert torch.equal(seen[1], original[key])  # frozen during the head epoch
    assert not torch.equal(seen[2], original[key])  # fine-tuned afterwards
    best = torch.load(runs.get_run(tiny_project, run_id).checkpoint_best, weights_only=True)
    assert best["meta"]["in_channels"] == 3 and best["meta"]["mean"] == pytest.approx(
        list(zoo.IMAGENET_MEAN)
    )


def test_ema_is_the_moving_average_of_every_float_tensor() -> None:
    import copy

    from densestudio.ml import zoo
    from densestudio.ml.steps import EMA

    torch.manual_seed(0)
    model = zoo.build_model("densenet_bc_tiny", 3, 1)
    ema, expected = EMA(model, 0.9), copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), 0.1)
    for step in range(1, 6):
        model(torch.rand(4, 1, 32, 32)).sum().backward()
        opt.step()
        opt.zero_grad()
        ema.update(model)
        d = min(0.9, (1 + step) / (10 + step))
        with torch.no_grad():
            for ref, value in zip(
                expected.state_dict().values(), model.state_dict().values(), strict=False
            ):
                ref.lerp_(value, 1 - d) if value.dtype.is_floating_point else ref.copy_(value)
    for name, value in ema.module.state_dict().items():
        torch.testing.assert_close(value, expected.state_dict()[name], msg=name)


def test_head_then_full_fits_into_fewer_epochs_than_it_planned_for() -> None:
    """`train --weights F --epochs 1` said "unfreeze_epoch must be between 1 and epochs - 1",
    a setting the user never chose."""
    base = TrainConfig(arch="densenet121", pretrained=True, strategy="head_then_full",
                       unfreeze_epoch=2)
    one = base.with_(epochs=1).unfreeze_within_epochs()
    assert one.strategy == "head" and not one.problems()
    two = base.with_(epochs=2).unfreeze_within_epochs()
    assert (two.strategy, two.unfreeze_epoch) == ("head_then_full", 1) and not two.problems()
    ten = base.with_(epochs=10)
    assert ten.unfreeze_within_epochs() == ten, "a plan that fits is left alone"
    assert base.with_(epochs=1, strategy="full").unfreeze_within_epochs().strategy == "full"


def test_a_bad_weights_file_is_refused_before_a_run_exists(
    tiny_project: Project, tmp_path: Path
) -> None:
    """It used to leave a "failed" run behind for each try."""
    from densestudio.ml import zoo

    for content in (b"not a pickle", None):
        weights = tmp_path / "w.pth"
        if content is None:  # a readable file for another architecture
            torch.save(zoo.build_model("densenet169", 1000, 3).backbone.state_dict(), weights)
        else:
            weights.write_bytes(content)
        cfg = tiny_config(arch="densenet121", weights_path=str(weights), epochs=2)
        with pytest.raises(zoo.WeightsError):
            fit(tiny_project, cfg)
    assert runs.list_runs(tiny_project) == []


def test_cpu_bf16_detection_can_be_overridden(monkeypatch: pytest.MonkeyPatch) -> None:
    """DENSESTUDIO_CPU_BF16 runs the suite as a CPU with or without bf16 would."""
    from densestudio.ml.runtime import CPU_BF16_ENV, amp_dtype

    cpu = torch.device("cpu")
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    assert amp_dtype(cpu, True) is None
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    assert amp_dtype(cpu, True) == torch.bfloat16
    assert amp_dtype(cpu, False) is None
