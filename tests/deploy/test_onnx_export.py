"""ONNX export: the file's structure and metadata, the parity gate, and predictions in a
fresh process where torch cannot be imported, equal to the app's."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from densestudio.core import preprocess
from densestudio.ml import export, zoo
from densestudio.ml.evaluate import load_run_model
from densestudio.runtime.model_file import META_NAME
from densestudio.runtime.onnx_model import load_onnx

from .conftest import REPO, StripRun, neu_images, strip


def in_app_probs(run: StripRun, paths: list[Path]) -> np.ndarray:
    """What the app itself (PyTorch, same preprocessing and TTA as evaluation) says."""
    model, meta, config = load_run_model(run.project, run.run_id)
    views = int(meta["tta_views"]) if config.get("tta") else 1
    prep = preprocess.from_meta(meta)
    x = torch.from_numpy(np.stack([prep.load(p) for p in paths])).float() / 255.0
    with torch.no_grad():
        return zoo.ProbabilityModel(model, views).eval()(x).numpy()


def test_file_structure_and_metadata(strip_run: StripRun) -> None:
    proto = onnx.load(str(strip_run.model_path))
    assert strip_run.model_path.suffix == ".onnx"
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 18
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert proto.graph.input[0].name == "image"
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 32, 128]
    assert [o.name for o in proto.graph.output] == ["probabilities", "ood_score"]
    meta = json.loads({p.key: p.value for p in proto.metadata_props}[META_NAME])
    assert meta["class_names"] == ["dark", "bright"]
    assert meta["preprocessing"] == {"width": 128, "height": 32, "mode": "L",
                                     "fit": "letterbox", "pad_value": 128}
    assert meta["input"]["width"] == 128 and meta["input"]["height"] == 32
    assert meta["tta_views"] == 2 and meta["normalization"]["inside_model"] is True
    assert meta["data_fingerprint"] and meta["app_version"] and "test_acc" in meta["metrics"]
    assert "operating_point" in meta and meta["onnx"]["opset"] >= 18
    from densestudio.ml.snapshot import load_snapshot

    snap = load_snapshot(strip_run.project, strip_run.run_id)
    parity = meta["parity"]
    assert parity["subset"] == "test" and parity["n"] == len(snap.indices("test")) > 0
    assert parity["max_abs_diff"] <= parity["tolerance"] == export.PARITY_TOLERANCE
    assert parity["argmax_agreement"] == 1.0 and parity["runtime"].startswith("onnxruntime")
    ood = meta["ood"]
    assert ood["bank_size"] == len(snap.indices("train"))
    assert ood["calibration"]["n"] == len(snap.indices("val"))
    checked = [e for e in strip_run.events if isinstance(e, export.ParityChecked)]
    assert len(checked) == 1 and checked[0].passed


def test_dynamic_batch(strip_run: StripRun) -> None:
    model = load_onnx(strip_run.model_path)
    x = np.random.default_rng(0).random((7, 1, 32, 128), dtype=np.float32)
    probs, ood = model.forward(x)
    assert probs.shape == (7, 2) and ood.shape == (7,)
    one_p, one_o = model.forward(x[3:4])
    np.testing.assert_allclose(one_p[0], probs[3], atol=1e-6)
    np.testing.assert_allclose(one_o[0], ood[3], atol=1e-6)


BLOCKED = """
import importlib.abc, sys

BLOCK = ("torch", "torchvision", "sqlalchemy", "PySide6")

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCK:
            raise ImportError(f"{name} is blocked: the runtime must not need it")
        return None

sys.meta_path.insert(0, Block())
from densestudio.__main__ import main
sys.argv = ["densestudio", *sys.argv[1:]]
code = main()
leaked = sorted({m.split(".")[0] for m in sys.modules} & set(BLOCK))
assert not leaked, leaked
sys.exit(code)
"""


def run_blocked(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKED, *args], capture_output=True,
                          text=True, cwd=REPO, timeout=300)


def test_torch_free_predict_equals_the_app(strip_run: StripRun, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    wide = tmp_path / "wide_4to1.png"  # a 4:1 part at another resolution than training
    Image.fromarray(strip("bright", rng, 200, 50), mode="L").save(wide)
    tall = tmp_path / "tall.png"
    Image.fromarray(strip("dark", rng, 40, 160), mode="L").save(tall)
    paths = [*neu_images(), wide, tall]
    out = tmp_path / "preds.csv"
    proc = run_blocked("predict", str(strip_run.model_path), *map(str, paths), "--csv", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["path"] for r in rows] == [str(p) for p in paths]
    expected = in_app_probs(strip_run, paths)
    names = ["dark", "bright"]
    for row, want in zip(rows, expected, strict=True):
        got = np.array([float(row[f"p_{n}"]) for n in names])
        np.testing.assert_allclose(got, want, atol=1e-4)
        assert row["class"] == names[int(want.argmax())]
        assert row["decision"] in ("", "-", "UNSURE") and row["unfamiliar"] in ("0", "1")
    assert "Unknown-input check" in proc.stderr

    text = run_blocked("predict", str(strip_run.model_path), str(wide))
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"{wide}\tbright\t")


def test_broken_export_is_refused_and_writes_nothing(strip_run: StripRun, tmp_path: Path,
                                                      monkeypatch) -> None:  # noqa: ANN001
    good = onnx.load(str(strip_run.model_path))

    def broken_graph(*_args: object) -> onnx.ModelProto:
        proto = onnx.ModelProto()
        proto.CopyFrom(good)
        bias = next(t for t in proto.graph.initializer if "classifier.bias" in t.name)
        values = onnx.numpy_helper.to_array(bias).copy()
        values[0] += 2.0  # the graph no longer computes what the app computes
        bias.CopyFrom(onnx.numpy_helper.from_array(values, bias.name))
        return proto

    monkeypatch.setattr(export, "_onnx_bytes", broken_graph)
    folder = tmp_path / "out"
    folder.mkdir()
    previous = folder / "model.onnx"
    previous.write_bytes(b"the file exported last week")
    events: list = []
    with pytest.raises(export.ExportError, match="does not give the app's answers") as info:
        export.export_model(strip_run.project, strip_run.run_id, previous,
                            on_event=events.append)
    assert "argmax agreement" in str(info.value) and "max |dP|" in str(info.value)
    assert previous.read_bytes() == b"the file exported last week"
    assert [p.name for p in folder.iterdir()] == ["model.onnx"], "no temporary file left"
    failed = [e for e in events if isinstance(e, export.ParityChecked)]
    assert failed and not failed[0].passed and failed[0].max_abs_diff > export.PARITY_TOLERANCE
    with pytest.raises(export.ExportError):
        export.export_model(strip_run.project, strip_run.run_id, folder / "new")
    assert not (folder / "new.onnx").exists()


def test_out_path_and_format() -> None:
    resolve = export._resolve
    assert resolve("m", None) == (Path("m.onnx"), "onnx")
    assert resolve("m", "torchscript") == (Path("m.pt"), "torchscript")
    assert resolve("m.PT", None) == (Path("m.PT"), "torchscript")
    assert resolve("line3.v2", None) == (Path("line3.v2.onnx"), "onnx")
    for name, fmt in (("m.pt", "onnx"), ("m.onnx", "torchscript")):
        with pytest.raises(export.ExportError, match="names a"):
            resolve(name, fmt)
    with pytest.raises(export.ExportError, match="Unknown model format"):
        resolve("m", "tflite")
