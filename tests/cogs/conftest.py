"""Fixtures for the cogs' tests: the W&B stand-in, wired to the real wandb client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.standins.discord_standin import DiscordStandIn
from tests.standins.wandb_standin import API_KEY, WandbStandIn


@pytest.fixture
def wandb_standin(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[WandbStandIn]:
    """A W&B stand-in in its own thread; wandb.Api in this process talks to it."""
    with WandbStandIn(entity="team", project="proj") as server:
        monkeypatch.setenv("WANDB_BASE_URL", server.base_url)
        monkeypatch.setenv("WANDB_API_KEY", API_KEY)
        monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
        monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
        monkeypatch.delenv("WANDB_ENTITY", raising=False)
        monkeypatch.delenv("WANDB_PROJECT", raising=False)
        yield server


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
