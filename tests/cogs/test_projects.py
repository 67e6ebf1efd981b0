"""One Adjutant for a team: two W&B projects routed to two channels (and a second channel watching one of them),
end to end through the Discord and W&B stand-ins with the real clients and real job processes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cogs.conftest import reporting_ready
from tests.cogs.test_alert_cards import say
from tests.cogs.test_experiments import SCRIPT, job_id_of, wait_report
from tests.conftest import eventually
from tests.standins.discord_standin import DiscordStandIn
from tests.standins.wandb_standin import WandbStandIn


def projects_file(tmp_path: Path) -> Path:
    vision_script = tmp_path / "vision.sh"  # the vision channel's own script: marks its runs, then trains
    vision_script.write_text(f'#!/bin/sh\nexport ADJUTANT_TEST_SCRIPT=vision\nexec "{SCRIPT}" "$1"\n')
    vision_script.chmod(0o755)
    path = tmp_path / "adjutant.toml"
    path.write_text(
        f"""
[[projects]]
project = "proj"
entity = "team"
channel = "general"
experiment_script = "{SCRIPT}"

[[projects]]
project = "vision"
entity = "team"
channel = "experiments"
experiment_script = "vision.sh"
metric = "acc"
metric_goal = "max"

[[projects]]
project = "vision"
entity = "team"
channel = "random"
"""
    )
    return path


def titles_in(discord: DiscordStandIn, channel: str) -> list[str]:
    return [e.get("title", "") for m in discord.sent(channel) for e in m["embeds"]]


async def test_each_project_speaks_in_its_own_channels_and_commands_default_to_them(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn, tmp_path: Path, out_dir, monkeypatch
) -> None:
    monkeypatch.delenv("WANDB_SERVICE")  # out_dir's fake one would capture this process's wandb client
    wandb_standin.projects[("team", "vision")] = {}
    wandb_standin.create_run("old-vision", state="finished", project="vision", summary={"acc": 0.5})
    env = {"ADJUTANT_CONFIG": str(projects_file(tmp_path)), "ADJUTANT_POLL_SECONDS": "1", "ADJUTANT_CHANNEL": ""}
    async with start_adjutant(env) as bot:
        await eventually(
            lambda: all(titles_in(discord_standin, c) for c in ("general", "experiments", "random")), timeout=30
        )
        assert "team/proj" in titles_in(discord_standin, "general")[0]
        assert "team/vision" in titles_in(discord_standin, "experiments")[0]
        assert "team/vision" in titles_in(discord_standin, "random")[0], "a second channel watching the project"
        await reporting_ready(bot)

        wandb_standin.create_run("p1", display_name="proj-run", state="running")
        wandb_standin.create_run("v1", display_name="vision-run", state="running", project="vision")
        await eventually(
            lambda: any("vision-run started" in t for t in titles_in(discord_standin, "random")), timeout=30
        )
        await eventually(
            lambda: any("proj-run started" in t for t in titles_in(discord_standin, "general")), timeout=30
        )
        assert any("vision-run started" in t for t in titles_in(discord_standin, "experiments"))
        assert not any("vision-run" in t for t in titles_in(discord_standin, "general")), "only its project's channels"
        assert not any(
            "proj-run" in t for t in titles_in(discord_standin, "experiments") + titles_in(discord_standin, "random")
        )

        count = len(discord_standin.sent())
        await discord_standin.post("$runs", channel="experiments")
        table = await discord_standin.wait_for_message(lambda m: bool(m["embeds"]), after=count, timeout=15)
        text = json.dumps(table["embeds"][0])
        assert "vision-run" in text and "proj-run" not in text, "the channel's project by default"
        count = len(discord_standin.sent())
        await discord_standin.post("$runs project:proj running", channel="experiments")
        table = await discord_standin.wait_for_message(lambda m: bool(m["embeds"]), after=count, timeout=15)
        assert "proj-run" in json.dumps(table["embeds"][0]), "project:<name> asks about another project"
        assert "No project `nope`" in await say_in(discord_standin, "$runs project:nope", "experiments")

        # launching in each channel runs its script with its own project in the job's environment
        for channel, project, script in (("general", "proj", None), ("experiments", "vision", "vision")):
            count = len(discord_standin.sent())
            await discord_standin.post('$experiment {"epochs": 1}', channel=channel)
            ack = await discord_standin.wait_for_message(
                lambda m: bool(m["embeds"]) and m["embeds"][0].get("title", "").startswith("🧪"),
                after=count,
                timeout=15,
            )
            job_id = job_id_of(ack)
            await wait_report(discord_standin, job_id)
            received = json.loads((out_dir / f"{job_id}.json").read_text())
            assert received["env"]["WANDB_PROJECT"] == project and received["env"]["WANDB_ENTITY"] == "team"
            assert received["env"].get("ADJUTANT_TEST_SCRIPT") == script, "the channel's own script ran"
        off = await say_in(discord_standin, '$experiment {"epochs": 1}', "random")
        assert "Launching is off in this channel; it is on in #general, #experiments" in off


async def say_in(discord: DiscordStandIn, text: str, channel: str) -> str:
    count = len(discord.sent())
    await discord.post(text, channel=channel)
    return (await discord.wait_for_message(lambda m: bool(m["content"]), after=count, timeout=10))["content"]


_ = say
