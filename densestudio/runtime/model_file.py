"""What every exported model file promises, checked before it is used, and the prediction
loop shared by the ONNX runtime and the TorchScript loader.

A model file carries JSON metadata (``densestudio.json``: class names, the preprocessing
definition, input size, operating point, out-of-distribution threshold, ...). A file is
someone else's work, maybe crafted: ``check_metadata`` refuses anything the prediction code
could not honour exactly (an input size of 0, more outputs than class names, an unknown
preprocessing, a missing key) with one clear message instead of a wrong answer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from densestudio.core import preprocess
from densestudio.core.errors import DenseStudioError
from densestudio.core.files import not_found_message
from densestudio.core.imaging import ImageDecodeError, load_image
from densestudio.runtime.frame_checks import UNLIKE, FrameChecks, frame_stats
from densestudio.runtime.operating_point import (
    OperatingPoint,
    OperatingPointError,
    from_dict,
    validate,
)

MODEL_FORMAT = "densestudio-model-1"
META_NAME = "densestudio.json"  # metadata_props key (ONNX) / extra file (TorchScript)
MAX_CLASSES = 10_000
UNSURE = "UNSURE"


class ModelFileError(DenseStudioError):
    """A file is not a usable DenseStudio model file; the message says why."""


@dataclass(frozen=True)
class ModelSpec:
    """The checked essentials of a model file's metadata."""

    class_names: tuple[str, ...]
    preprocessing: preprocess.Preprocessing
    operating_point: OperatingPoint | None
    ood_threshold: float | None  # ood_score above it: unlike the training images
    frame_checks: FrameChecks | None = None  # files made before frame checks have none

    @property
    def good_index(self) -> int | None:
        point = self.operating_point
        return None if point is None else self.class_names.index(point.good_class)


def _fail(path: str | Path, why: str) -> ModelFileError:
    return ModelFileError(f"{path} is not a usable DenseStudio model file: {why}")


def check_metadata(
    meta: object,
    path: str | Path,
    *,
    n_outputs: int | None = None,
    input_shape: Sequence[int | str | None] | None = None,
    legacy_ok: bool = False,
) -> ModelSpec:
    """``ModelSpec`` of ``meta`` or ``ModelFileError``.

    ``n_outputs``: the model's number of class scores (must equal the class names);
    ``input_shape``: the model's N x C x H x W input (C, H, W must match the preprocessing);
    ``legacy_ok``: accept files written before the preprocessing was stored (TorchScript).
    """
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path} is not a DenseStudio model file (unknown format).")
    names = meta.get("class_names")
    if (not isinstance(names, list) or not 2 <= len(names) <= MAX_CLASSES
            or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names)):
        raise _fail(path, "'class_names' must list at least 2 distinct names.")
    inp = meta.get("input")
    if not isinstance(inp, dict):
        raise _fail(path, "the 'input' description is missing.")
    stored = meta.get("preprocessing")
    try:
        if isinstance(stored, dict):
            prep = preprocess.Preprocessing.from_dict(stored)
        elif legacy_ok and stored is None:
            prep = preprocess.legacy(int(inp["size"]), str(inp["mode"]))
            problems = prep.problems()
            if problems:
                raise ValueError(" ".join(problems))
        else:
            raise ValueError("the preprocessing definition is missing")
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(path, f"{exc}.") from exc
    for key, want in (("width", prep.width), ("height", prep.height),
                      ("channels", prep.channels)):
        if key in inp and inp[key] != want:
            raise _fail(path, f"input {key} {inp[key]!r} does not match its preprocessing "
                              f"({want}).")
    if input_shape is not None:
        shape = list(input_shape)[1:]
        want_shape = [prep.channels, prep.height, prep.width]
        if shape != want_shape:
            raise _fail(path, f"the model takes {shape} (C, H, W) but its metadata describes "
                              f"{want_shape}.")
    if n_outputs is not None and n_outputs != len(names):
        raise _fail(path, f"the model has {n_outputs} outputs but {len(names)} class names.")
    try:
        point = from_dict(meta.get("operating_point"))
        if point is not None:
            validate(point, names)
    except (TypeError, OperatingPointError) as exc:
        raise _fail(path, f"bad operating point ({exc}).") from exc
    ood = meta.get("ood")
    threshold = None
    if ood is not None:
        threshold = ood.get("threshold") if isinstance(ood, dict) else None
        if (not isinstance(threshold, (int, float)) or isinstance(threshold, bool)
                or not math.isfinite(threshold)):
            raise _fail(path, "the out-of-distribution threshold is not a number.")
        threshold = float(threshold)
    try:
        frames = FrameChecks.from_meta(meta.get("frame_checks"))
    except ValueError as exc:
        raise _fail(path, f"bad frame checks ({exc}).") from exc
    return ModelSpec(tuple(names), prep, point, threshold, frames)


