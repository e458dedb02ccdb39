"""The layering of DESIGN.md, enforced: arrows point one way.

cogs and bot.web → bot.services → bot.integrations and store; bot.wiring builds the services
once, and no service reaches back for it. store imports neither discord nor aiohttp; nothing
imports cogs; only bot.integrations imports the SDKs of the outside world; no import circles.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SDKS = ("gidgethub", "kubernetes_asyncio", "anthropic")


def modules() -> dict[str, set[str]]:
    """Every module of bot/, cogs/ and store/ with the absolute modules it imports (anywhere in
    the file, TYPE_CHECKING blocks included: a circle for the type checker is still a circle
    for the reader). `from a import b` counts as importing `a.b` too when that is a module."""
    found: dict[str, set[str]] = {}
    for package in ("bot", "cogs", "store"):
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            imported: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    imported.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    imported.add(node.module)
                    # `from bot.web import keys` imports the module bot.web.keys too.
                    imported.update(f"{node.module}.{alias.name}" for alias in node.names)
            found[name] = imported
    return found


MODULES = modules()


def offenders(where: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, imports in MODULES.items()
        if module == where or module.startswith(where + ".")
        for target in imports
        if any(target == f or target.startswith(f + ".") for f in forbidden)
    )


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("store", ("bot", "cogs", "discord", "aiohttp")),
        ("bot.services", ("cogs", "bot.web", "bot.wiring", "discord.ext.commands")),
        ("bot.integrations", ("cogs", "bot.web", "bot.services", "bot.wiring", "discord")),
        ("bot.web", ("cogs", "discord")),
    ],
)
def test_layers_import_only_downwards(layer: str, forbidden: tuple[str, ...]) -> None:
    assert offenders(layer, forbidden) == []


def test_nothing_imports_cogs() -> None:
    assert [
        f"{module} imports {target}"
        for module, imports in MODULES.items()
        if not module.startswith("cogs")
        for target in imports
        if target == "cogs" or target.startswith("cogs.")
    ] == []


def test_only_integrations_import_the_outside_sdks() -> None:
    assert [
        f"{module} imports {target}"
        for module, imports in MODULES.items()
        if not module.startswith("bot.integrations")
        for target in imports
        if target.split(".")[0] in SDKS
    ] == []


def test_sql_and_asyncpg_live_in_store() -> None:
    # The composition root and context hand the pool around but run no SQL of their own.
    users = sorted(
        module
        for module, imports in MODULES.items()
        if "asyncpg" in imports and not module.startswith("store")
    )
    assert set(users) <= {"bot.context", "bot.__main__"}, users


def test_the_heavy_libraries_are_not_imported_at_start_up() -> None:
    """kubernetes-asyncio, matplotlib and the anthropic SDK add about 120 MB to a process that
    imports them; the bot imports them where first used, so its start-up stays small."""
    import subprocess
    import sys

    heavy = ("kubernetes_asyncio", "matplotlib", "anthropic")
    every_module = sorted(MODULES)
    script = (
        "import importlib, sys\n"
        f"for name in {every_module!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of `graph`: its strongly connected components with more than one
    module (Tarjan's algorithm), each sorted, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_no_import_circles() -> None:
    graph = {
        module: {target for target in imports if target in MODULES and target != module}
        for module, imports in MODULES.items()
    }
    assert cycles(graph) == []


def test_the_circle_check_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]


def test_the_readme_layout_names_every_package_once() -> None:
    """README's "Layout" has one line per package of bot/, cogs/, store/ and tests/fakes/, and
    names no package that is gone."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    listed = [
        line.split("`")[1].rstrip("/") for line in section.splitlines() if line.startswith("- `")
    ]
    packages = sorted(
        str(init.parent.relative_to(ROOT))
        for top in ("bot", "cogs", "store", "tests/fakes")
        for init in (ROOT / top).rglob("__init__.py")
    )
    assert sorted(listed) == packages
    assert len(listed) == len(set(listed))


MAX_MODULE_LINES = 600


def test_no_module_is_over_600_lines() -> None:
    """A module past 600 lines mixes jobs; split it along its seams (fakes and tests too)."""
    assert [
        f"{path.relative_to(ROOT)}: {lines} lines"
        for top in ("bot", "cogs", "store", "tests", "bench", "scripts")
        for path in sorted((ROOT / top).rglob("*.py"))
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ] == []
