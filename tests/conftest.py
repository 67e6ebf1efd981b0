"""Shared fixtures: the Discord stand-in, and an Adjutant bot connected to it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import discord
import pytest
import yarl

from adjutant import Adjutant
from tests.standins.discord_standin import DiscordStandIn
from tests.standins.wandb_standin import API_KEY, WandbStandIn

SITE_DIR = Path(__file__).parent / "standins" / "site"


@pytest.fixture(autouse=True)
def discord_refused_nothing_unprovoked() -> Iterator[None]:
    """Every test: the Discord stand-ins it used refused nothing the test did not provoke. Discord refuses what
    the stand-in refuses, so an unprovoked refusal is a request the product would see fail in production.
    A test provokes refusals through the world (``send_faults``, ``withhold``…) or ``expect_refusals()``."""
    DiscordStandIn.live.clear()
    yield
    standins, DiscordStandIn.live[:] = list(DiscordStandIn.live), []
    refused = [str(r) for standin in standins for r in standin.unexpected_refusals()]
    if refused:
        pytest.fail("Discord (the stand-in) refused requests the test did not provoke:\n  " + "\n  ".join(refused))


@pytest.fixture
async def discord_standin(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[DiscordStandIn]:
    """A running Discord stand-in, with discord.py in this process pointed at it."""
    async with DiscordStandIn() as server:
        monkeypatch.setattr(discord.http.Route, "BASE", f"{server.base}/api/v10")
        monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(server.gateway_url))
        monkeypatch.setattr(discord.asset.Asset, "BASE", f"{server.base}/cdn")
        yield server


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


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    """A minimal, isolated configuration (no W&B, no launching) with a private state folder."""
    return {"ADJUTANT_STATE_DIR": str(tmp_path / "state"), "ADJUTANT_CHANNEL": "general"}


@contextlib.asynccontextmanager
async def running(bot: discord.Client, token: str) -> AsyncIterator[discord.Client]:
    """Start ``bot`` against the stand-in and wait until it is ready; close it afterwards."""
    async with bot:
        task = asyncio.create_task(bot.start(token))
        ready = asyncio.create_task(bot.wait_until_ready())
        done, _ = await asyncio.wait({task, ready}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            ready.cancel()
            task.result()  # raises the startup error
        assert ready in done, "bot did not become ready in 15 s"
        try:
            yield bot
        finally:
            await bot.close()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)


@pytest.fixture
def start_adjutant(
    discord_standin: DiscordStandIn, base_env: dict[str, str]
) -> Callable[..., contextlib.AbstractAsyncContextManager[Adjutant]]:
    """``async with start_adjutant(env_overrides, **kwargs) as bot``: an Adjutant connected to the stand-in."""

    def start(env: dict[str, str] | None = None, **kwargs: Any) -> contextlib.AbstractAsyncContextManager[Adjutant]:
        kwargs.setdefault("guild_ready_timeout", 0.1)
        bot = Adjutant(env={**base_env, **(env or {})}, **kwargs)
        return running(bot, discord_standin.token)  # type: ignore[return-value]

    return start


def subprocess_env(standin: DiscordStandIn, extra: dict[str, str]) -> dict[str, str]:
    """Environment for ``python -m adjutant`` as a child process talking to the stand-in."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "VIRTUAL_ENV")}
    return {
        **keep,
        "PYTHONPATH": str(SITE_DIR),
        "ADJUTANT_TEST_DISCORD_BASE": standin.base,
        "ADJUTANT_TEST_DISCORD_GATEWAY": standin.gateway_url,
        "DISCORD_TOKEN": standin.token,
        **extra,
    }


async def eventually(condition: Callable[[], bool], *, timeout: float = 10.0, every: float = 0.05) -> None:
    """Wait until ``condition()`` holds (polled), or fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(every)


async def start_standalone(standin: DiscordStandIn, env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    """``python -m adjutant`` as its own process, connected to the stand-in (the caller stops or kills it)."""
    standin.connected.clear()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adjutant", cwd=cwd, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.wait_for(standin.connected.wait(), 30)
    return process
