"""Pretrain the compact DenseNet-BC on generated images (``ml.synthetic``) -> a backbone file.

One command, reproducible from a seed, resumable: image ``i`` of the run is
``synthetic.render(seed, i)``, step ``k`` trains on images ``k*batch .. (k+1)*batch-1``,
and the checkpoint (written atomically every few minutes and on exit) holds the model,
optimizer, EMA and counters, so a resumed run sees exactly the images and learning rates
it would have seen without the interruption. Every exit also writes the backbone (the EMA
model's ``features.*`` in fp16) and a JSON with the command, seed, steps, images seen,
wall time and the accuracy on a fixed held-out set of generated images (another seed).

    python -m densestudio.ml.pretrain OUT_DIR --seed 0 --steps 20000 --minutes 90
    (the same command again resumes from OUT_DIR/checkpoint.pt)
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from densestudio.ml import synthetic, zoo
from densestudio.ml.backbone import file_sha256
from densestudio.ml.pretrain_setup import PretrainConfig, build_parser, config_from_args
from densestudio.ml.runtime import amp_dtype, atomic_save, autocast
from densestudio.ml.steps import EMA, WarmupCosine

HELDOUT_OFFSET = 1_000_003  # the held-out images come from stream seed + this
BACKBONE_NAME = "backbone.pt"
INFO_NAME = "backbone.json"
CHECKPOINT_NAME = "checkpoint.pt"
# The input normalization the backbone was pretrained with (the generated images span the
# whole range; fine-tuning normalizes with its own data's statistics, close to this).
PRETRAIN_MEAN = (0.5, 0.5, 0.5)
PRETRAIN_STD = (0.25, 0.25, 0.25)


class _Batches(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Batch ``k`` of the stream: rendered in a worker process while the model trains."""

    def __init__(self, cfg: PretrainConfig, first: int) -> None:
        self.cfg, self.first = cfg, first

    def __len__(self) -> int:
        return max(0, self.cfg.steps - self.first)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.cfg.batch_size
        x, y = synthetic.batch(self.cfg.seed, (self.first + k) * b, b, self.cfg.img_size)
        return torch.from_numpy(x), torch.from_numpy(y)


def _model(cfg: PretrainConfig) -> zoo.DenseStudioNet:
    torch.manual_seed(cfg.seed)
    return zoo.build_model(cfg.arch, synthetic.NUM_CLASSES, 3, mean=PRETRAIN_MEAN,
                           std=PRETRAIN_STD)  # fmt: skip


def _input(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255.0).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def heldout_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                     dtype: torch.dtype | None) -> float:  # fmt: skip
    model.eval()
    hits = 0
    for i in range(0, len(y), 256):
        with autocast(torch.device("cpu"), dtype):
            logits = model(_input(x[i : i + 256]))
        hits += int((logits.float().argmax(1) == y[i : i + 256]).sum())
    return hits / max(1, len(y))


def backbone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The feature extractor's tensors in fp16 (batch-norm counters stay integers)."""
    state = model.state_dict()
    return {
        k.removeprefix("backbone."): (v.half() if v.dtype.is_floating_point else v).clone()
        for k, v in state.items() if k.startswith("backbone.features.")
    }  # fmt: skip


def _write_backbone(out: Path, ema_model: torch.nn.Module, info: dict[str, Any]) -> None:
    path = out / BACKBONE_NAME
    atomic_save(backbone_state(ema_model), path)
    info = dict(info, sha256=file_sha256(path), bytes=path.stat().st_size)
    tmp = out / (INFO_NAME + ".tmp")
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    tmp.replace(out / INFO_NAME)


