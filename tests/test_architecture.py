"""The package layout: no import cycle between modules, and no module grown past its concern."""

from __future__ import annotations

import ast
from pathlib import Path

import hhforecast

PACKAGE = Path(hhforecast.__file__).parent
MAX_LINES = 450


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every hhforecast module and the hhforecast modules it imports, anywhere in its body."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                base = node.module
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in modules else base)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_module_imports_itself_back_through_others():
    cycle = _cycle(_imports())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_sees_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_modules_stay_small_enough_to_hold_one_concern():
    sizes = {
        _module_name(p): len(p.read_text(encoding="utf-8").splitlines())
        for p in PACKAGE.rglob("*.py")
    }
    too_big = {n: s for n, s in sizes.items() if s > MAX_LINES}
    assert not too_big, f"modules over {MAX_LINES} lines: {too_big}"


LAYERS = [
    [
        "hhforecast._fs",
        "hhforecast._json",
        "hhforecast._yaml",
        "hhforecast.errors",
        "hhforecast.config",
    ],
    ["hhforecast.datasets"],
    [
        "hhforecast.registry",  # the package; registry.check sits higher
        "hhforecast.registry.store",
        "hhforecast.registry.pointer",
        "hhforecast.registry.history",
    ],
    ["hhforecast.modeling"],
    ["hhforecast.tracking"],  # the MLflow mirror; tracking.follower sits with serving
    ["hhforecast.gate", "hhforecast.registry.check", "hhforecast.watch"],
    ["hhforecast.reports", "hhforecast.serving", "hhforecast.tracking.follower"],
    ["hhforecast.cli", "hhforecast.__main__"],
]
"""The layers of docs/architecture.md, bottom up: a module imports from its layer or below."""
UPWARD_IMPORTS = {("hhforecast.watch.monitor", "hhforecast.reports.monitor")}
"""monitor_html hands its result to the report page, which reads it through a protocol."""


def _layer(module: str) -> int:
    """The layer of the longest prefix of `module` listed in LAYERS."""
    best, found = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), index
    return found


def test_every_module_has_a_layer_and_imports_only_from_its_layer_or_below():
    graph = _imports()
    unplaced = sorted(m for m in graph if m != "hhforecast" and _layer(m) < 0)
    assert not unplaced, f"modules in no layer of docs/architecture.md: {unplaced}"
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if module != "hhforecast"
        and _layer(target) > _layer(module)
        and (module, target) not in UPWARD_IMPORTS
    )
    assert not upward, f"imports against the layers of docs/architecture.md: {upward}"


def test_the_layer_of_a_module_is_its_longest_listed_prefix():
    assert _layer("hhforecast.registry.store") == 2
    assert _layer("hhforecast.registry.check") == 5
    assert (_layer("hhforecast.modeling.reference"), _layer("hhforecast.watch.drift")) == (3, 5)
    assert (_layer("hhforecast.tracking.sync"), _layer("hhforecast.tracking.follower")) == (4, 6)
    assert _layer("hhforecast.elsewhere") == -1
