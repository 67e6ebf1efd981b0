"""End reports and W&B: 40 launches of a script that exits at once (8 slots), the bot watching a W&B project
(the W&B stand-in, served from this process); the time from posting the 40 `$experiment` until all 40 end
reports are in the Discord stand-in; this Adjutant against the previous release (commit a630974), each a real
`python -m adjutant` process, in the same run; against running the 40 scripts directly, 8 at a time.

- **W&B answering**: the stand-in answers at once. Goal: ≤ 3x running the scripts directly.
- **W&B slow**: every W&B request takes 20 s (from just before the launches). Goal: all 40 end reports within
  10 s. The previous release's count is taken at 10 s and at the cap (``--cap``).
- **Discord's limits enforced**: the stand-in refuses (429) a 6th message, or a 6th edit, in one channel within 5 s,
  as Discord does (it otherwise only advertises them in its headers, which discord.py follows only when 5 requests
  of a route are in flight at once); this Adjutant against Discord's floor: a bare discord.py bot that makes, for
  each `$experiment`, the Discord requests Adjutant makes for a job and nothing else (a reply in the channel, a
  thread on it, the end report in the thread, an edit of the reply). 40 replies in one channel take 35 s at 5 per
  5 s, and an end report follows its job's reply: no bot tells 40 launches of one channel faster.

    .venv/bin/python benchmarks/report_benchmark.py [--repeat 3] [--cap 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.launch_benchmark import SITE, Bot, direct, quick_script, until  # noqa: E402
from benchmarks.wandb_cost_benchmark import PREVIOUS, previous_tree  # noqa: E402
from tests.standins.discord_standin import DiscordStandIn  # noqa: E402
from tests.standins.wandb_standin import API_KEY, WandbStandIn  # noqa: E402

#: A bot that does, for each `$experiment`, only the Discord requests Adjutant makes for a job that ends at once.
FLOOR_BOT = """
import os
import secrets

import discord
from discord.ext import commands

intents = discord.Intents.default()
intents.message_content = True
bot = commands.Bot("$", intents=intents)


@bot.command()
async def experiment(ctx, *, body=""):
    job = "j" + secrets.token_hex(3)
    ack = await ctx.reply(f"{job}: queued")
    thread = await ack.create_thread(name=f"{job} experiment")
    await thread.send(embed=discord.Embed(title=f"Experiment {job} succeeded"))
    await ack.edit(content=f"{job}: succeeded")


