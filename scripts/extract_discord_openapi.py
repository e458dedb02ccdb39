#!/usr/bin/env python3
"""Write the facts-only extract of Discord's OpenAPI description that the tests check against.

The tests' fake Discord and fake webhook validate every request against Discord's own OpenAPI
description. The full description (1.2 MB, mostly prose) lives outside this repository, in the
shared `specs/` folder; a plain clone has only this extract, committed under
`tests/fakes/data/`:

* the paths and methods of the operations the fake Discord serves (its `_op_<operationId>`
  handlers in tests/fakes/discord/; they cover every endpoint the bot uses) and of the
  webhook poster's `execute_webhook`;
* for each, its operationId and its request and response schemas, plus the components those
  reference, transitively;
* no prose: `description`, `summary`, `title`, `examples` ... are dropped (a property *named*
  `description` stays), and so are headers, parameters and security.

Beside it go Discord's licence, copied as is, and a SOURCE note naming the description's
commit. tests/discord/test_openapi_extract.py regenerates all three from the full description
when it is present and fails when the committed files differ.

    python scripts/extract_discord_openapi.py       # ../shared/specs -> tests/fakes/data
    python scripts/extract_discord_openapi.py --spec F --out-dir D
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
SPEC = REPO_ROOT.parent / "shared" / "specs" / "discord-openapi.json"
OUT_DIR = REPO_ROOT / "tests" / "fakes" / "data"
EXTRACT = "discord-openapi-extract.json"
FAKE_DISCORD = REPO_ROOT / "tests" / "fakes" / "discord"
# The webhook poster (bot/integrations/discord_webhook.py; tests/coordination/fake_webhook.py).
WEBHOOK_OPERATIONS = ("execute_webhook",)

PROSE = frozenset(
    {"description", "summary", "title", "examples", "example", "externalDocs", "$comment"}
)
# Schema keywords whose value is a subschema, a list of them, or a map of names to them.
_ONE = frozenset(
    {
        "items",
        "additionalProperties",
        "additionalItems",
        "contains",
        "not",
        "if",
        "then",
        "else",
        "propertyNames",
        "unevaluatedItems",
        "unevaluatedProperties",
    }
)
_LIST = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_MAP = frozenset({"properties", "patternProperties", "dependentSchemas", "$defs"})
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class ExtractError(Exception):
    """The extract cannot be made; the message says why."""


def fake_operations(source: Path = FAKE_DISCORD) -> list[str]:
    """The operationIds the fake Discord serves: the `_op_<operationId>` methods of the classes
    in its package, one module per resource family (read, not imported)."""
    found = [
        item.name.removeprefix("_op_")
        for module in sorted(source.glob("*.py"))
        for node in ast.parse(module.read_text()).body
        if isinstance(node, ast.ClassDef)
        for item in node.body
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name.startswith("_op_")
    ]
    if not found:
        raise ExtractError(f"no `_op_<operationId>` method in {source}")
    return found


def strip_schema(schema: Any) -> Any:
    """A JSON Schema without its prose annotations (property names are kept as they are)."""
    if not isinstance(schema, dict):
        return schema  # true/false schemas
    kept: dict[str, Any] = {}
    for key, value in schema.items():
        if key in PROSE:
            continue
        if key in _ONE:
            kept[key] = strip_schema(value)
        elif key in _LIST:
            kept[key] = [strip_schema(item) for item in value]
        elif key in _MAP:
            kept[key] = {name: strip_schema(item) for name, item in value.items()}
        else:
            kept[key] = value
    return kept


def _content(content: dict[str, Any]) -> dict[str, Any]:
    return {media: {"schema": strip_schema(entry["schema"])} for media, entry in content.items()}


def _response(response: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in response:
        return {"$ref": response["$ref"]}
    return {"content": _content(response["content"])} if "content" in response else {}


def _operation(operation: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {"operationId": operation["operationId"]}
    body = operation.get("requestBody")
    if body is not None:
        kept["requestBody"] = {"required": body.get("required", False)}
        kept["requestBody"]["content"] = _content(body["content"])
    kept["responses"] = {
        status: _response(response) for status, response in operation["responses"].items()
    }
    return kept


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node)) if node else set()
    return set()


def extract(document: dict[str, Any], operation_ids: list[str]) -> dict[str, Any]:
    """The facts of `document` the named operations need; raises ExtractError for one that
    the description lacks."""
    wanted = set(operation_ids)
    paths: dict[str, dict[str, Any]] = {}
    for template, item in document["paths"].items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is not None and operation.get("operationId") in wanted:
                paths.setdefault(template, {})[method] = _operation(operation)
                wanted.discard(operation["operationId"])
    if wanted:
        raise ExtractError(f"not in Discord's description: {', '.join(sorted(wanted))}")

    components: dict[str, dict[str, Any]] = {}
    pending = sorted(_refs(paths))
    while pending:
        ref = pending.pop()
        parts = ref.split("/")
        if len(parts) != 4 or parts[:2] != ["#", "components"]:
            raise ExtractError(f"unexpected $ref {ref!r}")
        _, _, kind, name = parts
        if name in components.get(kind, {}):
            continue
        source = document["components"][kind][name]
        kept = strip_schema(source) if kind == "schemas" else _response(source)
        components.setdefault(kind, {})[name] = kept
        pending.extend(sorted(_refs(kept)))
    return {
        "openapi": document["openapi"],
        "info": {
            key: document["info"][key]
            for key in ("title", "version", "license")
            if key in document["info"]
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            kind: dict(sorted(entries.items())) for kind, entries in sorted(components.items())
        },
    }


def source_note(original: str) -> str:
    return original.rstrip("\n") + (
        "\n\nThis folder holds a facts-only extract of it: discord-openapi-extract.json keeps "
        "the paths,\nmethods, request and response schemas (with the components they "
        "reference) of the operations\nthe tests' fakes serve, and no prose. "
        "scripts/extract_discord_openapi.py generates it;\n"
        "tests/discord/test_openapi_extract.py fails when it is stale.\n"
    )


def write(spec: Path, out_dir: Path) -> list[Path]:
    """Write the extract, the licence and the SOURCE note into `out_dir`; return their paths."""
    for needed in (spec, spec.with_suffix(".LICENSE"), spec.with_suffix(".SOURCE")):
        if not needed.is_file():
            raise ExtractError(f"no {needed} (the full description and its notes): pass --spec")
    document = json.loads(spec.read_text())
    operations = sorted({*fake_operations(), *WEBHOOK_OPERATIONS})
    text = json.dumps(extract(document, operations), indent=1, ensure_ascii=False) + "\n"
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        EXTRACT: text,
        "discord-openapi.LICENSE": spec.with_suffix(".LICENSE").read_text(),
        "discord-openapi.SOURCE": source_note(spec.with_suffix(".SOURCE").read_text()),
    }
    written = []
    for name, content in files.items():
        path = out_dir / name
        path.write_text(content)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, default=SPEC, help=f"default: {SPEC}")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR, help=f"default: {OUT_DIR}")
    args = parser.parse_args(argv)
    try:
        written = write(args.spec, args.out_dir)
    except ExtractError as exc:
        print(f"extract_discord_openapi: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
