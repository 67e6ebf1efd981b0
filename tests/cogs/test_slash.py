"""Slash commands through the Discord stand-in: INTERACTION_CREATE, callbacks, follow-ups, autocomplete."""

from __future__ import annotations

import asyncio

from tests.cogs.conftest import WANDB_ENV
from tests.cogs.test_experiments import SCRIPT, acks
from tests.conftest import eventually
from tests.standins.discord_standin import DiscordStandIn


async def answer(discord: DiscordStandIn, interaction_id: str, timeout: float = 20) -> dict:
    """The interaction's (final) answer: the original response once it is no longer "thinking…"."""

    def done() -> bool:
        found = discord.responses(interaction_id)
        return bool(found) and not found[0].get("loading")

    await eventually(done, timeout=timeout)
    return discord.responses(interaction_id)[0]


def callback_types(discord: DiscordStandIn, interaction_id: str) -> list[int]:
    return [r["type"] for r in discord.interaction_responses if r["interaction_id"] == interaction_id]


async def test_slash_hello_and_wrong_channel(start_adjutant, discord_standin: DiscordStandIn) -> None:
    async with start_adjutant():
        hello = await answer(discord_standin, await discord_standin.slash("hello"))
        elsewhere = await discord_standin.slash("hello", channel="random")
        await eventually(lambda: bool(callback_types(discord_standin, elsewhere)), timeout=10)
    assert hello["content"] == "Hello!"
    wrong = next(r for r in discord_standin.interaction_responses if r["interaction_id"] == elsewhere)
    assert wrong["data"]["flags"] & 64 and "#general only" in wrong["data"]["content"]


async def test_slash_run_queries_defer_and_autocomplete(start_adjutant, discord_standin, wandb_standin) -> None:
    wandb_standin.create_run("s1", display_name="alpha", state="finished", summary={"loss": 0.2, "acc": 0.7})
    wandb_standin.create_run("s2", display_name="beta", state="running", summary={"loss": 0.1})
    async with start_adjutant(WANDB_ENV):
        await discord_standin.wait_for_message(lambda m: bool(m["embeds"]), timeout=20)
        await asyncio.sleep(1.5)  # the first polls: Adjutant now knows the runs' names
        runs = await discord_standin.slash("runs", {"state": "running", "count": 5})
        table = await answer(discord_standin, runs)
        assert callback_types(discord_standin, runs) == [5], "deferred first (W&B may be slow), then followed up"
        assert "beta" in table["embeds"][0]["description"] and "alpha" not in table["embeds"][0]["description"]

        choices = await discord_standin.autocomplete("run", {"run": "alp"}, "run")
        assert choices == [{"name": "alpha (s1)", "value": "s1"}]
        states = await discord_standin.autocomplete("runs", {"state": "cr"}, "state")
        assert [c["value"] for c in states] == ["crashed"]

        card = await answer(discord_standin, await discord_standin.slash("run", {"run": "s1"}))
        assert card["embeds"][0]["title"] == "alpha"
        board = await answer(discord_standin, await discord_standin.slash("best", {"metric": "acc", "goal": "max"}))
        assert "alpha" in board["embeds"][0]["description"]
        status = await answer(discord_standin, await discord_standin.slash("status"))
        assert "Last successful poll" in status["content"]


