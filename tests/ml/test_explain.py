"""Heatmaps (ml/explain.py): the stage-by-stage forward equals the model's, and on a data set
where the class is decided by a small bright square, the heatmap points at the square.

Data: 48 px noisy gray backgrounds; class "square" has a 6 x 6 px bright square at a random
position, class "none" has none. A tiny compact DenseNet learns it in a few seconds on a CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from densestudio.core import runs
from densestudio.core.importer import ImportOptions, run_import
from densestudio.core.store import ImageInfo, Project
from densestudio.ml import explain, zoo
from densestudio.ml.config import TrainConfig
from densestudio.ml.threads import limited_threads

Squares = tuple[Project, int, dict[str, tuple[int, int]]]  # project, run, square boxes

SIZE, SQUARE, PER_CLASS = 48, 6, 60


def write_square_images(folder: Path, seed: int = 0) -> dict[str, tuple[int, int]]:
    """PNG files in folder/none and folder/square; returns {path: (top, left)} of squares."""
    rng = np.random.default_rng(seed)
    boxes = {}
    for cls in ("none", "square"):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(PER_CLASS):
            arr = rng.normal(110, 22, (SIZE, SIZE))
            if cls == "square":
                y, x = (int(v) for v in rng.integers(0, SIZE - SQUARE + 1, 2))
                arr[y : y + SQUARE, x : x + SQUARE] = 235 + rng.normal(0, 5, (SQUARE, SQUARE))
            path = folder / cls / f"{cls}_{i:03d}.png"
            Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L").save(path)
            if cls == "square":
                boxes[str(path)] = (y, x)
    return boxes


@pytest.fixture(scope="module")
def squares(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Squares]:
    from densestudio.ml.train import fit

    root = tmp_path_factory.mktemp("squares")
    boxes = write_square_images(root / "imgs")
    project = Project.create(root / "squares.dsproj")
    # One import worker: image ids (and so the training order) are the same every run.
    run_import(project, [root / "imgs"], ImportOptions(labels_from_subfolders=True, workers=1))
    cfg = TrainConfig(arch="densenet_bc_tiny", img_size=SIZE, epochs=16, batch_size=16,
                      lr=3e-3, augment="light", ema=False, tta=False, device="cpu", seed=0)
    with limited_threads():
        run_id = fit(project, cfg)
    yield project, run_id, boxes
    project.close()


def _distance_to_box(peak: tuple[int, int], box: tuple[int, int]) -> int:
    """Chebyshev distance in pixels from a point to the square (0 = inside)."""
    (py, px), (y, x) = peak, box
    return max(0, y - py, py - (y + SQUARE - 1), x - px, px - (x + SQUARE - 1))


def test_stagewise_forward_equals_model_forward() -> None:
    torch.manual_seed(0)
    for arch, ch, size in (("densenet_bc_tiny", 1, 48), ("densenet_bc_tiny", 3, 64)):
        model = zoo.build_model(arch, 3, ch).eval()
        x = torch.rand(2, ch, size, size)
        logits, acts = explain._stage_activations(model, x)
        with torch.no_grad():
            assert torch.allclose(logits, model(x), atol=1e-5)
        assert list(acts) == ["block1", "block2", "block3", "block4"]
        assert acts["block1"].shape[-1] == size // 4 and acts["block4"].shape[-1] == size // 32
    # Gray images into a 3-channel model are replicated, like the model's own forward.
    model = zoo.build_model("densenet_bc_tiny", 2, 3).eval()
    heat, k, probs = explain.gradcam(model, torch.rand(1, 40, 40))
    assert heat.shape == (40, 40) and heat.dtype == np.float32
    assert 0.0 <= heat.min() and heat.max() <= 1.0
    assert probs.shape == (2,) and abs(float(probs.sum()) - 1) < 1e-5 and k == probs.argmax()


def test_gradcam_arguments() -> None:
    model = zoo.build_model("densenet_bc_tiny", 3, 1).eval()
    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (50, 70), dtype=np.uint8))
    heat, k, _ = explain.gradcam(model, img, class_index=2, size=48)
    assert heat.shape == (48, 48) and k == 2
    for method in explain.METHODS:
        for layer in ("auto", *explain.LAYERS):
            heat, _, _, used = explain.class_activation_map(
                model, torch.rand(1, 64, 64), 1, method=method, layer=layer)
            assert heat.shape == (64, 64) and np.isfinite(heat).all()
            assert used == ((layer,) if layer != "auto" else used)
    # 64 px: blocks 1 (16 cells) and 2 (8 cells) are fine enough; Grad-CAM takes the deeper.
    assert explain.class_activation_map(model, torch.rand(1, 64, 64), method="gradcam")[3] == (
        "block2",)
    assert explain.class_activation_map(model, torch.rand(1, 64, 64))[3] == ("block1", "block2")
    with pytest.raises(explain.ExplainError, match="out of range"):
        explain.gradcam(model, torch.rand(1, 48, 48), class_index=3)
    with pytest.raises(explain.ExplainError, match="Unknown layer"):
        explain.gradcam(model, torch.rand(1, 48, 48), layer="block9")
    model.train()
    explain.gradcam(model, torch.rand(1, 48, 48))
    assert model.training  # the mode is restored


def test_heatmap_peak_falls_on_the_square(squares: Squares) -> None:
    project, run_id, boxes = squares
    info = runs.get_run(project, run_id)
    assert info.status == "finished"
    square = info.class_names.index("square")
    images = [i for i in project.images_by_ids(project.image_ids()) if i.path in boxes]
    assert len(images) == PER_CLASS
    explainer = explain.load_explainer(project, run_id)
    assert explain.load_explainer(project, run_id).model is explainer.model  # cached
    hits: dict[str, list[bool]] = {"layercam": [], "gradcam": []}
    held_out: list[bool] = []
    with limited_threads():  # torch's default (all cores) crawls on a busy 2-core machine
        _collect(project, run_id, images, boxes, square, hits, held_out)
    rate = {m: float(np.mean(v)) for m, v in hits.items()}
    print(f"\nheatmap peak within 2 px of the square: Layer-CAM (app default) "
          f"{rate['layercam'] * 100:.0f} % of {len(images)} images "
          f"({np.mean(held_out) * 100:.0f} % of {len(held_out)} val/test images); "
          f"classic Grad-CAM {rate['gradcam'] * 100:.0f} %; "
          f"val acc {info.metrics.get('val_acc', 0) * 100:.0f} %")
    assert rate["layercam"] >= 0.70


def _collect(
    project: Project,
    run_id: int,
    images: list[ImageInfo],
    boxes: dict[str, tuple[int, int]],
    square: int,
    hits: dict[str, list[bool]],
    held_out: list[bool],
) -> None:
    for image in images:
        for method in hits:
            e = explain.explain_image(project, run_id, image.id, class_index=square,
                                      method=method)
            assert e.heatmap.shape == (SIZE, SIZE) and e.class_name == "square"
            peak = np.unravel_index(int(np.argmax(e.heatmap)), e.heatmap.shape)
            hit = _distance_to_box((int(peak[0]), int(peak[1])), boxes[image.path]) <= 2
            hits[method].append(hit)
            if method == "layercam" and image.split != "train":
                held_out.append(hit)


def test_explain_predicted_class_and_unreadable_file(squares: Squares, tmp_path: Path) -> None:
    project, run_id, boxes = squares
    image = next(i for i in project.images_by_ids(project.image_ids()) if i.path in boxes)
    e = explain.explain_image(project, run_id, image.id)
    assert e.class_index == e.predicted_index == int(np.argmax(e.probs))
    assert e.run_id == run_id and e.image_id == image.id and e.method == "layercam"
    assert e.layers == ("block1", "block2")
    # A file that vanished is a clear error, not a traceback.
    gone = Path(image.path).rename(tmp_path / "moved.png")
    try:
        with pytest.raises(explain.ExplainError, match="Cannot read"):
            explain.explain_image(project, run_id, image.id)
    finally:
        gone.rename(image.path)
    with pytest.raises(explain.ExplainError, match="No image"):
        explain.explain_image(project, run_id, 10**9)