def _info(cfg: PretrainConfig, step: int, wall: float, history: list[dict[str, Any]],
          finished: bool, bf16: bool, command: str) -> dict[str, Any]:  # fmt: skip
    return {
        "command": command, "config": asdict(cfg), "arch": cfg.arch,
        "classes": synthetic.NUM_CLASSES, "mean": PRETRAIN_MEAN, "std": PRETRAIN_STD,
        "steps": step, "images_seen": step * cfg.batch_size, "wall_s": round(wall, 1),
        "heldout_acc": history[-1]["heldout_acc"] if history else None,
        "heldout_images": cfg.heldout, "finished": finished, "bf16": bf16,
        "history": history, "torch": torch.__version__, "numpy": np.__version__,
    }  # fmt: skip


def export_checkpoint(ckpt_path: Path, out: Path, command: str = "") -> dict[str, Any]:
    """Write the backbone of a run's latest checkpoint (its EMA model) into ``out`` without
    touching the run (it may still be training): a snapshot to ship or to test."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    cfg = PretrainConfig(**ckpt["config"])
    model = _model(cfg)
    ema = EMA(model, cfg.ema_decay)
    ema.load_state_dict(ckpt["ema"])
    step, wall = int(ckpt["step"]), float(ckpt["wall_s"])
    history = list(ckpt["history"])
    if not history or history[-1]["step"] != step:
        hx, hy = synthetic.batch(cfg.seed + HELDOUT_OFFSET, 0, cfg.heldout, cfg.img_size)
        dtype = amp_dtype(torch.device("cpu"), True)
        acc = heldout_accuracy(ema.module.to(memory_format=torch.channels_last),
                               torch.from_numpy(hx), torch.from_numpy(hy), dtype)  # fmt: skip
        history.append({"step": step, "images": step * cfg.batch_size,
                        "wall_s": round(wall, 1), "heldout_acc": round(acc, 4)})  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    bf16 = amp_dtype(torch.device("cpu"), True) is not None
    info = _info(cfg, step, wall, history, step >= cfg.steps, bf16, command)
    _write_backbone(out, ema.module, info)
    return info


def run(
    cfg: PretrainConfig, out: Path, *, minutes: float | None = None, command: str = "",
    log: Callable[[str], None] = print, workers: int = 1, until_step: int | None = None,
) -> dict[str, Any]:
    """Train (or resume) until ``cfg.steps`` (or ``until_step``), or ``minutes`` of this
    call; write the checkpoint and the backbone; return the info in ``backbone.json``."""
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cpu")
    dtype = amp_dtype(device, True)
    model = _model(cfg).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(cfg.warmup_steps, cfg.steps))
    ema = EMA(model, cfg.ema_decay)
    step, wall, history = 0, 0.0, []
    ckpt_path = out / CHECKPOINT_NAME
    if ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ckpt["config"] != asdict(cfg):
            raise SystemExit(f"{ckpt_path} was made with other settings: {ckpt['config']}; "
                             "use the same ones, or another folder.")  # fmt: skip
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        ema.load_state_dict(ckpt["ema"])
        step, wall, history = int(ckpt["step"]), float(ckpt["wall_s"]), list(ckpt["history"])
        log(f"resumed at step {step} ({step * cfg.batch_size} images, {wall:.0f} s)")
    hx, hy = synthetic.batch(cfg.seed + HELDOUT_OFFSET, 0, cfg.heldout, cfg.img_size)
    x_held, y_held = torch.from_numpy(hx), torch.from_numpy(hy)
    log(f"pretrain: {cfg.arch}, {synthetic.NUM_CLASSES} generated classes, {cfg.img_size} px, "
        f"batch {cfg.batch_size}, {cfg.steps} steps, seed {cfg.seed}; bf16 "
        f"{'on' if dtype is not None else 'off'}; torch threads {torch.get_num_threads()}; "
        f"CPU {platform.processor() or platform.machine()}")  # fmt: skip

    def save() -> None:
        atomic_save({"config": asdict(cfg), "model": model.state_dict(),
                     "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "ema": ema.state_dict(), "step": step, "wall_s": wall,
                     "history": history}, ckpt_path)  # fmt: skip

    def evaluate() -> float:
        acc = heldout_accuracy(ema.module, x_held, y_held, dtype)
        history.append({"step": step, "images": step * cfg.batch_size,
                        "wall_s": round(wall, 1), "heldout_acc": round(acc, 4)})  # fmt: skip
        return acc

    loader: Iterator[tuple[torch.Tensor, torch.Tensor]] = iter(DataLoader(
        _Batches(cfg, step), batch_size=None, shuffle=False, num_workers=workers,
        prefetch_factor=4 if workers else None, persistent_workers=False,
    ))  # fmt: skip
    t_call = time.monotonic()
    t_last, t_ckpt = time.monotonic(), time.monotonic()
    loss_sum, loss_n, imgs_since = 0.0, 0, 0
    stopped_for_time = False
    model.train()
    last = cfg.steps if until_step is None else min(cfg.steps, until_step)
    while step < last:
        if minutes is not None and time.monotonic() - t_call > minutes * 60:
            stopped_for_time = True
            break
        x, y = next(loader)
        with autocast(device, dtype):
            logits = model(_input(x)).float()
        loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        if not torch.isfinite(loss):
            raise SystemExit(f"loss became {loss.item()} at step {step}; lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]  # unannotated in torch
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        ema.update(model)
        step += 1
        now = time.monotonic()
        wall += now - t_last
        t_last = now
        loss_sum, loss_n, imgs_since = loss_sum + loss.item(), loss_n + 1, imgs_since + len(y)
        evaluate_now = step % cfg.eval_every == 0 or step == cfg.steps
        if step % 50 == 0 or evaluate_now:
            rate = imgs_since / max(1e-9, now - t_call) if loss_n else 0.0
            msg = (f"step {step}/{cfg.steps} images {step * cfg.batch_size} wall {wall:.0f} s "
                   f"loss {loss_sum / loss_n:.3f} lr {sched.get_last_lr()[0]:.2e} "
                   f"{rate:.0f} img/s")  # fmt: skip
            if evaluate_now:
                msg += f" heldout_acc {evaluate():.4f}"
                model.train()
            log(msg)
            loss_sum, loss_n = 0.0, 0
        if now - t_ckpt > cfg.checkpoint_every_s:
            save()
            t_ckpt = time.monotonic()
            t_last = t_ckpt  # the save's time is not training time
    if not history or history[-1]["step"] != step:
        evaluate()
    save()
    finished = step >= cfg.steps
    info = _info(cfg, step, wall, history, finished, dtype is not None, command)
    _write_backbone(out, ema.module, info)
    log(f"{'finished' if finished else 'stopped (time)' if stopped_for_time else 'stopped'}: "
        f"step {step}, images {step * cfg.batch_size}, wall {wall:.0f} s, heldout_acc "
        f"{info['heldout_acc']:.4f}; backbone {out / BACKBONE_NAME}")  # fmt: skip
    return info


def main_args(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    """Run (or resume) the pretraining ``args`` describe (``densestudio pretrain``)."""
    torch.set_num_threads(args.threads)
    cmd = "python -m densestudio.ml.pretrain " + " ".join(
        sys.argv[1:] if argv is None else list(argv))  # fmt: skip
    if args.export_from:
        info = export_checkpoint(Path(args.export_from), Path(args.out), cmd)
        print(f"step {info['steps']}, images {info['images_seen']}, wall {info['wall_s']} s, "
              f"heldout_acc {info['heldout_acc']}; {Path(args.out) / BACKBONE_NAME}")
        return 0
    run(config_from_args(args), Path(args.out), minutes=args.minutes, command=cmd,
        log=lambda m: print(time.strftime("%H:%M:%S"), m, flush=True), workers=args.workers)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return main_args(build_parser().parse_args(argv), argv)


if __name__ == "__main__":
    raise SystemExit(main())

