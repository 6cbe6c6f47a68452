"""The exported file outside Python: packaging/examples/node (onnxruntime-node, pure-JS
decoders) gives the Python runtime's answers on real NEU images and 4:1 strips, and its
frame checks give the same reasons (black, saturated, flat, blurred frames)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densestudio.runtime.onnx_model import load_onnx

from .conftest import REPO, StripRun, neu_images, strip
from .test_frame_checks import bad_frames

NODE_DIR = REPO / "packaging" / "examples" / "node"
# PNG: Pillow's resampling is re-implemented (an odd pixel may differ by one grey level where
# Pillow runs the vertical pass first); JPEG decoders differ by about a grey level.
PNG_TOLERANCE = 1e-3
JPEG_TOLERANCE = 0.02


@pytest.fixture(scope="session")
def node() -> str:
    """The node executable; skips (before the model is trained) without node or packages."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed (the runner needs node >= 18)")
    if not (NODE_DIR / "node_modules" / ".installed").is_file():
        pytest.skip(f"npm packages are not installed in {NODE_DIR} (`make test` installs "
                    "them with `npm ci`; it needs the npm registry or npm's cache once)")
    return node


def test_node_runner_matches_python(node: str, strip_run: StripRun, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    pngs = []
    for name, kind, (w, h) in (("wide_4to1.png", "bright", (200, 50)),
                               ("small_4to1.png", "dark", (60, 15)),
                               ("tall.png", "dark", (30, 150)),
                               ("stripes.png", "stripes", (96, 24))):
        pngs.append(tmp_path / name)
        Image.fromarray(strip(kind, rng, w, h), mode="L").save(pngs[-1])
    rgb = tmp_path / "rgb.png"  # colour input, converted to L with Pillow's luma formula
    Image.fromarray(rng.integers(0, 255, (40, 160, 3), dtype=np.uint8), "RGB").save(rgb)
    pngs.append(rgb)
    pngs.extend(bad_frames(tmp_path / "bad").values())  # frame checks: each with its reason
    jpgs = neu_images()
    paths = [*pngs, *jpgs]
    proc = subprocess.run([node, "index.js", str(strip_run.model_path), *map(str, paths)],
                          capture_output=True, text=True, cwd=NODE_DIR, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [Path(r["path"]).name for r in rows] == [p.name for p in paths]
    python = load_onnx(strip_run.model_path).predict(paths)
    for path, row, want in zip(paths, rows, python, strict=True):
        tol = PNG_TOLERANCE if path.suffix == ".png" else JPEG_TOLERANCE
        np.testing.assert_allclose(row["probs"], want.probs, atol=tol, err_msg=str(path))
        assert abs(row["ood_score"] - want.ood_score) <= max(tol, 1e-5), path
        if path.suffix == ".png" or abs(want.probs[0] - want.probs[1]) > 2 * tol:
            assert row["class"] == want.class_name, path
        if path.suffix == ".png":
            assert row["unfamiliar"] == want.unfamiliar and row["decision"] == want.decision
        # frame statistics agree to about a grey level on JPEGs too (jpeg-js vs libjpeg);
        # square NEU frames are unlike the 4:1 strips by their aspect ratio alone
        assert row["reason"] == want.reason, path
    assert [r["reason"] for r in rows[-len(jpgs) - 4 : -len(jpgs)]] == [
        "too dark", "overexposed", "flat", "out of focus"]
