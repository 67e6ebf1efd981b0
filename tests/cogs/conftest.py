"""Fixtures and helpers for the cogs' tests (the W&B stand-in fixture is in tests/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.standins.discord_standin import DiscordStandIn

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.Gabcde.secret-token-value"


@pytest.fixture
def out_dir(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """Where the test script records what it received; also seeds the env with secrets to be scrubbed."""
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("ADJUTANT_TEST_OUT", str(out))
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    monkeypatch.setenv("WANDB_SERVICE", "3-12345-unix-/tmp/wandb-service.sock")
    return out


WANDB_ENV = {"WANDB_ENTITY": "team", "WANDB_PROJECT": "proj", "ADJUTANT_POLL_SECONDS": "1"}


def embeds(discord: DiscordStandIn) -> list[dict[str, Any]]:
    """Every embed the bot sent, in order."""
    return [e for m in discord.sent() for e in m["embeds"]]


def titles(discord: DiscordStandIn) -> list[str]:
    return [e.get("title", "") for e in embeds(discord)]


async def reporting_ready(bot: Any, timeout: float = 30) -> None:
    """Wait until every project's first poll (its silent baseline) is done: a run created after this is news."""
    from tests.conftest import eventually

    feeds = bot.get_cog("Runs").feeds.values()
    await eventually(lambda: all(f.watcher.health.last_success is not None for f in feeds), timeout=timeout)
