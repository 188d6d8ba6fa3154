"""The house (docs/architecture.md): layers import one way, no import circles, modules of a readable size.

Every `import` statement between package modules counts, inside functions too; a package's `__init__.py` is its face
and is not a node (a lazy import there keeps `import jepa_world` light).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "jepa_world"
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        mods[name] = path
    return mods


MODULES = _modules()


def _resolve(target: str) -> str | None:
    """The module an imported name lives in (None for a package face or outside the package)."""
    parts = target.split(".")
    for k in range(len(parts), 0, -1):
        cand = ".".join(parts[:k])
        if cand in MODULES:
            return cand
        if cand + ".__init__" in MODULES:
            return None
    return None


def _imports(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text())
    base = module.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = ".".join([*base[: len(base) - node.level + 1], node.module or ""]) if node.level else node.module
            targets = [f"{mod}.{a.name}" for a in node.names] + [mod or ""]
        for t in targets:
            if t.startswith("jepa_world") and (r := _resolve(t)) and r != module:
                found.add(r)
    return found


GRAPH = {m: _imports(m) for m in MODULES if not m.endswith("__init__")}


def _short(module: str) -> str:
    return module.removeprefix("jepa_world.")


def test_no_import_circles():
    # Depth-first search for a back edge; reports the first circle found as a path.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(GRAPH.get(m, ())):
            if state.get(n) == 1:
                return [*stack[stack.index(n) :], n]
            if n not in state and (circle := visit(n)):
                return circle
        state[m] = 2
        stack.pop()
        return None

    for m in sorted(GRAPH):
        if m not in state:
            circle = visit(m)
            assert circle is None, "import circle: " + " -> ".join(map(_short, circle))


def test_modules_stay_readable():
    long = {_short(m): n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


# (importer prefix, imported prefix): arrows that would run against the floors of the house.
FORBIDDEN = [
    ("jepa_world.registry", "jepa_world."),  # a leaf
    ("jepa_world.config", "jepa_world."),  # the bottom floor
    ("jepa_world.models", "jepa_world.planning"),  # models never import planners
    ("jepa_world.models", "jepa_world.checkpoints"),  # models never read files
    ("jepa_world.models", "jepa_world.training"),
    ("jepa_world.models", "jepa_world.eval"),
    ("jepa_world.planning", "jepa_world.models"),  # planners take cost callables
    ("jepa_world.objectives", "jepa_world.models"),  # the models build on the objectives, not the other way
    ("jepa_world.envs", "jepa_world.models"),  # envs never import models
    ("jepa_world.data", "jepa_world.envs"),  # the data layer is below the environments
    ("jepa_world.factory", "jepa_world.checkpoints"),  # no file I/O in the builders
    ("jepa_world.checkpoints", "jepa_world.training"),  # loading rebuilds through factory
    ("jepa_world.training.loop", "jepa_world.checkpoints.load"),  # the loop needs file I/O only
    ("jepa_world.policies", "jepa_world.checkpoints"),  # policies never read files
    ("jepa_world.policies", "jepa_world.envs"),  # learned in imagination: no simulator
    ("jepa_world.planning.search", "jepa_world.policies"),  # tree search takes callables
]
UPPER = ("jepa_world.cli", "jepa_world.eval", "jepa_world.training")  # nothing below imports these


@pytest.mark.parametrize(("importer", "imported"), FORBIDDEN, ids=lambda s: _short(s) or s)
def test_layers_import_one_way(importer, imported):
    bad = [
        f"{_short(m)} -> {_short(n)}"
        for m, deps in GRAPH.items()
        if m.startswith(importer)
        for n in deps
        if n.startswith(imported) and not n.startswith(importer)
    ]
    assert not bad, bad


def test_nothing_imports_the_upper_floors():
    bad = [
        f"{_short(m)} -> {_short(n)}"
        for m, deps in GRAPH.items()
        for n in deps
        for top in UPPER
        if n.startswith(top) and not m.startswith(top) and not m.startswith(("jepa_world.cli", "jepa_world.eval"))
    ]
    assert not bad, bad


def _imports_the_face(module: str) -> bool:
    """Whether `module` imports the top-level package face (`import jepa_world`, `from jepa_world import ...`)."""
    base = module.split(".")[:-1]
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import) and any(a.name == "jepa_world" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom):
            mod = ".".join([*base[: len(base) - node.level + 1], node.module or ""]) if node.level else node.module
            if mod.rstrip(".") == "jepa_world":
                return True
    return False


def test_only_the_cli_imports_the_package_face():
    # `jepa_world/__init__.py` is the top of the house (it re-exports the loaders), so a module below that reads it
    # climbs over every floor; only the command line may.
    bad = [_short(m) for m in GRAPH if m != "jepa_world.cli" and _imports_the_face(m)]
    assert not bad, bad


def test_tests_mirror_every_subpackage():
    # docs/architecture.md: tests mirror the package, so a new subpackage comes with its tests/<name>/ folder.
    tests = Path(__file__).resolve().parent
    subpackages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    missing = [name for name in subpackages if not (tests / name / "__init__.py").is_file()]
    assert subpackages and not missing, f"no tests/<name>/__init__.py for the subpackages {missing}"
