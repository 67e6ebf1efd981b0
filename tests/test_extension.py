"""Loading Adjutant into bots: the umbrella extension, single cogs, host bots, name clashes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import discord
import pytest
from discord.ext import commands

import adjutant

ALL_COGS = {"Greeting", "Experiments", "Sweeps", "Runs", "Rules", "Desk", "Usage"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[None]:
    """A host bot reads Adjutant's configuration from the environment when setup() runs."""
    for var in ("WANDB_ENTITY", "WANDB_PROJECT", "ADJUTANT_EXPERIMENT_SCRIPT", "ADJUTANT_CHANNEL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_ENTITY", "team")
    monkeypatch.setenv("WANDB_PROJECT", "proj")
    monkeypatch.setenv("ADJUTANT_STATE_DIR", str(tmp_path / "state"))
    yield


def host_bot() -> commands.Bot:
    return commands.Bot("$", intents=discord.Intents.default())


def command_names(bot: commands.Bot) -> set[str]:
    names = set()
    for command in bot.walk_commands():
        names.add(command.qualified_name)
        names.update(f"{command.full_parent_name} {a}".strip() for a in command.aliases)
    return names


async def test_umbrella_load_unload(env: None) -> None:
    async with host_bot() as bot:
        await bot.load_extension("adjutant")
        assert set(bot.cogs) == ALL_COGS
        await bot.unload_extension("adjutant")
        await asyncio.sleep(0)
        assert bot.cogs == {}
        assert command_names(bot) == {"help"}


@pytest.mark.parametrize(
    ("extension", "cog"),
    [
        ("adjutant.cogs.greeting", "Greeting"),
        ("adjutant.cogs.experiments", "Experiments"),
        ("adjutant.cogs.sweeps", "Sweeps"),
        ("adjutant.cogs.wandb_runs", "Runs"),
        ("adjutant.cogs.rules", "Rules"),
        ("adjutant.cogs.desk", "Desk"),
        ("adjutant.cogs.usage", "Usage"),
    ],
)
async def test_single_cog_load_unload(env: None, extension: str, cog: str) -> None:
    async with host_bot() as bot:
        await bot.load_extension(extension)
        assert set(bot.cogs) == {cog}
        await bot.unload_extension(extension)
        assert bot.cogs == {}


async def test_single_cogs_together(env: None) -> None:
    """Single cogs loaded one by one into one bot share one set of services (and the state folder's lock)."""
    async with host_bot() as bot:
        await bot.load_extension("adjutant.cogs.greeting")
        await bot.load_extension("adjutant.cogs.experiments")
        await bot.load_extension("adjutant.cogs.sweeps")
        await bot.load_extension("adjutant.cogs.wandb_runs")
        await bot.load_extension("adjutant.cogs.rules")
        await bot.load_extension("adjutant.cogs.desk")
        await bot.load_extension("adjutant.cogs.usage")
        assert set(bot.cogs) == ALL_COGS
        assert bot.get_cog("Experiments").services is bot.get_cog("Runs").services is bot.get_cog("Usage").services
        assert bot.get_cog("Sweeps").services is bot.get_cog("Experiments").services
        assert bot.get_cog("Runs").feeds is bot.get_cog("Rules").feeds is bot.get_cog("Desk").feeds
        assert bot.get_cog("Desk").services is bot.get_cog("Runs").services
        await bot.unload_extension("adjutant.cogs.usage")
        await bot.unload_extension("adjutant.cogs.sweeps")
        await bot.unload_extension("adjutant.cogs.wandb_runs")
        await bot.unload_extension("adjutant.cogs.rules")
        await bot.unload_extension("adjutant.cogs.desk")
        assert not bot.get_cog("Experiments").services.closed, "still used by the Experiments cog"
        await bot.unload_extension("adjutant.cogs.experiments")
        await bot.unload_extension("adjutant.cogs.greeting")
        await bot.load_extension("adjutant")  # the state folder is free again
        assert set(bot.cogs) == ALL_COGS


