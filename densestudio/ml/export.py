"""Export a run as one self-describing TorchScript file, load it back, and predict.

The file (``.pt``, TorchScript) maps a float32 N x C x H x W batch of pixels in [0, 1] to
class probabilities; normalization (and the run's flip test-time augmentation, if it used
one) is inside the model. A JSON document stored in the file (extra file
``densestudio.json``) carries the class names, input size, channels, normalization,
architecture, metrics, a fingerprint of the training data, the app version and - when one
was chosen in the Review tab - the OK/NG operating point (``operating_point``: good class,
threshold on P(good), unsure band). Running it needs only torch (and Pillow to read images)::

    import json, numpy as np, torch
    from PIL import Image, ImageOps
    extra = {"densestudio.json": ""}
    model = torch.jit.load("model.pt", map_location="cpu", _extra_files=extra)
    meta = json.loads(extra["densestudio.json"])
    size, mode = meta["input"]["size"], meta["input"]["mode"]
    img = Image.open("part.jpg"); img.draft(img.mode, (size, size))  # JPEG only
    img = ImageOps.exif_transpose(img).convert(mode).resize((size, size), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)
    x = x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]
    probs = model(x)[0]
    print(meta["class_names"][int(probs.argmax())], float(probs.max()))
    op = meta.get("operating_point")  # OK / NG / UNSURE for a defect inspector
    if op:
        p_good = float(probs[op["good_index"]])
        lo, hi = op["unsure_low"], op["unsure_high"]
        unsure = lo is not None and lo <= p_good < hi
        print("UNSURE" if unsure else "OK" if p_good >= op["threshold"] else "NG")
"""

from __future__ import annotations

import importlib.util
import io
import json
import platform
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from densestudio import __version__
from densestudio.core import preprocess, runs
from densestudio.core.atomic import atomic_output
from densestudio.core.errors import DenseStudioError
from densestudio.core.imaging import ImageDecodeError
from densestudio.core.store import Project
from densestudio.ml import zoo

MODEL_FORMAT = "densestudio-model-1"
META_NAME = "densestudio.json"
PREPROCESSING = (
    "Decode the first frame (EXIF orientation applied; JPEGs with Pillow draft mode to the "
    "input size), convert to the input mode (L or RGB; 16-bit windowed to its 0.5-99.5 "
    "percentile range), resize to size x size with bilinear filtering, divide by 255. "
    "Normalization happens inside the model."
)


class ExportError(DenseStudioError):
    """A model cannot be exported, or a file is not a usable exported model."""


def _atomic_write(data: bytes, path: Path) -> None:
    with atomic_output(path) as f:
        f.write(data)


def export_metadata(project: Project, run_id: int, meta: dict) -> dict:
    info = runs.get_run(project, run_id)
    views = int(meta.get("tta_views", 1)) if info.config.get("tta") else 1
    prep = preprocess.from_meta(meta)
    return {
        "format": MODEL_FORMAT,
        "class_names": list(meta["class_names"]),
        "input": {
            "size": int(meta["img_size"]), "width": prep.width, "height": prep.height,
            "channels": prep.channels,
            "mode": meta["mode"], "dtype": "float32", "range": [0.0, 1.0], "layout": "NCHW",
        },
        "output": "probabilities (N x classes, softmax; averaged over TTA views)",
        "normalization": {"mean": meta["mean"], "std": meta["std"], "inside_model": True},
        "tta_views": views,
        "preprocessing": prep.to_dict(),
        "preprocessing_text": PREPROCESSING,
        "architecture": meta["arch"],
        "model_in_channels": int(meta["in_channels"]),
        "metrics": info.metrics,
        "data_fingerprint": info.metrics.get("data_fingerprint"),
        "run": {"id": run_id, "name": info.name, "config": info.config,
                "best_epoch": info.best_epoch},
        "operating_point": _operating_point_meta(info),
        "app_version": __version__,
        "torch_version": torch.__version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "created_on": platform.platform(),
    }  # fmt: skip


def _operating_point_meta(info: runs.RunInfo) -> dict | None:
    """The run's OK/NG operating point for the metadata (None when it has none):
    OK if P(good_class) >= threshold, UNSURE if unsure_low <= P(good_class) < unsure_high."""
    from dataclasses import asdict

    from densestudio.ml.operating_point import EXTRA_KEY, from_dict

    point = from_dict(info.extra.get(EXTRA_KEY))
    if point is None or point.good_class not in info.class_names:
        return None
    return {**asdict(point), "good_index": list(info.class_names).index(point.good_class),
            "rule": "OK if P(good_class) >= threshold, else NG; UNSURE (sent to a person) "
                    "if unsure_low <= P(good_class) < unsure_high"}


def export_model(project: Project, run_id: int, out_path: str | Path, onnx: bool = False) -> Path:
    """Write the run's best model as TorchScript (and ``.onnx`` beside it if asked)."""
    from densestudio.ml.evaluate import load_run_model

    out_path = Path(out_path)
    if out_path.suffix == "":
        out_path = out_path.with_suffix(".pt")
    if onnx:
        if importlib.util.find_spec("onnx") is None:
            raise ExportError(
                "ONNX export needs the 'onnx' package (pip install onnx); "
                "the TorchScript file needs nothing extra."
            )
    model, meta, _config = load_run_model(project, run_id)
    model.set_memory_efficient(False)
    metadata = export_metadata(project, run_id, meta)
    wrapper = zoo.ProbabilityModel(model, metadata["tta_views"]).eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            scripted = torch.jit.script(wrapper)
    except Exception as exc:
        raise ExportError(f"Could not convert the model to TorchScript: {exc}") from exc
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(scripted, buf, _extra_files={META_NAME: json.dumps(metadata, indent=1)})
    _atomic_write(buf.getvalue(), out_path)
    if onnx:
        _export_onnx(wrapper, metadata, out_path.with_suffix(".onnx"))
    return out_path