@dataclass(frozen=True)
class PredictionResult:
    path: str | None
    class_name: str | None
    confidence: float
    probs: np.ndarray  # float32, one per class name
    error: str | None = None
    decision: str | None = None  # "OK" | "NG" | "UNSURE" (operating point or unfamiliar input)
    ood_score: float | None = None  # higher = less like the training images
    unfamiliar: bool = False  # a frame check failed or ood_score is above the threshold
    reason: str | None = None  # why it is unfamiliar: "too dark", "out of focus", ...

    @property
    def index(self) -> int | None:
        return None if self.error else int(np.argmax(self.probs))


class ModelFile:
    """A loaded model file: ``class_names``, ``metadata``, ``spec`` and ``predict``.

    Subclasses implement ``forward`` (float32 N x C x H x W in [0, 1] -> probabilities and,
    when the file has one, the out-of-distribution score per image).
    """

    def __init__(self, metadata: dict[str, Any], spec: ModelSpec, path: Path) -> None:
        self.metadata = metadata
        self.spec = spec
        self.path = path

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    @property
    def class_names(self) -> list[str]:
        return list(self.spec.class_names)

    @property
    def preprocessing(self) -> preprocess.Preprocessing:
        return self.spec.preprocessing

    @property
    def operating_point(self) -> OperatingPoint | None:
        """The OK/NG operating point stored in the file (None when it has none)."""
        return self.spec.operating_point

    def decide(self, probs: np.ndarray, unfamiliar: bool = False) -> str | None:
        """"OK", "NG" or "UNSURE" for one image; an unfamiliar image is always UNSURE (None:
        no operating point and nothing unusual)."""
        if unfamiliar:
            return UNSURE
        point, good = self.spec.operating_point, self.spec.good_index
        return None if point is None or good is None else point.decide(float(probs[good]))

    def frame_reason(self, img: Image.Image) -> str | None:
        """Why the decoded frame ``img`` is unfit to judge (too dark, out of focus, ...), by
        the file's frame checks; None when it passes or the file has none."""
        checks = self.spec.frame_checks
        return None if checks is None else checks.reason(frame_stats(img))

    def preprocess(self, source: str | Path | Image.Image) -> np.ndarray:
        """C x H x W uint8 pixels, exactly as the run's training saw them."""
        return self.preprocessing.load(source)

    def predict(
        self, inputs: Sequence[str | Path | Image.Image], batch_size: int = 32
    ) -> list[PredictionResult]:
        """One result per input, in order; unreadable files get ``error`` set."""
        results: list[PredictionResult | None] = [None] * len(inputs)
        names = self.class_names
        threshold = self.spec.ood_threshold
        for start in range(0, len(inputs), batch_size):
            arrays, where = [], []
            for i in range(start, min(len(inputs), start + batch_size)):
                src = inputs[i]
                label = None if isinstance(src, Image.Image) else str(src)
                try:
                    img = src if isinstance(src, Image.Image) else load_image(
                        Path(src), max_side=max(self.preprocessing.width,
                                                self.preprocessing.height))
                    arrays.append(self.preprocessing.apply(img))
                    where.append((i, label, self.frame_reason(img)))
                except (ImageDecodeError, OSError) as exc:
                    results[i] = PredictionResult(
                        label, None, 0.0, np.zeros(len(names), np.float32), str(exc))
            if not arrays:
                continue
            probs, ood = self.forward(np.stack(arrays).astype(np.float32) / 255.0)
            for row, ((i, label, frame), p) in enumerate(zip(where, probs, strict=True)):
                if not np.isfinite(p).all():  # a broken conversion: never a made-up class
                    results[i] = PredictionResult(
                        label, None, 0.0, np.zeros(len(names), np.float32),
                        "the model gave no usable output for this image (NaN or infinite)")
                    continue
                k = int(p.argmax())
                score = None if ood is None else float(ood[row])
                unlike = score is not None and threshold is not None and score > threshold
                reason = frame or (UNLIKE if unlike else None)
                results[i] = PredictionResult(
                    label, names[k], float(p[k]), p.astype(np.float32),
                    decision=self.decide(p, reason is not None), ood_score=score,
                    unfamiliar=reason is not None, reason=reason)
        return results  # type: ignore[return-value]


def sniff_format(path: str | Path) -> str:
    """"torchscript" (a zip archive) or "onnx" (anything else is tried as ONNX)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(not_found_message(path, "Model file"))
    with open(path, "rb") as f:
        head = f.read(4)
    return "torchscript" if head == b"PK\x03\x04" else "onnx"