async def test_slash_launch_permissions_and_job_autocomplete(
    start_adjutant, discord_standin, monkeypatch, tmp_path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("ADJUTANT_TEST_OUT", str(out))
    async with start_adjutant({"ADJUTANT_EXPERIMENT_SCRIPT": str(SCRIPT)}):
        refused = await answer(
            discord_standin,
            await discord_standin.slash("experiment", {"hyperparameters": '{"epochs": 1}'}, author="member"),
        )
        assert "not allowed to launch" in refused["content"]
        launched = await answer(
            discord_standin, await discord_standin.slash("experiment", {"hyperparameters": '{"sleep": 600}'})
        )
        assert launched["embeds"][0]["title"].startswith("🧪 Experiment")
        job_id = launched["embeds"][0]["title"].split()[2].rstrip(":")
        choices = await discord_standin.autocomplete("cancel", {"job_id": job_id[:3]}, "job_id")
        assert [c["value"] for c in choices] == [job_id]
        cancelled = await answer(discord_standin, await discord_standin.slash("cancel", {"job_id": job_id}))
        assert "SIGTERM sent" in cancelled["content"]
        titles = lambda: [e.get("title", "") for m in discord_standin.sent() for e in m["embeds"]]  # noqa: E731
        await eventually(lambda: any(f"Experiment {job_id} cancelled" in t for t in titles()), timeout=20)
    report = next(
        m for m in discord_standin.sent() if any(f"{job_id} cancelled" in e.get("title", "") for e in m["embeds"])
    )
    assert report["channel_id"] == launched["id"], "the story continues in a thread under the slash answer"
    assert not acks(discord_standin)[0].get("message_reference")


async def test_sync_on_request_with_default_permissions(start_adjutant, discord_standin: DiscordStandIn) -> None:
    guild = str(discord_standin.guild_id)
    async with start_adjutant(
        {"ADJUTANT_GUILD_ID": guild, "ADJUTANT_EXPERIMENT_SCRIPT": str(SCRIPT)}, sync_commands=True
    ):
        await eventually(lambda: guild in discord_standin.synced, timeout=10)
        count = len(discord_standin.sent())
        await discord_standin.post("$sync", author="member")
        refused = await discord_standin.wait_for_message(after=count, timeout=10)
        count = len(discord_standin.sent())
        await discord_standin.post("$sync", author="owner")
        synced = await discord_standin.wait_for_message(after=count, timeout=10)
    names = {c["name"]: c for c in discord_standin.synced[guild]}
    # no W&B: no run commands
    assert set(names) == {
        "hello",
        "experiment",
        "sweep",
        "agents",
        "sweeps",
        "rerun",
        "cancel",
        "jobs",
        "logs",
        "gpus",
        "usage",
        "audit",
        "Rerun",
    }
    assert names["Rerun"]["type"] == 3, "a message context menu"
    assert str(names["experiment"]["default_member_permissions"]) == str(1 << 5), "Manage Server by default"
    assert names["hello"]["default_member_permissions"] is None
    assert "global" not in discord_standin.synced, "a guild sync, not a global one"
    assert "own this bot" in refused["content"]
    assert synced["content"].startswith(f"Synced {len(names)} slash command(s) to server")


async def test_host_bot_tree_is_never_synced(discord_standin, monkeypatch, tmp_path) -> None:
    import discord
    from discord.ext import commands

    from tests.conftest import running

    monkeypatch.setenv("ADJUTANT_STATE_DIR", str(tmp_path))
    intents = discord.Intents.default()
    intents.message_content = True

    class Host(commands.Bot):
        async def setup_hook(self) -> None:
            await self.load_extension("adjutant")

    async with running(Host("$", intents=intents, guild_ready_timeout=0.1), discord_standin.token):
        await discord_standin.post("$hello")
        await discord_standin.wait_for_message(lambda m: m["content"] == "Hello!", timeout=10)
    assert discord_standin.synced == {}
    assert not discord_standin.rest("PUT", "/commands")


async def test_slash_jobs_logs_sweep_rerun(
    start_adjutant, discord_standin: DiscordStandIn, monkeypatch, tmp_path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("ADJUTANT_TEST_OUT", str(out))
    async with start_adjutant({"ADJUTANT_EXPERIMENT_SCRIPT": str(SCRIPT), "ADJUTANT_JOB_THREADS": "off"}):
        launched = await answer(
            discord_standin, await discord_standin.slash("experiment", {"hyperparameters": "lines=3"})
        )
        job_id = launched["embeds"][0]["title"].split()[2].rstrip(":")
        titles = lambda: [e.get("title", "") for m in discord_standin.sent() for e in m["embeds"]]  # noqa: E731
        await eventually(lambda: any(f"Experiment {job_id} succeeded" in t for t in titles()), timeout=20)
        logs = await answer(discord_standin, await discord_standin.slash("logs", {"job_id": job_id, "lines": "2"}))
        assert logs["content"].startswith("Last 2 line(s)") and "(succeeded)" in logs["content"]
        jobs = await answer(discord_standin, await discord_standin.slash("jobs"))
        assert job_id in str(jobs["embeds"][0])
        rerun = await answer(
            discord_standin, await discord_standin.slash("rerun", {"source": job_id, "overrides": "lines=1"})
        )
        assert "~ lines: 3 → 1" in rerun["content"]
        sweep = await answer(discord_standin, await discord_standin.slash("sweep", {"grid": '{"lr": [1, 2]}'}))
        assert sweep["embeds"][0]["title"] == "Sweep: 2 experiment(s)"
        assert len(discord_standin.buttons(sweep)) == 2


async def test_a_refused_sync_says_what_discord_named(start_adjutant, discord_standin: DiscordStandIn) -> None:
    """A command Discord refuses (here a host's, with a 101-character description): `$sync` answers with Discord's
    own words, naming the command and the limit, and registers nothing."""
    from discord import app_commands

    guild = str(discord_standin.guild_id)
    async with start_adjutant({"ADJUTANT_GUILD_ID": guild}) as bot:

        @app_commands.command(name="toolong", description="x" * 101)
        async def toolong(interaction) -> None:  # pragma: no cover - never run
            pass

        bot.tree.add_command(toolong)
        count = len(discord_standin.sent())
        with discord_standin.expect_refusals(50035) as refused:
            await discord_standin.post("$sync", author="owner")
            answer = await discord_standin.wait_for_message(after=count, timeout=10)
        assert refused, "Discord (the stand-in) refused the sync"
    assert "Discord refused the slash commands" in answer["content"], answer["content"]
    assert "toolong" in answer["content"] and "100" in answer["content"]
    assert "Something went wrong" not in answer["content"]
    assert guild not in discord_standin.synced
