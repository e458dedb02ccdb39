"""Fixtures shared with these tests: the Discord wire harness and the real helm binary."""

from tests.deploy.conftest import helm
from tests.discord.conftest import fake_discord, harness, start_bot

__all__ = ["fake_discord", "harness", "helm", "start_bot"]
