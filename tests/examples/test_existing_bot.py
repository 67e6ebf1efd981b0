"""examples/existing_bot.py: a host bot with its own cog that loads Adjutant, run as a real process."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_env
from tests.standins.discord_standin import DiscordStandIn

EXAMPLE = Path(__file__).resolve().parent.parent.parent / "examples" / "existing_bot.py"


@pytest.mark.timeout(240)  # the waits below add up to more than the default 120 s only when something is wrong
async def test_existing_bot_answers_its_own_command_and_adjutants(tmp_path: Path) -> None:
    async with DiscordStandIn() as standin:
        env = subprocess_env(standin, {"ADJUTANT_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path)})
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(EXAMPLE), cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        # Waits for events, with room for a busy machine (a cold start imports discord.py, wandb and Adjutant).
        try:
            await asyncio.wait_for(standin.connected.wait(), 60)
            await standin.post("$ping")
            await standin.wait_for_message(lambda m: m["content"] == "pong", timeout=30)
            await standin.post("$hello")
            await standin.wait_for_message(lambda m: m["content"] == "Hello!", timeout=30)
        finally:
            process.send_signal(signal.SIGINT)
            _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert "Traceback" not in stderr.decode()
    assert standin.synced == {}, "a host bot's tree is the host's business"
