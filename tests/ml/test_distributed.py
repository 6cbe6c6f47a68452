"""Training under ``torchrun --nproc-per-node 2`` (Gloo, CPU): one run, written by rank 0,
interrupted after epoch 1, resumed under torchrun, equivalent to one process with the
same global batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from densestudio import cli
from densestudio.core import runs
from densestudio.core.store import Project
from densestudio.ml.runtime import amp_dtype, cpu_bf16_fast

from .conftest import add_images, write_images

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="finds workers in /proc")

# --no-amp: the comparison with one process is about DDP, not precision; a CPU with bf16
# (AVX512-BF16, AMX) would otherwise train both in bf16, whose rounding differs by batch split.
ARGS = ["--arch", "densenet_bc_tiny", "--img-size", "48", "--epochs", "3", "--batch-size",
        "12", "--lr", "3e-3", "--augment", "none", "--no-ema", "--no-tta", "--device", "cpu",
        "--seed", "0", "--offline", "--no-amp"]  # fmt: skip


def _torchrun(*args: str) -> subprocess.Popen:
    """``torchrun --standalone --nproc-per-node 2 -m densestudio train ...``"""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
         "2", "-m", "densestudio", "train", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip


def _rank0_pid(agent: int) -> int:
    """The worker of rank 0 among the torchrun agent's children."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if ppid == agent and b"RANK=0" in environ:
            return int(entry.name)
    raise AssertionError("rank 0 not found")


def _run_until(proc: subprocess.Popen, marker: str) -> list[str]:
    """Read the job's output until a line contains ``marker`` (or the job ends)."""
    lines = []
    for line in proc.stdout:  # type: ignore[union-attr]
        lines.append(line)
        if marker in line:
            break
    return lines


def _curve(project: Project, run_id: int) -> list[tuple[float, float]]:
    return [(m.train_loss, m.val_loss) for m in runs.epoch_metrics(project, run_id)]


def test_torchrun_two_processes_train_resume_and_match_one_process(tmp_path: Path) -> None:
    path = tmp_path / "p.dsproj"
    with Project.create(path) as project:
        add_images(project, write_images(tmp_path / "imgs", n_per_class=14))

    # One process, the same global batch: the reference.
    assert cli.main(["train", str(path), *ARGS]) == 0
    with Project.open(path) as project:
        single = runs.latest_run(project, "finished")
        single_curve = _curve(project, single.id)

    # Two processes; rank 0 is killed (a crash) once epoch 1 is saved.
    job = _torchrun(str(path), *ARGS, "--name", "ddp")
    out = _run_until(job, "epoch   1/3")
    os.kill(_rank0_pid(job.pid), signal.SIGKILL)
    out += job.stdout.readlines()  # type: ignore[union-attr]
    assert job.wait(timeout=120) != 0, "".join(out)
    assert "Training in 2 processes" in "".join(out)
    with Project.open(path) as project:
        run = next(r for r in runs.list_runs(project) if r.name == "ddp")
        assert run.status == "running" and 1 <= run.epochs_done < 3, "".join(out)
        assert len(runs.epoch_metrics(project, run.id)) == run.epochs_done  # rank 0's only
        assert Path(run.checkpoint_last).is_file() and run.resumable
        assert run.config == {**single.config, "name": "ddp"}

    # Resumed under torchrun: the run finishes where it stopped; rank 0 evaluates.
    job = _torchrun(str(path), "--resume", str(run.id))
    out = job.communicate(timeout=300)[0]
    assert job.returncode == 0, out
    assert f"resuming after epoch {run.epochs_done}" in out
    with Project.open(path) as project:
        done = runs.get_run(project, run.id)
        assert done.status == "finished" and done.epochs_done == 3
        assert [m.epoch for m in runs.epoch_metrics(project, run.id)] == [1, 2, 3]
        assert runs.prediction_count(project, run.id, "val") == len(
            runs.run_images(project, run.id, "val"))
        ddp_curve = _curve(project, run.id)

    # The step is the whole batch's (test_parts_of_a_batch_step_like_the_whole_batch); what
    # differs on the CPU is batch norm, whose statistics are each process's half batch (6
    # images here; torch has no SyncBatchNorm for CPU tensors). That moves the training
    # loss (computed with those statistics) more than the validation loss (running ones).
    assert len(ddp_curve) == len(single_curve) == 3
    for (train_a, val_a), (train_b, val_b) in zip(single_curve, ddp_curve, strict=True):
        assert train_b == pytest.approx(train_a, rel=0.4)
        assert val_b == pytest.approx(val_a, rel=0.15)
    assert ddp_curve[-1][0] < ddp_curve[0][0]  # it learned


