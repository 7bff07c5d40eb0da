"""The house plan, checked: imports point down the layers, no module circle, no dialect name
outside ``store/``.

The import graph is read from the source with :mod:`ast` (nothing is imported). Every import
of a ``hookline`` module counts: at module level, inside a function (a deferred import hides
a dependency, it does not remove it) and under ``if TYPE_CHECKING:`` (a type is a dependency
too). An edge goes to the most specific module named: ``from hookline.platform import
issues`` is an edge to ``hookline.platform.issues``. Importing a submodule also runs its
package's ``__init__``; that implicit edge is not counted.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
ROOT = SRC / "hookline"

# Layers, lowest first: a module may import its own layer or any layer below, never above.
# Keys are top-level modules or packages of hookline (a package covers all its modules).
FOUNDATION = 0  # values and process-independent helpers, no I/O handle of their own
STORAGE = 1  # tables, SQL, the database handle; the event catalogue
RUNTIME = 2  # the handles a use case is given (settings, database, clock, secret box)
DELIVERY = 3  # the outbox and the delivery engine: knows nothing of consumers or flows
PLATFORM = 4  # the hub's objects and their rules
EDGE = 5  # HTTP, dashboard, command line, and the wiring that starts a process

LAYERS: dict[str, int] = {
    "hookline": FOUNDATION,  # the package itself: __version__
    "hookline.clock": FOUNDATION,
    "hookline.config": FOUNDATION,
    "hookline.errors": FOUNDATION,
    "hookline.error_codes": FOUNDATION,
    "hookline.ids": FOUNDATION,
    "hookline.periodic": FOUNDATION,
    "hookline.security": FOUNDATION,
    "hookline.verify": FOUNDATION,  # standard library only, copied into receivers
    "hookline.tracing": FOUNDATION,  # OpenTelemetry set-up; off unless configured
    "hookline.logconfig": FOUNDATION,  # text or JSON log lines
    "hookline.memory": FOUNDATION,  # caps glibc malloc arenas at start-up
    "hookline.catalog": STORAGE,
    "hookline.store": STORAGE,
    "hookline.runtime": RUNTIME,
    "hookline.delivery": DELIVERY,
    "hookline.platform": PLATFORM,
    "hookline.api": EDGE,
    "hookline.ui": EDGE,
    "hookline.cli": EDGE,
    "hookline.background": EDGE,  # starts the worker and the platform's schedulers
    "hookline.bootstrap": EDGE,  # migrations and built-in rows before a process serves
    "hookline.demo_scenario": EDGE,  # drives every layer for `hookline demo`
}

# KNOWN, BEING FIXED on other branches (issue 16): each entry is one exact import edge
# (importer, imported). The lead removes an entry when the branch that fixes it lands; any
# edge not listed here fails the test.
KNOWN_CYCLE_EDGES: frozenset[tuple[str, str]] = frozenset()
KNOWN_UPWARD_EDGES: frozenset[tuple[str, str]] = frozenset()
KNOWN_DIALECT_USES: frozenset[tuple[str, str]] = frozenset()

# Modules outside store/ allowed to name a dialect for good, each with its reason.
DIALECT_ALLOWED: dict[str, str] = {
    "hookline.config": "turns the URL the user gave into a driver URL: parsing, not SQL",
}

DIALECT_NAMES = frozenset({"sqlite", "postgresql", "postgres"})
DIALECT_ATTRIBUTES = frozenset({"is_sqlite", "is_postgresql", "is_postgres"})


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


MODULES = source_modules()


def _resolve(name: str) -> str | None:
    """The most specific hookline module that ``name`` (a dotted path) falls in."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports_of(module: str, path: Path) -> Iterator[Import]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            if target == "hookline" or target.startswith("hookline."):
                resolved = _resolve(target)
                if resolved is not None and resolved != module:
                    yield Import(module, resolved, node.lineno)


def import_graph() -> dict[str, list[Import]]:
    return {module: list(_imports_of(module, path)) for module, path in MODULES.items()}


def layer_of(module: str) -> int:
    name = module
    while name not in LAYERS:
        assert "." in name, f"{module} sits in no layer: add its top-level name to LAYERS"
        name = name.rpartition(".")[0]
    return LAYERS[name]


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; returns every component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_every_module_sits_in_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


