"""The pretraining run's settings and command line (no torch: the CLI's parser stays light).
See ``ml.pretrain``."""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class PretrainConfig:
    seed: int = 0
    steps: int = 20000  # total optimizer steps of the run (the schedule's length)
    batch_size: int = 64
    img_size: int = 64
    arch: str = "densenet_bc_1m"
    lr: float = 2e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    warmup_steps: int = 300
    ema_decay: float = 0.999
    heldout: int = 1024  # held-out images (stream seed + HELDOUT_OFFSET)
    eval_every: int = 500  # steps
    checkpoint_every_s: float = 180.0


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(
        prog="python -m densestudio.ml.pretrain",
        description="Pretrain the compact DenseNet-BC on generated images.",
    )
    d = PretrainConfig()
    p.add_argument("out", help="folder for checkpoint.pt, backbone.pt and backbone.json")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--steps", type=int, default=d.steps, help="total optimizer steps")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--img-size", type=int, default=d.img_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--heldout", type=int, default=d.heldout)
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--checkpoint-every", type=float, default=d.checkpoint_every_s,
                   help="seconds between checkpoints")  # fmt: skip
    p.add_argument("--minutes", type=float, default=None,
                   help="stop (checkpoint + backbone) after this many minutes of this call")
    p.add_argument("--export-from", metavar="CHECKPOINT",
                   help="only write the backbone of this run checkpoint into OUT (no training)")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--workers", type=int, default=1, help="image-generating processes")
    return p


def config_from_args(a: argparse.Namespace) -> PretrainConfig:
    return PretrainConfig(
        seed=a.seed, steps=a.steps, batch_size=a.batch_size, img_size=a.img_size, lr=a.lr,
        heldout=a.heldout, eval_every=a.eval_every, checkpoint_every_s=a.checkpoint_every,
        warmup_steps=min(PretrainConfig.warmup_steps, max(1, a.steps // 10)),
    )  # fmt: skip
