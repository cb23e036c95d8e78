"""The provider's rooms import one way, without circles, and no module grows into a hall.

Read from the source with :mod:`ast` (nothing is imported): every ``import`` counts, also the
ones under ``TYPE_CHECKING`` and inside functions, because a type-only or lazy import still
couples the modules. The layers, bottom-up (``docs/development.md``, "Layout"):
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "ibkr_provider"

#: Bottom-up. A module may import its own layer and the ones below it; a prefix names a module or
#: a package (the longest matching prefix decides).
LAYERS: list[tuple[str, ...]] = [
    (
        "ibkr_provider",
        "ibkr_provider.client.errors",
        "ibkr_provider.client.secrets",
        "ibkr_provider.client.hosts",
    ),
    (
        "ibkr_provider.client.http",
        "ibkr_provider.client.models",
        "ibkr_provider.client.fields",
        "ibkr_provider.client.pem",
        "ibkr_provider.client.keys",
    ),
    ("ibkr_provider.client.settings", "ibkr_provider.client.config"),
    ("ibkr_provider.client.auth",),
    ("ibkr_provider.client.session",),
    ("ibkr_provider.client.api", "ibkr_provider.flex"),
    ("ibkr_provider.client", "ibkr_provider.client.client", "ibkr_provider.client.stream"),
    (
        "ibkr_provider.workflows",
        "ibkr_provider.journal",
        "ibkr_provider.get_provider_info",
        "ibkr_provider.timetables",
    ),
    ("ibkr_provider.hooks", "ibkr_provider.failures", "ibkr_provider.tasks", "ibkr_provider.notifications"),
    ("ibkr_provider.operators", "ibkr_provider.sensors", "ibkr_provider.triggers"),
    ("ibkr_provider.plugins", "ibkr_provider.cli"),
]

#: Longer is a hall: split it by concern. (The facade stays a facade.)
MAX_LINES = 300
MAX_FACADE_LINES = 200


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The provider modules ``name`` imports (``from package import submodule`` counts as the
    submodule; a relative import is resolved against the package)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else base)
    return {target for target in found if target in known and target != name}


def layer_of(name: str) -> int:
    best, rank = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    assert rank >= 0, f"{name} is in no layer: add it to LAYERS"
    return rank


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, set(known)) for name, path in known.items()}


def test_no_module_imports_from_a_layer_above_it() -> None:
    upward = [
        f"{name} (layer {layer_of(name)}) imports {target} (layer {layer_of(target)})"
        for name, targets in graph().items()
        for target in sorted(targets)
        if layer_of(target) > layer_of(name)
    ]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def find_circle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle (as the path around it), or None: depth-first search with colours."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (circle := visit(target)):
                return circle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (circle := visit(node)):
            return circle
    return None


def test_no_import_circle() -> None:
    # A package's __init__ re-exporting its modules is not a circle of concerns: a module's
    # package is imported before the module by Python itself, so package -> own module edges go.
    edges = {
        name: {target for target in targets if not target.startswith(name + ".")}
        for name, targets in graph().items()
    }
    circle = find_circle(edges)
    assert circle is None, "import circle: " + " -> ".join(circle or [])


def test_the_circle_finder_finds_one() -> None:
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


@functools.cache
def product_modules() -> dict[str, Path]:
    """The provider's modules and those of the other code users run: the sandbox (a product of
    its own) and the scripts behind `make demo`, `make up` and `make cluster` (walked once, not
    once per module checked)."""
    others = [*(ROOT / "sandbox" / "ibkr_sandbox").rglob("*.py"), *(ROOT / "scripts").glob("*.py")]
    return {**modules(), **{str(path.relative_to(ROOT)): path for path in sorted(others)}}


@pytest.mark.parametrize("name", sorted(product_modules()))
def test_no_module_is_a_hall(name: str) -> None:
    limit = MAX_FACADE_LINES if name == "ibkr_provider.client.client" else MAX_LINES
    lines = len(product_modules()[name].read_text().splitlines())
    assert lines <= limit, f"{name} has {lines} lines (at most {limit}): split it by concern"