def _export_onnx(wrapper: torch.nn.Module, metadata: dict, path: Path) -> None:
    import onnx

    inp = metadata["input"]
    dummy = torch.zeros(1, inp["channels"], inp["height"], inp["width"])
    buf = io.BytesIO()
    kwargs = dict(
        input_names=["image"], output_names=["probabilities"],
        dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}}, opset_version=17,
    )  # fmt: skip
    try:
        torch.onnx.export(wrapper, (dummy,), buf, dynamo=False, **kwargs)
    except TypeError:  # older torch without the dynamo switch
        torch.onnx.export(wrapper, (dummy,), buf, **kwargs)
    model = onnx.load_from_string(buf.getvalue())
    entry = model.metadata_props.add()
    entry.key, entry.value = META_NAME, json.dumps(metadata)
    _atomic_write(model.SerializeToString(), path)


# ------------------------------------------------------------------ loading and prediction
@dataclass(frozen=True)
class PredictionResult:
    path: str | None
    class_name: str | None
    confidence: float
    probs: np.ndarray  # float32, one per class name
    error: str | None = None
    decision: str | None = None  # "OK" | "NG" | "UNSURE" when the model has an operating point

    @property
    def index(self) -> int | None:
        return None if self.error else int(np.argmax(self.probs))


class ExportedModel:
    """A loaded export: ``class_names``, ``metadata`` and ``predict(paths or PIL images)``."""

    def __init__(self, module: torch.jit.ScriptModule, metadata: dict, path: Path) -> None:
        self.module = module.eval()
        self.metadata = metadata
        self.path = path

    @property
    def class_names(self) -> list[str]:
        return list(self.metadata["class_names"])

    @property
    def img_size(self) -> int:
        return int(self.metadata["input"]["size"])

    @property
    def mode(self) -> str:
        return str(self.metadata["input"]["mode"])

    @property
    def operating_point(self):  # TYPEHINT - OperatingPoint | None
        """The OK/NG operating point stored in the file (None when it has none)."""
        from densestudio.ml.operating_point import from_dict

        return from_dict(self.metadata.get("operating_point"))

    def decide(self, probs: np.ndarray) -> str | None:
        """"OK", "NG" or "UNSURE" for one image's probabilities (None without a point)."""
        point = self.operating_point
        if point is None or point.good_class not in self.class_names:
            return None
        return point.decide(float(probs[self.class_names.index(point.good_class)]))

    @property
    def preprocessing(self) -> preprocess.Preprocessing:
        stored = self.metadata.get("preprocessing")
        if isinstance(stored, dict):
            return preprocess.Preprocessing.from_dict(stored)
        return preprocess.legacy(self.img_size, self.mode)

    def preprocess(self, source: str | Path | Image.Image) -> torch.Tensor:
        return torch.from_numpy(self.preprocessing.load(source))

    @torch.no_grad()
    def predict(
        self, inputs: Sequence[str | Path | Image.Image], batch_size: int = 32
    ) -> list[PredictionResult]:
        """One result per input, in order; unreadable files get ``error`` set."""
        results: list[PredictionResult | None] = [None] * len(inputs)
        names = self.class_names
        for start in range(0, len(inputs), batch_size):
            chunk = list(enumerate(inputs))[start : start + batch_size]
            tensors, where = [], []
            for i, src in chunk:
                label = None if isinstance(src, Image.Image) else str(src)
                try:
                    tensors.append(self.preprocess(src))
                    where.append((i, label))
                except (ImageDecodeError, OSError) as exc:
                    results[i] = PredictionResult(
                        label, None, 0.0, np.zeros(len(names), np.float32), str(exc)
                    )
            if not tensors:
                continue
            x = torch.stack(tensors).float().div_(255.0)
            probs = self.module(x).float().numpy()
            for (i, label), p in zip(where, probs, strict=False):
                k = int(p.argmax())
                results[i] = PredictionResult(label, names[k], float(p[k]), p.astype(np.float32),
                                              decision=self.decide(p))
        return results  # type: ignore[return-value]


def read_metadata(path: str | Path) -> dict:
    return load_exported(path).metadata


def load_exported(path: str | Path) -> ExportedModel:
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"Model file not found: {path}")
    extra = {META_NAME: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # jit.load "deprecated" notice
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:  # not a TorchScript archive
        raise ExportError(f"{path} is not a DenseStudio model file ({exc}).") from exc
    try:
        metadata = json.loads(extra[META_NAME])
    except (json.JSONDecodeError, TypeError) as exc:
        raise ExportError(f"{path} has no DenseStudio metadata.") from exc
    if not isinstance(metadata, dict) or metadata.get("format") != MODEL_FORMAT:
        raise ExportError(f"{path} is not a DenseStudio model file (unknown format).")
    return ExportedModel(module, metadata, path)
