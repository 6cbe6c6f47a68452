"""Load an exported ``.onnx`` model and predict with ONNX Runtime: no torch needed.

The graph takes ``image``: float32 N x C x H x W pixels in [0, 1], prepared by the stored
``Preprocessing`` (normalization is inside the graph), and gives ``probabilities`` (N x
classes) and, in files made since the out-of-distribution check exists, ``ood_score`` (N;
higher = less like the training images; above the metadata's ``ood.threshold`` the image
is flagged and its decision is UNSURE).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from densestudio.core.files import not_found_message
from densestudio.runtime.model_file import (
    META_NAME,
    ModelFile,
    ModelFileError,
    ModelSpec,
    check_metadata,
)

if TYPE_CHECKING:  # imported where a model is loaded: the package is heavy
    import onnxruntime as ort

INPUT_NAME = "image"
PROBS_NAME = "probabilities"
OOD_NAME = "ood_score"


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """Options tuned for CPU latency on a line PC: every graph optimization (conv + batch
    norm + ReLU fusion, constant folding), sequential execution, ``threads`` intra-op
    threads (default: the machine's cores, at most 4)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only: no warnings on the line PC's console
    return opts


class OnnxModel(ModelFile):
    """An exported model in an ONNX Runtime session (CPU)."""

    def __init__(
        self, session: ort.InferenceSession, metadata: dict[str, Any], spec: ModelSpec, path: Path
    ) -> None:
        super().__init__(metadata, spec, path)
        self.session = session
        self.outputs = [o.name for o in session.get_outputs()]
        self.has_ood = OOD_NAME in self.outputs
        image = session.get_inputs()[0]
        # As converters leave them: a float16 input (cast to it), a fixed batch size (run in
        # pieces of that size, the last one padded).
        self.input_dtype = np.float16 if image.type == "tensor(float16)" else np.float32
        first = image.shape[0] if image.shape else None
        self.fixed_batch = first if isinstance(first, int) and first > 0 else None

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        b = self.fixed_batch
        if b is None or len(x) == b:
            return self._run(x)
        parts = [self._run(np.concatenate([x[i:i + b], np.zeros((max(0, i + b - len(x)),
                                                                  *x.shape[1:]), x.dtype)]))
                 for i in range(0, len(x), b)]
        probs = np.concatenate([p for p, _ in parts])[: len(x)]
        oods = [o for _, o in parts if o is not None]
        ood = np.concatenate(oods)[: len(x)] if len(oods) == len(parts) else None
        return probs, ood

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        try:
            out = self.session.run(None, {INPUT_NAME: np.ascontiguousarray(x, self.input_dtype)})
        except Exception as exc:  # a graph ONNX Runtime cannot run on this input: one line
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise ModelFileError(f"{self.path} cannot run: {first or type(exc).__name__}") \
                from exc
        named = dict(zip(self.outputs, out, strict=True))
        ood = named.get(OOD_NAME)
        return (named[PROBS_NAME].astype(np.float32),
                None if ood is None else np.asarray(ood, np.float32))


def read_onnx_metadata(session: ort.InferenceSession, path: str | Path) -> dict[str, Any]:
    """The DenseStudio JSON of an ONNX Runtime session's model (``metadata_props``)."""
    props = session.get_modelmeta().custom_metadata_map
    text = props.get(META_NAME)
    if text is None:
        raise ModelFileError(f"{path} is an ONNX model but not a DenseStudio one "
                             "(no DenseStudio metadata).")
    try:
        meta: dict[str, Any] = json.loads(text)
        return meta
    except (json.JSONDecodeError, TypeError) as exc:
        raise ModelFileError(f"{path} has damaged DenseStudio metadata ({exc}).") from exc


def load_onnx(path: str | Path, threads: int | None = None) -> OnnxModel:
    """Open an exported ``.onnx`` file, check what it promises, and get it ready to predict."""
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - a regular dependency
        raise ModelFileError("Running an ONNX model needs the 'onnxruntime' package "
                             "(pip install onnxruntime).") from exc
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(not_found_message(path, "Model file"))
    try:
        session = ort.InferenceSession(str(path), sess_options=session_options(threads),
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path} is not a DenseStudio model file ({first}).") from exc
    metadata = read_onnx_metadata(session, path)
    inputs, outputs = session.get_inputs(), {o.name: o for o in session.get_outputs()}
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME or PROBS_NAME not in outputs:
        raise ModelFileError(f"{path} is not a DenseStudio model file (its graph has no "
                             f"'{INPUT_NAME}' -> '{PROBS_NAME}').")
    probs_shape = outputs[PROBS_NAME].shape
    n_out = probs_shape[-1] if probs_shape and isinstance(probs_shape[-1], int) else None
    if n_out is None:
        raise ModelFileError(f"{path} is not a usable DenseStudio model file: its number of "
                             "outputs is not fixed.")
    spec = check_metadata(metadata, path, n_outputs=n_out, input_shape=inputs[0].shape)
    if spec.ood_threshold is not None and OOD_NAME not in outputs:
        raise ModelFileError(f"{path} is not a usable DenseStudio model file: its metadata "
                             f"has an out-of-distribution threshold but the graph no "
                             f"'{OOD_NAME}'.")
    return OnnxModel(session, metadata, spec, path)
