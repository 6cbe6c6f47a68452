"""The README's Python snippet runs as printed, without torch, and says what the runtime says."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from densestudio.runtime.onnx_model import load_onnx

from .conftest import REPO, StripRun, strip

BLOCK_TORCH = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "densestudio", "sqlalchemy", "PySide6"):
            raise ImportError(name + " is blocked")
sys.meta_path.insert(0, Block())
"""


def readme_snippet() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- snippet: python-onnxruntime -->\s*```python\n(.*?)```", text, re.S)
    assert m, "the README lost its Python snippet"
    return m.group(1)


def test_readme_snippet_runs_and_agrees(strip_run: StripRun, tmp_path: Path) -> None:
    code = readme_snippet()
    assert len(code.strip().splitlines()) <= 25
    shutil.copy(strip_run.model_path, tmp_path / "model.onnx")
    model = load_onnx(tmp_path / "model.onnx")
    rng = np.random.default_rng(11)
    for kind, size in (("bright", (200, 50)), ("stripes", (96, 24)), ("dark", (30, 120))):
        Image.fromarray(strip(kind, rng, *size), mode="L").save(tmp_path / "part.png")
        proc = subprocess.run([sys.executable, "-c", BLOCK_TORCH + code], capture_output=True,
                              text=True, cwd=tmp_path, timeout=120)
        assert proc.returncode == 0, proc.stderr
        want = model.predict([tmp_path / "part.png"])[0]
        words = proc.stdout.split()
        assert words[0] == want.class_name and float(words[1]) == round(want.confidence, 3)
        # the snippet shows the feature score only; the frame checks are the runtime's
        assert ("UNSURE:" in words) == (want.ood_score > model.spec.ood_threshold)
