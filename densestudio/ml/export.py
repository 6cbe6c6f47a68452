"""Export a run as one self-describing model file, prove it agrees with the app, load it.

The default file is ONNX (``.onnx``, opset 18, ``torch.onnx.export(dynamo=True)``) and runs
in ONNX Runtime without DenseStudio or PyTorch (C/C++/C#/Python/Node.js on the line); see
``densestudio.runtime.onnx_model`` and the README. Its graph maps ``image`` (float32 N x C x
H x W pixels in [0, 1], any N) to ``probabilities`` (N x classes; normalization and the
run's test-time augmentation inside) and ``ood_score`` (N; the cosine distance of the image's
penultimate features to its k-th nearest training image: high = unlike anything in
training). The JSON metadata (``metadata_props["densestudio.json"]``) carries the class
names, the preprocessing definition, input size and mode, metrics, a fingerprint of the
training data, the OK/NG operating point, the out-of-distribution threshold, the frame
checks (``frame_checks``: ranges of brightness, contrast, clipping and sharpness measured on
the training images, see ``densestudio.runtime.frame_checks``), the app version and the
parity figures below.

TorchScript (``.pt``) stays available while torch ships it (``fmt="torchscript"``); it
gives probabilities only.

Parity gate: every export runs the written file - in ONNX Runtime, or reloaded TorchScript
- on the run's test images (all validation images without a test split), compares it with
the in-app PyTorch model on the same preprocessed pixels (max absolute probability
difference, argmax agreement), and refuses the export above ``PARITY_TOLERANCE``. The file
is written to a temporary name, checked, and only then renamed into place, so a refused or
failed export leaves nothing (and an older file at that path untouched).
"""

from __future__ import annotations

import json
import platform
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from densestudio import __version__
from densestudio.core import preprocess, runs
from densestudio.core.atomic import atomic_write_via
from densestudio.core.constants import MODEL_FORMAT_BY_SUFFIX
from densestudio.core.errors import DenseStudioError
from densestudio.core.progress import CancelToken, EventCallback, Progress, ignore_event
from densestudio.core.store import Project
from densestudio.ml import data as D
from densestudio.ml import zoo
from densestudio.ml.frame_ranges import frame_check_ranges
from densestudio.runtime import onnx_model
from densestudio.runtime.model_file import (  # noqa: F401 - re-exported for callers
    META_NAME,
    MODEL_FORMAT,
    ModelFile,
    ModelFileError,
    ModelSpec,
    PredictionResult,
    check_metadata,
    sniff_format,
)
from densestudio.runtime.operating_point import RULE, from_dict

if TYPE_CHECKING:
    import onnx

FORMATS = ("onnx", "torchscript")
OPSET = 18
PARITY_TOLERANCE = 1e-3  # max |P_file - P_app| over the parity images
OOD_K = 5  # k of the k-nearest-neighbour out-of-distribution score
OOD_FLAG_SHARE = 0.015  # the threshold flags this share of the validation images; with the
# frame checks (about 0.5 % of known images) the file flags about 2 % of known images (issue 25)
MAX_BANK = 4096  # training images kept as neighbours (a stratified sample beyond that)
PREPROCESSING = (
    "Decode the first frame (EXIF orientation applied; JPEGs with Pillow draft mode to the "
    "canvas's long side), convert to the input mode (L or RGB; 16-bit windowed to its "
    "0.5-99.5 percentile range), then fit the width x height canvas as 'preprocessing' "
    "says: letterbox = scale to fit keeping the aspect ratio (bilinear, antialiased), centre "
    "on a canvas filled with pad_value; stretch = resize to the canvas. Divide by 255. "
    "Normalization happens inside the model."
)


class ExportError(DenseStudioError):
    """A model cannot be exported (or the written file disagrees with the app)."""


@dataclass(frozen=True)
class ExportProgress(Progress):
    """Export stage for the CLI/GUI ("preparing images", "converting", "checking", ...)."""

    run_id: int
    stage: str


