"""Discord's own OpenAPI description, used by the fakes to check every request and answer.

The fakes read the facts-only extract committed in tests/fakes/data/ (the operations they serve,
their request and response schemas, no prose), so a plain clone tests the same way as CI;
scripts/extract_discord_openapi.py generates it from the full description, and
tests/discord/test_openapi_extract.py checks that it is current.

`DiscordSpec.match(method, path)` finds the operation a request is for (the most literal path
template wins, so `/messages/@original` beats `/messages/{message_id}`), `validate` checks a
JSON body against that operation's request schema and `validate_response` a fake's answer
against its response schema, with jsonschema (Draft 2020-12, which OpenAPI 3.1 schemas are).
The schemas' `$ref`s resolve inside the one document through a `referencing` registry, and one
validator is built per schema and kept.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema
import referencing
from referencing.jsonschema import DRAFT202012

EXTRACT_PATH = Path(__file__).resolve().parent / "data" / "discord-openapi-extract.json"
_SPEC_URI = "urn:discord-openapi"


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    params: dict[str, str]
    operation_id: str


def _pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


class DiscordSpec:
    """The operations, request and response schemas of Discord's REST API (the extract's)."""

    def __init__(self, path: Path = EXTRACT_PATH) -> None:
        self.document: dict[str, Any] = json.loads(path.read_text())
        self._validators: dict[tuple[str, ...], jsonschema.protocols.Validator] = {}
        self._routes: list[tuple[int, int, re.Pattern[str], str]] = []
        for template in self.document["paths"]:
            segments = template.strip("/").split("/")
            literal = sum(1 for s in segments if not s.startswith("{"))
            pattern = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$"
            self._routes.append((literal, len(segments), re.compile(pattern), template))
        # Most literal segments first, so fixed names beat parameters.
        self._routes.sort(key=lambda r: (-r[0], -r[1]))

    @cached_property
    def registry(self) -> referencing.Registry:
        resource = DRAFT202012.create_resource(self.document)
        return referencing.Registry().with_resource(_SPEC_URI, resource)

    def match(self, method: str, path: str) -> Operation | None:
        """The documented operation for a request path (without the /api/v10 prefix)."""
        method = method.lower()
        for _, _, pattern, template in self._routes:
            found = pattern.match(path)
            if found is None:
                continue
            operation = self.document["paths"][template].get(method)
            if operation is None:
                continue
            return Operation(method, template, found.groupdict(), operation.get("operationId", ""))
        return None

    def _schema_validator(self, *pointer: str) -> jsonschema.protocols.Validator:
        key = tuple(pointer)
        if key not in self._validators:
            schema = {"$ref": _SPEC_URI + "#/" + _pointer(*pointer)}
            cls = jsonschema.validators.validator_for({}, default=jsonschema.Draft202012Validator)
            self._validators[key] = cls(schema, registry=self.registry)
        return self._validators[key]

    def validator(
        self, operation: Operation, content_type: str = "application/json"
    ) -> jsonschema.protocols.Validator | None:
        """The validator of an operation's request body (None when it takes none)."""
        op = self.document["paths"][operation.template][operation.method]
        if content_type not in op.get("requestBody", {}).get("content", {}):
            return None
        where = ("requestBody", "content", content_type, "schema")
        return self._schema_validator("paths", operation.template, operation.method, *where)

    def response_validator(
        self, operation: Operation, status: int
    ) -> jsonschema.protocols.Validator | None:
        """The validator of an operation's JSON response with this status (None when Discord
        documents no body for it)."""
        op = self.document["paths"][operation.template][operation.method]
        response = op["responses"].get(str(status))
        if response is None or "application/json" not in response.get("content", {}):
            return None
        where = ("responses", str(status), "content", "application/json", "schema")
        return self._schema_validator("paths", operation.template, operation.method, *where)

    def has_body(self, operation: Operation) -> bool:
        op = self.document["paths"][operation.template][operation.method]
        return "requestBody" in op

    def validate(self, operation: Operation, body: Any) -> list[str]:
        """Schema errors of a JSON request body ([] when it conforms)."""
        validator = self.validator(operation)
        if validator is None:
            if body is None:
                return []
            return [f"{operation.method.upper()} {operation.template} takes no JSON body"]
        return _errors(validator, body)

    def validate_response(self, operation: Operation, status: int, body: Any) -> list[str]:
        """Schema errors of a JSON response body ([] when it conforms or is undocumented)."""
        validator = self.response_validator(operation, status)
        return [] if validator is None else _errors(validator, body)


def _errors(validator: jsonschema.protocols.Validator, body: Any) -> list[str]:
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    return [_describe(error) for error in errors]


def _describe(error: jsonschema.ValidationError) -> str:
    # anyOf/oneOf failures say little on their own; the deepest sub-error names the field.
    best = error
    for candidate in _leaves(error):
        if len(candidate.absolute_path) > len(best.absolute_path):
            best = candidate
    where = "/".join(str(p) for p in best.absolute_path) or "(body)"
    message = best.message
    if len(message) > 200:  # the message quotes the whole value; name the rule instead
        message = f"breaks {best.validator}={best.validator_value!r}"
    return f"{where}: {message}"


def _leaves(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    found = []
    for sub in error.context or []:
        found.append(sub)
        found.extend(_leaves(sub))
    return found
