"""Device selection, mixed precision and batched inference shared by train/evaluate/export."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from densestudio.core.atomic import atomic_output
from densestudio.core.errors import DenseStudioError
from densestudio.core.progress import CancelToken

if TYPE_CHECKING:
    from densestudio.ml.decoded_cache import Pixels


class DeviceError(DenseStudioError):
    """The requested device is not available on this computer."""


def resolve_device(name: str = "auto") -> torch.device:
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise DeviceError("No CUDA GPU is available here; use --device cpu (or auto).")
    if name == "mps" and not mps:
        raise DeviceError("Apple MPS is not available here; use --device cpu (or auto).")
    if name not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"Unknown device '{name}'.")
    return torch.device(name)


CPU_BF16_ENV = "DENSESTUDIO_CPU_BF16"


def cpu_model() -> str:
    """The CPU's model name (benchmarks and the test suite's header print it beside bf16)."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_bf16_fast() -> bool:
    """True when oneDNN has native bf16 on this CPU (AVX512-BF16 / AMX): autocast pays off.

    ``DENSESTUDIO_CPU_BF16=0`` (or ``1``) overrides the detection, so the test suite can be
    run as a CPU without (or with) bf16 would run it (docs/ARCHITECTURE.md, "Precision")."""
    forced = os.environ.get(CPU_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # older builds
        return False


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The autocast dtype for ``device`` (None = full precision)."""
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        return torch.bfloat16 if cpu_bf16_fast() else None
    return None  # mps: autocast support varies; full precision is the safe choice


def autocast(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[object]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def adamw(
    groups: list[torch.nn.Parameter] | list[dict[str, Any]],  # parameters or param groups
    device: torch.device,
    lr: float,
    weight_decay: float,
) -> torch.optim.AdamW:
    """AdamW, with the fused kernel where torch has one (CPU, CUDA): one pass over all
    parameters instead of a dozen per-op passes; ~3 % of a compact-model CPU step."""
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, fused=fused)


def to_input(x_uint8: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x_uint8.to(device, non_blocking=True).float().div_(255.0)
    if channels_last and device.type != "mps":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


@torch.no_grad()
def predict_probs(
    model: nn.Module,
    x_uint8: torch.Tensor | Pixels,
    device: torch.device,
    *,
    batch_size: int = 128,
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
    cancel: CancelToken | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Class probabilities (float32, CPU) for uint8 N x C x H x W images (a tensor, or
    ``Pixels`` read from the decoded-image cache one batch at a time)."""
    model.eval()
    out = []
    n = x_uint8.shape[0]
    for start in range(0, n, batch_size):
        if cancel is not None:
            cancel.raise_if_cancelled()
        xb = to_input(x_uint8[start : start + batch_size], device, channels_last)
        with autocast(device, dtype):
            p = model(xb)
        out.append(p.float().cpu())
        if on_batch:
            on_batch(min(n, start + batch_size), n)
    if not out:
        return torch.zeros((0, 0))
    return torch.cat(out)


def atomic_save(obj: object, path: Path) -> None:
    """torch.save that never leaves a half-written file (see core.atomic)."""
    with atomic_output(path) as f:
        torch.save(obj, f)


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text
    )
