"""The layering of DESIGN.md, enforced: arrows point one way.

cogs and bot.web → bot.services → bot.integrations and store. store imports neither discord nor
aiohttp; nothing imports cogs; only bot.integrations imports the SDKs of the outside world.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SDKS = ("gidgethub", "kubernetes_asyncio", "anthropic")


def modules() -> dict[str, set[str]]:
    """Every module of bot/, cogs/ and store/ with the absolute modules it imports."""
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
        ("bot.services", ("cogs", "bot.web", "discord.ext.commands")),
        ("bot.integrations", ("cogs", "bot.web", "bot.services", "discord")),
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


def circles(where: str) -> list[list[str]]:
    """Import circles among the modules under `where` (each found once, from its first module)."""
    inside = {m for m in MODULES if m == where or m.startswith(where + ".")}
    found: list[list[str]] = []

    def visit(path: list[str]) -> None:
        # A package that imports its own modules (`from pkg import mod`) is no circle.
        for target in sorted(MODULES[path[-1]] & inside - {path[-1]}):
            if target == path[0]:
                found.append(path)
            elif target not in path and target > path[0]:
                visit([*path, target])

    for module in sorted(inside):
        visit([module])
    return found


@pytest.mark.parametrize("where", ["bot.web", "bot.services.github"])
def test_no_import_circles(where: str) -> None:
    # bot.web.keys and bot.web.metrics once imported each other (the keys typed the metrics,
    # the /metrics handler read its keys); the handler is now given what it reads.
    assert circles(where) == []


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
