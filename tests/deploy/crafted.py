"""Small hand-built ONNX model files (onnx.helper, no torch): valid ones, and crafted ones
a test can feed to the loader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from densestudio.runtime.model_file import META_NAME, MODEL_FORMAT


def metadata(classes: int = 3, width: int = 16, height: int = 16, mode: str = "L",
             **changes: object) -> dict:
    meta = {
        "format": MODEL_FORMAT,
        "class_names": [f"class{i}" for i in range(classes)],
        "input": {"size": width, "width": width, "height": height,
                  "channels": 1 if mode == "L" else 3, "mode": mode},
        "preprocessing": {"width": width, "height": height, "mode": mode, "fit": "letterbox",
                          "pad_value": 128},
        "operating_point": None,
        "ood": {"threshold": 0.5},
    }
    meta.update(changes)
    return meta


def model_bytes(meta: dict | None, outputs: int = 3, channels: int = 1, height: int = 16,
                width: int = 16, half: int = 0, batch: int = 0, nan: int = 0) -> bytes:
    """image (N x C x H x W) -> probabilities (N x outputs: softmax of mean brightness times
    0..outputs-1) and ood_score (N: the mean brightness). As common converters make them:
    ``half``: float16 input and outputs; ``batch``: a fixed batch size (0: dynamic);
    ``nan``: every output NaN."""
    dtype, elem = (np.float16, TensorProto.FLOAT16) if half else (np.float32, TensorProto.FLOAT)
    scale = float("nan") if nan else 4.0
    weights = numpy_helper.from_array(
        (np.arange(outputs, dtype=np.float32).reshape(1, outputs) * scale).astype(dtype), "w")
    n: int | str = batch or "batch"
    nodes = [
        helper.make_node("ReduceMean", ["image", "axes"], ["m"], keepdims=0),
        helper.make_node("Unsqueeze", ["m", "one"], ["m2"]),
        helper.make_node("MatMul", ["m2", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("Identity", ["m"], ["ood_score"]),
    ]
    one = numpy_helper.from_array(np.array([1], dtype=np.int64), "one")
    axes = numpy_helper.from_array(np.array([1, 2, 3], dtype=np.int64), "axes")
    graph = helper.make_graph(
        nodes, "crafted",
        [helper.make_tensor_value_info("image", elem, [n, channels, height, width])],
        [helper.make_tensor_value_info("probabilities", elem, [n, outputs]),
         helper.make_tensor_value_info("ood_score", elem, [n])],
        initializer=[weights, one, axes],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    if meta is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = META_NAME, json.dumps(meta)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write(path: Path, meta: dict | None, **kw: int) -> Path:
    path.write_bytes(model_bytes(meta, **kw))
    return path
