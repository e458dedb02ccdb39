"""PostgreSQL's text, imitated where the fold must: COPY's text format, and the few casts and
operators whose result the fold itself reads (integer input, numeric +, jsonb ||, split_part).

The rebuild's rows are byte-identical to the live ones because values never leave PostgreSQL's
own text; only what the fold compares or adds is read in Python, by these. tests/store/
test_replay.py checks them against PostgreSQL, and the whole fold against the live projection.
"""

from __future__ import annotations

import decimal
import re

NULL = "\\N"  # how COPY's text format writes SQL NULL

_UNESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)
_ESCAPES = str.maketrans(
    {"\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
)


def copy_unescape(field: str) -> str:
    """The value a (non-NULL) field of COPY's text format holds."""
    if "\\" not in field:
        return field
    return _ESCAPED.sub(lambda m: _UNESCAPES.get(m.group(1), m.group(1)), field)


def copy_escape(value: str) -> str:
    """A value as COPY's text format writes it (the inverse of copy_unescape)."""
    return value.translate(_ESCAPES)


_SQL_SPACE = " \t\n\r\v\f"


def sql_int(text: str) -> int:
    """`text::integer` (or `::bigint`) as PostgreSQL reads it: spaces around, a sign, decimal
    digits with `_` between them, or 0x/0o/0b digits. Text PostgreSQL refuses raises ValueError:
    no stored event holds it where the projection casts it."""
    try:
        return int(text)
    except ValueError:
        pass
    trimmed = text.strip(_SQL_SPACE)
    digits = trimmed[1:] if trimmed[:1] in ("-", "+") else trimmed
    if digits[:2].lower() not in ("0x", "0o", "0b"):
        raise ValueError(f"PostgreSQL does not read {text!r} as an integer") from None
    value = int(digits, 0)
    return -value if trimmed.startswith("-") else value


def int_field(field: str) -> int | None:
    """A COPY field cast to integer by PostgreSQL's rules; NULL stays None."""
    if field == NULL:
        return None
    try:
        return int(field)  # the usual case; an escaped field is never an int to Python
    except ValueError:
        return sql_int(copy_unescape(field))


# numeric + numeric: exact at any size; NaN and ∞ - ∞ give NaN, as in PostgreSQL.
_EXACT = decimal.Context(
    prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN, traps=[]
)
numeric_add = _EXACT.add


def jsonb_concat(left: str, right: str) -> str:
    """`left || right` on canonical jsonb text, for an array on at least one side: the elements
    of both, a value that is not an array counting as an array of itself."""
    parts = [_elements(left), _elements(right)]
    return "[" + ", ".join(part for part in parts if part) + "]"


def _elements(value: str) -> str:
    return value[1:-1] if value.startswith("[") else value


def split_part(text: str, delimiter: str, field: int) -> str:
    """PostgreSQL's split_part, for field 1 or 2."""
    parts = text.split(delimiter, field)
    return parts[field - 1] if len(parts) >= field else ""