@dataclass(frozen=True)
class OodCalibrated:
    """The unknown-input threshold: it flags ``flagged`` of ``n`` validation images."""

    run_id: int
    threshold: float
    flagged: float
    n: int


@dataclass(frozen=True)
class ParityChecked:
    """The written file was run on ``n`` images and compared with the in-app model."""

    run_id: int
    subset: str
    n: int
    max_abs_diff: float
    argmax_agreement: float
    tolerance: float
    runtime: str
    ood_max_abs_diff: float | None = None

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.argmax_agreement == 1.0

    def describe(self) -> str:
        ood = (f", OOD score max diff {self.ood_max_abs_diff:.2e}"
               if self.ood_max_abs_diff is not None else "")
        return (f"parity on {self.n} {self.subset} images ({self.runtime} vs in-app PyTorch): "
                f"max |dP| {self.max_abs_diff:.2e} (tolerance {self.tolerance:g}), argmax "
                f"agreement {self.argmax_agreement * 100:.1f} %{ood}")


# ------------------------------------------------------------------ the deployed module
class DeployModel(nn.Module):
    """Probabilities (averaged over TTA views, as ``zoo.ProbabilityModel``) and the
    out-of-distribution score in one module, so both live in the exported graph.

    ``ood_score`` = 1 - cosine similarity of the image's L2-normalized penultimate features
    (global-average-pooled, un-augmented view) to its ``k``-th nearest row of ``bank``
    (training images' features); without a bank it is 0.
    """

    if TYPE_CHECKING:  # a buffer (rows x features), registered in __init__ (see zoo)
        bank: torch.Tensor

    def __init__(self, net: zoo.DenseStudioNet, views: int, bank: torch.Tensor | None = None,
                 k: int = OOD_K, square: bool = True) -> None:
        super().__init__()
        if views not in (1, 2, 4, 8):
            raise ValueError("views must be 1, 2, 4 or 8")
        self.net = net
        self.views = 4 if views == 8 and not square else views
        feat_dim = net.backbone.classifier.in_features
        self.register_buffer("bank", bank if bank is not None else torch.zeros(0, feat_dim))
        self.k = max(1, min(int(k), max(1, self.bank.shape[0])))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features, exactly as the classifier sees them (torchvision DenseNet)."""
        net = self.net
        if x.shape[1] != net.mean.shape[1]:
            x = x.expand(-1, net.mean.shape[1], -1, -1)
        f = net.backbone.features((x - net.mean) / net.std)
        return torch.relu(f).mean(dim=(2, 3))

    def ood(self, features: torch.Tensor) -> torch.Tensor:
        if self.bank.shape[0] == 0:
            return features.new_zeros(features.shape[0])
        z = nn.functional.normalize(features, dim=1)
        sims = z @ self.bank.t()
        return 1.0 - torch.topk(sims, self.k, dim=1).values[:, -1]

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = image.shape[0]
        x = image
        if self.views == 2:
            x = torch.cat([x, x.flip(3)], 0)
        elif self.views >= 4:
            x = torch.cat([x, x.flip(3), x.flip(2), x.flip([2, 3])], 0)
            if self.views == 8:
                x = torch.cat([x, x.transpose(2, 3)], 0)
        f = self.embed(x)
        p = torch.softmax(self.net.backbone.classifier(f), dim=1)
        probs = p.reshape(self.views, n, p.shape[1]).mean(0)
        return probs, self.ood(f[:n])


# ------------------------------------------------------------------ metadata
def export_metadata(project: Project, run_id: int, meta: dict[str, Any]) -> dict[str, Any]:
    info = runs.get_run(project, run_id)
    views = int(meta.get("tta_views", 1)) if info.config.get("tta") else 1
    prep = preprocess.from_meta(meta)
    return {
        "format": MODEL_FORMAT,
        "class_names": list(meta["class_names"]),
        "input": {
            "size": int(meta["img_size"]), "width": prep.width, "height": prep.height,
            "channels": prep.channels,
            "mode": prep.mode, "dtype": "float32", "range": [0.0, 1.0], "layout": "NCHW",
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


def _operating_point_meta(info: runs.RunInfo) -> dict[str, Any] | None:
    """The run's OK/NG operating point for the metadata (None when it has none)."""
    from densestudio.ml.operating_point import EXTRA_KEY

    point = from_dict(info.extra.get(EXTRA_KEY))
    if point is None or point.good_class not in info.class_names:
        return None
    return {**asdict(point), "good_index": list(info.class_names).index(point.good_class),
            "rule": RULE}


