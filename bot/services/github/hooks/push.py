"""`push`: a push to the default branch whose commits add, modify or remove `.rig-agent.yaml`
has the file re-read (bot/services/work/repo_config records REPO_CONFIG_CHANGED or
REPO_CONFIG_INVALID), so routing follows the repo's new configuration.
"""

from __future__ import annotations

from bot.integrations.webhook_router import Event, Router
from bot.services.github.hooks.delivery import Delivery
from bot.services.work.repo_config import CONFIG_PATH

router = Router()

# GitHub lists at most this many commits in a push payload; a longer push may hide the file.
PUSH_COMMITS_LISTED = 20


@router.register("push")
async def pushed(event: Event, delivery: Delivery) -> None:
    payload = event.data
    if payload.get("deleted"):
        return
    repository = payload.get("repository") or {}
    branch = repository.get("default_branch") or repository.get("master_branch")
    if not branch or payload.get("ref") != f"refs/heads/{branch}":
        return
    commits = payload.get("commits") or []
    if len(commits) >= PUSH_COMMITS_LISTED or any(
        CONFIG_PATH in (commit.get(key) or [])
        for commit in commits
        for key in ("added", "modified", "removed")
    ):
        # A list cut short may hide the file: read it to be sure.
        delivery.configs.append(delivery.repo)
