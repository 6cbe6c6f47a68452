"""core and ml must not import Qt, pyqtgraph or the ui package (DESIGN.md rule 1)."""

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


# ------------------------------------------------------------ static rules (DESIGN.md rule 1)
def _source_modules() -> dict[str, Path]:
    """Every module of the densestudio package -> its file."""
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, module: str, *, module_level: bool) -> set[str]:
    """Names of the modules ``path`` imports: all of them, or only those run when the module
    itself is imported (module level, not under ``if TYPE_CHECKING:``), which is what makes
    an import cycle."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)
            elif isinstance(node, ast.If) and module_level and _is_type_checking(node):
                visit(node.orelse)
            elif module_level and isinstance(node, (ast.If, ast.Try, ast.With)):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    for child in getattr(node, field, []):
                        visit(child.body if isinstance(child, ast.ExceptHandler) else [child])

    tree = ast.parse(path.read_text(encoding="utf-8"))
    if module_level:
        visit(tree.body)
    else:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
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
                bad = _banned(_imports(path, name, module_level=False), banned)
                broken += [f"{name} imports {b}" for b in bad]
    assert not broken, "\n".join(broken)


def test_the_rules_see_imports_inside_functions(tmp_path: Path) -> None:
    """The checker itself: an import hidden in a function still counts."""
    src = tmp_path / "m.py"
    src.write_text("def f() -> None:\n    from sqlalchemy import select\n    import torch.nn\n")
    found = _imports(src, "densestudio.ui.m", module_level=False)
    assert _banned(found, RULES["densestudio.ui"]) == ["sqlalchemy", "sqlalchemy.select",
                                                      "torch.nn"]


def _graph() -> dict[str, set[str]]:
    """module -> the densestudio modules its module-level imports load (``from a import b``
    counts as a -> a.b when a.b is a module, else as a -> a)."""
    modules = _source_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for imp in _imports(path, name, module_level=True):
            if imp in modules:
                edges.add(imp)
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