# ------------------------------------------------------------------ the run's pixels
@dataclass(frozen=True)
class _RunPixels:
    train: torch.Tensor  # uint8 N x C x H x W (a sample of at most MAX_BANK)
    val: torch.Tensor
    check: torch.Tensor  # the parity images
    check_subset: str


def _sample(indices: list[int], labels: Sequence[int], limit: int) -> list[int]:
    """At most ``limit`` of ``indices``, every class in proportion, deterministically."""
    if limit <= 0:
        return []
    if len(indices) <= limit:
        return indices
    step = len(indices) / limit
    ordered = sorted(indices, key=lambda i: (labels[i], i))
    return [ordered[int(j * step)] for j in range(limit)]


def _run_pixels(project: Project, run_id: int, meta: dict[str, Any], cancel: CancelToken | None,
                with_ood: bool = True) -> _RunPixels:
    """The parity images (and, ``with_ood``, the training and validation images)."""
    from densestudio.ml.snapshot import load_snapshot

    snap = load_snapshot(project, run_id)
    subset = "test" if snap.indices("test") else "val"
    limit = MAX_BANK if with_ood else 0
    groups = {
        "train": _sample(snap.indices("train"), snap.labels, limit),
        "val": _sample(snap.indices("val"), snap.labels, limit),
        "check": snap.indices(subset),
    }
    if not groups["check"]:
        raise ExportError(f"Run {run_id} has no test or validation images to check the "
                          "exported file on.")
    wanted = sorted({i for idx in groups.values() for i in idx})
    pixels, failures = D.DecodedCache(project.cache_dir).load(
        [snap.items[i] for i in wanted], preprocess.from_meta(meta), cancel=cancel)
    bad = {f.image_id for f in failures}
    row = {i: r for r, i in enumerate(wanted) if snap.image_ids[i] not in bad}

    def take(idx: list[int]) -> torch.Tensor:
        keep = [row[i] for i in idx if i in row]
        return pixels[torch.tensor(keep, dtype=torch.long)]

    check = take(groups["check"])
    if check.shape[0] == 0:
        raise ExportError(f"None of run {run_id}'s {subset} images can be read to check the "
                          "exported file.")
    return _RunPixels(take(groups["train"]), take(groups["val"]), check, subset)