def test_imports_point_down_the_layers() -> None:
    upward = [
        f"{imp.importer} (layer {layer_of(imp.importer)}) imports {imp.imported} "
        f"(layer {layer_of(imp.imported)}) at line {imp.line}"
        for imports in import_graph().values()
        for imp in imports
        if layer_of(imp.imported) > layer_of(imp.importer)
        and (imp.importer, imp.imported) not in KNOWN_UPWARD_EDGES
    ]
    assert not upward, "imports running up the layers:\n" + "\n".join(upward)


def test_no_import_circle_between_modules() -> None:
    edges: dict[str, set[str]] = {module: set() for module in MODULES}
    for module, imports in import_graph().items():
        for imp in imports:
            if (module, imp.imported) not in KNOWN_CYCLE_EDGES:
                edges[module].add(imp.imported)
    circles = strongly_connected(edges)
    assert not circles, "modules importing each other (directly or around a circle):\n" + (
        "\n".join(" <-> ".join(component) for component in circles)
    )


def test_known_violations_are_still_there() -> None:
    """A fixed violation must leave the list, so the list never hides a new one."""
    present = {(imp.importer, imp.imported) for imps in import_graph().values() for imp in imps}
    stale = sorted((KNOWN_CYCLE_EDGES | KNOWN_UPWARD_EDGES) - present)
    assert not stale, f"no longer imported, remove from the known list: {stale}"


def _dialect_uses(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            for name in names:
                if name.startswith("sqlalchemy.dialects"):
                    yield node.lineno, f"imports {name}"
        elif isinstance(node, ast.Attribute):
            if node.attr in DIALECT_ATTRIBUTES:
                yield node.lineno, f".{node.attr}"
            elif (
                node.attr == "name"
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "dialect"
            ):
                yield node.lineno, ".dialect.name"
        elif isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                if isinstance(side, ast.Constant) and str(side.value).lower() in DIALECT_NAMES:
                    yield node.lineno, f"compares with {side.value!r}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("startswith", "endswith")
        ):
            # url.startswith("sqlite"): a dialect test by string prefix
            prefixes = [
                arg.value
                for arg in ast.walk(node)
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            ]
            if any(_dialect_prefix(prefix) for prefix in prefixes):
                yield node.lineno, f"{node.func.attr}({prefixes[0]!r}...)"


def _dialect_prefix(value: str) -> bool:
    return value.lower().split(":")[0].split("+")[0] in DIALECT_NAMES


def dialect_uses_outside_store() -> list[tuple[str, int, str]]:
    return [
        (module, line, what)
        for module, path in MODULES.items()
        if module != "hookline.store" and not module.startswith("hookline.store.")
        if module not in DIALECT_ALLOWED
        for line, what in _dialect_uses(ast.parse(path.read_text()))
    ]


def test_no_dialect_name_outside_store() -> None:
    found = [
        f"{module}:{line}: {what}"
        for module, line, what in dialect_uses_outside_store()
        if (module, what) not in KNOWN_DIALECT_USES
    ]
    assert not found, "dialect-specific code outside store/:\n" + "\n".join(found)


def test_dialect_lists_are_still_needed() -> None:
    present = {(module, what) for module, _, what in dialect_uses_outside_store()}
    needless = sorted(KNOWN_DIALECT_USES - present) + [
        module
        for module in DIALECT_ALLOWED
        if not list(_dialect_uses(ast.parse(MODULES[module].read_text())))
    ]
    assert not needless, f"no dialect check left there, remove from the lists: {needless}"


def test_the_checks_catch_what_they_name() -> None:
    """The detectors themselves: each flags its case (a check that cannot fail is no check)."""
    sample = ast.parse(
        "from sqlalchemy.dialects.postgresql import insert\n"
        "if conn.dialect.name == 'postgresql': pass\n"
        "if db.is_sqlite: pass\n"
        "if url.startswith('sqlite'): pass\n"
    )
    assert sorted(line for line, _ in _dialect_uses(sample)) == [1, 2, 2, 3, 4]
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer_of("hookline.platform.runners.http") == PLATFORM
