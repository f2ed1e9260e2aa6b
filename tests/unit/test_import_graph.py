"""The static import graph (parsed with ``ast``, nothing imported): the core package ``shared`` never
imports the edges (the triggers, the dev host, the CLI, the Functions runtime), and neither ``shared``
nor ``cryptlet_cli`` has an import cycle.

Every ``import``/``from ... import`` counts, also inside functions, except under ``if TYPE_CHECKING:``.
``from shared.x import y`` is an edge to ``shared.x.y`` if that is a module, else to ``shared.x``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_IN_SHARED = ("functions", "devhost", "cryptlet_cli", "azure.functions")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (or the package a name was imported from)
    where: str  # path:line


def modules_of(package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under the package folder ``package``."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node`` (in functions and classes too), skipping the bodies of
    ``if TYPE_CHECKING:`` (their ``else:`` branches count)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif isinstance(child, ast.If) and is_type_checking(child.test):
            for statement in child.orelse:
                yield from import_nodes(ast.Module(body=[statement], type_ignores=[]))
        else:
            yield from import_nodes(child)


def imports_of(package: str) -> tuple[dict[str, Path], list[Import]]:
    modules = modules_of(package)
    found = []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in import_nodes(ast.parse(path.read_text("utf-8"), str(path))):
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if isinstance(node, ast.Import):
                found.extend(Import(name, alias.name, where) for alias in node.names)
                continue
            if node.level:  # relative: resolve against the importing module's package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:
                candidate = f"{origin}.{alias.name}"
                found.append(Import(name, candidate if candidate in modules else origin, where))
    return modules, found


def cycles(modules: dict[str, Path], imports: list[Import]) -> list[list[str]]:
    """The import cycles among ``modules``: one concrete cycle (a path that returns to its start) for
    each strongly connected component with more than one module or a module importing itself."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for edge in imports:
        if edge.target in graph:
            graph[edge.source].add(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            components.append(component)

    for name in sorted(graph):
        if name not in index:
            connect(name)
    found = []
    for component in components:
        start = min(component)
        if len(component) == 1 and start not in graph[start]:
            continue
        path, seen = [start], {start}  # walk inside the component back to the start
        while True:
            following = sorted(graph[path[-1]] & component)
            if start in following and (len(path) > 1 or len(component) == 1):
                found.append(path + [start])
                break
            step = next((m for m in following if m not in seen), None)
            if step is None:  # dead end in this walk: report the members instead
                found.append(sorted(component) + [sorted(component)[0]])
                break
            path.append(step)
            seen.add(step)
    return sorted(found)


def describe(found: list[list[str]], imports: list[Import]) -> str:
    lines = []
    for cycle in found:
        lines.append("  " + " -> ".join(cycle))
        for source, target in zip(cycle, cycle[1:], strict=False):
            where = sorted({e.where for e in imports if e.source == source and e.target == target})
            lines.append(f"      {source} -> {target}: {', '.join(where)}")
    return "\n".join(lines)


def test_shared_never_imports_the_triggers_the_dev_host_the_cli_or_the_functions_runtime():
    _, imports = imports_of("shared")
    bad = [e for e in imports if any(e.target == f or e.target.startswith(f + ".") for f in FORBIDDEN_IN_SHARED)]
    assert not bad, "shared/ imports what it must not:\n" + "\n".join(
        f"  {e.where}: {e.source} imports {e.target}" for e in bad
    )


def test_no_import_cycles_in_shared():
    modules, imports = imports_of("shared")
    assert len(modules) > 20  # the walk found the package
    found = cycles(modules, imports)
    assert not found, f"{len(found)} import cycle(s) among shared.* modules:\n" + describe(found, imports)


def test_no_import_cycles_in_cryptlet_cli():
    modules, imports = imports_of("cryptlet_cli")
    assert len(modules) > 2
    found = cycles(modules, imports)
    assert not found, f"{len(found)} import cycle(s) among cryptlet_cli.* modules:\n" + describe(found, imports)


def test_the_cycle_finder_finds_cycles_and_skips_type_checking_imports():
    """The checker itself, on a made-up graph: a 2-cycle, a 3-cycle, a self-import, and acyclic edges."""
    modules = {name: Path(name) for name in ("p.a", "p.b", "p.c", "p.d", "p.e", "p.f", "p.g")}
    edges = [
        ("p.a", "p.b"),
        ("p.b", "p.a"),
        ("p.c", "p.d"),
        ("p.d", "p.e"),
        ("p.e", "p.c"),
        ("p.f", "p.f"),
        ("p.g", "p.a"),
        ("p.g", "os"),
    ]
    found = cycles(modules, [Import(s, t, "x:1") for s, t in edges])
    assert found == [["p.a", "p.b", "p.a"], ["p.c", "p.d", "p.e", "p.c"], ["p.f", "p.f"]]
    tree = ast.parse(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import hidden\nelse:\n    import shown\n"
        "def f():\n    import inner\n"
    )
    assert [a.name for node in import_nodes(tree) for a in getattr(node, "names", [])] == [
        "TYPE_CHECKING",
        "shown",
        "inner",
    ]