@torch.no_grad()
def _run_torch(module: nn.Module, pixels: torch.Tensor, batch: int = 64
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """(probabilities, ood scores or None) of a torch module over uint8 pixels."""
    probs, ood = [], []
    for start in range(0, pixels.shape[0], batch):
        out = module(pixels[start : start + batch].float().div_(255.0))
        if isinstance(out, tuple):
            probs.append(out[0].float().numpy())
            ood.append(out[1].float().numpy())
        else:
            probs.append(out.float().numpy())
    return np.concatenate(probs), (np.concatenate(ood) if ood else None)


def _run_file(model: ModelFile, pixels: torch.Tensor, batch: int = 64
              ) -> tuple[np.ndarray, np.ndarray | None]:
    probs, ood = [], []
    for start in range(0, pixels.shape[0], batch):
        p, o = model.forward(pixels[start : start + batch].numpy().astype(np.float32) / 255.0)
        probs.append(p)
        if o is not None:
            ood.append(o)
    return np.concatenate(probs), (np.concatenate(ood) if ood else None)


def ood_statistics(deploy: DeployModel, run_pixels: _RunPixels) -> dict[str, Any] | None:
    """Fill ``deploy.bank`` with the training images' features and pick the threshold that
    flags ``OOD_FLAG_SHARE`` of the validation images; the metadata's "ood" entry."""
    if run_pixels.train.shape[0] < 2 or run_pixels.val.shape[0] == 0:
        return None
    with torch.no_grad():
        feats = [deploy.embed(run_pixels.train[s : s + 64].float().div_(255.0))
                 for s in range(0, run_pixels.train.shape[0], 64)]
    deploy.bank = nn.functional.normalize(torch.cat(feats), dim=1)
    deploy.k = max(1, min(OOD_K, deploy.bank.shape[0] - 1))
    _, val_scores = _run_torch(deploy, run_pixels.val)
    assert val_scores is not None  # DeployModel returns (probabilities, ood scores)
    threshold = float(np.quantile(val_scores, 1.0 - OOD_FLAG_SHARE, method="higher"))
    return {
        "method": "knn-cosine", "output": onnx_model.OOD_NAME, "k": deploy.k,
        "threshold": threshold, "bank_size": int(deploy.bank.shape[0]),
        "features": "penultimate (global-average-pooled), L2-normalized, un-augmented view",
        "calibration": {"subset": "val", "n": int(val_scores.shape[0]),
                        "flagged": float((val_scores > threshold).mean()),
                        "target_flagged": OOD_FLAG_SHARE},
        "rule": "UNSURE when ood_score > threshold: unlike the training images",
    }  # fmt: skip


# ------------------------------------------------------------------ writing
def _resolve(out_path: str | Path, fmt: str | None) -> tuple[Path, str]:
    path = Path(out_path)
    if fmt is not None and fmt not in FORMATS:
        raise ExportError(f"Unknown model format '{fmt}' (choose from {', '.join(FORMATS)}).")
    by_suffix = MODEL_FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if path.suffix == "" or by_suffix is None:
        fmt = fmt or "onnx"
        return path.with_name(path.name + (".onnx" if fmt == "onnx" else ".pt")), fmt
    if fmt is not None and fmt != by_suffix:
        raise ExportError(f"'{path.name}' names a {by_suffix} file but the format asked for "
                          f"is {fmt}; use a .onnx name for ONNX, .pt for TorchScript.")
    return path, by_suffix


def _onnx_bytes(
    deploy: DeployModel, prep: preprocess.Preprocessing, metadata: dict[str, Any]
) -> onnx.ModelProto:
    """The module as an ONNX model proto (dynamic batch; traced with a batch of 2)."""
    import onnx  # noqa: F401 - the exporter needs it; fail here with a clear message

    dummy = torch.rand(2, prep.channels, prep.height, prep.width)
    batch = torch.export.Dim("batch", min=1, max=65536)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                deploy, (dummy,), dynamo=True, opset_version=OPSET,
                input_names=[onnx_model.INPUT_NAME],
                output_names=[onnx_model.PROBS_NAME, onnx_model.OOD_NAME],
                dynamic_shapes={"image": {0: batch}}, optimize=True, verbose=False,
            )  # fmt: skip
    except Exception as exc:
        raise ExportError(f"Could not convert the model to ONNX: {exc}") from exc
    assert program is not None  # dynamo=True always returns the program
    proto = program.model_proto
    proto.producer_name, proto.producer_version = "DenseStudio", __version__
    proto.doc_string = (f"DenseStudio {metadata['architecture']} classifier for "
                        f"{len(metadata['class_names'])} classes; see metadata_props "
                        f"'{META_NAME}'.")
    return proto


def _with_metadata(proto: onnx.ModelProto, metadata: dict[str, Any]) -> bytes:
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_NAME, json.dumps(metadata)
    data: bytes = proto.SerializeToString()
    return data


