"""Cold start: from starting the process to its first `$hello` answer, against the Discord stand-in; this Adjutant
(`python -m adjutant`), the previous release (commit a630974) and a bare discord.py bot that answers `$hello` and
nothing else, each a fresh process, in the same run (interleaved, so that the machine's load falls on all alike).

`$hello` is posted the moment the bot has identified on the gateway (and again every 100 ms until it answers);
the figure is the time from spawning the process to the answer. Goal: ≤ 1.3x the bare bot.

    .venv/bin/python benchmarks/cold_start_benchmark.py [--repeat 7] [--rounds 3] [--before TREE]

``--before TREE`` adds a fourth bot: the package laid out in TREE (``TREE/adjutant``, with its cogs), e.g. this
working tree with one change undone, to measure that change in the same run.
    .venv/bin/python -X importtime -m adjutant --help   # what an import costs, module by module
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.launch_benchmark import SITE  # noqa: E402
from benchmarks.wandb_cost_benchmark import PREVIOUS, previous_tree  # noqa: E402
from tests.standins.discord_standin import DiscordStandIn  # noqa: E402

BARE = """
import os
import discord
from discord.ext import commands

intents = discord.Intents.default()
intents.message_content = True
bot = commands.Bot("$", intents=intents)


@bot.command()
async def hello(ctx):
    await ctx.reply("Hello!")


bot.run(os.environ["DISCORD_TOKEN"], log_handler=None)
"""


async def first_hello(standin: DiscordStandIn, command: list[str], code: Path | None, work: Path) -> float:
    """Seconds from spawning ``command`` to its answer to `$hello`."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "PYTHONPATH": os.pathsep.join([str(SITE), str(code if code is not None else ROOT)]),
        "ADJUTANT_TEST_DISCORD_BASE": standin.base,
        "ADJUTANT_TEST_DISCORD_GATEWAY": standin.gateway_url,
        "DISCORD_TOKEN": standin.token,
        "ADJUTANT_STATE_DIR": str(work / f"state-{time.monotonic_ns()}"),
        "WANDB_MODE": "disabled",
    }
    standin.connected.clear()
    before = len(standin.sent())
    start = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *command, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        await asyncio.wait_for(standin.connected.wait(), 60)
        while True:
            await standin.post("$hello")
            try:
                await standin.wait_for_message(after=before, timeout=0.1)
                return time.perf_counter() - start
            except TimeoutError:
                continue
    finally:
        process.terminate()
        await process.wait()


def spread(values: list[float]) -> str:
    return f"{min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f}"


async def main_async(repeat: int, before: Path | None = None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "bare.py").write_text(BARE)
        previous = previous_tree(work / "previous")
        bots = {
            "bare discord.py bot": ([sys.executable, str(work / "bare.py")], None),
            "this Adjutant": ([sys.executable, "-m", "adjutant"], None),
            f"previous ({PREVIOUS})": ([sys.executable, "-m", "adjutant"], previous),
        }
        if before is not None:
            bots[f"before ({before})"] = ([sys.executable, "-m", "adjutant"], before)
        times: dict[str, list[float]] = {name: [] for name in bots}
        for _ in range(repeat):
            for name, (command, code) in bots.items():
                async with DiscordStandIn() as standin:
                    times[name].append(await first_hello(standin, command, code, work))
        bare = statistics.median(times["bare discord.py bot"])
        print(f"\n### cold start to the first `$hello` answer (s), min / median / max over {repeat} runs\n")
        print("| bot | seconds | median x bare bot |\n| --- | ---: | ---: |")
        for name, values in times.items():
            print(f"| {name} | {spread(values)} | {statistics.median(values) / bare:.2f} |")
        print(f"\ngoal: ≤ 1.3x the bare bot (load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=1, help="print the table this many times, one round each")
    parser.add_argument("--before", type=Path, help="a package tree to measure too (TREE/adjutant)")
    args = parser.parse_args()
    for _ in range(args.rounds):
        asyncio.run(main_async(args.repeat, args.before.resolve() if args.before else None))


if __name__ == "__main__":
    main()
