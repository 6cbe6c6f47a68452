"""The layering rules of docs/ARCHITECTURE.md ("Layers"): core and ml never import Qt,
pyqtgraph or the ui package; runtime never imports torch; ml runs no SQL; no import circles."""

from __future__ import annotations

import ast
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


# ------------------------------ static rules (docs/ARCHITECTURE.md, "Layers")
def _source_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package at ``root`` -> its file."""
    out = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, module: str) -> set[str]:
    """Every name ``path`` imports, anywhere in the file: at module level, under
    ``if TYPE_CHECKING:``, inside functions. Relative imports are resolved, and
    ``from a import b`` yields both ``a`` and ``a.b`` (b may be a module)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


def _banned(imported: set[str], banned: tuple[str, ...]) -> list[str]:
    return sorted(n for n in imported if any(n == b or n.startswith(b + ".") for b in banned))


RULES = {
    # ml runs no SQL on the ORM tables: such queries live in core (core.queries, core.runs).
    "densestudio.ml": ("sqlalchemy", "densestudio.core.models"),
    # Widgets call core/ml functions; they never touch the tables, SQL or torch themselves.
    "densestudio.ui": ("sqlalchemy", "densestudio.core.models", "torch", "torchvision"),
}


def test_ml_runs_no_sql_and_ui_no_sql_or_torch() -> None:
    modules = _source_modules()
    assert "densestudio.ml.crossval" in modules and "densestudio.ui.main_window" in modules
    broken = []
    for name, path in sorted(modules.items()):
        for layer, banned in RULES.items():
            if name == layer or name.startswith(layer + "."):
                bad = _banned(_imports(path, name), banned)
                broken += [f"{name} imports {b}" for b in bad]
    assert not broken, "\n".join(broken)


def test_the_rules_see_imports_inside_functions(tmp_path: Path) -> None:
    """The checker itself: an import hidden in a function still counts."""
    src = tmp_path / "m.py"
    src.write_text("def f() -> None:\n    from sqlalchemy import select\n    import torch.nn\n")
    found = _imports(src, "densestudio.ui.m")
    assert _banned(found, RULES["densestudio.ui"]) == ["sqlalchemy", "sqlalchemy.select",
                                                      "torch.nn"]


def _graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the package's modules it imports anywhere (``from a import b`` counts as
    a -> a.b when a.b is a module, else as a -> a). TYPE_CHECKING and function-level
    imports count: they do not fail at import time, but they tie the modules together
    all the same (one cannot be read, tested or moved without the other)."""
    modules = _source_modules(root)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for imp in _imports(path, name):
            if imp in modules:
                edges.add(imp)
            elif imp.rpartition(".")[0] in modules and imp.rpartition(".")[0] != name:
                edges.add(imp.rpartition(".")[0])
        edges.discard(name)
        graph[name] = edges
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (a, b, ..., a), or None; a package importing its own submodule from
    ``__init__`` is not a cycle for Python, so parent-package edges are left out."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def edges(n: str) -> list[str]:
        # Importing a.b.c first imports a and a.b: edges to a parent package are implied and
        # harmless unless that package's __init__ imports back, which its own edges show.
        return sorted(m for m in graph[n] if not n.startswith(m + "."))

    def visit(n: str) -> list[str] | None:
        colour[n] = GREY
        stack.append(n)
        for m in edges(n):
            if colour[m] == GREY:
                return [*stack[stack.index(m):], m]
            if colour[m] == WHITE and (cycle := visit(m)):
                return cycle
        stack.pop()
        colour[n] = BLACK
        return None

    for n in sorted(graph):
        if colour[n] == WHITE and (cycle := visit(n)):
            return cycle
    return None


def test_the_import_graph_has_no_cycles() -> None:
    graph = _graph()
    assert "densestudio.core.store" in graph["densestudio.core.queries"]
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _find_cycle(graph) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_a_cycle_through_type_checking_or_a_function_import_is_found(tmp_path: Path) -> None:
    """The whole checker on a made-up package: a imports b at module level, b imports c
    only for type checking, c imports a inside a function. Python imports it fine; the
    test must still see the circle."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .c import C\n")
    (pkg / "c.py").write_text("class C:\n    def f(self) -> None:\n        from . import a\n")
    graph = _graph(pkg)
    assert graph["pkg.b"] == {"pkg.c"} and "pkg.a" in graph["pkg.c"]
    assert _find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    (pkg / "c.py").write_text("class C:\n    def f(self) -> None:\n        import json\n")
    assert _find_cycle(_graph(pkg)) is None


def test_only_the_app_imports_the_main_window() -> None:
    """Panels and dialogs get an ``AppContext`` (ui.context), never the window: a ui module
    that imports ui.main_window (even for type hints) depends on all of the app."""
    modules = _source_modules()
    users = sorted(name for name, path in modules.items()
                   if name.startswith("densestudio.ui.") and name != "densestudio.ui.main_window"
                   and "densestudio.ui.main_window" in _imports(path, name))
    assert users == ["densestudio.ui.app"]