async def test_without_wandb_project_umbrella_skips_reporting(env: None, monkeypatch, caplog) -> None:
    monkeypatch.delenv("WANDB_PROJECT")
    async with host_bot() as bot:
        await bot.load_extension("adjutant")
        assert set(bot.cogs) == {"Greeting", "Experiments", "Sweeps", "Usage"}
    assert "WANDB_PROJECT is not set" in caplog.text


async def test_wandb_cog_alone_without_project_fails_clearly(env: None, monkeypatch) -> None:
    monkeypatch.delenv("WANDB_PROJECT")
    async with host_bot() as bot:
        with pytest.raises(commands.ExtensionFailed, match="needs WANDB_PROJECT"):
            await bot.load_extension("adjutant.cogs.wandb_runs")
        assert bot.cogs == {}


async def test_bad_configuration_fails_load_with_message(env: None, monkeypatch) -> None:
    monkeypatch.setenv("ADJUTANT_POLL_SECONDS", "soon")
    async with host_bot() as bot:
        with pytest.raises(commands.ExtensionFailed, match="ADJUTANT_POLL_SECONDS must be a number"):
            await bot.load_extension("adjutant")
        assert bot.cogs == {}


class HostCommands(commands.Cog):
    """Commands that existing bots commonly have."""

    @commands.command()
    async def ping(self, ctx: commands.Context) -> None:
        """Pong."""

    @commands.command(aliases=["stat"])
    async def stats(self, ctx: commands.Context) -> None:
        """Host stats."""

    @commands.command()
    async def info(self, ctx: commands.Context) -> None:
        """Host info."""

    @commands.command()
    async def stop(self, ctx: commands.Context) -> None:
        """Host stop."""

    @commands.command(name="list")
    async def list_(self, ctx: commands.Context) -> None:
        """Host list."""


async def test_no_clash_with_common_host_commands(env: None) -> None:
    async with host_bot() as bot:
        await bot.add_cog(HostCommands())
        before = command_names(bot)
        await bot.load_extension("adjutant")
        assert before <= command_names(bot)
        assert set(bot.cogs) == ALL_COGS | {"HostCommands"}


async def test_clash_fails_loudly_and_loads_nothing(env: None) -> None:
    async with host_bot() as bot:

        @bot.command(name="hello")
        async def host_hello(ctx: commands.Context) -> None:
            """The host's own hello."""

        with pytest.raises(commands.ExtensionFailed, match="hello"):
            await bot.load_extension("adjutant")
        assert bot.cogs == {}, "nothing half-loaded"
        assert bot.get_command("hello").callback is host_hello.callback
        assert "adjutant" not in bot.extensions


@pytest.mark.parametrize(
    ("first", "second"), [("adjutant", "adjutant.cogs.greeting"), ("adjutant.cogs.greeting", "adjutant")]
)
async def test_loading_umbrella_and_a_single_cog_fails_loudly(env: None, first: str, second: str) -> None:
    async with host_bot() as bot:
        await bot.load_extension(first)
        with pytest.raises(commands.ExtensionFailed, match="not both"):
            await bot.load_extension(second)
        assert second not in bot.extensions


async def test_no_two_commands_shadow_each_other(env: None) -> None:
    """Every name and alias of Adjutant's commands is unique and has a docstring (the help text)."""
    async with host_bot() as bot:
        await bot.load_extension("adjutant")
        seen: dict[str, str] = {}
        for cog in bot.cogs.values():
            for command in cog.walk_commands():
                assert command.help, f"{command.qualified_name} has no docstring"
                for name in (command.name, *command.aliases):
                    key = f"{command.full_parent_name} {name}".strip()
                    assert key not in seen, f"{key} of {command.qualified_name} shadows {seen[key]}"
                    seen[key] = command.qualified_name


async def test_guest_installs_nothing_global(env: None) -> None:
    async with host_bot() as bot:
        checks_before = list(bot._checks)
        listeners_before = {k: list(v) for k, v in bot.extra_events.items()}
        await bot.load_extension("adjutant")
        assert bot._checks == checks_before
        assert "on_command_error" not in bot.extra_events
        assert not any(name == "on_command_error" for cog in bot.cogs.values() for name, _ in cog.get_listeners())
        assert {k: v for k, v in bot.extra_events.items() if k in listeners_before} == listeners_before


