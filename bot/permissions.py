"""Who may run which slash command: deny by default, allow per command group.

Every command declares its access group with `@access(...)` and the tree checks it on every
invocation: Discord's `default_permissions` is only a default that server admins can change,
so it is never trusted. Queries are open to the server, steering to the steerers and admins,
the owner's commands to the application's owner, any other group to the admins; a command that
declares no group is denied to everyone, and every denial is recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from discord import app_commands

from bot.context import AppContext
from store import catalogue
from store.events import NewEvent

QUERIES = "queries"
OWNER = "owner"
STEER = "steer"
ACCESS_KEY = "conductor_access"

CommandT = TypeVar("CommandT", bound=app_commands.Command[Any, ..., Any])


def access(group: str) -> Callable[[CommandT], CommandT]:
    """Declare the access group of a slash command (put it above `@app_commands.command`)."""

    def mark(command: CommandT) -> CommandT:
        command.extras[ACCESS_KEY] = group
        return command

    return mark


def access_group(
    command: app_commands.Command[Any, ..., Any] | app_commands.Group | None,
) -> str | None:
    """The declared group of a command, or None (which means: denied)."""
    if command is None:
        return None
    group = command.extras.get(ACCESS_KEY)
    return str(group) if group is not None else None


@dataclass(frozen=True)
class Grant:
    user_ids: frozenset[int] = frozenset()
    role_ids: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Caller:
    user_id: int
    role_ids: frozenset[int]
    in_guild: bool
    is_owner: bool


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


@dataclass(frozen=True)
class AccessPolicy:
    """Admin groups and who may use them; groups not listed fall back to `default`."""

    default: Grant = Grant()
    groups: Mapping[str, Grant] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Any) -> AccessPolicy:
        """Admins from CONDUCTOR_ADMIN_*; steerers from CONDUCTOR_STEER_* plus the admins."""
        admins = Grant(frozenset(settings.admin_user_ids), frozenset(settings.admin_role_ids))
        steer = Grant(
            admins.user_ids | frozenset(settings.steer_user_ids),
            admins.role_ids | frozenset(settings.steer_role_ids),
        )
        return cls(admins, {STEER: steer})

    @classmethod
    def from_ids(
        cls,
        admin_user_ids: Iterable[int],
        admin_role_ids: Iterable[int],
        groups: Mapping[str, Grant] | None = None,
    ) -> AccessPolicy:
        return cls(Grant(frozenset(admin_user_ids), frozenset(admin_role_ids)), dict(groups or {}))

    def decide(self, group: str | None, caller: Caller) -> Decision:
        """Whether a caller may run a command of `group`, with the reason when not."""
        if group is None:
            return Decision(False, "this command declares no access group")
        if not caller.in_guild:
            return Decision(False, "commands work only inside the server")
        if group == QUERIES:
            return Decision(True, "open to the server")
        if group == OWNER:
            if caller.is_owner:
                return Decision(True, "application owner")
            return Decision(False, "only the bot's owner may run this")
        grant = self.groups.get(group, self.default)
        if caller.user_id in grant.user_ids:
            return Decision(True, "allowed user")
        if caller.role_ids & grant.role_ids:
            return Decision(True, "allowed role")
        return Decision(False, f"you are not allowed to run {group} commands")


async def record_denial(context: AppContext, caller: Caller, command: str, reason: str) -> None:
    """Record an ADMIN_ACTION_DENIED event for a refused command."""
    data = catalogue.validate(
        "ADMIN_ACTION_DENIED",
        {
            "actor": f"discord:{caller.user_id}",
            "action": command,
            "result": reason,
        },
        internal=True,
    )
    metadata = {"source": "discord", "actor": f"discord:{caller.user_id}"}
    await context.store.append(
        catalogue.ADMIN_STREAM, [NewEvent("ADMIN_ACTION_DENIED", data, metadata)]
    )
