"""A fake Anthropic API on 127.0.0.1 for the real `anthropic` SDK (and our Admin API client).

It answers in the documented shapes, one module per API, each holding its routes, state and
test controls:

* `messages` — `POST /v1/messages`: the reply and usage a test sets, errors, held requests;
* `models` — `GET /v1/models`, as deep health asks it;
* `admin` — the Admin API: `GET /v1/organizations/api_keys` and
  `GET /v1/organizations/usage_report/messages`;
* `server` — the life cycle, the recorded `requests` and Anthropic's error body.

Start with `async with FakeAnthropic() as fake:`; point the SDK at `fake.url`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tests.fakes.anthropic.admin import Admin, FakeKey, UsageRecord
from tests.fakes.anthropic.messages import Messages
from tests.fakes.anthropic.models import Models
from tests.fakes.anthropic.server import ERROR_TYPES, RecordedRequest, error_body


@dataclass
class FakeAnthropic(Messages, Models, Admin):
    admin_key: str = "sk-ant-admin01-fake-admin-key"
    model_override: str | None = None
    requests: list[RecordedRequest] = field(default_factory=list)
    keys: list[FakeKey] = field(default_factory=list)
    usage: list[UsageRecord] = field(default_factory=list)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


__all__ = [
    "ERROR_TYPES",
    "FakeAnthropic",
    "FakeKey",
    "RecordedRequest",
    "UsageRecord",
    "error_body",
]
