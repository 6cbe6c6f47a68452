"""Evaluation reports, run API, export -> reload -> same predictions (ONNX by default;
TorchScript loads with plain torch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from densestudio.core import runs
from densestudio.core.store import ImageFilter, Project
from densestudio.ml import eval_report, evaluate, export
from densestudio.ml.metrics import confusion_matrix, scores
from densestudio.ml.train import fit

from .conftest import add_images, tiny_config, write_images

Trained = tuple[Project, int, Path]  # project, run, its folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    tmp = tmp_path_factory.mktemp("trained")
    files = write_images(tmp / "imgs", 14)
    unlabeled = write_images(tmp / "new", 2, seed=5)
    project = Project.create(tmp / "p.dsproj")
    add_images(project, files)
    add_images(project, [(p, None) for p, _ in unlabeled])
    run_id = fit(project, tiny_config(epochs=3, tta=True, augment="inspection", amp=False))
    yield project, run_id, tmp
    project.close()


def test_metrics_by_hand() -> None:
    cm = confusion_matrix(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 1]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [0, 1, 0]]
    s = scores(cm)
    assert s.accuracy == pytest.approx(3 / 5)
    assert s.balanced_accuracy == pytest.approx((0.5 + 1 + 0) / 3)
    assert s.precision == pytest.approx((1.0, 0.5, 0.0))
    assert s.f1[0] == pytest.approx(2 / 3) and s.support == (2, 2, 1)
    assert s.macro_f1 == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)


def test_report_and_confusion_cells(trained: Trained) -> None:
    project, run_id, _ = trained
    rep = eval_report.report(project, run_id, "test")
    assert rep.n == 6 and sum(map(sum, rep.confusion)) == 6
    assert [c.name for c in rep.per_class] == ["dark", "bright", "stripes"]
    assert sum(c.support for c in rep.per_class) == 6
    assert "confusion matrix" in rep.format()
    losses = [t.loss for t in rep.top_losses]
    assert losses == sorted(losses, reverse=True)
    preds = {p.image_id: p for p in runs.predictions(project, run_id, "test")}
    for t in range(3):
        for q in range(3):
            ids = runs.confusion_cell_images(project, run_id, "test", t, q)
            assert len(ids) == rep.confusion[t][q]
            conf = [preds[i].confidence for i in ids]
            assert conf == sorted(conf, reverse=True)
    for p in preds.values():
        assert p.probs.shape == (3,) and p.probs.sum() == pytest.approx(1, abs=1e-5)
    assert runs.top_losses(project, run_id, "test", 2) == [t.image_id for t in rep.top_losses[:2]]


def test_evaluate_run_with_and_without_tta(trained: Trained) -> None:
    project, run_id, _ = trained
    plain = evaluate.evaluate_run(project, run_id, ("val", "test"), tta=False)
    assert plain.subset == "test" and plain.n == 6
    with_tta = evaluate.evaluate_run(project, run_id, ("test",), tta=True)
    assert with_tta.n == 6
    assert runs.prediction_count(project, run_id, "val") == 6


def test_predict_unlabeled_images(trained: Trained) -> None:
    project, run_id, _ = trained
    ids = project.image_ids(ImageFilter(unlabeled=True))
    assert len(ids) == 6
    preds = evaluate.predict_images(project, run_id, ids)
    assert [p.image_id for p in preds] == ids  # in the order asked
    stored = runs.predictions(project, run_id, "unlabeled")
    assert len(stored) == 6 and all(p.true_index is None and p.loss is None for p in stored)


def test_export_roundtrip_in_app(trained: Trained) -> None:
    project, run_id, tmp = trained
    out = export.export_model(project, run_id, tmp / "model")  # ONNX by default
    assert out.suffix == ".onnx" and out.is_file()
    model = export.load_exported(out)
    meta = model.metadata
    assert model.class_names == ["dark", "bright", "stripes"]
    assert meta["input"] == {"size": 32, "width": 32, "height": 32, "channels": 1,
                             "mode": "L", "dtype": "float32", "range": [0.0, 1.0],
                             "layout": "NCHW"}
    assert meta["architecture"] == "densenet_bc_tiny" and meta["tta_views"] == 8
    assert meta["data_fingerprint"] and meta["app_version"]
    assert "test_acc" in meta["metrics"]

    # Same predictions as the evaluation stored in the project (fp32 run, same TTA).
    stored = {p.image_id: p for p in runs.predictions(project, run_id, "test")}
    images = project.images_by_ids(list(stored))
    results = model.predict([i.path for i in images])
    for img, res in zip(images, results, strict=False):
        assert res.class_name == model.class_names[stored[img.id].pred_index]
        np.testing.assert_allclose(res.probs, stored[img.id].probs, atol=1e-5)

    pil = model.predict([Image.open(images[0].path)])[0]
    assert pil.path is None and np.allclose(pil.probs, results[0].probs, atol=1e-6)
    bad = tmp / "broken.png"
    bad.write_bytes(b"nope")
    res = model.predict([bad, images[0].path])
    assert res[0].error and res[0].class_name is None and res[1].class_name


PLAIN_TORCH = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "densestudio" or name.startswith("densestudio."):
                raise ImportError("densestudio is blocked in this test")
            return None

    sys.meta_path.insert(0, Block())
    import numpy as np, torch
    from PIL import Image, ImageOps
    try:
        import densestudio  # noqa: F401
        raise SystemExit("densestudio should not be importable")
    except ImportError:
        pass
    model_path, *paths = sys.argv[1:]
    extra = {"densestudio.json": ""}
    model = torch.jit.load(model_path, map_location="cpu", _extra_files=extra)
    meta = json.loads(extra["densestudio.json"])
    size, mode = meta["input"]["size"], meta["input"]["mode"]
    out = []
    for p in paths:
        img = Image.open(p)
        if img.format == "JPEG":
            img.draft(img.mode, (size, size))
        img = ImageOps.exif_transpose(img).convert(mode).resize((size, size), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)
        x = x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]
        with torch.no_grad():
            probs = model(x)[0]
        out.append([meta["class_names"][int(probs.argmax())], probs.tolist()])
    print(json.dumps(out))
    """
)


