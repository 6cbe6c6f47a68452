"""Inference speed on this CPU: eager PyTorch vs TorchScript vs ONNX Runtime, same model,
same images.

The model is the default architecture (densenet_bc_1m) at the default CPU input size (128 x
128 grayscale), with random weights (speed does not depend on them) unless ``--run`` names a
trained run of a project. The images are real NEU images, preprocessed once. The engines run
interleaved, image by image (the machine is shared and its load changes by the second), so
each figure sees the same load; the deciding ratio (ONNX Runtime / eager median latency at
batch 1) is measured ``--repeats`` times.

    .venv/bin/python tests/benchmarks/bench_inference.py [--images 240] [--int8]

Prints batch-1 latency (median, p99), batch-32 throughput, file sizes, the load average, and
with ``--int8`` an ONNX Runtime static-quantized (QDQ, per-channel) model's speed and how far
its answers move from the float model's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

# Threads wait passively between calls: the engines run interleaved on a shared machine, and
# a pool busy-waiting after its call would slow the next engine down.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from densestudio.core.preprocess import Preprocessing
from densestudio.ml import export, zoo
from densestudio.runtime import onnx_model

NEU = ROOT.parent / "shared" / "datasets" / "neu-surface-defects"


def load_images(n: int, prep: Preprocessing) -> np.ndarray:
    files = sorted(NEU.rglob("*.jpg"))
    if not files:
        raise SystemExit(f"NEU images not found under {NEU}")
    picked = files[:: max(1, len(files) // n)][:n]
    return np.stack([prep.load(p) for p in picked]).astype(np.float32) / 255.0


def build(arch: str, size: int, classes: int = 6) -> tuple[zoo.DenseStudioNet, Preprocessing]:
    torch.manual_seed(0)
    net = zoo.build_model(arch, classes, 1).eval()
    return net, Preprocessing(width=size, height=size, mode="L")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="densenet_bc_1m")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--images", type=int, default=240)
    ap.add_argument("--repeats", type=int, default=3, help="rounds of the batch-1 comparison")
    ap.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    ap.add_argument("--int8", action="store_true", help="also ONNX Runtime static INT8")
    ap.add_argument("--reexport", action="store_true", help="export again (else reuse)")
    args = ap.parse_args()
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    print(f"load average before: {os.getloadavg()}  cores: {os.cpu_count()}  threads: {threads}")

    net, prep = build(args.arch, args.size)
    x = load_images(args.images, prep)
    print(f"{args.arch}, {zoo.count_parameters(net) / 1e6:.2f} M parameters (random weights), "
          f"{prep.describe()}, {len(x)} NEU images")
    deploy = export.DeployModel(net, 1).eval()
    bank = torch.nn.functional.normalize(torch.randn(1000, net.backbone.classifier.in_features),
                                         dim=1)
    deploy.bank = bank  # a bank the size of NEU's training split: the OOD score costs its share
    eager = zoo.ProbabilityModel(net, 1).eval()

    tmp = ROOT / "bench-out" / f"inference-{args.arch}-{args.size}"
    tmp.mkdir(parents=True, exist_ok=True)
    onnx_path = tmp / "model.onnx"  # same seed, same weights: reused unless --reexport
    if args.reexport or not onnx_path.is_file():
        t = time.perf_counter()
        proto = export._onnx_bytes(deploy, prep, {"architecture": args.arch,
                                                  "class_names": [0] * 6})
        onnx_path.write_bytes(export._with_metadata(proto, {}))
        print(f"ONNX export {time.perf_counter() - t:.1f} s")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(eager)
        ts_path = tmp / "model.pt"
        torch.jit.save(scripted, str(ts_path))
        scripted = torch.jit.load(str(ts_path))
    scripted.eval()
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), onnx_model.session_options(threads),
                                   providers=["CPUExecutionProvider"])
    engines = {
        "eager PyTorch": lambda a: eager(torch.from_numpy(a)).numpy(),
        "TorchScript": lambda a: scripted(torch.from_numpy(a)).numpy(),
        "ONNX Runtime": lambda a: session.run(["probabilities"], {"image": a})[0],
    }
    sizes = {"TorchScript": ts_path.stat().st_size, "ONNX Runtime": onnx_path.stat().st_size}
    if args.int8:
        q_path = quantize(onnx_path, x[:64], tmp)
        q_session = ort.InferenceSession(str(q_path), onnx_model.session_options(threads),
                                         providers=["CPUExecutionProvider"])
        engines["ONNX Runtime INT8"] = lambda a: q_session.run(["probabilities"], {"image": a})[0]
        sizes["ONNX Runtime INT8"] = q_path.stat().st_size

    with torch.inference_mode():
        ref = {name: np.concatenate([f(x[i : i + 32]) for i in range(0, len(x), 32)])
               for name, f in engines.items()}  # also warms every engine up
        base = ref["eager PyTorch"]
        for name, p in ref.items():
            if name != "eager PyTorch":
                print(f"  {name:<18} vs eager: max |dP| {np.abs(p - base).max():.2e}, "
                      f"argmax agreement {(p.argmax(1) == base.argmax(1)).mean() * 100:.1f} %")
        ratios = []
        lat: dict[str, list[float]] = {}
        for r in range(args.repeats):
            lat = {name: [] for name in engines}
            names = list(engines)
            for i in range(len(x)):
                a = x[i : i + 1]
                for name in names[i % len(names):] + names[: i % len(names)]:  # rotate order
                    t = time.perf_counter()
                    engines[name](a)
                    lat[name].append((time.perf_counter() - t) * 1000)
            ratio = statistics.median(lat["ONNX Runtime"]) / statistics.median(lat["eager PyTorch"])
            ratios.append(ratio)
            print(f"round {r + 1}: batch-1 median ONNX Runtime / eager = {ratio:.3f}  "
                  f"(load {os.getloadavg()[0]:.1f})")
        through = {name: [] for name in engines}
        for _ in range(3):
            for name, f in engines.items():
                for i in range(0, len(x) - 31, 32):
                    t = time.perf_counter()
                    f(x[i : i + 32])
                    through[name].append(32 / (time.perf_counter() - t))

    print(f"\nbatch 1 over {len(x)} images (last round), batch 32 throughput (median of "
          f"{len(through['eager PyTorch'])} batches):")
    print(f"  {'engine':<18} {'median ms':>9} {'p99 ms':>8} {'img/s @32':>10} {'file MB':>8}")
    for name in engines:
        size = sizes.get(name)
        print(f"  {name:<18} {statistics.median(lat[name]):>9.2f} {pct(lat[name], 99):>8.2f} "
              f"{statistics.median(through[name]):>10.1f} "
              + (f"{size / 1e6:>8.2f}" if size else f"{'-':>8}"))
    print(f"ONNX Runtime / eager batch-1 median latency: "
          f"{', '.join(f'{r:.3f}' for r in ratios)} (goal <= 0.5)")
    print(f"load average after: {os.getloadavg()}")


def quantize(onnx_path: Path, calib: np.ndarray, tmp: Path) -> Path:
    """ONNX Runtime static INT8 quantization (QDQ, per-channel weights) calibrated on
    ``calib`` images."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"image": calib[i : i + 1]} for i in range(len(calib))])

        def get_next(self) -> dict | None:
            return next(self.items, None)

    out = tmp / "model.int8.onnx"
    quantize_static(str(onnx_path), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8)
    return out


if __name__ == "__main__":
    main()
