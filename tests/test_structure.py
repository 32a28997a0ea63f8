"""The package's shape: no import cycles, small modules, no TensorFlow where no model is needed."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from siamese.paths import project_root

PACKAGE = project_root() / "siamese"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Each siamese module's siamese imports (top level and inside functions alike)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name, deps = _module_name(path), set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "siamese":
                deps.add(node.module)
                # `from siamese import tracking` imports the module siamese.tracking
                deps |= {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.split(".")[0] == "siamese"}
        graph[name] = deps
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (found := visit(dep, path + [dep])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_no_import_cycles():
    graph = _imports()
    assert "siamese.engine" in graph and "siamese.data.tables" in graph
    # The package's __init__ is imported by every module; it must import nothing that imports back.
    graph["siamese"] = graph.get("siamese", set())
    assert _cycle(graph) is None, _cycle(graph)


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_modules_stay_small():
    sizes = {_module_name(p): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert max(sizes.values()) <= 320, {m: n for m, n in sizes.items() if n > 320}


def test_package_import_starts_no_tensorflow_and_tasks_load_keras_only_when_they_start():
    """Keras reads its backend once, at import: a task module must not import it before the task
    has read ``backend=`` from its config."""
    code = ("import sys, siamese, siamese.report, siamese.figures, siamese.tracking, siamese.train, siamese.tune, "
            "siamese.promote, siamese.predict, siamese.export, siamese.worker, siamese.distributed; print(sorted({m.split('.')[0] for m in sys.modules} "
            "& {'tensorflow', 'keras', 'jax', 'keras_tuner'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
