"""The import structure of `minions`, read statically (ast): no module imports another module's
private names, and the modules import each other without a circle.

Imports under `if TYPE_CHECKING:` are annotations only and do not count; imports inside functions
do (a lazy import is still a dependency). A private *module* (`minions._sync`, `clients/_http.py`)
may be imported: its underscore keeps it out of the public API, not out of the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _modules(root: Path) -> dict[str, tuple[Path, bool]]:
    mods = {}
    for path in (root / "minions").rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return mods


def _type_only(tree: ast.AST) -> set[int]:
    """Nodes under `if TYPE_CHECKING:`."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def _source(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(root: Path = ROOT) -> tuple[dict[str, set[str]], list[str]]:
    """Each module's imports of other minions modules, and every private name imported across modules."""
    mods = _modules(root)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    private: list[str] = []
    for module, (path, is_pkg) in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_only(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                edges[module] |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom):
                src = _source(module, is_pkg, node)
                for alias in node.names:
                    if f"{src}.{alias.name}" in mods:  # a module: `from minions.clients import _http`
                        edges[module].add(f"{src}.{alias.name}")
                        continue
                    if src in mods:
                        edges[module].add(src)
                    if alias.name.startswith("_") and not alias.name.startswith("__") and src.startswith("minions"):
                        private.append(f"{module} imports {alias.name} from {src}")
    return edges, private


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_another_modules_private_names():
    _, private = _imports()
    assert private == []


def test_no_import_circle_inside_minions():
    edges, _ = _imports()
    assert _cycles(edges) == []


def test_the_checks_can_fail(tmp_path):
    """Both rules find what is planted in a package of three modules."""
    pkg = tmp_path / "minions"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from minions.b import _helper\n")
    (pkg / "b.py").write_text("def f():\n    from minions import c\n_helper = 1\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nimport minions.a\nif TYPE_CHECKING:\n    from minions.b import _helper\n")
    edges, private = _imports(tmp_path)
    assert private == ["minions.a imports _helper from minions.b"]  # the TYPE_CHECKING one is annotation only
    assert _cycles(edges) == [["minions.a", "minions.b", "minions.c"]]


def _writes_to_ctx(source: str) -> list[str]:
    """Assignments to an attribute reached from a name `ctx` (`ctx.best_answer = ...`, `ctx.state.x += ...`)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AugAssign | ast.AnnAssign) else []
        for t in targets:
            for part in ast.walk(t):
                if isinstance(part, ast.Attribute):
                    root = part
                    while isinstance(root, ast.Attribute):
                        root = root.value
                    if isinstance(root, ast.Name) and root.id == "ctx":
                        found.append(ast.unparse(t))
                        break
    return found


def test_protocols_change_the_run_only_through_methods():
    """The run context's fields are written by the gateway and RunState themselves, never by a protocol."""
    writes = {path.name: w for path in (ROOT / "minions" / "protocols").glob("*.py")
              if (w := _writes_to_ctx(path.read_text(encoding="utf-8")))}
    assert writes == {}
    assert _writes_to_ctx("ctx.best_answer = a\nctx.state.read.why += 'x'\nctx.citations, x = [], 1") == [
        "ctx.best_answer", "ctx.state.read.why", "(ctx.citations, x)"]
