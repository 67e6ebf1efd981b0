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
        assert set(bot.cogs) == {"Greeting", "Experiments", "Sweeps", "Runs", "Rules", "Desk", "Usage"}, dict(bot.cogs)
        assert bot.get_cog("Sweeps").sweeps is not None  # the sweep service and its modules, built from the wheel
        await bot.unload_extension("adjutant")
        for name in ("greeting", "experiments", "sweeps", "wandb_runs", "rules", "desk", "usage"):
            await bot.load_extension(f"adjutant.cogs.{name}")
    sweeps()


def sweeps() -> None:
    """The sweeps' dependencies came with the wheel: PyYAML parses a configuration, Optuna proposes a bayes trial,
    and the agent job's script is installed."""
    from adjutant.sweeps import agent_job
    from adjutant.sweeps.config import parse_sweep_config
    from adjutant.sweeps.search import propose

    config = parse_sweep_config("method: bayes\nmetric: {name: loss}\nparameters:\n  x: {min: 0.0, max: 1.0}\n")
    (trial,) = propose(config, [], seed=1, count=1)
    assert 0.0 <= trial["x"] <= 1.0, trial
    assert os.path.isfile(agent_job.__file__), agent_job.__file__
    print(f"wheel OK: adjutant {adjutant.__version__} from {adjutant.__file__}", file=sys.stderr)


assert os.path.exists(os.path.join(os.path.dirname(adjutant.__file__), "py.typed"))
asyncio.run(main())
