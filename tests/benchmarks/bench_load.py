"""Training speed on a busy CPU (issue 24, item 5): the compact DenseNet-BC training step
(``ml.steps.optimization_step``, as a run trains) in images/s, quiet and beside one process
that keeps one core busy (a ``while True`` Python child).

    .venv/bin/python tests/benchmarks/bench_load.py [--seconds 10] [--size 144] [--batch 32]
                                                    [--arch densenet_bc_1m]

Each measurement runs in a fresh process, so the OpenMP wait policy it is given applies:
- before: every core for torch (its default), OpenMP's default wait policy (spinning);
- after: what training does now: OMP_WAIT_POLICY=PASSIVE (densestudio/__init__) and the
  thread count from ``ml.threads.CpuShare`` (the cores other programs leave free, measured
  for a second first and again every few seconds, as a run does between epochs).
Goal: beside one busy core, >= 60 % of the quiet speed. Run it with nothing else on the
machine. Not collected by pytest (the file name does not start with test_).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def worker(args: argparse.Namespace) -> None:
    """One measurement; prints a JSON line. Imports torch only here (the policy is set)."""
    if args.policy == "default":
        os.environ.pop("OMP_WAIT_POLICY", None)
        import torch
    sys.path.insert(0, str(ROOT))
    import torch

    from densestudio.ml import zoo
    from densestudio.ml.config import TrainConfig
    from densestudio.ml.runtime import adamw, amp_dtype, resolve_device
    from densestudio.ml.steps import make_step_parts, optimization_step, place_model
    from densestudio.ml.threads import CpuShare, cores_available

    device = resolve_device("cpu")
    cfg = TrainConfig(arch=args.arch, img_size=args.size, batch_size=args.batch, device="cpu",
                      augment="inspection", epochs=100)
    share = CpuShare(cap=cores_available())
    if args.threads == "adaptive":
        time.sleep(1.0)  # what the others keep busy, as a run measures over data preparation
        share.apply()
    else:
        torch.set_num_threads(cores_available())
    model = zoo.build_model(cfg.arch, 6, 3)
    channels_last = place_model(model, cfg, device)
    opt = adamw(list(model.parameters()), device, cfg.lr, cfg.weight_decay)
    n = args.batch * 8
    y = torch.arange(n) % 6
    parts = make_step_parts(model, opt, cfg, device, channels_last, y, 6)
    x = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8)
    yb = y[: args.batch]
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(2):  # warm-up
        optimization_step(parts, x, yb, g, "warm-up")
    images, t0, last_look = 0, time.perf_counter(), time.perf_counter()
    threads_seen = {torch.get_num_threads()}
    while time.perf_counter() - t0 < args.seconds:
        optimization_step(parts, x, yb, g, "bench")
        images += args.batch
        if args.threads == "adaptive" and time.perf_counter() - last_look > 3.0:
            threads_seen.add(share.apply())  # as a run does after each epoch
            last_look = time.perf_counter()
    seconds = time.perf_counter() - t0
    print(json.dumps({"images_per_s": images / seconds, "threads": sorted(threads_seen),
                      "bf16": amp_dtype(device, True) is not None,
                      "policy": os.environ.get("OMP_WAIT_POLICY", "default")}))


def measure(args: argparse.Namespace, policy: str, threads: str, busy: bool) -> dict:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    hog = (subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None)
    try:
        if hog is not None:
            time.sleep(0.5)
        out = subprocess.run(
            [sys.executable, __file__, "--worker", "--policy", policy, "--threads", threads,
             "--seconds", str(args.seconds), "--size", str(args.size), "--batch",
             str(args.batch), "--arch", args.arch],
            env=env, capture_output=True, text=True, check=True).stdout
    finally:
        if hog is not None:
            hog.kill()  # the child this benchmark started, by its own handle
            hog.wait()
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="timed seconds per measurement")
    p.add_argument("--size", type=int, default=144)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--arch", default="densenet_bc_1m")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--policy", default="PASSIVE", help=argparse.SUPPRESS)
    p.add_argument("--threads", default="adaptive", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    sys.path.insert(0, str(ROOT))
    from densestudio.ml.runtime import cpu_model

    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; load average before "
          f"{os.getloadavg()[0]:.2f}")
    print(f"{args.arch} training step, {args.size} px, batch {args.batch}, "
          f"{args.seconds:g} s per measurement")
    for label, policy, threads in (("before (all cores, default wait)", "default", "all"),
                                   ("free cores, passive wait", "PASSIVE", "adaptive"),
                                   ("after (free cores, default wait)", "default", "adaptive")):
        quiet = measure(args, policy, threads, busy=False)
        loaded = measure(args, policy, threads, busy=True)
        share = loaded["images_per_s"] / quiet["images_per_s"]
        print(f"{label:34} quiet {quiet['images_per_s']:6.1f} img/s (threads "
              f"{quiet['threads']})  beside one busy core {loaded['images_per_s']:6.1f} img/s "
              f"(threads {loaded['threads']})  = {share * 100:3.0f} % of quiet"
              f"  bf16 {quiet['bf16']}")
    print(f"load average after {os.getloadavg()[0]:.2f}; goal: >= 60 % of quiet beside one "
          "busy core")


if __name__ == "__main__":
    main()