bot.run(os.environ["DISCORD_TOKEN"], log_handler=None)
"""


async def floor(work: Path, cap: float) -> dict[str, float]:
    """The 40 launches against :data:`FLOOR_BOT`, Discord's limits enforced: Discord's floor."""
    (work / "floor_bot.py").write_text(FLOOR_BOT)
    async with DiscordStandIn() as standin:
        standin.rate_limit = DISCORD_LIMITS
        env = {
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/root"),
            "PYTHONPATH": str(SITE),
            "ADJUTANT_TEST_DISCORD_BASE": standin.base,
            "ADJUTANT_TEST_DISCORD_GATEWAY": standin.gateway_url,
            "DISCORD_TOKEN": standin.token,
        }
        process = await asyncio.create_subprocess_exec(sys.executable, str(work / "floor_bot.py"), env=env, cwd=work)
        try:
            await asyncio.wait_for(standin.connected.wait(), 60)
            await asyncio.sleep(1)
            start = time.perf_counter()
            await asyncio.gather(*(standin.post(f'$experiment {{"n": {i}}}') for i in range(40)))
            with contextlib.suppress(TimeoutError):
                await standin.wait_until(lambda: reports(standin) >= 40, timeout=cap)
            return {"s": time.perf_counter() - start, "reported": reports(standin)}
        finally:
            process.terminate()
            await process.wait()


#: Discord's per-channel limits: 5 messages (and, apart, 5 edits) per 5 s.
DISCORD_LIMITS = (5, 5.0)
REPORT_TITLE = re.compile(r"Experiment (j[a-z0-9]{6}) (succeeded|failed)")


def reports(standin: DiscordStandIn) -> int:
    """End reports sent (an end report's title: "✅ Experiment j… succeeded"; its acknowledgement says "j…: ")."""
    found = [m for m in standin.sent() if m["embeds"] and REPORT_TITLE.search(m["embeds"][0].get("title", ""))]
    ids = [REPORT_TITLE.search(m["embeds"][0]["title"]).group(1) for m in found]  # type: ignore[union-attr]
    if len(set(ids)) != len(ids):
        raise AssertionError(f"a job reported twice: {sorted(ids)}")
    return len(ids)


async def run(
    code: Path | None, work: Path, label: str, slow: bool, cap: float, *, enforce: bool = False
) -> dict[str, float]:
    script = quick_script(work)
    state = work / f"state-{label}-{time.monotonic_ns()}"
    with WandbStandIn(entity="team", project="proj") as wandb:
        wandb.create_runs(50, state="finished", summary={"loss": 0.5})
        env = {
            "ADJUTANT_STATE_DIR": str(state),
            "ADJUTANT_EXPERIMENT_SCRIPT": str(script),
            "ADJUTANT_MAX_CONCURRENT": "8",
            "ADJUTANT_POLL_SECONDS": "2",
            "WANDB_BASE_URL": wandb.base_url,
            "WANDB_API_KEY": API_KEY,
            "WANDB_ENTITY": "team",
            "WANDB_PROJECT": "proj",
            "WANDB_DIR": str(work / f"wandb-{label}"),
            "WANDB_CONFIG_DIR": str(work / "wandb-config"),
        }
        async with DiscordStandIn() as standin, Bot(standin, code, env):
            await until(lambda: wandb.counts["Runs"] >= 2, timeout=60)  # logged in; first start and a poll done
            await asyncio.sleep(1)
            if slow:
                wandb.hang(100_000, seconds=20.0)
            if enforce:
                standin.rate_limit = DISCORD_LIMITS
            start = time.perf_counter()
            await asyncio.gather(*(standin.post(f'$experiment {{"n": {i}}}') for i in range(40)))
            at_10 = None
            while reports(standin) < 40 and time.perf_counter() - start < cap:
                if at_10 is None and time.perf_counter() - start >= 10:
                    at_10 = reports(standin)
                await asyncio.sleep(0.01)
            total = time.perf_counter() - start
            done = reports(standin)
            wandb.clear_faults()
    return {"s": total, "reported": done, "at 10 s": done if at_10 is None else at_10}


def spread(values: list[float], digits: int = 2) -> str:
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{low:.{digits}f} / {mid:.{digits}f} / {high:.{digits}f}"


async def main_async(repeat: int, cap: float) -> None:
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        bots = {"this Adjutant": None, f"previous ({PREVIOUS})": previous_tree(work / "previous")}
        floors = [direct(work) for _ in range(repeat)]
        direct_s = statistics.median(floors)
        print(f"\n### 40 launches of a script that exits at once, 8 slots; min / median / max over {repeat} runs\n")
        print("| Discord's limits | W&B | runner | all 40 end reports (s) | x direct (median) | reports within 10 s |")
        print("| --- | --- | --- | ---: | ---: | ---: |")
        print(f"| | | the scripts directly, 8 at a time | {spread(floors, 3)} | 1.0 | |")

        def row(limits: str, wandb: str, name: str, rows: list[dict[str, float]], within: float) -> float:
            took = [r["s"] for r in rows]
            finished = all(r["reported"] == 40 for r in rows)
            total = (
                spread(took)
                if finished
                else f"not all within {within:.0f} s ({spread([r['reported'] for r in rows], 0)})"
            )
            at_10 = spread([r["at 10 s"] for r in rows], 0) if "at 10 s" in rows[0] else ""
            print(
                f"| {limits} | {wandb} | {name} | {total} | {statistics.median(took) / direct_s:.1f} | {at_10} |",
                flush=True,
            )
            return statistics.median(took)

        for slow in (False, True):
            for name, code in bots.items():
                rows = [await run(code, work, name.split()[0], slow, cap) for _ in range(repeat)]
                row("advertised", "20 s per request" if slow else "answering", name, rows, cap)
        enforced_cap = max(cap, 90.0)
        paced = row(
            "enforced",
            "",
            "a bare bot making only Adjutant's requests",
            [await floor(work, enforced_cap) for _ in range(repeat)],
            enforced_cap,
        )
        rows = [await run(None, work, "enforced", False, enforced_cap, enforce=True) for _ in range(repeat)]
        took = row("enforced", "answering", "this Adjutant", rows, enforced_cap)
        print("\ngoals: ≤ 3x direct with W&B answering; all 40 end reports within 10 s with W&B at 20 s per request")
        count, per = DISCORD_LIMITS
        by_construction = (math.ceil(40 / count) - 1) * per  # the 40th reply's window opens then
        print(
            f"with Discord's limits enforced (medians): this Adjutant {took / by_construction:.2f}x Discord's floor by"
            f" construction ({by_construction:.0f} s: 40 replies in one channel at {count} per {per:.0f} s),"
            f" {took / paced:.2f}x the bare bot's requests only"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cap", type=float, default=30.0)
    args = parser.parse_args()
    asyncio.run(main_async(args.repeat, args.cap))


if __name__ == "__main__":
    main()