async def test_adjutant_keeps_its_settings_across_reloads(tmp_path) -> None:
    env = {"ADJUTANT_STATE_DIR": str(tmp_path), "ADJUTANT_CHANNEL": "lab", "WANDB_PROJECT": "p"}
    async with adjutant.Adjutant(env=env) as bot:
        await bot.load_extension("adjutant")
        await bot.reload_extension("adjutant")
        assert bot.get_cog("Greeting").settings.channel == "lab"


def test_adjutant_seed_signature(tmp_path) -> None:
    """The original README's constructor keeps working."""
    script = tmp_path / "run_experiment.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    bot = adjutant.Adjutant("my-wandb-entity", "my-wandb-project-title", run_experiment_script=str(script), env={})
    assert bot.settings.entity == "my-wandb-entity"
    assert bot.settings.project == "my-wandb-project-title"
    assert bot.settings.run_experiment_script == script.resolve()
    assert isinstance(bot, commands.Bot)
    assert bot.command_prefix == "$"
    assert bot.intents.message_content


async def test_a_host_with_sync_status_run_and_help_cannot_load_adjutant_without_a_group(env: None) -> None:
    """The clash names the command and the setting that resolves it."""
    async with host_bot() as bot:

        @bot.command(name="status")
        async def host_status(ctx: commands.Context) -> None:
            """The host's own status."""

        with pytest.raises(commands.ExtensionFailed, match=r"'status'.*ADJUTANT_COMMAND_GROUP"):
            await bot.load_extension("adjutant")
        assert bot.cogs == {} and "adjutant" not in bot.extensions


async def test_command_group_fits_into_a_host_with_sync_status_run(env: None, monkeypatch) -> None:
    monkeypatch.setenv("ADJUTANT_COMMAND_GROUP", "adj")
    async with host_bot() as bot:
        host: dict[str, commands.Command] = {}
        for name in ("sync", "status", "run"):

            async def callback(ctx: commands.Context) -> None:
                """A host command."""

            host[name] = bot.command(name=name)(callback)
        await bot.load_extension("adjutant")
        for name, command in host.items():
            assert bot.get_command(name) is command, f"the host's {name} is untouched"
        group = bot.get_command("adj")
        assert isinstance(group, commands.Group)
        names = {c.name for c in group.commands}
        assert {"hello", "experiment", "sweep", "rerun", "cancel", "jobs", "logs", "runs", "run", "best"} <= names
        assert {"status", "plot"} <= names
        assert bot.get_command("adj status").cog is bot.get_cog("Desk")
        # Slash: one /adj group whose subcommands are Adjutant's, nothing else added at the top level.
        top = {c.name for c in bot.tree.get_commands(type=discord.AppCommandType.chat_input)}
        assert top == {"adj"}, top
        # the one message command (right-click → Apps → Rerun) cannot live in a group
        assert {c.name for c in bot.tree.get_commands(type=discord.AppCommandType.message)} == {"Rerun"}
        slash = bot.tree.get_command("adj")
        assert {"experiment", "runs", "plot", "status"} <= {c.name for c in slash.commands}
        await bot.unload_extension("adjutant")
        assert bot.get_command("adj") is None and bot.tree.get_command("adj") is None
        assert {c.name for c in bot.commands} == {"sync", "status", "run", "help"}


async def test_command_group_name_clash_is_refused(env: None, monkeypatch) -> None:
    monkeypatch.setenv("ADJUTANT_COMMAND_GROUP", "run")
    async with host_bot() as bot:

        @bot.command(name="run")
        async def host_run(ctx: commands.Context) -> None:
            """The host's run."""

        with pytest.raises(commands.ExtensionFailed, match="choose another group name"):
            await bot.load_extension("adjutant")
        assert bot.cogs == {}