def test_exported_model_runs_with_plain_torch_only(trained: Trained) -> None:
    project, run_id, tmp = trained
    out = export.export_model(project, run_id, tmp / "plain.pt")
    paths = [i.path for i in project.page(ImageFilter(split="test"), limit=6)]
    in_app = export.load_exported(out).predict(paths)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", PLAIN_TORCH, str(out), *paths],
        capture_output=True, text=True, cwd=tmp, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    plain = json.loads(proc.stdout.strip().splitlines()[-1])
    for (name, probs), res in zip(plain, in_app, strict=False):
        assert name == res.class_name
        np.testing.assert_allclose(probs, res.probs, atol=1e-6)


def test_bad_model_files_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"garbage")
    with pytest.raises(export.ModelFileError, match="not a DenseStudio model"):
        export.load_exported(junk)
    with pytest.raises(export.ModelFileError, match="not found"):
        export.load_exported(tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(other))
    with pytest.raises(export.ModelFileError):
        export.load_exported(other)


def test_runs_api_and_delete(trained: Trained, tmp_path: Path) -> None:
    project, run_id, _ = trained
    listed = runs.list_runs(project)
    assert run_id in [r.id for r in listed]
    info = runs.get_run(project, run_id)
    assert runs.run_class_names(project, run_id) == ["dark", "bright", "stripes"]
    assert len(runs.epoch_metrics(project, run_id)) == 3
    assert Path(info.checkpoint_best).is_file()
    # Delete a second, separate run and its files.
    other = fit(project, tiny_config(epochs=1))
    folder = runs.run_dir(project, other)
    assert folder.is_dir()
    runs.delete_run(project, other)
    assert not folder.exists()
    assert other not in [r.id for r in runs.list_runs(project)]
    assert runs.predictions(project, other) == [] and runs.run_images(project, other) == []
    from densestudio.core.errors import ProjectError

    with pytest.raises(ProjectError):
        runs.get_run(project, other)