# ------------------------------------------------------------------ the step itself
def _one_step_each_way(rank: int, store: str, out: str, amp: bool) -> None:
    """In each of 2 processes: one optimizer step on the whole batch alone, and one on this
    process's part through DDP; rank 0 saves the largest gradient difference relative to
    the largest gradient."""
    import torch
    import torch.distributed as dist

    from densestudio.ml import distributed, zoo
    from densestudio.ml.runtime import adamw
    from densestudio.ml.steps import make_step_parts, optimization_step, place_model

    from .conftest import tiny_config

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    world = distributed.current()
    cfg = tiny_config(augment="light", batch_size=5, amp=amp)  # 5 = 3 + 2: an uneven split
    x = torch.randint(0, 256, (5, 1, 32, 32), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0, 1])

    def parts():  # noqa: ANN202
        torch.manual_seed(0)
        model = zoo.build_model(cfg.arch, 3, 1, mean=(0.5,), std=(0.25,))
        cl = place_model(model, cfg, torch.device("cpu"))
        opt = adamw(list(model.parameters()), torch.device("cpu"), cfg.lr, cfg.weight_decay)
        made = make_step_parts(model, opt, cfg, torch.device("cpu"), cl, y, 3)
        model.eval()  # batch norm without batch statistics: the step is batch-size free
        return made

    alone, together = parts(), parts()
    optimization_step(alone, x, y, torch.Generator().manual_seed(7), "alone")
    world.wrap(together)
    idx, part = world.shard(torch.arange(5))
    assert part is not None and len(idx) == (3 if rank == 0 else 2)
    optimization_step(together, x[idx], y[idx], torch.Generator().manual_seed(7), "DDP", part)
    # The gradients, not the weights: AdamW's first step moves each weight by ~lr * g/(|g|+eps),
    # which turns a rounding difference of a near-zero g into one of up to lr in the weight.
    grads = [(a.grad, b.grad) for a, b in
             zip(alone.model.parameters(), together.model.parameters(), strict=True)
             if a.grad is not None and b.grad is not None]
    assert grads
    scale = max(float(a.abs().max()) for a, _ in grads)
    diff = max(float((a - b).abs().max()) for a, b in grads) / scale
    if rank == 0:
        Path(out).write_text(str(diff))
    dist.destroy_process_group()


def _step_difference(tmp_path: Path, amp: bool) -> float:
    import torch.multiprocessing as mp

    out = tmp_path / "diff.txt"
    mp.spawn(_one_step_each_way, args=(str(tmp_path / "store"), str(out), amp), nprocs=2)
    return float(out.read_text())


def test_parts_of_a_batch_step_like_the_whole_batch(tmp_path: Path) -> None:
    """Sharding, the parts' loss weights, augmentation drawn for the whole batch and DDP's
    gradient averaging give one process's step on the whole batch, up to float32 rounding
    (1e-7 of the largest gradient measured; full precision whatever the CPU, bf16 below)."""
    assert _step_difference(tmp_path, amp=False) < 1e-5


@pytest.mark.skipif(not cpu_bf16_fast(), reason="this CPU has no native bf16 (AVX512-BF16/AMX)")
def test_parts_of_a_batch_step_like_the_whole_batch_in_bf16(tmp_path: Path) -> None:
    """The bf16 autocast path a CPU with AVX512-BF16 or AMX trains with (the default there):
    the parts' step is the whole batch's within bf16's rounding (8 bits of mantissa, 2^-8 =
    4e-3 per value; 1.6e-3 of the largest gradient measured on an AMD EPYC with AVX512-BF16)."""
    import torch

    assert amp_dtype(torch.device("cpu"), True) == torch.bfloat16
    assert _step_difference(tmp_path, amp=True) < 2e-2
