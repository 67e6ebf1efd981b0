"""Load Adjutant from the installed wheel (run from an empty folder, away from the source tree)."""

import asyncio
import importlib.util
import os
import sys
import tempfile

import discord
from discord.ext import commands

import adjutant


async def main() -> None:
    assert "site-packages" in adjutant.__file__, adjutant.__file__
    assert importlib.util.find_spec("cogs") is None, "the wheel must not install a top-level 'cogs'"
    os.environ.update({"WANDB_PROJECT": "smoke", "ADJUTANT_STATE_DIR": tempfile.mkdtemp()})
    async with commands.Bot("$", intents=discord.Intents.default()) as bot:
        await bot.load_extension("adjutant")
        assert set(bot.cogs) == {"Greeting", "Experiments", "Runs", "Rules", "Desk", "Usage"}, dict(bot.cogs)
        await bot.unload_extension("adjutant")
        for name in ("greeting", "experiments", "wandb_runs", "rules", "desk", "usage"):
            await bot.load_extension(f"adjutant.cogs.{name}")
    print(f"wheel OK: adjutant {adjutant.__version__} from {adjutant.__file__}", file=sys.stderr)


assert os.path.exists(os.path.join(os.path.dirname(adjutant.__file__), "py.typed"))
asyncio.run(main())