def _scripted(deploy: DeployModel) -> torch.jit.ScriptModule:
    wrapper = zoo.ProbabilityModel(deploy.net, deploy.views).eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.script(wrapper)
    except Exception as exc:
        raise ExportError(f"Could not convert the model to TorchScript: {exc}") from exc


def _save_torchscript(
    scripted: torch.jit.ScriptModule, metadata: dict[str, Any], path: Path
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(scripted, str(path), _extra_files={META_NAME: json.dumps(metadata)})


def parity(run_id: int, subset: str, runtime: str, ref: tuple[np.ndarray, np.ndarray | None],
           got: tuple[np.ndarray, np.ndarray | None],
           tolerance: float = PARITY_TOLERANCE) -> ParityChecked:
    """How far the file's outputs ``got`` are from the in-app model's ``ref``."""
    (p_ref, o_ref), (p_got, o_got) = ref, got
    if p_got.shape != p_ref.shape or not np.all(np.isfinite(p_got)):
        return ParityChecked(run_id, subset, len(p_ref), float("inf"), 0.0, tolerance, runtime)
    diff = float(np.abs(p_got - p_ref).max())
    agree = float((p_got.argmax(1) == p_ref.argmax(1)).mean())
    ood = (float(np.abs(o_got - o_ref).max())
           if o_ref is not None and o_got is not None else None)
    return ParityChecked(run_id, subset, len(p_ref), diff, agree, tolerance, runtime, ood)


FileCheck = Callable[[Path], tuple[np.ndarray, np.ndarray | None]]


def export_model(
    project: Project,
    run_id: int,
    out_path: str | Path,
    fmt: str | None = None,
    *,
    on_event: EventCallback = ignore_event,
    cancel: CancelToken | None = None,
    tolerance: float = PARITY_TOLERANCE,
) -> Path:
    """Write the run's best model as ONNX (default; or TorchScript: ``fmt`` or a ``.pt``
    name), checked against the app (see the module docstring). Returns the file's path;
    the parity figures arrive as a ``ParityChecked`` event and are in the metadata."""
    from densestudio.ml.evaluate import load_run_model

    path, fmt = _resolve(out_path, fmt)
    project.refuse_overwriting(path)  # never over the project, a checkpoint or an image
    model, meta, _config = load_run_model(project, run_id)
    model.set_memory_efficient(False)
    metadata = export_metadata(project, run_id, meta)
    prep = preprocess.Preprocessing.from_dict(metadata["preprocessing"])
    on_event(ExportProgress(run_id, "preparing images"))
    pixels = _run_pixels(project, run_id, meta, cancel, with_ood=fmt == "onnx")
    deploy = DeployModel(model, metadata["tta_views"], square=prep.width == prep.height).eval()
    in_app = zoo.ProbabilityModel(model, metadata["tta_views"]).eval()
    on_event(ExportProgress(run_id, "measuring the training frames (frame checks)"))
    metadata["frame_checks"] = frame_check_ranges(project, run_id, meta, cancel)
    if fmt == "onnx":
        on_event(ExportProgress(run_id, "measuring the training data (unknown-input check)"))
        metadata["ood"] = ood = ood_statistics(deploy, pixels)
        if ood is not None:
            cal = ood["calibration"]
            on_event(OodCalibrated(run_id, ood["threshold"], cal["flagged"], cal["n"]))
        metadata["output"] = ("probabilities: N x classes (softmax, averaged over TTA views); "
                              "ood_score: N (cosine distance to the k-th nearest training "
                              "image; above ood.threshold = unlike the training images)")
        metadata["onnx"] = {"opset": OPSET, "input": onnx_model.INPUT_NAME,
                            "outputs": [onnx_model.PROBS_NAME, onnx_model.OOD_NAME],
                            "dynamic_batch": True}
    ref_probs, _ = _run_torch(in_app, pixels.check)
    ref_ood = _run_torch(deploy, pixels.check)[1] if metadata.get("ood") else None
    if cancel is not None:
        cancel.raise_if_cancelled()

    on_event(ExportProgress(run_id, f"converting to {fmt}"))
    if fmt == "onnx":
        import onnxruntime

        proto = _onnx_bytes(deploy, prep, metadata)
        runtime = f"onnxruntime {onnxruntime.__version__}"

        def write(tmp: Path, with_meta: dict[str, Any]) -> None:
            tmp.write_bytes(_with_metadata(proto, with_meta))

        def run(tmp: Path) -> tuple[np.ndarray, np.ndarray | None]:
            return _run_file(onnx_model.load_onnx(tmp), pixels.check)
    else:
        scripted = _scripted(deploy)
        runtime = f"TorchScript (torch {torch.__version__})"

        def write(tmp: Path, with_meta: dict[str, Any]) -> None:
            _save_torchscript(scripted, with_meta, tmp)

        def run(tmp: Path) -> tuple[np.ndarray, np.ndarray | None]:
            return _run_file(load_exported(tmp), pixels.check)

    def write_checked(tmp: Path) -> None:
        write(tmp, {**metadata, "parity": None})
        on_event(ExportProgress(run_id, f"checking the file in {runtime}"))
        got = run(tmp)
        figures = parity(run_id, pixels.check_subset, runtime, (ref_probs, ref_ood), got,
                         tolerance)
        on_event(figures)
        if not figures.passed:
            raise ExportError(
                f"The exported file does not give the app's answers, so it was not written: "
                f"{figures.describe()}.")
        metadata["parity"] = {k: v for k, v in asdict(figures).items() if k != "run_id"}
        write(tmp, metadata)
        final = run(tmp)  # the file as renamed into place: same graph, same answers
        if not np.array_equal(final[0], got[0]):
            raise ExportError("The exported file changed while its metadata was written.")

    atomic_write_via(path, write_checked)
    return path


# ------------------------------------------------------------------ loading
class TorchScriptModel(ModelFile):
    """A TorchScript export (probabilities only; needs torch)."""

    def __init__(
        self, module: torch.jit.ScriptModule, metadata: dict[str, Any], spec: ModelSpec, path: Path
    ) -> None:
        super().__init__(metadata, spec, path)
        self.module = module.eval()

    @torch.no_grad()
    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return self.module(torch.from_numpy(np.ascontiguousarray(x))).float().numpy(), None


ExportedModel = ModelFile  # what ``load_exported`` returns, whichever the format


def read_metadata(path: str | Path) -> dict[str, Any]:
    return load_exported(path).metadata


def load_exported(path: str | Path) -> ModelFile:
    """An exported file ready to predict: ONNX (in ONNX Runtime) or TorchScript."""
    path = Path(path)
    if sniff_format(path) == "onnx":
        return onnx_model.load_onnx(path)
    extra = {META_NAME: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # jit.load "deprecated" notice
            module = torch.jit.load(  # type: ignore[no-untyped-call]  # untyped in torch
                str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:
        raise ModelFileError(f"{path} is not a DenseStudio model file ({exc}).") from exc
    try:
        metadata = json.loads(extra[META_NAME])
    except (json.JSONDecodeError, TypeError) as exc:
        raise ModelFileError(f"{path} is not a DenseStudio model file (no metadata).") from exc
    spec = check_metadata(metadata, path, legacy_ok=True)
    model = TorchScriptModel(module, metadata, spec, path)
    prep = spec.preprocessing
    try:  # the number of outputs is only known by running it once
        probs, _ = model.forward(np.zeros((1, prep.channels, prep.height, prep.width),
                                          np.float32))
    except Exception as exc:
        raise ModelFileError(f"{path} is not a usable DenseStudio model file: it does not run "
                             f"on its own input size ({str(exc)[:200]}).") from exc
    check_metadata(metadata, path, n_outputs=int(probs.shape[-1]), legacy_ok=True)
    return model

