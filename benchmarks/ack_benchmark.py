"""Time from a `$experiment` message to Adjutant's acknowledgement, against the original Adjutant's.

Both bots run the real discord.py client against the Discord stand-in (tests/standins). For each
of N launches the benchmark posts `$experiment {...}`, waits for the bot's answer, and records the
time from dispatching the message to receiving the answer. The script is a trivial one.

- adjutant: validates, records the job in SQLite, starts it through its supervisor (a new
  process), then replies with an embed and a Cancel button;
- naive: the original Adjutant: `json.loads` (bad JSON silently `{}`), a text reply, then
  `Popen([script, json])` on the event loop, nothing recorded.

    python benchmarks/ack_benchmark.py [--launches 100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import discord  # noqa: E402
import yarl  # noqa: E402
from discord.ext import commands  # noqa: E402

from adjutant import Adjutant  # noqa: E402
from tests.standins.discord_standin import DiscordStandIn  # noqa: E402


class NaiveAdjutant(commands.Bot):
    """What the original Adjutant did on `$experiment`."""

    def __init__(self, script: str) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__("$", intents=intents, guild_ready_timeout=0.1)
        self.script = script

    async def on_message(self, message: discord.Message) -> None:
        if message.author == self.user or not message.content.startswith("$experiment"):
            return
        try:
            params = json.loads(message.content[len("$experiment") :].strip())
        except ValueError:
            params = {}
        await message.channel.send(f"Running new experiment with the following hyperparameters.\n{json.dumps(params)}")
        subprocess.Popen([self.script, json.dumps(params)])  # noqa: ASYNC220 (the original's way)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(kind: str, launches: int, script: Path) -> list[float]:
    async with DiscordStandIn() as standin:
        discord.http.Route.BASE = f"{standin.base}/api/v10"
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(standin.gateway_url)
        with tempfile.TemporaryDirectory() as state:
            if kind == "adjutant":
                env = {
                    "ADJUTANT_STATE_DIR": state,
                    "ADJUTANT_EXPERIMENT_SCRIPT": str(script),
                    "ADJUTANT_MAX_CONCURRENT": "4",
                }
                bot: commands.Bot = Adjutant(env=env, guild_ready_timeout=0.1)
            else:
                bot = NaiveAdjutant(str(script))
            async with bot:
                task = asyncio.create_task(bot.start(standin.token))
                await asyncio.wait_for(bot.wait_until_ready(), 15)
                latencies = []
                for i in range(launches):
                    count = len(standin.sent())
                    start = time.perf_counter()
                    await standin.post(f'$experiment {{"epochs": 1, "seed": {i}}}')
                    await standin.wait_for_message(after=count, timeout=15)
                    latencies.append(time.perf_counter() - start)
                    await asyncio.sleep(0.02)
                await bot.close()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await asyncio.sleep(1)  # let the last jobs end
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--launches", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "run_experiment.sh"
        script.write_text("#!/bin/sh\nexit 0\n")
        script.chmod(0o755)
        results = {kind: asyncio.run(measure(kind, args.launches, script)) for kind in ("adjutant", "naive")}
    print("| bot | launches | p50 (ms) | p95 (ms) | max (ms) | mean (ms) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for kind, values in results.items():
        ms = [v * 1000 for v in values]
        print(
            f"| {kind} | {len(ms)} | {percentile(ms, 0.5):.1f} | {percentile(ms, 0.95):.1f} | {max(ms):.1f} | "
            f"{statistics.mean(ms):.1f} |"
        )
    a, n = results["adjutant"], results["naive"]
    print(f"| ratio adjutant/naive | | {percentile(a, 0.5) / percentile(n, 0.5):.1f}x | "
          f"{percentile(a, 0.95) / percentile(n, 0.95):.1f}x | | |")  # fmt: skip


if __name__ == "__main__":
    main()
