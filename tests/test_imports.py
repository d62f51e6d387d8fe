"""No import cycles anywhere in ``edgeconv/`` (issue 17), checked statically from the source with ``ast``.

The graph has one node per module of the package (a package is its ``__init__.py``). An edge ``A -> B`` means that
running some code of ``A`` imports ``B`` and needs what ``B`` defines:

* Every ``import`` statement counts, at module level **and inside functions** (a function-local import is a cycle
  put off until call time, not one removed), and in ``try`` / ``else`` branches. The body of ``if TYPE_CHECKING:``
  never runs and does not count (its ``else`` does).
* ``import edgeconv.a.b`` and ``from edgeconv.a.b import name`` depend on ``edgeconv.a.b``. ``from edgeconv.a import
  b`` depends on ``edgeconv.a.b`` when ``b`` is a submodule (it can be imported while ``edgeconv.a`` is still half
  initialised), and on ``edgeconv.a``'s ``__init__`` when ``b`` is a name defined there. Relative imports are
  resolved the same way.
* The parents Python imports implicitly before a submodule (``edgeconv``, ``edgeconv.a`` for ``edgeconv.a.b``) do
  not count: they are initialised first whoever asked, so they order nothing. Hence a package ``__init__`` that
  imports its own children is not a cycle by itself (``edgeconv.zoo -> edgeconv.zoo.resnet`` with ``resnet``
  importing only ``edgeconv.zoo.registry``); a child that imports a name from its package's ``__init__`` which in
  turn imports that child is (``edgeconv.zoo.weights -> edgeconv.zoo -> edgeconv.zoo.registry ->
  edgeconv.zoo.weights``).
* Dynamic imports (``importlib.import_module(name)`` of a computed name, like ``edgeconv.__getattr__``'s lazy
  public names) are not seen.

A cycle is a strongly connected component of more than one module; each is printed with one concrete loop and the
``file:line`` of every import on it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edgeconv"


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module
    where: str  # path:line


def _modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under the package ``root``."""
    out: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: all scopes, ``if TYPE_CHECKING:`` bodies left out."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The module a dotted name lives in: itself if it is a module, else its longest module prefix."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def build_graph(root: Path) -> tuple[dict[str, set[str]], list[Import]]:
    """Module -> modules it depends on, and every import edge with where it is written."""
    modules = _modules(root)
    top = root.name
    graph: dict[str, set[str]] = {name: set() for name in modules}
    edges: list[Import] = []
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        package = module if is_package else module.rpartition(".")[0]
        for node in _import_nodes(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = package.split(".")
                    if node.level > 1:
                        base = base[: len(base) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                for alias in node.names:
                    submodule = f"{origin}.{alias.name}"
                    targets.append(submodule if submodule in modules else origin)
            for target in targets:
                if target != top and not target.startswith(top + "."):
                    continue
                owner = _owner(target, modules)
                if owner is None or owner == module:
                    continue
                graph[module].add(owner)
                edges.append(Import(module, owner, f"{path.relative_to(root.parent)}:{node.lineno}"))
    return graph, edges


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); components of more than one module, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return sorted(out)


def _loop(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One shortest cycle through the first module of a component (breadth-first inside it)."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child not in previous:
                    previous[child] = node
                    nxt.append(child)
        frontier = nxt
    return component  # unreachable for a strongly connected component


def describe_cycles(root: Path) -> list[str]:
    """One text per cycle: a loop through the component, then the component's other imports (more loops)."""
    graph, edges = build_graph(root)

    def step(a: str, b: str) -> str:
        where = dict.fromkeys(e.where for e in edges if e.source == a and e.target == b)
        return f"    {a} -> {b}  ({', '.join(where)})"

    lines = []
    for component in strongly_connected(graph):
        loop = _loop(component, graph)
        on_loop = set(pairwise(loop))
        text = [f"cycle among {', '.join(component)}:", *(step(a, b) for a, b in pairwise(loop))]
        others = [(a, b) for a in component for b in sorted(graph[a] & set(component)) if (a, b) not in on_loop]
        if others:
            text += ["  other imports inside it:", *(step(a, b) for a, b in others)]
        lines.append("\n".join(text))
    return lines


def test_no_import_cycles() -> None:
    cycles = describe_cycles(PACKAGE)
    print("\n\n".join(cycles))
    assert not cycles, f"{len(cycles)} import cycle(s) in edgeconv/:\n" + "\n\n".join(cycles)


def test_graph_sees_the_package() -> None:
    """The check is only meaningful if the graph holds the real modules and their imports."""
    graph, _ = build_graph(PACKAGE)
    assert len(graph) > 50
    assert "edgeconv.zoo.registry" in graph["edgeconv.zoo.resnet"]
    assert "edgeconv.zoo.lenet" in graph["edgeconv.zoo"]  # a package __init__ importing a child
    assert "edgeconv.errors" in graph["edgeconv.export"]
    assert "edgeconv.zoo" in graph["edgeconv.profile.count"]  # a function-local import


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


@pytest.mark.parametrize(
    ("files", "cycle"),
    [
        # A package __init__ importing its children, the children importing a sibling: no cycle.
        (
            {
                "pkg/__init__.py": "",
                "pkg/sub/__init__.py": "from pkg.sub import a, b\nfrom pkg.sub.a import f\n",
                "pkg/sub/a.py": "from pkg.sub.b import g\n",
                "pkg/sub/b.py": "import os\n",
            },
            None,
        ),
        # A child importing a name from its package's __init__, which imports that child: a cycle.
        (
            {
                "pkg/__init__.py": "",
                "pkg/sub/__init__.py": "from pkg.sub.a import f\n",
                "pkg/sub/a.py": "from pkg.sub import VERSION\n",
            },
            ["pkg.sub", "pkg.sub.a"],
        ),
        # The same through a relative import.
        (
            {"pkg/__init__.py": "from .a import f\n", "pkg/a.py": "from . import VERSION\n"},
            ["pkg", "pkg.a"],
        ),
        # A relative import of a sibling submodule; a function-local import closes the loop.
        (
            {
                "pkg/__init__.py": "",
                "pkg/a.py": "from . import b\n",
                "pkg/b.py": "def f():\n    from pkg.a import x\n    return x\n",
            },
            ["pkg.a", "pkg.b"],
        ),
        # Imports under TYPE_CHECKING never run; the else branch does.
        (
            {
                "pkg/__init__.py": "",
                "pkg/a.py": "import pkg.b\n",
                "pkg/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import x\n",
            },
            None,
        ),
        (
            {
                "pkg/__init__.py": "",
                "pkg/a.py": "import pkg.b\n",
                "pkg/b.py": "import typing\nif typing.TYPE_CHECKING:\n    pass\nelse:\n    from pkg.a import x\n",
            },
            ["pkg.a", "pkg.b"],
        ),
        # ``from pkg.sub import name`` where ``name`` is no submodule depends on pkg/sub/__init__.py.
        (
            {
                "pkg/__init__.py": "",
                "pkg/sub/__init__.py": "from pkg.c import f\n",
                "pkg/c.py": "def f():\n    from pkg.sub import g\n",
            },
            ["pkg.c", "pkg.sub"],
        ),
    ],
)
def test_rules_on_a_small_package(tmp_path: Path, files: dict[str, str], cycle: list[str] | None) -> None:
    graph, _ = build_graph(_write(tmp_path, files))
    assert strongly_connected(graph) == ([cycle] if cycle else [])
