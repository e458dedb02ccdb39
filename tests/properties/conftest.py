"""The Discord wire harness's fixtures, shared with these tests."""

from tests.discord.conftest import fake_discord, harness, start_bot

__all__ = ["fake_discord", "harness", "start_bot"]
