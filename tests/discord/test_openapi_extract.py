"""The facts-only extract of Discord's OpenAPI description that the fakes validate against
(tests/fakes/data/, made by scripts/extract_discord_openapi.py): current, complete for the
fakes, self-contained, and without prose."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.fakes.discord import FakeDiscord
from tests.fakes.discord_openapi import EXTRACT_PATH, DiscordSpec

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "extract_discord_openapi.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("extract_discord_openapi_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return DiscordSpec().document


def test_the_committed_extract_is_what_the_script_makes(script: ModuleType, tmp_path: Path) -> None:
    if not script.SPEC.is_file():
        pytest.skip(f"the full description is not beside the checkout ({script.SPEC})")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for fresh in sorted(tmp_path.iterdir()):
        committed = EXTRACT_PATH.parent / fresh.name
        assert committed.is_file() and committed.read_text() == fresh.read_text(), (
            f"{committed.relative_to(REPO_ROOT)} is stale: run "
            "`python scripts/extract_discord_openapi.py` and commit tests/fakes/data/"
        )


def test_the_extract_has_every_operation_the_fakes_serve(document: dict[str, Any]) -> None:
    served = {name.removeprefix("_op_") for name in dir(FakeDiscord) if name.startswith("_op_")}
    served.add("execute_webhook")  # tests/coordination/fake_webhook.py
    documented = {op["operationId"] for item in document["paths"].values() for op in item.values()}
    assert served - documented == set(), "run `python scripts/extract_discord_openapi.py`"
    assert documented - served == set(), "the extract holds operations no fake serves"


def test_every_reference_in_the_extract_resolves(document: dict[str, Any]) -> None:
    resolver = DiscordSpec().registry.resolver()
    refs: set[str] = set()

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.add(node["$ref"])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for item in node:
                collect(item)

    collect(document)
    assert len(refs) > 100
    for ref in sorted(refs):
        assert resolver.lookup("urn:discord-openapi" + ref).contents is not None, ref


def test_the_extract_has_no_prose(script: ModuleType, document: dict[str, Any]) -> None:
    assert set(document) == {"openapi", "info", "paths", "components"}
    for item in document["paths"].values():
        for operation in item.values():
            assert set(operation) <= {"operationId", "requestBody", "responses"}
    for name, schema in document["components"]["schemas"].items():
        assert script.strip_schema(schema) == schema, name


def test_strip_schema_drops_annotations_but_keeps_properties_named_like_them(
    script: ModuleType,
) -> None:
    schema = {
        "title": "Command",
        "description": "A slash command.",
        "type": "object",
        "properties": {
            "description": {"type": "string", "maxLength": 100, "description": "Its text."},
            "title": {"oneOf": [{"type": "null", "examples": [None]}, {"$ref": "#/x"}]},
        },
        "items": {"summary": "gone", "type": "integer"},
        "required": ["description"],
    }
    assert script.strip_schema(schema) == {
        "type": "object",
        "properties": {
            "description": {"type": "string", "maxLength": 100},
            "title": {"oneOf": [{"type": "null"}, {"$ref": "#/x"}]},
        },
        "items": {"type": "integer"},
        "required": ["description"],
    }


def test_an_operation_the_description_lacks_is_refused(script: ModuleType) -> None:
    with pytest.raises(script.ExtractError, match="not in Discord's description: no_such_op"):
        script.extract({"paths": {}, "components": {}}, ["no_such_op"])


def test_a_missing_description_is_one_clear_line_and_writes_nothing(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = script.main(["--spec", str(tmp_path / "missing.json"), "--out-dir", str(out)])
    assert code == 1
    assert capsys.readouterr().err == (
        f"extract_discord_openapi: no {tmp_path / 'missing.json'} "
        "(the full description and its notes): pass --spec\n"
    )
    assert not out.exists()
