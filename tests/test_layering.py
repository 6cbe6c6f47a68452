"""core and ml must not import Qt, pyqtgraph or the ui package (DESIGN.md rule 1)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import densestudio

ROOT = Path(densestudio.__file__).resolve().parent


def _modules(package: str) -> list[str]:
    folder = ROOT / package.split(".", 1)[1]
    return [f"{package}.{m.name}" for m in pkgutil.iter_modules([str(folder)])]


SCRIPT = """
import importlib, importlib.abc, sys

BLOCKED = ("PySide6", "pyqtgraph", "shiboken6", "densestudio.ui")

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"layering: {name} must not be imported here")
        return None

sys.meta_path.insert(0, Block())
for name in sys.argv[1:]:
    importlib.import_module(name)
leaked = [m for m in sys.modules if m.split(".")[0] in ("PySide6", "pyqtgraph")]
assert not leaked, leaked
print("ok", len(sys.argv) - 1)
"""


def test_core_and_ml_import_without_qt() -> None:
    modules = ["densestudio.cli", *_modules("densestudio.core"), *_modules("densestudio.ml")]
    assert "densestudio.ml.train" in modules and "densestudio.core.runs" in modules
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, *modules],
        capture_output=True, text=True, cwd=ROOT.parent, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == f"ok {len(modules)}"


RUNTIME_SCRIPT = SCRIPT.replace(
    'BLOCKED = ("PySide6", "pyqtgraph", "shiboken6", "densestudio.ui")',
    'BLOCKED = ("PySide6", "pyqtgraph", "shiboken6", "densestudio.ui", "densestudio.ml", '
    '"torch", "torchvision", "sqlalchemy")',
)


def test_runtime_and_cli_import_without_torch_or_sqlalchemy() -> None:
    """The model file's runtime (and the CLI that predicts with it) run where only
    onnxruntime, numpy and Pillow are installed."""
    assert RUNTIME_SCRIPT != SCRIPT
    modules = ["densestudio.cli", "densestudio.__main__", *_modules("densestudio.runtime")]
    assert "densestudio.runtime.onnx_model" in modules
    proc = subprocess.run(
        [sys.executable, "-c", RUNTIME_SCRIPT, *modules],
        capture_output=True, text=True, cwd=ROOT.parent, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == f"ok {len(modules)}"
